package global_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/global"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
)

// TestIntegrationGlobalSweepBudgetClaims: on the real broker, one
// instance claims the budget, another sweeps on its ticker, both drop the
// claims the sweep deleted, and a third started afterwards counts the
// same budget from the topic.
func TestIntegrationGlobalSweepBudgetClaims(t *testing.T) {
	k := itest.PlainKafka(t)
	topic := "responder-global-sweep-test-" + itest.RandHex(6)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	sec := k.Security(t)
	if err := kafka.EnsureTopics(ctx, k.Brokers, sec, kstate.Spec(topic, 1)); err != nil {
		t.Fatal(err)
	}
	k.DeleteTopicsAfter(t, topic)
	kc := kstate.Config{Brokers: k.Brokers, Security: sec, Topic: topic}

	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	open := func(reg prometheus.Registerer) *global.Rules {
		t.Helper()
		r, tb, err := global.Open(ctx, kc, global.Options{Budget: 2, Interval: 10 * time.Minute, Now: clock, Metrics: reg, SweepEvery: 100 * time.Millisecond}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tb.Close() })
		return r
	}
	claimer := open(nil)
	reg := prometheus.NewRegistry()
	sweeper := open(reg)
	for _, min := range []int{0, 1, 2, 40, 41, 75} {
		mu.Lock()
		now = t0.Add(time.Duration(min) * time.Minute)
		mu.Unlock()
		if _, _, err := claimer.Claims.Claim(ctx, "claimer"); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- sweeper.Run(rctx) }()
	for claimer.Claims.Kept() != 1 || sweeper.Claims.Kept() != 1 {
		if ctx.Err() != nil {
			t.Fatalf("records kept: claimer %d, sweeper %d; want 1 (the claim after the last pause)", claimer.Claims.Kept(), sweeper.Claims.Kept())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("5 claims swept and dropped by both instances %s after the sweeper started", time.Since(start).Round(time.Millisecond))
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(sweeper.SweptCounter("budget_claim")); got != 5 {
		t.Fatalf("agentwatch_responder_global_swept_total{kind=budget_claim} = %v, want 5", got)
	}
	late := open(nil)
	if late.Claims.Kept() != 1 || late.Claims.Remaining() != claimer.Claims.Remaining() || !slices.Equal(late.Claims.Winners(), claimer.Claims.Winners()) {
		t.Fatalf("instance started after the sweep: kept %d, remaining %d, winners %v; the claimer: remaining %d, winners %v",
			late.Claims.Kept(), late.Claims.Remaining(), late.Claims.Winners(), claimer.Claims.Remaining(), claimer.Claims.Winners())
	}
}
