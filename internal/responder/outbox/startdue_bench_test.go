package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkStartDue measures one pass of the Worker's scheduling over a
// backlog of 5,000 open entries of a PartStore (three kinds, order keys
// shared by ten entries each), as under `agentwatch bench responder`:
//
//   - saturated: every kind with a handler runs at its concurrency limit,
//     so nothing can start (the common case between two outcomes);
//   - not_due: nothing is due yet and slots are free, so every open entry
//     is looked at (the worst case).
func BenchmarkStartDue(b *testing.B) {
	const backlog = 5000
	for _, tc := range []struct {
		name  string
		later time.Duration // how far out the backlog is due
	}{
		{"saturated", 0},
		{"not_due", time.Hour},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s, _ := partStoreT(b, partstate.NewMemChangelog(1), PartOptions{}, 0)
			kinds := []string{"slack.post", "gateway.revoke", "card"}
			for i := range backlog {
				opts := []EnqueueOption{InPartition(0), NotBefore(time.Now().Add(tc.later))}
				if i%2 == 0 {
					opts = append(opts, WithOrderKey(fmt.Sprintf("incident-%d", i/20)))
				}
				enqueue(b, s, fmt.Sprintf("entry-%05d", i), kinds[i%len(kinds)], opts...)
			}
			hctx, cancel := context.WithCancel(b.Context())
			block := func(ctx context.Context, _ Entry) ([]byte, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			w := &Worker{Store: s, Metrics: NewMetrics(prometheus.NewRegistry()), Kinds: map[string]Kind{
				"slack.post": {Handler: block, Concurrency: 8}, "gateway.revoke": {Handler: block, Concurrency: 8},
				"card": {Handler: block, Concurrency: 4}, "answer": {Handler: block},
			}}
			r := &runState{
				w: w, bo: w.Backoff.withDefaults(), log: slog.New(slog.DiscardHandler),
				results: make(chan result), running: map[string]bool{}, perKind: map[string]int{},
				pausedUntil: map[string]time.Time{}, warned: map[string]bool{}, gaugeKinds: map[string]bool{},
			}
			ctx := b.Context()
			if _, err := r.startDue(ctx, hctx, time.Second); err != nil {
				b.Fatal(err)
			}
			if tc.later == 0 && len(r.running) != 20 {
				b.Fatalf("%d entries running; want 20 (every kind at its limit)", len(r.running))
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.startDue(ctx, hctx, time.Second); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cancel()
			for len(r.running) > 0 {
				res := <-r.results
				r.stopping = true
				if err := r.finish(ctx, res); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
