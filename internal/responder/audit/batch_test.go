package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type countingStore struct {
	MemStore
	appends atomic.Int32
	fail    atomic.Bool
}

func (c *countingStore) Append(ctx context.Context, recs ...Record) error {
	c.appends.Add(1)
	if c.fail.Load() {
		return errors.New("clickhouse is down")
	}
	return c.MemStore.Append(ctx, recs...)
}

func TestBatcherGroupsConcurrentAppends(t *testing.T) {
	inner := &countingStore{}
	b := NewBatcher(inner, 20*time.Millisecond, 1000)
	defer b.Close()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := Record{ID: fmt.Sprintf("r%d", i), AtMs: int64(i + 1), Actor: Actor{Kind: ActorAutomatic}, Action: "revoke", Result: ResultOK}
			if err := b.Append(context.Background(), r); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	got, err := b.Query(context.Background(), Filter{})
	if err != nil || len(got) != 50 {
		t.Fatalf("stored %d records (%v), want 50", len(got), err)
	}
	if n := inner.appends.Load(); n >= 50 || n < 1 {
		t.Errorf("%d inserts for 50 concurrent appends: not grouped", n)
	}
	// An insert's error reaches every caller whose records it held.
	inner.fail.Store(true)
	if err := b.Append(context.Background(), Record{ID: "x", AtMs: 1, Actor: Actor{Kind: ActorAutomatic}, Action: "revoke", Result: ResultOK}); err == nil {
		t.Error("a failed insert reported success")
	}
	b.Close()
	if err := b.Append(context.Background(), Record{ID: "y", AtMs: 1}); !errors.Is(err, ErrBatcherClosed) {
		t.Errorf("append after close: %v", err)
	}
}

func TestSpacedBatcherStartsInsertsAGapApartUnderLoad(t *testing.T) {
	inner := &countingStore{}
	const gap = 100 * time.Millisecond
	b := NewSpacedBatcher(inner, 5*time.Millisecond, gap, 1000)
	defer b.Close()
	rec := func(i int) Record {
		return Record{ID: fmt.Sprintf("r%d", i), AtMs: int64(i + 1), Actor: Actor{Kind: ActorAutomatic}, Action: "revoke", Result: ResultOK}
	}
	// Sparse: an Append after a quiet spell waits only for wait.
	start := time.Now()
	if err := b.Append(t.Context(), rec(0)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= gap {
		t.Errorf("a lone append took %s, want about the 5ms wait", took)
	}
	time.Sleep(gap) // the next insert may start at once
	// Load: 20 writers appending one record every 2ms for 450ms.
	inner.appends.Store(0)
	start = time.Now()
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Go(func() {
			for i := 0; time.Since(start) < 450*time.Millisecond; i++ {
				if err := b.Append(t.Context(), rec(1000*(w+1)+i)); err != nil {
					t.Error(err)
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	// One insert per gap, plus the first (which starts at once) and the
	// last (which may start after the writers stopped).
	if n, most := inner.appends.Load(), int32(took/gap)+2; n > most {
		t.Errorf("%d inserts in %s, want at most %d: one per %s", n, took.Round(time.Millisecond), most, gap)
	}
	got, err := b.Query(t.Context(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 20 {
		t.Fatalf("stored %d records", len(got))
	}
}
