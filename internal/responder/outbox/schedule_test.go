package outbox

import (
	"context"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// listOnly hides a store's scanOpen: the Worker falls back to List.
type listOnly struct{ Store }

// counting counts the entries a pass visits, over a store that scans or
// (listOnly) one that the Worker lists.
type counting struct {
	Store
	visits int
}

func (c *counting) scanOpen(ctx context.Context, v openVisitor) ([]Entry, error) {
	cv := &countingVisitor{openVisitor: v, n: &c.visits}
	if sc, ok := c.Store.(openScanner); ok {
		return sc.scanOpen(ctx, cv)
	}
	return listOpen(ctx, c.Store, cv)
}

type countingVisitor struct {
	openVisitor
	n *int
}

func (v *countingVisitor) visit(o *openRef) (bool, bool) {
	*v.n++
	return v.openVisitor.visit(o)
}

// storeFlavours are the stores the Worker's pass is tested on.
var storeFlavours = []struct {
	name string
	open func(t *testing.T) (Store, []EnqueueOption)
}{
	{"file", func(t *testing.T) (Store, []EnqueueOption) { s, _ := tempStore(t, FileOptions{}); return s, nil }},
	{"part", func(t *testing.T) (Store, []EnqueueOption) {
		s, _ := partStoreT(t, partstate.NewMemChangelog(1), PartOptions{}, 0)
		return s, []EnqueueOption{InPartition(0)}
	}},
	{"list", func(t *testing.T) (Store, []EnqueueOption) {
		s, _ := tempStore(t, FileOptions{})
		return listOnly{s}, nil
	}},
}

// newRunState is what Run sets up, without the loop.
func newRunState(w *Worker) *runState {
	r := &runState{
		w: w, bo: w.Backoff.withDefaults(), log: w.Log,
		results: make(chan result), running: map[string]bool{}, perKind: map[string]int{},
		pausedUntil: map[string]time.Time{}, warned: map[string]bool{}, gaugeKinds: map[string]bool{},
	}
	if r.log == nil {
		r.log = (&logBuf{}).logger()
	}
	for k := range w.Kinds {
		r.gaugeKinds[k] = true
	}
	return r
}

// stopRuns cancels the handlers startDue started and waits for them.
func stopRuns(t *testing.T, r *runState, cancel func()) {
	t.Helper()
	cancel()
	r.stopping = true
	for len(r.running) > 0 {
		if err := r.finish(t.Context(), <-r.results); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStartDue pins what one pass starts and when it asks to be woken,
// and that it stops walking once nothing more can start: kind a runs one
// at a time, b two, c one; x has no handler.
func TestStartDue(t *testing.T) {
	const poll = time.Minute
	type ent struct {
		key, kind, orderKey string
		dueIn               time.Duration
		running             bool // claimed and running before the pass
		stuck               bool // found in flight with its failures at the limit
	}
	tests := []struct {
		name    string
		entries []ent
		paused  map[string]time.Duration
		start   []string      // keys started by the pass
		parked  []string      // keys parked by the pass
		next    time.Duration // from now
		visits  int           // at most, when the walk stops early; 0: any
	}{
		{name: "seq order, first open entry per order key",
			entries: []ent{{key: "b1", kind: "b", orderKey: "o"}, {key: "b2", kind: "b", orderKey: "o"}, {key: "b3", kind: "b"}},
			start:   []string{"b1", "b3"}, next: poll},
		{name: "an order key holds entries of other kinds",
			entries: []ent{{key: "a1", kind: "a", orderKey: "o", dueIn: 10 * time.Second}, {key: "b1", kind: "b", orderKey: "o"}},
			next:    10 * time.Second},
		{name: "a running entry holds its order key",
			entries: []ent{{key: "b1", kind: "b", orderKey: "o", running: true}, {key: "b2", kind: "b", orderKey: "o"}, {key: "b3", kind: "b"}},
			start:   []string{"b3"}, next: poll},
		{name: "a kind at its limit stops the walk",
			entries: []ent{{key: "c1", kind: "c"}, {key: "c2", kind: "c"}, {key: "c3", kind: "c"}, {key: "c4", kind: "c"}},
			start:   []string{"c1"}, next: poll, visits: 1},
		{name: "every kind at its limit: no walk",
			entries: []ent{{key: "c1", kind: "c", running: true}, {key: "c2", kind: "c"}, {key: "c3", kind: "c", dueIn: time.Second}},
			next:    poll, visits: -1},
		{name: "a later entry of a kind at its limit sets no wake-up",
			entries: []ent{{key: "c1", kind: "c"}, {key: "c2", kind: "c", dueIn: 5 * time.Second}, {key: "b1", kind: "b"}},
			start:   []string{"b1", "c1"}, next: poll},
		{name: "next is the earliest due time of a kind with room",
			entries: []ent{{key: "a1", kind: "a", dueIn: 30 * time.Second}, {key: "a2", kind: "a", dueIn: 10 * time.Second}, {key: "a3", kind: "a", dueIn: 20 * time.Second}},
			next:    10 * time.Second},
		{name: "a paused kind starts nothing, wakes at the pause's end, and stops the walk",
			entries: []ent{{key: "a1", kind: "a"}, {key: "b1", kind: "b"}, {key: "b2", kind: "b"}, {key: "b3", kind: "b"}},
			paused:  map[string]time.Duration{"b": 20 * time.Second},
			start:   []string{"a1"}, next: 20 * time.Second, visits: 2},
		{name: "an entry due after its kind's pause wakes then",
			entries: []ent{{key: "b1", kind: "b", dueIn: 40 * time.Second}},
			paused:  map[string]time.Duration{"b": 20 * time.Second},
			next:    40 * time.Second},
		{name: "a kind without handler never starts nor wakes",
			entries: []ent{{key: "x1", kind: "x"}, {key: "x2", kind: "x", dueIn: time.Second}, {key: "a1", kind: "a"}},
			start:   []string{"a1"}, next: poll},
		{name: "an entry stuck in flight is parked and takes no slot",
			entries: []ent{{key: "c1", kind: "c", stuck: true}, {key: "c2", kind: "c"}, {key: "c3", kind: "c"}},
			parked:  []string{"c1"}, start: []string{"c2"}, next: poll},
	}
	for _, fl := range storeFlavours {
		for _, tt := range tests {
			t.Run(fl.name+"/"+tt.name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					inner, opts := fl.open(t)
					s := &counting{Store: inner}
					hctx, cancel := context.WithCancel(t.Context())
					block := func(ctx context.Context, _ Entry) ([]byte, error) { <-ctx.Done(); return nil, ctx.Err() }
					var logs logBuf
					w := &Worker{Store: s, Log: logs.logger(), Metrics: NewMetrics(prometheus.NewRegistry()), Kinds: map[string]Kind{
						"a": {Handler: block}, "b": {Handler: block, Concurrency: 2}, "c": {Handler: block},
					}}
					r := newRunState(w)
					var before []string // running without a goroutine of the pass's
					defer func() {
						for _, k := range before {
							delete(r.running, k)
						}
						stopRuns(t, r, cancel)
					}()
					now := time.Now()
					for _, e := range tt.entries {
						o := append(slices.Clone(opts), NotBefore(now.Add(e.dueIn)))
						if e.orderKey != "" {
							o = append(o, WithOrderKey(e.orderKey))
						}
						got := enqueue(t, s, e.key, e.kind, o...)
						switch {
						case e.stuck:
							got.State, got.Attempts, got.Failures = StateInFlight, r.bo.MaxAttempts, r.bo.MaxAttempts
							if _, err := s.Update(t.Context(), got); err != nil {
								t.Fatal(err)
							}
						case e.running:
							if _, err := claim(t.Context(), s, got); err != nil {
								t.Fatal(err)
							}
							r.running[e.key] = true
							r.perKind[e.kind]++
							before = append(before, e.key)
						}
					}
					for kind, d := range tt.paused {
						r.pausedUntil[kind] = now.Add(d)
					}
					next, err := r.startDue(t.Context(), hctx, poll)
					if err != nil {
						t.Fatal(err)
					}
					var started []string
					for k := range r.running {
						if !slices.Contains(before, k) {
							started = append(started, k)
						}
					}
					slices.Sort(started)
					if !slices.Equal(started, tt.start) {
						t.Errorf("started %v; want %v", started, tt.start)
					}
					if want := now.Add(tt.next); !next.Equal(want) {
						t.Errorf("next = now+%s; want now+%s", next.Sub(now), tt.next)
					}
					for _, k := range tt.parked {
						if e := get(t, s, k); e.State != StateParked {
							t.Errorf("%s is %s; want parked", k, e.State)
						}
					}
					_, scans := inner.(openScanner)
					switch {
					case tt.visits < 0 && s.visits != 0:
						t.Errorf("the pass visited %d entries; want none", s.visits)
					case tt.visits > 0 && s.visits > tt.visits && scans:
						t.Errorf("the pass visited %d entries; want at most %d", s.visits, tt.visits)
					}
					// The gauges count every entry open when the pass
					// began, walked or not.
					for _, kind := range []string{"a", "b", "c", "x"} {
						want := 0
						for _, e := range tt.entries {
							if e.kind == kind {
								want++
							}
						}
						if got := testutil.ToFloat64(w.Metrics.Pending.WithLabelValues(kind)); int(got) != want {
							t.Errorf("pending gauge of %s = %v; want %d", kind, got, want)
						}
					}
					wantWarn := 0
					for _, e := range tt.entries {
						if e.kind == "x" {
							wantWarn = 1
						}
					}
					if n := strings.Count(logs.String(), "without handler"); n != wantWarn {
						t.Errorf("%d warnings about a kind without handler; want %d", n, wantWarn)
					}
				})
			})
		}
	}
}
