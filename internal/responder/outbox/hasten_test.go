package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/partstate"
)

// hastener is what both stores offer the engine (interfaces at the
// consumer side; this test is one).
type hastener interface {
	Store
	Hasten(key string, at time.Time) bool
}

// TestHasten: a pending entry due later is brought forward, and the Worker
// runs it without a poll; an entry in flight, done, or already due is left
// alone; nothing is written, so a restore finds the stored time.
func TestHasten(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) (s hastener, reopen func() Store)
	}{
		{"file", func(t *testing.T) (hastener, func() Store) {
			s, path := tempStore(t, FileOptions{})
			return s, func() Store {
				s.Close()
				return openT(t, path, FileOptions{})
			}
		}},
		{"changelog", func(t *testing.T) (hastener, func() Store) {
			cl := partstate.NewMemChangelog(1)
			s, _ := partStoreT(t, cl, PartOptions{}, 0)
			return s, func() Store {
				b, _ := partStoreT(t, cl, PartOptions{}, 0)
				return b
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, reopen := tc.open(t)
			ctx := t.Context()
			later := time.Now().Add(time.Hour)
			enqueue(t, s, "later", "k", InPartition(0), NotBefore(later))
			enqueue(t, s, "due", "k", InPartition(0))
			done := enqueue(t, s, "done", "k", InPartition(0), NotBefore(later))
			done.State = StateDone
			if _, err := s.Update(ctx, done); err != nil {
				t.Fatal(err)
			}
			enqueue(t, s, "inflight", "k", InPartition(0), NotBefore(later))
			if _, err := claim(ctx, s, get(t, s, "inflight")); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			for _, c := range []struct {
				key  string
				at   time.Time
				want bool
			}{
				{"later", later.Add(time.Minute), false}, // never pushed back
				{"due", now, false},                      // due before now
				{"done", now, false},
				{"inflight", now, false},
				{"missing", now, false},
				{"later", now, true},
				{"later", now, false}, // already due then
			} {
				if got := s.Hasten(c.key, c.at); got != c.want {
					t.Errorf("Hasten(%q, %s) = %v, want %v", c.key, c.at.Format(time.StampMilli), got, c.want)
				}
			}
			if e := get(t, s, "later"); !e.NextAttempt.Equal(now.UTC()) || e.State != StatePending {
				t.Errorf("brought forward: %+v, want pending at %s", e, now)
			}
			// Nothing written: a restore finds the stored time.
			if e := get(t, reopen(), "later"); !e.NextAttempt.Equal(later.UTC()) {
				t.Errorf("after a restore due at %s, want the stored %s", e.NextAttempt, later.UTC())
			}
		})
	}
}

// TestHastenWakesTheWorker: a Worker whose next poll is an hour away
// starts an entry brought forward at once, on either store.
func TestHastenWakesTheWorker(t *testing.T) {
	for _, tc := range []struct {
		name string
		open func(t *testing.T) hastener
	}{
		{"file", func(t *testing.T) hastener { s, _ := tempStore(t, FileOptions{}); return s }},
		{"changelog", func(t *testing.T) hastener {
			s, _ := partStoreT(t, partstate.NewMemChangelog(1), PartOptions{}, 0)
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.open(t)
			ran := make(chan string, 1)
			w := &Worker{Store: s, Poll: time.Hour, Kinds: map[string]Kind{"k": {Handler: func(_ context.Context, e Entry) ([]byte, error) {
				ran <- e.Key
				return nil, nil
			}}}}
			stop := startWorker(t, w)
			defer stop()
			enqueue(t, s, "later", "k", InPartition(0), NotBefore(time.Now().Add(time.Hour)))
			select {
			case k := <-ran:
				t.Fatalf("%s ran before it was brought forward", k)
			case <-time.After(100 * time.Millisecond):
			}
			if !s.Hasten("later", time.Now()) {
				t.Fatal("Hasten of a pending entry due in an hour: false")
			}
			select {
			case <-ran:
			case <-time.After(10 * time.Second):
				t.Fatal("the entry brought forward did not run in 10 s")
			}
		})
	}
}
