package baseline

import (
	"math"
	"testing"
)

// exRunPeers is exRun with the peers' ratio peers while [from, to) and 1
// outside it.
func exRunPeers(m *Model, p *Params, a *simAgent, t0 int64, minutes int, from, to int64, mult, peers float64) (alarms []int64) {
	t := t0
	for range minutes {
		k, f := 1.0, 1.0
		if t >= from && t < to {
			k, f = mult, peers
		}
		if v, ok := a.window(t, k); ok {
			r := m.Score(p, t, &v)
			w := 1.0
			if r.Anomalous {
				w = p.AnomalousWeight
			}
			ex := m.Accumulate(p, t, minuteMs, &v, true, w, f)
			m.Update(p, t, &v, min(w, ex.Weight))
			if ex.Alarm {
				alarms = append(alarms, t)
			}
		}
		t += minuteMs
	}
	return alarms
}

// TestAccumulatePeers: an agent at 1.6× its usual calls for a working day
// is an excess on its own, not when its peers run at 1.6× too; 3× is one
// either way (the factor is relative, and capped at ExcessRatio).
func TestAccumulatePeers(t *testing.T) {
	p := DefaultParams()
	base, t0 := exTrained(t, &p, 1)
	start := t0 + dayMs + 8*hourMs // Tuesday 08:00
	for _, tc := range []struct {
		mult, peers float64
		want        bool
	}{
		{1.6, 1, true},
		{1.6, 1.6, false},
		{1.6, 0.5, true}, // peers below their usual do not lower the bar
		{3, 1.6, true},
		{6, 5, true}, // the factor stops at ExcessRatio
	} {
		m := base
		alarms := exRunPeers(&m, &p, newSim(21, 1, officeCycle), t0, 2*24*60, start, start+10*hourMs, tc.mult, tc.peers)
		if got := len(alarms) > 0; got != tc.want {
			t.Errorf("%g× with peers at %g×: %d alarms, want alarm %v", tc.mult, tc.peers, len(alarms), tc.want)
		}
	}
}

// TestPeersRatio: a group's ratio follows what AccumulatePeers folds in,
// stands on nothing (1) until about 20 minutes of it, falls back to 1
// after an hour without, survives the binary round trip and is not passed
// on by Inherit.
func TestPeersRatio(t *testing.T) {
	var g Model
	t0 := simStart + 9*hourMs
	if r := g.PeersRatio(t0); r != 1 {
		t.Fatalf("empty group: %g, want 1", r)
	}
	tm := t0
	for range 5 {
		g.AccumulatePeers(tm, minuteMs, 1.5)
		tm += minuteMs
	}
	if r := g.PeersRatio(tm); r != 1 {
		t.Errorf("after 5 minutes: %g, want 1 (too little)", r)
	}
	for range 55 {
		g.AccumulatePeers(tm, minuteMs, 1.5)
		tm += minuteMs
	}
	if r := g.PeersRatio(tm); math.Abs(r-1.5) > 1e-3 {
		t.Errorf("after an hour at 1.5: %g", r)
	}
	g.AccumulatePeers(tm-10*minuteMs, minuteMs, 100) // out of order: ignored
	if r := g.PeersRatio(tm); math.Abs(r-1.5) > 1e-3 {
		t.Errorf("an earlier window moved it to %g", r)
	}
	for range 30 {
		g.AccumulatePeers(tm, minuteMs, 1)
		tm += minuteMs
	}
	if r := g.PeersRatio(tm); !(r > 1 && r < 1.5) {
		t.Errorf("half an hour back at 1: %g, want between 1 and 1.5", r)
	}
	var back Model
	if err := back.UnmarshalBinary(g.AppendBinary(nil)); err != nil || back.PeersRatio(tm) != g.PeersRatio(tm) {
		t.Errorf("round trip: %v, %g want %g", err, back.PeersRatio(tm), g.PeersRatio(tm))
	}
	if r := g.PeersRatio(tm + hourMs); r != 1 {
		t.Errorf("an hour without a window: %g, want 1", r)
	}
	var a Model
	a.Inherit(&g)
	if a.ev != (evidence{}) {
		t.Errorf("Inherit passed on the group's ratio")
	}
}

// TestRecentRatio: an agent's recent ratio is about 1 on a normal
// afternoon and about 2 after two hours at twice its calls.
func TestRecentRatio(t *testing.T) {
	p := DefaultParams()
	base, t0 := exTrained(t, &p, 1)
	if r, e := base.RecentRatio(); e != 0 && (r < 0 || r > 1.5) {
		t.Errorf("at midnight: %g over %g expected", r, e)
	}
	m := base
	at := t0 + dayMs + 10*hourMs
	exRun(&m, &p, newSim(5, 1, officeCycle), t0, 24*60+10*60, 0, 0, 1, 1)
	if r, e := m.RecentRatio(); e < 10 || math.Abs(r-1) > 0.35 {
		t.Errorf("normal morning: ratio %.2f over %.1f expected, want about 1", r, e)
	}
	m2 := base
	// The guard holds an open episode's windows back: test the ratio
	// without the tests.
	off := p
	off.ExcessThreshold = 0
	exRun(&m2, &off, newSim(5, 1, officeCycle), t0, 24*60+10*60, at-3*hourMs, at, 2, 1)
	if r, _ := m2.RecentRatio(); r < 1.3 {
		t.Errorf("after three hours at 2×: ratio %.2f, want well above 1 (the level has risen a little)", r)
	}
}

// TestRepeatPage: within a week of a page, a new one needs calls or
// bytes per call at ExcessRatio (2) times that page's level.
func TestRepeatPage(t *testing.T) {
	p := DefaultParams()
	const week = 7 * dayMs
	paged := simStart + 14*dayMs
	for _, tc := range []struct {
		name        string
		at          int64
		calls, size float64
		repeat      bool
	}{
		{"same level within a week", paged + 2*dayMs, 2, 1000, true},
		{"1.9× the calls", paged + 2*dayMs, 3.8, 1000, true},
		{"2× the calls", paged + 2*dayMs, 4, 1000, false},
		{"2× the bytes per call", paged + 2*dayMs, 2, 2000, false},
		{"a week later", paged + week, 2, 1000, false},
	} {
		ev := evidence{paged: paged, pagedCalls: 2, pagedSize: 1000}
		if got := ev.repeats(&p, tc.at, tc.calls, tc.size); got != tc.repeat {
			t.Errorf("%s: repeats = %v, want %v", tc.name, got, tc.repeat)
		}
	}
	var never evidence
	if never.repeats(&p, paged, 1, 1) {
		t.Errorf("no earlier page: held back")
	}
}

// TestRepeatPageAfterHoliday: traffic doubles for good on a Tuesday and
// pages; the Friday after a Thursday holiday (the level learnt since has
// been forgotten, the hours' profiles have not learnt it all) does not
// page again; three times the new level on the Monday after, within the
// week, does.
func TestRepeatPageAfterHoliday(t *testing.T) {
	p := DefaultParams()
	base, t0 := exTrained(t, &p, 1)
	m := base
	a := newSim(13, 1, officeCycle)
	change := t0 + dayMs + 10*hourMs
	holiday := t0 + 3*dayMs
	attack := t0 + 7*dayMs + 10*hourMs // the next Monday
	var alarms []int64
	for tm := t0; tm < t0+8*dayMs; tm += minuteMs {
		k := 1.0
		switch {
		case tm >= attack && tm < attack+4*hourMs:
			k = 6
		case tm >= holiday && tm < holiday+dayMs:
			k = 0.2
		case tm >= change:
			k = 2
		}
		if v, ok := a.window(tm, k); ok {
			if _, ex := exStep(&m, &p, tm, &v); ex.Alarm {
				alarms = append(alarms, tm)
			}
		}
	}
	for _, at := range alarms {
		t.Logf("alarm at %s", clock(at))
	}
	if len(alarms) != 2 || alarms[0] >= holiday || alarms[1] < attack {
		t.Fatalf("%d alarms, want 2: the doubling, then the escalation", len(alarms))
	}
}
