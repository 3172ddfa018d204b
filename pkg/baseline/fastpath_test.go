package baseline

import (
	"math"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/features"
)

// TestFisherTailMatchesClosedForm checks the one-logarithm Fisher tail
// against the per-term log form, including where the terms overflow.
func TestFisherTailMatchesClosedForm(t *testing.T) {
	for _, k := range []int{1, 2, 3, 14, 15, 16, 40, 200} {
		for _, x := range []float64{0, 1e-9, 0.3, 1, 5, 15.9, 16, 30, 100, 700, 2000, 11213, 1e6} {
			got, want := lnFisherTail(x, k), lnChiSquareTail2k(x, k)
			if math.Abs(got-want) > 1e-9*max(1, math.Abs(want)) {
				t.Errorf("lnFisherTail(%g, %d) = %.15g, lnChiSquareTail2k gives %.15g", x, k, got, want)
			}
		}
	}
}

// TestHourLoadBusiestIsExact checks that skipping slots that cannot be the
// busiest gives exactly the maximum over every slot.
func TestHourLoadBusiestIsExact(t *testing.T) {
	p := DefaultParams()
	for seed, level := range []float64{0.8, 5, 20} {
		a := newSim(uint64(100+seed), level, officeCycle)
		m := new(Model)
		at, _, _ := a.train(t, m, &p, simStart, 9*24*60)
		for h := range int64(48) {
			_, _, _, got := m.HourLoad(at + h*hourMs)
			lv := float64(m.short[features.Calls].a)
			want := 0.0
			for s := range m.active {
				want = max(want, lv*m.seasonFactor(s)*float64(m.active[s]))
			}
			if got != want {
				t.Fatalf("level %g: HourLoad busiest = %.17g, every slot gives %.17g", level, got, want)
			}
		}
	}
}

// TestUnsurprisingFeaturesAreNotScored checks the rule of scoreFeature: a
// value at or below its expectation has P 1 and no surprise, and a value
// above it gets its exact tail.
func TestUnsurprisingFeaturesAreNotScored(t *testing.T) {
	m, p := sample(t)
	a := newSim(77, 10, officeCycle)
	above, below := 0, 0
	for i := range int64(3000) {
		at := simStart + 3*dayMs + i*minuteMs
		mult := 1.0
		if i%50 == 0 {
			mult = 3
		}
		v, ok := a.window(at, mult)
		if !ok {
			continue
		}
		r := m.Score(p, at, &v)
		for id := range features.NumFeatures {
			fs := r.Features[id]
			if fs.P == 1 {
				if fs.Surprise != 0 {
					t.Fatalf("%v: P 1 with surprise %g", id, fs.Surprise)
				}
				continue
			}
			if math.Abs(fs.Surprise+math.Log(fs.P)) > 1e-9*max(1, fs.Surprise) {
				t.Fatalf("%v: surprise %g is not -ln P (P %g)", id, fs.Surprise, fs.P)
			}
			if id.Kind() == features.Count {
				above++
				if math.Round(fs.Observed) <= fs.Expected {
					t.Fatalf("%v: observed %g at or below expected %g scored P %g", id, fs.Observed, fs.Expected, fs.P)
				}
				phi := min(max(float64(m.short[id].b)+m.slotUncertainty(id, features.Slot(at))*fs.Expected, 1), maxDispersion)
				if want := -lnNegBinTail(math.Round(fs.Observed), fs.Expected, phi); id != features.Calls && fs.Surprise != want && !r.Drift {
					t.Fatalf("%v: surprise %g, exact tail gives %g", id, fs.Surprise, want)
				}
			}
		}
		if v[features.Calls] <= r.Features[features.Calls].Expected {
			below++
		}
		m.Update(p, at, &v, 1)
	}
	if above == 0 || below == 0 {
		t.Fatalf("test traffic too tame: %d count features above expectation, %d windows below", above, below)
	}
}
