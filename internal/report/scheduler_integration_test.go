package report

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
)

// TestIntegrationSchedulerTwoInstances: two responder instances' report
// schedulers, each with its own ClickHouse connection, its own reader of
// the global table on Kafka (which orders the evidence chain) and its own
// evidence directory, tick for one period at once. The lease in ClickHouse
// lets one write it: one report is posted to Slack and recorded once in
// the shared chain, which verifies; the other instance then finds the
// period done in that chain.
func TestIntegrationSchedulerTwoInstances(t *testing.T) {
	addr := itest.ClickHouseAddr(t)
	k := itest.PlainKafka(t)
	sec := k.Security(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	db := "report_sched_it_" + itest.RandHex(4)
	itest.DropDatabaseAfter(t, addr, db)
	topic := "report-sched-it-" + itest.RandHex(6)
	if err := kafka.EnsureTopics(ctx, k.Brokers, sec, kstate.Spec(topic, 1)); err != nil {
		t.Fatal(err)
	}
	k.DeleteTopicsAfter(t, topic)
	srv := testsrv.NewSlack()
	defer srv.Close()
	log := slog.New(slog.DiscardHandler)

	type instance struct {
		st    *chstore.Store
		chain *evidence.SequencedChain
		root  string
		s     *Scheduler
	}
	open := func(name string) *instance {
		st, err := chstore.OpenMigrated(ctx, config.ClickHouse{Addr: addr, Database: db, Username: "default", DialTimeout: 5 * time.Second}, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		chain := evidence.NewSequencedChain(chstore.NewChain(st), log)
		tb, err := kstate.OpenTable(ctx, kstate.Config{Brokers: k.Brokers, Security: sec, Topic: topic}, chain.Apply)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tb.Close() })
		chain.Attach(tb)
		root := filepath.Join(t.TempDir(), "evidence")
		t.Cleanup(func() { makeWritable(root) })
		b, _ := fixtureBuilder()
		s := &Scheduler{
			Job: &Job{Builder: b, Formats: []string{"html", "pdf"}, Chain: chain, EvidenceRoot: root,
				Slack: slack.New("xoxb-test", slack.OptionAPIURL(srv.URL())), Channel: "C0REPORTS"},
			Schedule: Schedule{At: 6 * time.Hour}, Chain: chain,
			Now:   func() time.Time { return time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC) },
			Lease: st, Owner: name, Log: log,
		}
		return &instance{st: st, chain: chain, root: root, s: s}
	}
	// Two instances at once, racing for November.
	var insts [2]*instance
	var wg sync.WaitGroup
	for i, name := range []string{"responder-a", "responder-b"} {
		wg.Go(func() { insts[i] = open(name) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	start := time.Now()
	outs := make([]outcome, 2)
	errs := make([]error, 2)
	for i, in := range insts {
		wg.Go(func() { outs[i], errs[i] = in.s.tickCounted(ctx) })
	}
	wg.Wait()
	t.Logf("the race took %s", time.Since(start).Round(time.Millisecond))
	winner := -1
	for i := range insts {
		if errs[i] != nil {
			t.Fatalf("instance %d: %v", i, errs[i])
		}
		if outs[i] == outcomeRan {
			winner = i
		}
	}
	if winner < 0 || outs[1-winner] != outcomeElsewhere {
		t.Fatalf("outcomes %v: want one ran and one elsewhere", outs)
	}

	// The loser ticks again (its retry): the shared chain says done.
	if o, err := insts[1-winner].s.tickCounted(ctx); err != nil || o != outcomeDone {
		t.Fatalf("the other instance's next tick: %v, %v; want done", o, err)
	}
	completed := 0
	for _, f := range srv.Files() {
		if f.Completed {
			completed++
		}
	}
	if completed != 2 { // the HTML and the PDF of one report
		t.Errorf("%d files shared to Slack, want 2 (one report)", completed)
	}
	stored := chstore.NewChain(insts[1-winner].st) // the other connection reads what was stored
	recs, err := evidence.FindReports(ctx, stored, "2026-11")
	if err != nil || len(recs) != 1 {
		t.Fatalf("ClickHouse's evidence_chain holds %d report records of 2026-11 (%v), want 1", len(recs), err)
	}
	if err := evidence.VerifyChain(ctx, stored, insts[winner].root); err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}
}
