package baseline

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/features"
)

// A synthetic agent for the tests: calls per minute are Poisson around a
// level times a daily cycle, and every call picks a route, a status and
// sizes, so the features are correlated the way real ones are (more calls,
// more distinct routes and ids).
type simAgent struct {
	rng   *rand.Rand
	level float64 // mean calls per minute at cycle 1
	// cycle is the planted seasonal factor of slot s; nil is flat.
	cycle func(slot int) float64
}

const (
	minuteMs  = 60_000
	hourMs    = 60 * minuteMs
	dayMs     = 24 * hourMs
	simRoutes = 12
	// 2024-01-01 00:00 UTC, a Monday.
	simStart = int64(1704067200000)
)

// officeCycle is busy in office hours, quiet at night, halved at weekends.
func officeCycle(slot int) float64 {
	h := slot % 24
	f := 0.15 + 1.85*math.Exp(-math.Pow(float64(h)-13, 2)/(2*9))
	if slot >= 24 {
		f *= 0.5
	}
	return f
}

func newSim(seed uint64, level float64, cycle func(int) float64) *simAgent {
	return &simAgent{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), level: level, cycle: cycle}
}

func (a *simAgent) poisson(mu float64) float64 {
	if mu > 200 {
		return math.Max(0, math.Round(mu+math.Sqrt(mu)*a.rng.NormFloat64()))
	}
	l, k, p := math.Exp(-mu), 0.0, 1.0
	for {
		p *= a.rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}

// expected returns the planted mean calls at window start t.
func (a *simAgent) expected(t int64) float64 {
	mu := a.level
	if a.cycle != nil {
		mu *= a.cycle(features.Slot(t))
	}
	return mu
}

// window returns the features of the window starting at t with calls
// scaled by mult, and false when the agent made no call (an inactive
// window the engine would never pass).
func (a *simAgent) window(t int64, mult float64) (features.Vector, bool) {
	var v features.Vector
	calls := a.poisson(a.expected(t) * mult)
	if calls == 0 {
		return v, false
	}
	var routeCalls [simRoutes]int
	var ids [simRoutes][64]bool
	var idCount [simRoutes]int
	maxResp := 0.0
	for range int(calls) {
		// Zipf-like route choice.
		r := int(float64(simRoutes) * math.Pow(a.rng.Float64(), 2.2))
		routeCalls[r]++
		id := a.rng.IntN(64)
		if !ids[r][id] {
			ids[r][id] = true
			idCount[r]++
		}
		if r == 3 {
			v[features.SensitiveCalls]++
		}
		if r == simRoutes-1 && a.rng.Float64() < 0.2 {
			v[features.DeprecatedCalls]++
		}
		if r >= 5 && r <= 7 {
			v[features.WriteCalls]++
		}
		switch u := a.rng.Float64(); {
		case u < 0.005:
			v[features.Client4xx]++
			v[features.Denials]++
		case u < 0.03:
			v[features.Client4xx]++
		case u < 0.035:
			v[features.Server5xx]++
		}
		resp := math.Exp(math.Log(2000) + 0.8*a.rng.NormFloat64())
		v[features.RespBytes] += math.Round(resp)
		maxResp = math.Max(maxResp, math.Round(resp))
		v[features.ReqBytes] += math.Round(math.Exp(math.Log(300) + 0.5*a.rng.NormFloat64()))
	}
	v[features.Calls] = calls
	for r := range simRoutes {
		if routeCalls[r] > 0 {
			v[features.DistinctRoutes]++
		}
		v[features.MaxIDsPerRoute] = math.Max(v[features.MaxIDsPerRoute], float64(idCount[r]))
	}
	v[features.RespBytesMax] = maxResp
	v[features.DistinctIPs] = 1
	if a.rng.Float64() < 0.1 {
		v[features.DistinctIPs] = 2
	}
	if a.rng.Float64() < 0.002 {
		v[features.NewIPs] = 1
	}
	if a.rng.Float64() < 0.001 {
		v[features.NewRoutes] = 1
	}
	return v, true
}

// step is what the engine does with one active window: score it, then
// train on it with weight 1, or AnomalousWeight when it was anomalous.
func step(m *Model, p *Params, t int64, v *features.Vector) Result {
	r := m.Score(p, t, v)
	w := 1.0
	if r.Anomalous {
		w = p.AnomalousWeight
	}
	m.Update(p, t, v, w)
	return r
}

// train runs the agent for the given number of minutes from t0 through
// step and returns the time after, the active windows seen and how many
// of those (after warm-up) were flagged.
func (a *simAgent) train(tb testing.TB, m *Model, p *Params, t0 int64, minutes int) (t int64, active, flagged int) {
	tb.Helper()
	t = t0
	for range minutes {
		if v, ok := a.window(t, 1); ok {
			active++
			if m.Windows() < p.Warmup {
				m.Update(p, t, &v, 1)
			} else if r := step(m, p, t, &v); r.Anomalous || r.Drift {
				flagged++
			}
		}
		t += minuteMs
	}
	return t, active, flagged
}
