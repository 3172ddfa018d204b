package detect

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// feedbackFixture is two simulated days run through a processor: its saved
// state, to restore fresh copies from, and a behaviour anomaly of an agent
// scored against its own baseline, with its window's values.
type feedbackFixture struct {
	cat    StaticCatalog
	cps    map[int32]detstate.Checkpoint
	states map[int32][]detstate.State
	an     anomaly.Anomaly
	values []float64
}

func newFeedbackFixture(t *testing.T) *feedbackFixture {
	t.Helper()
	rs, s := simRecords(t, twoDays(1))
	f := &feedbackFixture{cat: simCatalog(t, s), cps: map[int32]detstate.Checkpoint{}, states: map[int32][]detstate.State{}}
	p := NewProcessor(testSettings(), f.cat, nil)
	as, ss := run(p, rs)
	values := map[string][]float64{}
	for _, sc := range ss {
		values[anomaly.ID(sc.AgentID, sc.WindowStartMs, anomaly.Behaviour)] = sc.Values
	}
	for _, a := range as {
		if a.Kind == anomaly.Behaviour && !a.PeerBaseline && values[a.ID] != nil {
			f.an, f.values = a, values[a.ID] // the last one: the model has learnt least since
		}
	}
	if f.values == nil {
		t.Fatal("the simulated incidents raised no behaviour anomaly against an agent's own baseline")
	}
	for _, part := range p.Partitions() {
		cp, st := p.Snapshot(part, "g", "events", 1)
		f.cps[part], f.states[part] = cp, st
	}
	return f
}

// processor returns a fresh processor restored from the fixture's state.
func (f *feedbackFixture) processor(t *testing.T, set Settings) *Processor {
	t.Helper()
	p := NewProcessor(set, f.cat, nil)
	for part, cp := range f.cps {
		if errs := p.Restore(part, cp, true, f.states[part]); len(errs) > 0 {
			t.Fatal(errs)
		}
	}
	return p
}

func (f *feedbackFixture) agent(p *Processor) *agentState {
	return p.parts[f.an.Partition].agents[f.an.AgentID]
}

// rescore scores the anomaly's window again against the agent's model.
func (f *feedbackFixture) rescore(p *Processor) float64 {
	var v features.Vector
	copy(v[:], f.values)
	return f.agent(p).model.Score(&p.set.Baseline, f.an.WindowStartMs, &v).Score
}

// TestApplyVerdict: a false-positive verdict on a behaviour anomaly folds
// its window into the agent's baseline, so the identical window scores
// lower; each verdict applies once and in order; verdicts the baseline has
// nothing to learn from change nothing.
func TestApplyVerdict(t *testing.T) {
	f := newFeedbackFixture(t)
	fp := func(id string, atMs int64) anomaly.Verdict {
		return anomaly.Verdict{
			ID: id, AnomalyID: f.an.ID, AgentID: f.an.AgentID, Kind: anomaly.Behaviour,
			WindowStartMs: f.an.WindowStartMs, WindowEndMs: f.an.WindowEndMs, Values: slices.Clone(f.values),
			Verdict: anomaly.VerdictFalsePositive, Author: "U123", AtMs: atMs,
		}
	}
	with := func(v anomaly.Verdict, change func(*anomaly.Verdict)) anomaly.Verdict {
		change(&v)
		return v
	}
	for _, tc := range []struct {
		name     string
		verdicts []anomaly.Verdict
		applied  []bool
		lower    bool // the window re-scores lower afterwards
	}{
		{"false positive", []anomaly.Verdict{fp("v1", 1000)}, []bool{true}, true},
		{"same verdict twice", []anomaly.Verdict{fp("v1", 1000), fp("v1", 1000)}, []bool{true, false}, true},
		{"older verdict after a newer one", []anomaly.Verdict{fp("v2", 2000), fp("v1", 1000)}, []bool{true, false}, true},
		{"two verdicts at the same instant", []anomaly.Verdict{fp("v1", 1000), fp("v2", 1000)}, []bool{true, true}, true},
		{"no values", []anomaly.Verdict{with(fp("v1", 1000), func(v *anomaly.Verdict) { v.Values = nil })}, []bool{false}, false},
		{"values of another build", []anomaly.Verdict{with(fp("v1", 1000), func(v *anomaly.Verdict) { v.Values = v.Values[:3] })}, []bool{false}, false},
		{"unknown agent", []anomaly.Verdict{with(fp("v1", 1000), func(v *anomaly.Verdict) { v.AgentID = "nobody" })}, []bool{false}, false},
		{"global event", []anomaly.Verdict{with(fp("v1", 1000), func(v *anomaly.Verdict) { v.AgentID, v.Kind = "*global/calls", anomaly.GlobalEvent })}, []bool{false}, false},
		{"rule kind", []anomaly.Verdict{with(fp("v1", 1000), func(v *anomaly.Verdict) { v.Kind = anomaly.ShadowAgent })}, []bool{false}, false},
		{"drift trained in full already", []anomaly.Verdict{with(fp("v1", 1000), func(v *anomaly.Verdict) { v.Kind = anomaly.Drift })}, []bool{false}, false},
		{"not a false positive", []anomaly.Verdict{with(fp("v1", 1000), func(v *anomaly.Verdict) { v.Verdict = "true_positive" })}, []bool{false}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := f.processor(t, testSettings())
			before := f.rescore(p)
			if before < p.set.Baseline.AlertScore {
				t.Fatalf("restored model scores the anomalous window %.1f, below the alert score", before)
			}
			var state []byte
			for i, v := range tc.verdicts {
				prev := f.agent(p).marshal(nil)
				if got := p.ApplyVerdict(v); got != tc.applied[i] {
					t.Fatalf("verdict %d (%s at %d): applied = %v, want %v", i, v.ID, v.AtMs, got, tc.applied[i])
				}
				state = f.agent(p).marshal(nil)
				if !tc.applied[i] && !bytes.Equal(state, prev) {
					t.Fatalf("verdict %d was not applied but changed the agent's state", i)
				}
			}
			after := f.rescore(p)
			if tc.lower && !(after < before) {
				t.Fatalf("window scores %.2f after the verdict, %.2f before; want lower", after, before)
			}
			if !tc.lower && after != before {
				t.Fatalf("window scores %.2f after, %.2f before; want unchanged", after, before)
			}
			t.Logf("score %.1f -> %.1f", before, after)
			// The verdict is saved with the agent: a restored detector does
			// not apply it again.
			back := &agentState{id: f.an.AgentID}
			if err := back.unmarshal(state); err != nil {
				t.Fatal(err)
			}
			a := f.agent(p)
			if back.verdictAt != a.verdictAt || back.verdictID != a.verdictID {
				t.Fatalf("verdict (%d, %q) restores as (%d, %q)", a.verdictAt, a.verdictID, back.verdictAt, back.verdictID)
			}
			for _, v := range tc.verdicts {
				q := f.processor(t, testSettings())
				q.parts[f.an.Partition].agents[f.an.AgentID] = back
				if q.ApplyVerdict(v) {
					t.Fatalf("verdict %s applied again after a restore", v.ID)
				}
			}
		})
	}
}

// TestApplyVerdictMakesUpTheWeight: the fold trains the window with the
// weight it did not get when it was scored anomalous, so it ends up
// trained once at full weight.
func TestApplyVerdictMakesUpTheWeight(t *testing.T) {
	f := newFeedbackFixture(t)
	for _, aw := range []float64{0, 0.1, 1} {
		set := testSettings()
		set.Baseline.AnomalousWeight = aw
		p := f.processor(t, set)
		want := f.agent(p).model
		var v features.Vector
		copy(v[:], f.values)
		want.Update(&set.Baseline, f.an.WindowStartMs, &v, 1-aw)
		if !p.ApplyVerdict(anomaly.Verdict{ID: "v", AgentID: f.an.AgentID, Kind: anomaly.Behaviour, WindowStartMs: f.an.WindowStartMs,
			Values: f.values, Verdict: anomaly.VerdictFalsePositive, AtMs: 1}) {
			t.Fatalf("anomalous_weight %g: not applied", aw)
		}
		if got := f.agent(p).model; !bytes.Equal(got.AppendBinary(nil), want.AppendBinary(nil)) {
			t.Fatalf("anomalous_weight %g: the fold did not train the window with weight %g", aw, 1-aw)
		}
	}
}

// fakeFeedback returns the same verdicts at every poll, like a lookback
// query does. Safe for concurrent use.
type fakeFeedback struct {
	mu    sync.Mutex
	vs    []anomaly.Verdict
	polls int
	since int64
	fail  bool
}

func (s *fakeFeedback) Since(_ context.Context, sinceMs int64) ([]anomaly.Verdict, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.polls++
	s.since = sinceMs
	if s.fail {
		s.fail = false
		return nil, errors.New("clickhouse is away")
	}
	return slices.Clone(s.vs), nil
}

func (s *fakeFeedback) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.polls
}

// TestDetectorPollsFeedback: the running detector polls its feedback
// source, survives a failed read, and folds each verdict in once however
// often it is read, from its own loop (run with -race).
func TestDetectorPollsFeedback(t *testing.T) {
	rs, s := simRecords(t, twoDays(5))
	rs = rs[:len(rs)/4]
	var scored anomaly.Score
	probe := NewProcessor(testSettings(), simCatalog(t, s), nil)
	_, ss := run(probe, rs)
	for _, sc := range ss {
		if sc.Values[features.Calls] > 0 {
			scored = sc
		}
	}
	v := anomaly.Verdict{ID: "v1", AgentID: scored.AgentID, Kind: anomaly.Behaviour, WindowStartMs: scored.WindowStartMs,
		WindowEndMs: scored.WindowEndMs, Values: scored.Values, Verdict: anomaly.VerdictFalsePositive, AtMs: time.Now().UnixMilli()}
	fb := &fakeFeedback{vs: []anomaly.Verdict{v, v}, fail: true}

	store := &slowStore{anomalies: map[string]bool{}, published: map[string]bool{}}
	proc := NewProcessor(testSettings(), simCatalog(t, s), func() int64 { return time.Now().UnixMilli() })
	gen := &memGeneration{t: t, done: make(chan struct{}), store: store, proc: proc}
	for i := range rs {
		gen.msgs = append(gen.msgs, bus.Message{Partition: rs[i].part, Offset: rs[i].off, Value: event.AppendJSON(nil, &rs[i].ev)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &Detector{
		Source: onceSource(gen),
		Store:  store, Out: publishingWriter{store}, AnomaliesTopic: "anomalies", Group: "g", EventsTopic: "events",
		Proc: proc, SnapshotEvery: 20 * time.Millisecond, FlushEvery: 5 * time.Millisecond, IdleFlush: 50 * time.Millisecond,
		Feedback: fb, FeedbackPoll: 5 * time.Millisecond, FeedbackLookback: time.Hour,
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	deadline := time.After(time.Minute)
	for d.Counts().Events < uint64(len(rs)) || fb.count() < 6 || d.Counts().Verdicts == 0 {
		select {
		case <-deadline:
			t.Fatalf("after a minute: %d of %d events, %d polls, %d verdicts applied", d.Counts().Events, len(rs), fb.count(), d.Counts().Verdicts)
		case <-time.After(5 * time.Millisecond):
		}
	}
	time.Sleep(50 * time.Millisecond) // more polls, and a snapshot to count them
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := d.Counts().Verdicts; got != 1 {
		t.Fatalf("%d verdicts applied from %d polls; want the verdict once", got, fb.count())
	}
	if lb := time.Now().UnixMilli() - fb.since; lb < time.Hour.Milliseconds() || lb > time.Hour.Milliseconds()+time.Minute.Milliseconds() {
		t.Fatalf("polled since %d ms ago; want the lookback, an hour", lb)
	}
	// Without a running loop, ApplyVerdicts waits for ctx.
	short, stop := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer stop()
	if _, err := d.ApplyVerdicts(short, []anomaly.Verdict{v}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ApplyVerdicts with no detector running: %v; want the deadline", err)
	}
}
