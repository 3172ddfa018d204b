package detect

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// fleetDay returns a partition's calls in each minute of a day: a daily
// cycle with Poisson-like noise.
func fleetDay(rng *rand.Rand) []float64 {
	v := make([]float64, 1440)
	for i := range v {
		mean := 300 + 200*math.Sin(2*math.Pi*float64(i)/1440)
		v[i] = math.Round(mean + math.Sqrt(mean)*rng.NormFloat64())
	}
	return v
}

// feedFleet feeds days of partition sums (calls, and 5xx at a steady
// 0.2%) to partition 0's fleet gauge from start, each day changed by
// plant, and returns the anomalies raised.
func feedFleet(p *Processor, start time.Time, days int, plant func(day, minute int, calls, errs *float64)) []anomaly.Anomaly {
	pt := p.part(0)
	rng := rand.New(rand.NewPCG(7, 8))
	for d := range days {
		for m, calls := range fleetDay(rng) {
			errs := math.Round(calls * 0.002 * (0.5 + rng.Float64()))
			plant(d, m, &calls, &errs)
			ws := start.Add(time.Duration(d)*24*time.Hour + time.Duration(m)*time.Minute).UnixMilli()
			p.observeFleet(pt, ws, &[numFleet]float64{calls, errs}, 50)
		}
	}
	as, _ := p.Take()
	return as
}

// TestFleetGauge: the fleet gauge pages for a fleet-wide rise of calls or
// of 5xx answers, under a stable id per partition, feature and window,
// and stays quiet for quiet days, a holiday dip, and a rise folded into a
// global event under way.
func TestFleetGauge(t *testing.T) {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	const days, at = 9, 8 // the planted change: day 8 (a Tuesday), 12:00-12:20
	in := func(d, m int) bool { return d == at && m >= 720 && m < 740 }
	for _, tc := range []struct {
		name   string
		plant  func(d, m int, calls, errs *float64)
		global bool // a global event is under way on the partition
		want   string
	}{
		{"quiet days", func(int, int, *float64, *float64) {}, false, ""},
		{"holiday and the day after", func(d, _ int, calls, errs *float64) {
			if d == at-1 {
				*calls, *errs = math.Round(*calls/5), math.Round(*errs/5)
			}
		}, false, ""},
		{"traffic doubles", func(d, m int, calls, _ *float64) {
			if in(d, m) {
				*calls *= 2
			}
		}, false, features.Calls.String()},
		{"upstream fails", func(d, m int, calls, errs *float64) {
			if in(d, m) {
				*errs = math.Round(*calls * 0.3)
			}
		}, false, features.Server5xx.String()},
		{"upstream fails during a global event", func(d, m int, calls, errs *float64) {
			if in(d, m) {
				*errs = math.Round(*calls * 0.3)
			}
		}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := testSettings()
			p := NewProcessor(set, StaticCatalog{}, nil)
			if tc.global {
				p.part(0).globalAt = start.Add(at*24*time.Hour + 715*time.Minute).UnixMilli()
			}
			as := feedFleet(p, start, days, tc.plant)
			if tc.want == "" {
				if len(as) > 0 {
					t.Fatalf("%d fleet anomalies, want none; first: %s", len(as), as[0].Summary)
				}
				return
			}
			if len(as) == 0 {
				t.Fatal("no fleet anomaly")
			}
			for _, a := range as {
				ws := time.UnixMilli(a.WindowStartMs).UTC()
				if a.Kind != anomaly.FleetGauge || a.AgentID != "*fleet/p0" || a.Explanation[0].Name != tc.want ||
					!in(int(ws.Sub(start)/(24*time.Hour)), ws.Hour()*60+ws.Minute()) {
					t.Fatalf("unexpected anomaly %s at %s: %s", a.Kind, ws, a.Summary)
				}
				if want := anomaly.ID("*fleet/p0/"+tc.want, a.WindowStartMs, anomaly.FleetGauge); a.ID != want {
					t.Fatalf("id %s, want %s", a.ID, want)
				}
			}
			t.Logf("%d anomalies; first: %s", len(as), as[0].Summary)
			// The same windows give the same ids (a replay after a
			// restart publishes nothing new).
			again := feedFleet(NewProcessor(set, StaticCatalog{}, nil), start, days, tc.plant)
			if len(again) != len(as) || again[0].ID != as[0].ID {
				t.Fatalf("replay: %d anomalies, first %s; want %d, first %s", len(again), again[0].ID, len(as), as[0].ID)
			}
		})
	}
}
