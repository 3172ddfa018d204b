package baseline

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/features"
)

func TestParamsValidate(t *testing.T) {
	if err := DefaultParams().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	bad := func(field string, edit func(p *Params)) {
		t.Helper()
		p := DefaultParams()
		edit(&p)
		if err := p.Validate(); err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("%s: Validate() = %v, want an error naming the field", field, err)
		}
	}
	bad("HalfLife", func(p *Params) { p.HalfLife = 0 })
	bad("LongHalfLife", func(p *Params) { p.LongHalfLife = p.HalfLife / 2 })
	bad("Warmup", func(p *Params) { p.Warmup = -1 })
	bad("AnomalousWeight", func(p *Params) { p.AnomalousWeight = math.NaN() })
	bad("AlertScore", func(p *Params) { p.AlertScore = 0 })
	bad("MediumScore", func(p *Params) { p.MediumScore = 1 })
	bad("HighScore", func(p *Params) { p.HighScore = 1 })
	bad("CriticalScore", func(p *Params) { p.CriticalScore = math.Inf(1) })
	bad("DriftFactor", func(p *Params) { p.DriftFactor = 1 })
	bad("Clip", func(p *Params) { p.Clip = 0.5 })
	bad("MinMean", func(p *Params) { p.MinMean = 0 })
	bad("MinRate", func(p *Params) { p.MinRate = 1 })
	bad("MinLogScale", func(p *Params) { p.MinLogScale = -1 })
	bad("SeasonRate", func(p *Params) { p.SeasonRate = 2 })
	bad("OffHoursMinWindows", func(p *Params) { p.OffHoursMinWindows = -1 })
}

func TestSeverityString(t *testing.T) {
	for s, want := range []string{"none", "low", "medium", "high", "critical"} {
		if got := Severity(s).String(); got != want {
			t.Errorf("Severity(%d) = %q, want %q", s, got, want)
		}
	}
}

func TestTopAndContribution(t *testing.T) {
	var r Result
	r.Features[features.Calls].Surprise = 3
	r.Features[features.Denials].Surprise = 6
	r.Features[features.NewIPs].Surprise = 1e-9
	r.OffHours.Surprise = 1
	if got, want := r.Top(5), []features.ID{features.Denials, features.Calls}; !slices.Equal(got, want) {
		t.Errorf("Top(5) = %v, want %v", got, want)
	}
	if got := r.Top(1); !slices.Equal(got, []features.ID{features.Denials}) {
		t.Errorf("Top(1) = %v", got)
	}
	if got := r.Contribution(features.Denials); math.Abs(got-0.6) > 1e-6 {
		t.Errorf("Contribution(denials) = %g, want 0.6", got)
	}
	if got := (&Result{}).Contribution(features.Calls); got != 0 {
		t.Errorf("Contribution on an unsurprising window = %g, want 0", got)
	}
}

func TestEmptyModel(t *testing.T) {
	var m Model
	p := DefaultParams()
	v := features.Vector{features.Calls: 1000}
	r := m.Score(&p, simStart, &v)
	if r.Score != 0 || r.P != 1 || r.Anomalous || r.Features[features.Calls].P != 1 || m.Windows() != 0 {
		t.Errorf("empty model: %+v", r)
	}
	m.Update(&p, simStart, &v, 0) // weight 0 does not train
	if m != (Model{}) {
		t.Errorf("Update with weight 0 changed the model")
	}
	m.Update(&p, simStart, &v, 1)
	if m.Windows() != 1 {
		t.Errorf("Windows() = %d after one update, want 1", m.Windows())
	}
}

func TestInherit(t *testing.T) {
	p := DefaultParams()
	peer := new(Model)
	// The peer group: two agents, one busy, one quiet.
	busy, quiet := newSim(21, 30, officeCycle), newSim(22, 5, officeCycle)
	for i := range 7 * 24 * 60 {
		ts := simStart + int64(i)*minuteMs
		for _, a := range []*simAgent{busy, quiet} {
			if v, ok := a.window(ts, 1); ok {
				peer.Update(&p, ts, &v, 1)
			}
		}
	}
	var m Model
	m.Inherit(peer)
	if m.Windows() != 0 {
		t.Fatalf("Windows() = %d after Inherit, want 0", m.Windows())
	}
	if m.season != peer.season {
		t.Errorf("seasonal profile not inherited")
	}
	// The quiet agent's own windows take over quickly.
	t0 := simStart + 7*dayMs
	for i := range 300 {
		ts := t0 + 10*hourMs + int64(i)*minuteMs
		if v, ok := quiet.window(ts, 1); ok {
			m.Update(&p, ts, &v, 1)
		}
	}
	var v features.Vector
	ts := t0 + 24*hourMs + 12*hourMs
	got := m.Score(&p, ts, &v).Features[features.Calls].Expected
	want := quiet.expected(ts)
	if math.Abs(got-want)/want > 0.25 {
		t.Errorf("after 300 own windows expected calls %.1f, want about %.1f (the peer expects %.1f)", got, want, peer.Score(&p, ts, &v).Features[features.Calls].Expected)
	}
}

func TestOffHours(t *testing.T) {
	p := DefaultParams()
	// Active 09:00-17:00 on weekdays only.
	a := newSim(31, 10, func(s int) float64 {
		if s >= 24 || s%24 < 9 || s%24 >= 17 {
			return 0
		}
		return 1
	})
	m, t0 := trained(t, a, &p)
	v, _ := newSim(32, 10, nil).window(t0, 1)
	day := m.Score(&p, t0+12*hourMs, &v)
	night := m.Score(&p, t0+3*hourMs, &v)
	if day.OffHours.P < 0.5 {
		t.Errorf("noon: OffHours P = %g, want high", day.OffHours.P)
	}
	if night.OffHours.P > 1e-3 || night.Score <= day.Score {
		t.Errorf("03:00: OffHours %+v score %.1f (noon %.1f), want P <= 1e-3 and a higher score", night.OffHours, night.Score, day.Score)
	}
	young := new(Model)
	a.train(t, young, &p, simStart, 60)
	if r := young.Score(&p, simStart+3*hourMs, &v); r.OffHours.P != 1 {
		t.Errorf("young model: OffHours P = %g, want 1 before OffHoursMinWindows", r.OffHours.P)
	}
}

func TestStepChangeDriftEnds(t *testing.T) {
	p := DefaultParams()
	a := newSim(41, 20, officeCycle)
	m, t0 := trained(t, a, &p)
	a.level *= 3 // a legitimate, lasting tripling
	const days = 21
	var perDay [days]int
	for d := range days {
		_, _, perDay[d] = a.train(t, m, &p, t0+int64(d)*dayMs, 24*60)
	}
	t.Logf("flagged windows per day after a 3x step: %v", perDay)
	if last := perDay[days-3:]; last[0]+last[1]+last[2] != 0 {
		t.Errorf("still flagging %v in the last three days after a lasting step change", last)
	}
}
