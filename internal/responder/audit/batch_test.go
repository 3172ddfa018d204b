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
