package outbox

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/partstate"
)

// takeAll is a visitor that takes every open entry and keeps what it saw.
type takeAll struct {
	open, parked map[string]int
	refs         []openRef
}

func (v *takeAll) counts(open, parked map[string]int) bool {
	v.open, v.parked = open, parked
	return true
}

func (v *takeAll) visit(o *openRef) (bool, bool) {
	v.refs = append(v.refs, *o)
	return true, false
}

// checkScanIsList fails the test unless scanOpen shows and returns the
// open entries List returns, in the same order, with the same counts.
func checkScanIsList(t *testing.T, s Store, what string) {
	t.Helper()
	ctx := t.Context()
	v := &takeAll{}
	taken, err := s.(openScanner).scanOpen(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	listed, err := s.List(ctx, StatePending, StateInFlight)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keysOf(taken), keysOf(listed); !slices.Equal(got, want) {
		t.Fatalf("after %s: scanOpen took %v; List has %v", what, got, want)
	}
	for i, e := range listed {
		if want := refOf(&e); v.refs[i] != want {
			t.Fatalf("after %s: scanOpen showed %+v; want %+v", what, v.refs[i], want)
		}
	}
	open, parked := map[string]int{}, map[string]int{}
	for _, e := range listed {
		open[e.Kind]++
	}
	ps, err := s.List(ctx, StateParked)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ps {
		parked[e.Kind]++
	}
	if !maps.Equal(v.open, open) || !maps.Equal(v.parked, parked) {
		t.Fatalf("after %s: counts open %v parked %v; want %v and %v", what, v.open, v.parked, open, parked)
	}
}

// TestOpenIndexFollowsList: through random enqueues, state changes,
// requeues and compactions, a store's scan stays what List says.
func TestOpenIndexFollowsList(t *testing.T) {
	flavours := []struct {
		name string
		open func(t *testing.T) (Store, []EnqueueOption, func() error)
	}{
		{"file", func(t *testing.T) (Store, []EnqueueOption, func() error) {
			s, _ := tempStore(t, FileOptions{DoneRetention: time.Nanosecond})
			return s, nil, func() error { return s.Compact(t.Context()) }
		}},
		{"part", func(t *testing.T) (Store, []EnqueueOption, func() error) {
			s, _ := partStoreT(t, partstate.NewMemChangelog(1), PartOptions{DoneRetention: time.Nanosecond}, 0)
			return s, []EnqueueOption{InPartition(0)}, func() error { _, err := s.Compact(t.Context()); return err }
		}},
	}
	for _, fl := range flavours {
		t.Run(fl.name, func(t *testing.T) {
			s, opts, compact := fl.open(t)
			rng := rand.New(rand.NewPCG(1, 2))
			var keys []string
			states := []State{StatePending, StateInFlight, StateDone, StateFailed, StateParked}
			for i := range 1500 {
				var what string
				switch op := rng.IntN(10); {
				case op < 4 || len(keys) == 0:
					key := fmt.Sprintf("e%d", i)
					o := append(slices.Clone(opts), NotBefore(time.Now().Add(time.Duration(rng.IntN(100))*time.Second)))
					if rng.IntN(2) == 0 {
						o = append(o, WithOrderKey(fmt.Sprintf("o%d", rng.IntN(5))))
					}
					enqueue(t, s, key, fmt.Sprintf("k%d", rng.IntN(3)), o...)
					keys = append(keys, key)
					what = "enqueue " + key
				case op < 8:
					key := keys[rng.IntN(len(keys))]
					e, found, err := s.Get(t.Context(), key)
					if err != nil || !found {
						continue // compacted away
					}
					e.State, e.Attempts = states[rng.IntN(len(states))], e.Attempts+1
					e.NextAttempt = time.Now().Add(time.Duration(rng.IntN(100)) * time.Second)
					if _, err := s.Update(t.Context(), e); err != nil {
						t.Fatal(err)
					}
					what = fmt.Sprintf("update %s to %s", key, e.State)
				case op < 9:
					key := keys[rng.IntN(len(keys))]
					Requeue(t.Context(), s, key) // refused unless parked or failed
					what = "requeue " + key
				default:
					if err := compact(); err != nil {
						t.Fatal(err)
					}
					what = "compact"
				}
				checkScanIsList(t, s, what)
			}
			// Closing the backlog leaves dead refs the majority, which
			// drops them.
			open, err := s.List(t.Context(), StatePending, StateInFlight)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range open {
				e.State, e.Attempts = StateDone, e.Attempts+1
				if _, err := s.Update(t.Context(), e); err != nil {
					t.Fatal(err)
				}
				checkScanIsList(t, s, "done "+e.Key)
			}
		})
	}
}

// TestPartStoreActivateMergesOrder: a partition restored from another
// process's changelog is merged with the entries held, in (Seq, Key)
// order, and the Worker takes the first of an order key across both.
func TestPartStoreActivateMergesOrder(t *testing.T) {
	cl := partstate.NewMemChangelog(2)
	a, _ := partStoreT(t, cl, PartOptions{}, 0)
	b, owner := partStoreT(t, cl, PartOptions{}, 1)
	for i := 1; i <= 4; i++ {
		enqueue(t, b, fmt.Sprintf("b%d", i), "k", InPartition(1), WithOrderKey("incident"))
		if i <= 3 {
			enqueue(t, a, fmt.Sprintf("a%d", i), "k", InPartition(0), WithOrderKey("incident"))
		}
	}
	done := get(t, b, "b1")
	done.State, done.Attempts = StateDone, 1
	if _, err := b.Update(t.Context(), done); err != nil {
		t.Fatal(err)
	}
	if err := owner.Assign(t.Context(), []int32{0, 1}); err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, "new", "k", InPartition(0), WithOrderKey("incident"))
	checkScanIsList(t, b, "restore")
	v := &takeAll{}
	taken, err := b.scanOpen(t.Context(), v)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := keysOf(taken), []string{"a1", "a2", "b2", "a3", "b3", "b4", "new"}; !slices.Equal(got, want) {
		t.Fatalf("open entries in order %v; want %v", got, want)
	}

	// The Worker starts a1 only: the restored entry comes first in
	// its order key, ahead of those b held.
	hctx, cancel := context.WithCancel(t.Context())
	block := func(ctx context.Context, _ Entry) ([]byte, error) { <-ctx.Done(); return nil, ctx.Err() }
	r := newRunState(&Worker{Store: b, Kinds: map[string]Kind{"k": {Handler: block, Concurrency: 10}}})
	defer stopRuns(t, r, cancel)
	if _, err := r.startDue(t.Context(), hctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if got := slices.Collect(maps.Keys(r.running)); !slices.Equal(got, []string{"a1"}) {
		t.Fatalf("started %v; want [a1]", got)
	}
}
