package baseline

import (
	"math"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/features"
)

func TestFalsePositiveRate(t *testing.T) {
	p := DefaultParams()
	for _, c := range []struct {
		name  string
		level float64
		cycle func(int) float64
	}{
		{"flat busy", 20, nil},
		{"office hours", 20, officeCycle},
		{"sparse", 0.8, officeCycle},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newSim(42, c.level, c.cycle)
			var m Model
			t0, _, _ := a.train(t, &m, &p, simStart, 14*24*60) // two weeks of training
			worst := Result{}
			n, flagged := 0, 0
			tt := t0
			for n < 100_000 && tt < t0+365*dayMs {
				v, ok := a.window(tt, 1)
				if ok {
					n++
					r := step(&m, &p, tt, &v)
					if r.Anomalous || r.Drift {
						flagged++
						if r.Score > worst.Score {
							worst = r
						}
					}
				}
				tt += minuteMs
			}
			rate := float64(flagged) / float64(n)
			t.Logf("%d of %d normal windows flagged (rate %.2g); worst score %.1f top %v", flagged, n, rate, worst.Score, worst.Top(3))
			if rate > 1e-4 {
				t.Errorf("false-positive rate %.2g over %d normal windows, want <= 1e-4", rate, n)
			}
		})
	}
}

// trained returns a model trained on two weeks of a from simStart and the
// time after.
func trained(t *testing.T, a *simAgent, p *Params) (*Model, int64) {
	t.Helper()
	m := new(Model)
	t0, _, _ := a.train(t, m, p, simStart, 14*24*60)
	return m, t0
}

func TestSeasonalProfile(t *testing.T) {
	p := DefaultParams()
	a := newSim(7, 20, officeCycle)
	m, t0 := trained(t, a, &p)
	var v features.Vector
	for s := range features.SlotsPerWeek {
		ts := t0 + int64(s%24)*hourMs // t0 is a Monday 00:00
		if s >= 24 {
			ts += 5 * dayMs
		}
		r := m.Score(&p, ts, &v)
		// The model is of active windows: the planted Poisson mean given at least one call.
		mu := a.expected(ts)
		got, want := r.Features[features.Calls].Expected, mu/(1-math.Exp(-mu))
		if math.Abs(got-want)/want > 0.15 {
			t.Errorf("slot %d: expected calls %.2f, planted %.2f", s, got, want)
		}
	}
	// The peak hour's normal count is normal at the peak and anomalous at the trough.
	peak, trough := t0+13*hourMs, t0+3*hourMs
	v, _ = a.window(peak, 1)
	v[features.Calls] = a.expected(peak)
	if r := m.Score(&p, peak, &v); r.Anomalous || r.Drift {
		t.Errorf("%g calls at the peak hour: score %.1f, want not anomalous", v[features.Calls], r.Score)
	}
	if r := m.Score(&p, trough, &v); !r.Anomalous {
		t.Errorf("%g calls at the trough hour (planted mean %.1f): score %.1f, want anomalous", v[features.Calls], a.expected(trough), r.Score)
	} else if top := r.Top(1); top[0] != features.Calls {
		t.Errorf("trough burst: top feature %v, want calls", top)
	}
}

func TestSpikes(t *testing.T) {
	p := DefaultParams()
	for _, c := range []struct {
		name string
		want features.ID
		edit func(v *features.Vector)
	}{
		{"10x calls", features.Calls, func(v *features.Vector) {
			k := 10 * v[features.Calls]
			for i := range v {
				if features.ID(i).Kind() != features.Bytes || features.ID(i) == features.RespBytesMax {
					continue
				}
				v[i] *= 10 // same bytes per call
			}
			v[features.Calls] = k
		}},
		{"exfiltration", features.RespBytes, func(v *features.Vector) {
			v[features.RespBytes] += 40 * 5 << 20
			v[features.RespBytesMax] = 6 << 20
			v[features.Calls] += 40
			v[features.SensitiveCalls] += 40
		}},
		{"denial storm", features.Denials, func(v *features.Vector) {
			v[features.Calls] += 30
			v[features.Denials] += 30
			v[features.Client4xx] += 30
		}},
		{"endpoint sprawl", features.NewRoutes, func(v *features.Vector) {
			v[features.NewRoutes] = 8
			v[features.DistinctRoutes] += 8
			v[features.Client4xx] += 8
			v[features.Calls] += 8
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := newSim(11, 20, officeCycle)
			m, t0 := trained(t, a, &p)
			ts := t0 + 11*hourMs
			v, _ := a.window(ts, 1)
			c.edit(&v)
			r := m.Score(&p, ts, &v)
			if !r.Anomalous || r.Severity < Low {
				t.Fatalf("score %.1f severity %v, want anomalous", r.Score, r.Severity)
			}
			if r.Contribution(c.want) < 0.2 {
				t.Errorf("%v contributes %.2f of the surprise (top %v), want the main part", c.want, r.Contribution(c.want), r.Top(3))
			}
			t.Logf("score %.1f severity %v top %v", r.Score, r.Severity, r.Top(3))
		})
	}
}

// rampUntilFlagged trains two weeks, then grows calls by growth per hour
// for up to maxHours and returns the multiplier when the first window was
// flagged (0 if none) and whether that was a Drift flag.
func rampUntilFlagged(t *testing.T, p *Params, growth float64, maxHours int) (mult float64, drift bool) {
	t.Helper()
	a := newSim(3, 20, officeCycle)
	m, t0 := trained(t, a, p)
	for i := range maxHours * 60 {
		ts := t0 + int64(i)*minuteMs
		mult = math.Pow(1+growth, float64(i)/60)
		v, ok := a.window(ts, mult)
		if !ok {
			continue
		}
		if r := step(m, p, ts, &v); r.Anomalous || r.Drift {
			return mult, r.Drift
		}
	}
	return 0, false
}

func TestPoisoningRamp(t *testing.T) {
	p := DefaultParams()
	for _, growth := range []float64{0.03, 0.04, 0.05} {
		mult, drift := rampUntilFlagged(t, &p, growth, 72)
		// Without the long-horizon reference (it follows as fast as the
		// short-term level, so never differs by DriftFactor).
		noRef := p
		noRef.LongHalfLife = p.HalfLife
		multNoRef, _ := rampUntilFlagged(t, &noRef, growth, 72)
		t.Logf("ramp %.0f%%/h: flagged at %.2fx (drift %v); without the reference at %.2fx (0 = never in 72 h)", growth*100, mult, drift, multNoRef)
		if mult == 0 || mult >= 5 {
			t.Errorf("ramp %.0f%%/h: flagged at %.2fx, want before 5x", growth*100, mult)
		}
		if multNoRef != 0 && multNoRef <= mult {
			t.Errorf("ramp %.0f%%/h: the reference did not help: %.2fx with, %.2fx without", growth*100, mult, multNoRef)
		}
	}
}

// TestFirstWriteOfReadOnlyAgentIsNotAnUpload: an agent that only ever read
// (no request bodies) makes its first write; the body size has no
// baseline yet and must not be scored as a huge upload.
func TestFirstWriteOfReadOnlyAgentIsNotAnUpload(t *testing.T) {
	p := DefaultParams()
	var m Model
	start := int64(1_800_000_000_000)
	for i := range 2000 {
		v := features.Vector{features.Calls: 5, features.DistinctRoutes: 2, features.RespBytes: 5000, features.RespBytesMax: 1500, features.DistinctIPs: 1}
		m.Update(&p, start+int64(i)*60_000, &v, 1)
	}
	v := features.Vector{features.Calls: 5, features.DistinctRoutes: 2, features.RespBytes: 5000, features.RespBytesMax: 1500,
		features.DistinctIPs: 1, features.WriteCalls: 1, features.ReqBytes: 600}
	at := start + 2000*60_000
	r := m.Score(&p, at, &v)
	if r.Features[features.ReqBytes].Surprise != 0 {
		t.Errorf("first request body scored with surprise %g; it has no baseline yet", r.Features[features.ReqBytes].Surprise)
	}
	// Once bodies have been seen, a 100x larger one is surprising.
	for i := range 500 {
		m.Update(&p, at+int64(i)*60_000, &v, 1)
	}
	big := v
	big[features.ReqBytes] = 60_000
	if r := m.Score(&p, at+600*60_000, &big); r.Features[features.ReqBytes].Surprise < 10 {
		t.Errorf("a 100x request body has surprise %g", r.Features[features.ReqBytes].Surprise)
	}
	b := m.AppendBinary(nil)
	var back Model
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	var fresh Model
	fresh.Update(&p, start, &features.Vector{features.Calls: 1}, 1)
	if err := back.UnmarshalBinary(fresh.AppendBinary(nil)); err != nil {
		t.Errorf("a model with an unseen size does not round-trip: %v", err)
	}
}
