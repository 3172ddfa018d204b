package chstore

import (
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// TestIntegrationSeen: the first MarkHandled of an id reports first, every
// later one (from this or another process) does not, and exactly one of
// many concurrent calls in a process does.
func TestIntegrationSeen(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	s, other := NewSeen(st), NewSeen(openSecond(t, st))
	ids := []string{"an-1", strings.Repeat("é", 256), "quote'\"back`slash\\", "nul\x00byte"}
	for _, id := range ids {
		if done, err := s.Handled(ctx, id); err != nil || done {
			t.Fatalf("Handled(%q) before marking = %v, %v", id, done, err)
		}
		if first, err := s.MarkHandled(ctx, id); err != nil || !first {
			t.Fatalf("first MarkHandled(%q) = %v, %v", id, first, err)
		}
		if first, err := s.MarkHandled(ctx, id); err != nil || first {
			t.Fatalf("second MarkHandled(%q) = %v, %v", id, first, err)
		}
		if first, err := other.MarkHandled(ctx, id); err != nil || first {
			t.Fatalf("another process's MarkHandled(%q) = %v, %v", id, first, err)
		}
		if done, err := other.Handled(ctx, id); err != nil || !done {
			t.Fatalf("Handled(%q) after marking = %v, %v", id, done, err)
		}
	}
	if done, err := s.Handled(ctx, "an"); err != nil || done {
		t.Fatalf("Handled of a prefix = %v, %v", done, err)
	}

	const n = 8
	var wg sync.WaitGroup
	firsts := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { firsts[i], errs[i] = s.MarkHandled(ctx, "an-racy") })
	}
	wg.Wait()
	count := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if firsts[i] {
			count++
		}
	}
	if count != 1 {
		t.Fatalf("%d of %d concurrent MarkHandled calls reported first; want 1", count, n)
	}
	if got := rowCount(t, st, "responder_handled"); got != uint64(len(ids)+1) {
		t.Fatalf("responder_handled has %d rows; want one per id, %d", got, len(ids)+1)
	}
}

// TestIntegrationScores reads back what the detector wrote.
func TestIntegrationScores(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	base := int64(1_740_000_000_000)
	ss := []anomaly.Score{
		{AgentID: "a", WindowStartMs: base, WindowEndMs: base + 300_000, Partition: 2, Score: 1.5, Severity: "none",
			Values: []float64{1, 2, math.MaxFloat64}, Expected: []float64{1, 1, 1}, Surprise: []float64{0, 1, -0.5}, Trained: true},
		{AgentID: "a", WindowStartMs: base + 300_000, WindowEndMs: base + 600_000, Score: 9, Severity: "high", PeerBaseline: true, Late: 3},
		{AgentID: "b", WindowStartMs: base, WindowEndMs: base + 300_000, Score: 0.1},
	}
	if err := st.InsertScores(ctx, ss); err != nil {
		t.Fatal(err)
	}
	rescored := ss[1]
	rescored.Score = 10
	if err := st.InsertScores(ctx, []anomaly.Score{rescored}); err != nil {
		t.Fatal(err)
	}
	got, err := st.Scores(ctx, "a", base, base+600_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Score != 1.5 || !slices.Equal(got[0].Values, ss[0].Values) || !got[0].Trained ||
		got[1].Score != 10 || got[1].Late != 3 || !got[1].PeerBaseline || got[1].Values == nil || len(got[1].Values) != 0 {
		t.Fatalf("Scores = %+v", got)
	}
	if got, err := st.Scores(ctx, "a", base+1, base+300_000); err != nil || len(got) != 0 {
		t.Fatalf("Scores of an empty range = %+v, %v", got, err)
	}
}

// TestIntegrationFeedback: verdicts come back in (AtMs, ID) order, each ID
// once and at its earliest AtMs, unmerged and merged.
func TestIntegrationFeedback(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	stopMerges(t, st, "feedback_verdicts")
	f := NewFeedback(st)
	v1, v2, v3 := testVerdict("v1", 100), testVerdict("v2", 100), testVerdict("v3", 200)
	v2.Values, v3.Author = nil, "hostile\n'\"`\x1b[0m"
	v2late := v2
	v2late.AtMs = 300
	v0 := testVerdict("v0", 100) // same AtMs as v1, smaller id
	for _, v := range []anomaly.Verdict{v1, v2, v3, v1, v2late, v0} {
		if err := f.Put(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string, since int64, want ...anomaly.Verdict) {
		t.Helper()
		got, err := f.Since(ctx, since)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, equalVerdict) {
			t.Errorf("%s: Since(%d) =\n%+v\nwant\n%+v", when, since, got, want)
		}
	}
	for _, when := range []string{"unmerged", "merged"} {
		check(when, 0, v0, v1, v2, v3)
		check(when, 100, v0, v1, v2, v3)
		check(when, 101, v3) // v2's later copy does not bring it back
		check(when, 201)
		check(when, 301)
		if when == "unmerged" {
			if n := rowCount(t, st, "feedback_verdicts"); n != 6 {
				t.Fatalf("feedback_verdicts has %d rows; want 6 unmerged", n)
			}
			mergeNow(t, st, "feedback_verdicts")
			if n := rowCount(t, st, "feedback_verdicts"); n != 5 {
				t.Fatalf("feedback_verdicts has %d rows after merging; want 5 (v1's copy collapsed)", n)
			}
		}
	}
}

func equalVerdict(a, b anomaly.Verdict) bool {
	vs := a.Values
	a.Values = nil
	ws := b.Values
	b.Values = nil
	if !reflect.DeepEqual(a, b) || len(vs) != len(ws) {
		return false
	}
	for i := range vs {
		if math.Float64bits(vs[i]) != math.Float64bits(ws[i]) {
			return false
		}
	}
	return (vs == nil) == (ws == nil)
}
