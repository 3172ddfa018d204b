package detect

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/features"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// wallRec is one events-topic record and the wall time it reaches the
// detector (its ingest time: the delay from ingest to the detector is
// left out).
type wallRec struct {
	wall int64
	ev   event.Event
}

// feedWithIdleFlush plays recs through p on events partition 0 as the live
// detector would: a record arriving after idleMs of silence is preceded by
// the idle flush that the silence triggered (FlushUntil at the record's wall
// time, the last tick before it), and the end of the input is the end of a
// replay (FlushAll).
func feedWithIdleFlush(p *Processor, recs []wallRec, idleMs int64) ([]anomaly.Anomaly, []anomaly.Score) {
	var as []anomaly.Anomaly
	var ss []anomaly.Score
	last := int64(-1)
	for i := range recs {
		if last >= 0 && recs[i].wall-last >= idleMs {
			p.FlushUntil(0, recs[i].wall)
		}
		last = recs[i].wall
		p.Add(0, int64(i), &recs[i].ev)
		a, s := p.Take()
		as, ss = append(as, a...), append(ss, s...)
	}
	p.FlushAll()
	a, s := p.Take()
	return append(as, a...), append(ss, s...)
}

// honestOnly keeps the anomalies and scores of agents whose id starts with
// "honest-", normalised for comparison.
func honestOnly(as []anomaly.Anomaly, ss []anomaly.Score) ([]anomaly.Anomaly, []anomaly.Score) {
	as = slices.DeleteFunc(slices.Clone(as), func(a anomaly.Anomaly) bool { return !strings.HasPrefix(a.AgentID, "honest-") })
	ss = slices.DeleteFunc(slices.Clone(ss), func(s anomaly.Score) bool { return !strings.HasPrefix(s.AgentID, "honest-") })
	return norm(as, ss)
}

// TestLyingSourceCannotMoveOthersWindows: one raw-log partition (a gateway
// with a broken clock, or forged lines) sends events stamped at random from
// twenty minutes behind to nine minutes ahead of the time ingest read them,
// often into the quiet stretches where the idle flush runs. The agents fed
// by the other raw partitions must get exactly the windows, scores and
// anomalies they get without the liar, none of their events late, and
// their burst must still be scored and raised.
//
// The agents' own models are warm before the liar starts: while young, an
// agent is scored against the all-agents peer model, which every young or
// role-less agent trains, the liar's included. Global events and the fleet
// gauge are off for the same reason: they count every agent of the
// partition by design. What remains is what the clock decides.
func TestLyingSourceCannotMoveOthersWindows(t *testing.T) {
	const (
		minute = int64(60_000)
		idleMs = 30_000
		warmup = 10
	)
	base := int64(1_800_000_000_000) - 1_800_000_000_000%minute
	set := testSettings()
	set.GlobalMinAgents, set.FleetGauge = 0, false
	set.Baseline.Warmup = warmup
	cat := StaticCatalog{inventory.EmptyRegistry(), inventory.EmptyInventory()}

	for _, seed := range []uint64{1, 2, 3, 4, 5} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 16))
			// Six honest agents on raw partitions 0..2, stamped up to two
			// seconds before ingest read them. Every minute for the first
			// warm-up minutes, then quiet two minutes in every seven; in
			// minute 100 honest-0 bursts.
			var honest []wallRec
			off := int64(0)
			call := func(agent int, wall int64, route string, bytes uint64) {
				honest = append(honest, wallRec{wall, event.Event{
					AgentID: fmt.Sprint("honest-", agent), EventTimeMs: wall - rng.Int64N(2000), IngestTimeMs: wall,
					Topic: "raw", Partition: int32(agent % 3), Offset: off, Route: route, Path: route, Method: "GET",
					Status: 200, ResponseBytes: bytes, SourceIP: "10.0.0.1",
				}})
				off++
			}
			for m := int64(0); m < 140; m++ {
				if m > 2*warmup && m%7 >= 5 {
					continue
				}
				for agent := range 6 {
					for range 2 + rng.IntN(4) {
						call(agent, base+m*minute+2000+rng.Int64N(minute-4000), "/orders/{id}", 2000+uint64(rng.IntN(2000)))
					}
				}
				if m == 100 {
					for range 400 {
						call(0, base+m*minute+2000+rng.Int64N(minute-4000), "/payroll/{id}", 500_000)
					}
				}
			}
			// The liar: raw partition 9, three agents of its own, starting
			// once the honest agents are warm.
			var liar []wallRec
			for i := range 120 {
				wall := base + (2*warmup+2)*minute + rng.Int64N(115*minute)
				at := wall + rng.Int64N(29*minute) - 20*minute // -20 min .. +9 min
				liar = append(liar, wallRec{wall, event.Event{
					AgentID: fmt.Sprint("liar-", i%3), EventTimeMs: at, IngestTimeMs: wall,
					Topic: "raw", Partition: 9, Offset: int64(i), Route: "/orders/{id}", Path: "/orders/1", Method: "GET", Status: 200,
				}})
			}
			byWall := func(x, y wallRec) int { return cmp.Compare(x.wall, y.wall) }
			slices.SortStableFunc(honest, byWall)
			mixed := append(slices.Clone(honest), liar...)
			slices.SortStableFunc(mixed, byWall)
			ahead := 0
			for _, r := range liar {
				if r.ev.EventTimeMs > r.wall+set.Features.WindowMs {
					ahead++
				}
			}

			wantA, wantS := honestOnly(feedWithIdleFlush(NewProcessor(set, cat, nil), honest, idleMs))
			gotA, gotS := honestOnly(feedWithIdleFlush(NewProcessor(set, cat, nil), mixed, idleMs))

			late, burst := 0, false
			for _, s := range gotS {
				late += s.Late
				if s.AgentID == "honest-0" && s.WindowStartMs == base+100*minute {
					burst = s.Values[features.Calls] > 400
				}
			}
			if late != 0 {
				t.Errorf("%d honest events counted late with the liar", late)
			}
			if !burst {
				t.Errorf("honest-0's burst window was not scored with all its calls")
			}
			raised := slices.ContainsFunc(gotA, func(a anomaly.Anomaly) bool {
				return a.AgentID == "honest-0" && a.WindowStartMs == base+100*minute
			})
			if !raised {
				t.Errorf("honest-0's burst raised no anomaly with the liar")
			}
			if len(gotS) != len(wantS) || !reflect.DeepEqual(gotS, wantS) {
				t.Errorf("honest windows: %d with the liar, %d without, or they differ", len(gotS), len(wantS))
				for i := range min(len(gotS), len(wantS)) {
					if !reflect.DeepEqual(gotS[i], wantS[i]) {
						t.Errorf("first difference:\n with %+v\n  w/o %+v", gotS[i], wantS[i])
						break
					}
				}
			}
			if !reflect.DeepEqual(gotA, wantA) {
				t.Errorf("honest anomalies: %d with the liar, %d without, or they differ", len(gotA), len(wantA))
			}
			t.Logf("%d honest windows, %d honest anomalies; the liar sent %d lines, %d over a window ahead", len(gotS), len(gotA), len(liar), ahead)
		})
	}
}

// TestWatermarkNeverPassesWallClock: with ingest's clock ten minutes ahead
// of the detector's, events stamped (and parsed) in the detector's future
// must not close the window of an event stamped ten seconds ago.
func TestWatermarkNeverPassesWallClock(t *testing.T) {
	now := int64(1_800_000_030_000)
	cat := StaticCatalog{inventory.EmptyRegistry(), inventory.EmptyInventory()}
	set := testSettings()
	set.StartupHold = -1
	p := NewProcessor(set, cat, func() int64 { return now })
	add := func(off int64, agent string, at, ingest int64) {
		p.Add(0, off, &event.Event{AgentID: agent, EventTimeMs: at, IngestTimeMs: ingest, Topic: "raw", Partition: 0,
			Route: "/x", Path: "/x", Method: "GET", Status: 200})
	}
	for i := range int64(20) {
		at := now + 10*60_000 + i*1000 // ingest's clock, 10 min ahead
		add(i, "skewed", at, at+100)
	}
	add(20, "honest", now-10_000, now-9_000)
	if st := p.Stats(); st.Late != 0 {
		t.Errorf("%d events late: the watermark passed the wall clock", st.Late)
	}
	if wm := p.parts[0].watermark; wm > now {
		t.Errorf("watermark %d is past the wall clock %d", wm, now)
	}
}
