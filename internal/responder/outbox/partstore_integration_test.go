package outbox

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
)

// BenchmarkIntegrationPartStoreWorker measures the distributed outbox on
// a real broker: b.N entries are enqueued concurrently over 6 partitions
// and run by one Worker with no-op handlers (4 kinds, concurrency 16),
// each entry costing an Enqueue, a claim and an outcome write to the
// state changelog. It reports entries/s from the first enqueue to the
// last outcome.
//
//	go test -run '^$' -bench IntegrationPartStoreWorker -benchtime 3000x ./internal/responder/outbox
func BenchmarkIntegrationPartStoreWorker(b *testing.B) {
	k := itest.PlainKafka(b)
	const parts = 6
	topic := "it-outbox-bench-" + itest.RandHex(6)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	sec := k.Security(b)
	if err := kafka.EnsureTopics(ctx, k.Brokers, sec, kstate.Spec(topic, parts)); err != nil {
		b.Fatal(err)
	}
	k.DeleteTopicsAfter(b, topic)
	cl, err := kstate.OpenChangelog(ctx, kstate.Config{Brokers: k.Brokers, Security: sec, Topic: topic})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	s := NewPartStore(cl, PartOptions{})
	own := partstate.NewOwner(cl, nil, s)
	// A new topic's leaders may still be moving in: retry, as the
	// consumer does.
	for try := 0; ; try++ {
		err := own.Assign(ctx, []int32{0, 1, 2, 3, 4, 5})
		if err == nil {
			break
		}
		if try == 50 {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var done sync.WaitGroup
	done.Add(b.N)
	h := func(context.Context, Entry) ([]byte, error) { done.Done(); return nil, nil }
	kinds := map[string]Kind{}
	for i := range 4 {
		kinds[fmt.Sprint("k", i)] = Kind{Handler: h, Concurrency: 16}
	}
	w := &Worker{Store: s, Kinds: kinds, Poll: 50 * time.Millisecond}
	wctx, stop := context.WithCancel(ctx)
	werr := make(chan error, 1)
	go func() { werr <- w.Run(wctx) }()
	b.ResetTimer()
	start := time.Now()
	var enq sync.WaitGroup
	sem := make(chan struct{}, 64) // the consumer's batches queue concurrently
	for i := range b.N {
		enq.Add(1)
		sem <- struct{}{}
		go func() {
			defer enq.Done()
			defer func() { <-sem }()
			if _, _, err := s.Enqueue(ctx, fmt.Sprint("e-", i), fmt.Sprint("k", i%4), []byte("{}"), InPartition(int32(i%parts))); err != nil {
				b.Error(err)
			}
		}()
	}
	enq.Wait()
	enqueued := time.Since(start)
	done.Wait()
	// The last outcome is written after its handler returns.
	for {
		open, _ := s.List(ctx, StatePending, StateInFlight)
		if len(open) == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	stop()
	if err := <-werr; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "entries/s")
	b.ReportMetric(float64(b.N)/enqueued.Seconds(), "enqueues/s")
}
