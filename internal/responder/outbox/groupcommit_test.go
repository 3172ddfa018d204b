package outbox

import (
	"fmt"
	"sync"
	"testing"
)

// TestConcurrentWritesShareFsyncs writes from many goroutines at once:
// every write must be durable on return (a reopen finds it) and, as the
// store's lock is not held across the fsync, concurrent writes must share
// fsyncs instead of queueing for one each.
func TestConcurrentWritesShareFsyncs(t *testing.T) {
	const writers = 64
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, s *FileStore, i int)
		check func(t *testing.T, s *FileStore, i int)
	}{
		{"enqueue", func(t *testing.T, s *FileStore, i int) {
			if _, created, err := s.Enqueue(t.Context(), fmt.Sprintf("k%02d", i), "revoke", []byte("p")); err != nil || !created {
				t.Errorf("Enqueue(k%02d) = %v, %v", i, created, err)
			}
		}, func(t *testing.T, s *FileStore, i int) {
			if e := get(t, s, fmt.Sprintf("k%02d", i)); e.State != StatePending {
				t.Errorf("k%02d after reopen: %+v", i, e)
			}
		}},
		{"mark handled", func(t *testing.T, s *FileStore, i int) {
			if first, err := s.MarkHandled(t.Context(), fmt.Sprintf("a%02d", i)); err != nil || !first {
				t.Errorf("MarkHandled(a%02d) = %v, %v", i, first, err)
			}
		}, func(t *testing.T, s *FileStore, i int) {
			if ok, err := s.Handled(t.Context(), fmt.Sprintf("a%02d", i)); err != nil || !ok {
				t.Errorf("a%02d after reopen: handled %v, %v", i, ok, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One round could, by the scheduler's whim, run its writes one
			// after the other; several rounds that all do would mean the
			// writes do not overlap.
			shared := false
			for round := 0; round < 5 && !shared; round++ {
				s, path := tempStore(t, FileOptions{})
				before := s.j.Stats().Syncs
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						tc.write(t, s, i)
					}()
				}
				close(start)
				wg.Wait()
				syncs := s.j.Stats().Syncs - before
				if syncs > writers {
					t.Fatalf("%d writes took %d fsyncs", writers, syncs)
				}
				shared = syncs < writers
				t.Logf("round %d: %d concurrent writes, %d fsyncs", round, writers, syncs)
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = openT(t, path, FileOptions{})
				for i := range writers {
					tc.check(t, s, i)
				}
			}
			if !shared {
				t.Errorf("in 5 rounds of %d concurrent writes every write had its own fsync: they do not overlap", writers)
			}
		})
	}
}

// TestConcurrentUpdatesOfOneKeyKeepTheirOrder updates one entry from many
// goroutines, with other keys written alongside and compaction kicking in
// often: the entry's last line in the file must be the last update made,
// so a reopen finds what memory held.
func TestConcurrentUpdatesOfOneKeyKeepTheirOrder(t *testing.T) {
	s, path := tempStore(t, FileOptions{CompactMinLines: 16})
	ctx := t.Context()
	enqueue(t, s, "hot", "revoke")
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Superseded lines of hot outnumber the live ones, so the
			// file is compacted while the writes go on.
			for r := range 3 {
				e := Entry{Key: "hot", State: StatePending, Attempts: 3*i + r + 1, NextAttempt: get(t, s, "hot").NextAttempt}
				if _, err := s.Update(ctx, e); err != nil {
					t.Errorf("Update(hot, %d): %v", i, err)
				}
			}
			if _, _, err := s.Enqueue(ctx, fmt.Sprintf("cold-%03d", i), "revoke", []byte("p")); err != nil {
				t.Errorf("Enqueue(cold-%03d): %v", i, err)
			}
			if _, err := s.MarkHandled(ctx, fmt.Sprintf("id-%03d", i)); err != nil {
				t.Errorf("MarkHandled(id-%03d): %v", i, err)
			}
		}()
	}
	wg.Wait()
	inMemory := get(t, s, "hot")
	all, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.j.Stats().Compactions == 0 {
		t.Errorf("no compaction ran: the test does not cover writes racing it")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, path, FileOptions{CompactMinLines: 16})
	if got := get(t, s, "hot"); got.Attempts != inMemory.Attempts {
		t.Errorf("after reopen hot has attempts %d; memory had %d: an older update's line came last", got.Attempts, inMemory.Attempts)
	}
	reopened, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(reopened) != len(all) || len(all) != 201 {
		t.Errorf("%d entries before the reopen, %d after; want 201", len(all), len(reopened))
	}
	for i := range 200 {
		if ok, err := s.Handled(ctx, fmt.Sprintf("id-%03d", i)); err != nil || !ok {
			t.Errorf("id-%03d lost: %v, %v", i, ok, err)
		}
	}
}
