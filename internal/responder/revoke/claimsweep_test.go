package revoke

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestClaimsSweepable: the sweep takes exactly the records before the
// latest interval-long pause between claims that began more than two
// intervals before the latest claim, and nothing once they are deleted.
func TestClaimsSweepable(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	m := func(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }
	type rec struct {
		id     string
		at     time.Time
		refund bool
	}
	tests := []struct {
		name string
		log  []rec
		want []string
	}{
		{"empty", nil, nil},
		{"one claim", []rec{{"a", m(0), false}}, nil},
		{"no pause", []rec{{"a", m(0), false}, {"b", m(9), false}, {"c", m(18), false}, {"d", m(27), false}, {"e", m(36), false}, {"f", m(45), false}}, nil},
		{"pause long ago", []rec{{"a", m(0), false}, {"b", m(5), false}, {"c", m(20), false}, {"d", m(50), false}, {"e", m(55), false}},
			[]string{"a", "b", "c"}},
		{"pause exactly one interval", []rec{{"a", m(0), false}, {"b", m(10), false}, {"c", m(40), false}}, []string{"a", "b"}},
		{"pause began too recently", []rec{{"a", m(0), false}, {"b", m(10), false}, {"c", m(15), false}}, nil},
		{"pause began just two intervals before", []rec{{"a", m(0), false}, {"b", m(20), false}}, nil},
		{"pause began more than two intervals before", []rec{{"a", m(0), false}, {"b", m(21), false}}, []string{"a"}},
		{"refunds go with their claims", []rec{{"a", m(0), false}, {"a", m(1), true}, {"b", m(30), false}, {"b", m(31), true}},
			[]string{"a", "a/r"}},
		// b's clock is behind: it counts at a's time, so the pause is
		// after it.
		{"clock behind", []rec{{"a", m(20), false}, {"b", m(5), false}, {"c", m(50), false}, {"d", m(60), false}},
			[]string{"a", "b"}},
		// b's clock is ahead: c counts at b's time, so there is no pause
		// between b and c, whatever c's own time says.
		{"clock ahead", []rec{{"a", m(0), false}, {"b", m(100), false}, {"c", m(30), false}, {"d", m(110), false}},
			[]string{"a"}},
		// A retry's copy goes with the first copy, wherever it landed.
		{"copy before the pause", []rec{{"a", m(0), false}, {"a~1", m(0), false}, {"b", m(5), false}, {"c", m(20), false}, {"d", m(50), false}, {"e", m(55), false}},
			[]string{"a", "a~1", "b", "c"}},
		// A copy after the pause holds the cut before its first copy:
		// whether the fold counts it depends on what is left of the
		// records before (here it counts, at 50, as a new claim).
		{"copy after the pause", []rec{{"a", m(0), false}, {"b", m(5), false}, {"c", m(20), false}, {"d", m(50), false}, {"a~1", m(0), false}},
			nil},
		{"copy after two pauses", []rec{{"z", m(0), false}, {"a", m(15), false}, {"b", m(20), false}, {"c", m(35), false}, {"d", m(65), false}, {"a~1", m(15), false}},
			[]string{"z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := &memTable{}
			c := mustClaims(t, tb, 1, 10*time.Minute, nil)
			tb.follow(c.Apply)
			for _, r := range tt.log {
				key := ClaimPrefix + r.id
				if r.refund {
					key += refundSuffix
				}
				if _, err := tb.Put(context.Background(), key, claimRecord(t, r.at)); err != nil {
					t.Fatal(err)
				}
			}
			var want []string
			for _, id := range tt.want {
				want = append(want, ClaimPrefix+id)
			}
			if got := c.Sweepable(); !slices.Equal(got, want) {
				t.Fatalf("sweepable %v, want %v", got, want)
			}
			kept := c.Kept()
			n, err := c.Sweep(context.Background())
			if err != nil || n != len(want) {
				t.Fatalf("sweep: %d, %v; want %d", n, err, len(want))
			}
			if got := c.Kept(); got != kept-len(want) {
				t.Fatalf("kept %d records after the sweep, want %d", got, kept-len(want))
			}
			if got := c.Sweepable(); len(got) != 0 {
				t.Fatalf("sweepable after the sweep: %v", got)
			}
			if n, err := c.Sweep(context.Background()); n != 0 || err != nil {
				t.Fatalf("second sweep: %d, %v", n, err)
			}
		})
	}
}

// TestClaimsSweepFailure: a delete that fails is reported and left for the
// next sweep.
func TestClaimsSweepFailure(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	tb := &memTable{}
	c := mustClaims(t, tb, 1, time.Minute, nil)
	tb.follow(c.Apply)
	for i, min := range []int{0, 1, 10} {
		if _, err := tb.Put(context.Background(), fmt.Sprint(ClaimPrefix, i), claimRecord(t, t0.Add(time.Duration(min)*time.Minute))); err != nil {
			t.Fatal(err)
		}
	}
	tb.fail = errors.New("broker down")
	if n, err := c.Sweep(context.Background()); n != 0 || err == nil {
		t.Fatalf("sweep with the table down: %d, %v", n, err)
	}
	tb.fail = nil
	if n, err := c.Sweep(context.Background()); n != 2 || err != nil {
		t.Fatalf("sweep once the table is back: %d, %v; want 2", n, err)
	}
}

// verdicts records the verdicts one instance's fold gives, by the key of
// the record that carried the claim, those of the claims it replayed at
// start apart from those it decided afterwards.
type verdicts struct {
	mu     sync.Mutex
	live   bool
	replay map[string]bool
	m      map[string]bool
}

func (v *verdicts) set(key string, won bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.live {
		v.m[key] = won
	} else {
		v.replay[key] = won
	}
}

func (v *verdicts) started() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.live = true
}

// followCompacted replays m's log to f as a restarting instance may read
// it from the compacted topic: each record followed by another of its key
// (a tombstone, or a copy written again) is there or not, as drop says
// (compaction drops them segment by segment, and a reader may see some
// segments cleaned and others not), and so is each tombstone.
func (m *memTable) followCompacted(drop func() bool, f func(key string, value []byte)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	written := map[string]bool{}
	later := make([]bool, len(m.log)) // the key is written again later
	for i := len(m.log) - 1; i >= 0; i-- {
		k := string(m.log[i][0])
		later[i] = written[k]
		written[k] = true
	}
	for i, r := range m.log {
		if (later[i] || r[1] == nil) && drop() {
			continue
		}
		f(string(r[0]), r[1])
	}
	m.followers = append(m.followers, f)
}

// TestClaimsSweepKeepsVerdicts: random logs of claims and refunds from
// three claimers with skewed clocks, busy spells and pauses, records
// written again by a retry (under the retry's key, as Claim and Refund
// write them), some long after the first, and unreadable ones; some
// deletes fail. Two instances
// sweep at random points, instances restart at random points from a
// partly compacted topic, and one instance follows the whole log without
// sweeping: every instance gives every claim it folds that no sweep had
// tried to delete when it started the same verdict as the one that never
// swept, and they agree on the budget left at the end. (A claim left by a
// failed delete is before the pause, where a restored instance that
// missed the deleted ones around it may count it differently, changing
// no verdict after the pause.) The sweeps write one tombstone at a time,
// so that a seed decides the whole run; six seeds, because a sweep that
// cut between two copies of a claim showed on about one seed in seven.
func TestClaimsSweepKeepsVerdicts(t *testing.T) {
	const every = 10 * time.Minute
	ctx := context.Background()
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	swept, failed, restarts := 0, 0, 0
	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 4))
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			for round := range 60 {
				limit := 1 + rng.IntN(3)
				tb := &memTable{failDelete: func(string) bool { return rng.IntN(5) == 0 }}
				var last time.Time
				now := func() time.Time { return last.Add(time.Second) }
				type instance struct {
					c *Claims
					v *verdicts
					// targeted holds the keys a sweep had tried to delete when
					// it started.
					targeted map[string]bool
					sweep    bool
				}
				start := func(compacted bool, sweep bool) *instance {
					in := &instance{c: mustClaims(t, tb, limit, every, now), v: &verdicts{m: map[string]bool{}, replay: map[string]bool{}}, sweep: sweep}
					in.c.decided = in.v.set
					in.c.sweepWorkers = 1
					in.targeted = maps.Clone(tb.targeted)
					if compacted {
						tb.followCompacted(func() bool { return rng.IntN(2) == 0 }, in.c.Apply)
					} else {
						tb.follow(in.c.Apply)
					}
					in.v.started()
					return in
				}
				ref := start(false, false)
				insts := []*instance{ref, start(false, true), start(false, true)}
				real := t0
				var keys []string
				var vals [][]byte
				tries := map[string]int{} // the latest retry of a claim's write
				refunded := map[string]bool{}
				for i := range 300 {
					switch r := rng.IntN(20); {
					case r == 0:
						real = real.Add(time.Duration(15+rng.IntN(30)) * time.Minute) // a pause
					case r == 1:
						real = real.Add(time.Duration(4+rng.IntN(9)) * time.Minute) // about an interval
					case r < 5:
						real = real.Add(time.Duration(rng.IntN(4)) * time.Minute)
					default:
						real = real.Add(time.Duration(rng.IntN(40)) * time.Second)
					}
					skew := time.Duration(i%3-1) * 4 * time.Minute
					id := fmt.Sprintf("r%d-%d", round, i)
					val := claimRecord(t, real.Add(skew))
					if rng.IntN(50) == 0 {
						val = []byte("{not json") // counts at the latest time
					}
					key := ClaimPrefix + id
					tries[id] = 0
					if rng.IntN(40) == 0 {
						tries[id] = 1
						key = retryKeys(key)(1) // the first try did not land
					}
					if _, err := tb.Put(ctx, key, val); err != nil {
						t.Fatal(err)
					}
					keys = append(keys, key)
					vals = append(vals, val)
					if rng.IntN(30) == 0 {
						// A produce retried after a lost answer: the record again
						// under its retry's key, a while later (far later than
						// the table's write timeout allows, to stretch the fold).
						j := max(0, len(keys)-1-rng.IntN(60))
						id := idOf(keys[j])
						tries[id]++
						if _, err := tb.Put(ctx, retryKeys(ClaimPrefix+id)(tries[id]), vals[j]); err != nil {
							t.Fatal(err)
						}
					}
					if id := idOf(keys[max(0, len(keys)-1-rng.IntN(5))]); rng.IntN(8) == 0 && !refunded[id] {
						refunded[id] = true
						refund := ClaimPrefix + id + refundSuffix
						if _, err := tb.Put(ctx, refund, claimRecord(t, real)); err != nil {
							t.Fatal(err)
						}
						if rng.IntN(10) == 0 {
							if _, err := tb.Put(ctx, retryKeys(refund)(1), claimRecord(t, real)); err != nil {
								t.Fatal(err)
							}
						}
					}
					last = ref.c.last
					for _, in := range insts {
						if in.sweep && rng.IntN(15) == 0 {
							n, err := in.c.Sweep(ctx)
							if err != nil {
								if !strings.Contains(err.Error(), "delete failed") {
									t.Fatal(err)
								}
								failed++
							}
							swept += n
						}
					}
					if rng.IntN(40) == 0 {
						insts = append(insts, start(true, rng.IntN(2) == 0))
						restarts++
					}
				}
				for j, in := range insts {
					for key, won := range in.v.m {
						if want := ref.v.m[key]; won != want {
							t.Fatalf("round %d (limit %d): instance %d decides claim %s %v, the instance that never swept %v", round, limit, j, key, won, want)
						}
					}
					// A claim replayed at start has its verdict too, unless a
					// sweep had tried to delete it.
					for key, won := range in.v.replay {
						if in.targeted[key] {
							continue
						}
						if want := ref.v.m[key]; won != want {
							t.Fatalf("round %d (limit %d): instance %d replays claim %s as %v, the instance that never swept %v", round, limit, j, key, won, want)
						}
					}
					if got, want := in.c.Remaining(), ref.c.Remaining(); got != want {
						t.Fatalf("round %d: instance %d has %d left in the budget, the instance that never swept %d", round, j, got, want)
					}
				}
				// The instances that followed the whole log hold what the sweeps
				// left, no more.
				if ref.c.Kept() != insts[1].c.Kept() {
					t.Fatalf("round %d: the reference keeps %d records, a sweeper %d", round, ref.c.Kept(), insts[1].c.Kept())
				}
			}
		})
	}
	if swept == 0 || failed == 0 || restarts == 0 {
		t.Fatalf("the test swept %d records (%d sweeps with failed deletes) and restarted %d instances; it checks less than it says", swept, failed, restarts)
	}
	t.Logf("%d records swept, %d sweeps with failed deletes, %d restarts", swept, failed, restarts)
}

// TestClaimsSweepLateRetry: a claim written again by a retry a while
// after the first copy (under the retry's key) is ignored by the fold
// while it remembers the id, two intervals, and the sweep keeps both
// copies and what the first copy's effective time depends on: an
// instance restored from a compacted topic ignores the copy too and gives
// the later claims the same verdicts. (Had the sweep deleted the first
// copy, the restored instance would count the copy as a new claim at 12,
// and y would lose.)
func TestClaimsSweepLateRetry(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	m := func(min int) []byte { return claimRecord(t, t0.Add(time.Duration(min)*time.Minute)) }
	tb := &memTable{}
	const limit, every = 2, 10 * time.Minute
	sweeper := mustClaims(t, tb, limit, every, nil)
	tb.follow(sweeper.Apply)
	ref := mustClaims(t, tb, limit, every, nil)
	tb.follow(ref.Apply)
	for _, r := range []struct {
		key string
		val []byte
	}{{"z", m(-30)}, {"a", m(0)}, {"b", m(12)}, {"a~1", m(0)}, {"y", m(14)}, {"w", m(21)}} {
		if _, err := tb.Put(ctx, ClaimPrefix+r.key, r.val); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"b", "y"}; !slices.Equal(ref.Winners(), want) {
		t.Fatalf("winners %v, want %v (a's copy not counted)", ref.Winners(), want)
	}
	// The pause before a may go; the one before b may not, since the copy
	// of a is after it.
	if n, err := sweeper.Sweep(ctx); n != 1 || err != nil {
		t.Fatalf("sweep: %d, %v; want 1 (z)", n, err)
	}
	late := mustClaims(t, tb, limit, every, nil)
	tb.followCompacted(func() bool { return true }, late.Apply)
	if got, want := late.Winners(), ref.Winners(); !slices.Equal(got, want) {
		t.Fatalf("restored instance: winners %v; the one that followed the whole log: %v", got, want)
	}
}

// idOf returns the claim id a claim's key names, without its retry number.
func idOf(key string) string {
	id, _ := copyOf(strings.TrimPrefix(key, ClaimPrefix))
	return id
}
