package keylock

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOneAtATimePerKey: holders of one key never overlap; holders of
// different keys do; the map is empty once every holder is done.
func TestOneAtATimePerKey(t *testing.T) {
	var l Map[string]
	var inA atomic.Int32
	var maxA atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			defer l.Lock("a")()
			n := inA.Add(1)
			for {
				m := maxA.Load()
				if n <= m || maxA.CompareAndSwap(m, n) {
					break
				}
			}
			time.Sleep(100 * time.Microsecond)
			inA.Add(-1)
		})
	}
	wg.Wait()
	if got := maxA.Load(); got != 1 {
		t.Fatalf("holders of one key at once: %d; want 1", got)
	}

	// Another key is not held back by a held one.
	unlockA := l.Lock("a")
	done := make(chan struct{})
	go func() {
		l.Lock("b")()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Lock(b) waited for the holder of a")
	}
	unlockA()
	if n := l.Len(); n != 0 {
		t.Fatalf("keys kept after every holder is done: %d; want 0", n)
	}
}
