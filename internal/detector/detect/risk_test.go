package detect

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/baseline"
)

const hourMs = int64(time.Hour / time.Millisecond)

// t0 is a window end on a Monday morning, 10:14 UTC.
var t0 = time.Date(2026, 10, 19, 10, 14, 0, 0, time.UTC).UnixMilli()

type riskHitAt struct {
	afterH float64
	sev    baseline.Severity
}

// TestRiskDecayAndAccumulation: the scenario the defaults are chosen for.
// One medium anomaly stays under the level; three or four in a few hours
// reach it; the same four spread over a day do not; and a risk above the
// level falls below it after hours without anomalies, at the time the
// anomaly said it would.
func TestRiskDecayAndAccumulation(t *testing.T) {
	s := DefaultRiskSettings()
	M, H, C := baseline.Medium, baseline.High, baseline.Critical
	for _, tc := range []struct {
		name  string
		hits  []riskHitAt
		want  float64 // the risk after the last one
		above bool
	}{
		{"one medium", []riskHitAt{{0, M}}, 3, false},
		{"two medium at once", []riskHitAt{{0, M}, {0, M}}, 6, false},
		{"one high", []riskHitAt{{0, H}}, 6, false},
		{"one critical", []riskHitAt{{0, C}}, 10, true},
		{"three medium in two hours", []riskHitAt{{0, M}, {1, M}, {2, M}}, 3 * (1 + math.Exp2(-1.0/6) + math.Exp2(-2.0/6)), true},
		{"three medium in three hours", []riskHitAt{{0, M}, {1.5, M}, {3, M}}, 3 * (1 + math.Exp2(-1.5/6) + math.Exp2(-3.0/6)), false},
		{"four medium in three hours", []riskHitAt{{0, M}, {1, M}, {2, M}, {3, M}}, 3 * (1 + math.Exp2(-1.0/6) + math.Exp2(-2.0/6) + math.Exp2(-3.0/6)), true},
		{"four medium in six hours", []riskHitAt{{0, M}, {2, M}, {4, M}, {6, M}}, 3 * (1 + math.Exp2(-2.0/6) + math.Exp2(-4.0/6) + math.Exp2(-1)), true},
		{"four medium over a day", []riskHitAt{{0, M}, {8, M}, {16, M}, {24, M}}, 3 * (1 + math.Exp2(-8.0/6) + math.Exp2(-16.0/6) + math.Exp2(-4)), false},
		{"a medium a day ago and one now", []riskHitAt{{0, M}, {24, M}}, 3 * (1 + math.Exp2(-4)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r riskState
			for _, h := range tc.hits {
				r.add(&s, t0+int64(h.afterH*float64(hourMs)), h.sev, anomaly.Behaviour)
			}
			if math.Abs(r.value-tc.want) > 1e-9 {
				t.Fatalf("risk %.4f, want %.4f", r.value, tc.want)
			}
			var an anomaly.Anomaly
			r.stamp(&s, &an)
			if got := an.RiskAboveSinceMs != 0; got != tc.above || (r.value >= s.Level) != tc.above {
				t.Fatalf("risk %.3f: above since %d, want above=%v", r.value, an.RiskAboveSinceMs, tc.above)
			}
			if !tc.above {
				return
			}
			// Without another anomaly the risk stays at or above the level
			// until RiskAboveUntilMs and is below it a minute later.
			until := an.RiskAboveUntilMs
			if r.at(&s, until-1000) < s.Level || r.at(&s, until+60_000) >= s.Level {
				t.Fatalf("risk %.3f at %d: until %d is wrong (%.4f before, %.4f after)", r.value, r.atMs, until,
					r.at(&s, until-1000), r.at(&s, until+60_000))
			}
			if until <= r.atMs || until > r.atMs+24*hourMs {
				t.Fatalf("until %d not within a day after %d", until, r.atMs)
			}
		})
	}
}

// TestRiskDecaysBelow: four medium anomalies in three hours (10.18) fall
// below the level 8 about 2 h 5 min after the last (6 h · log2(10.18/8)),
// below half of it after 8 h 5 min, and under 1 after 20 h 6 min.
func TestRiskDecaysBelow(t *testing.T) {
	s := DefaultRiskSettings()
	var r riskState
	for i := range 4 {
		r.add(&s, t0+int64(i)*hourMs, baseline.Medium, anomaly.OffHours)
	}
	last := t0 + 3*hourMs
	for _, tc := range []struct {
		afterMin int64
		lo, hi   float64
	}{{0, 10.1, 10.2}, {120, 8, 8.1}, {130, 7.9, 8}, {480, 4, 4.1}, {490, 3.9, 4}, {21 * 60, 0.8, 1}, {24 * 60, 0.6, 0.7}} {
		v := r.at(&s, last+tc.afterMin*60_000)
		if !(v >= tc.lo && v < tc.hi) {
			t.Errorf("%d min after: risk %.4f, want in [%g, %g)", tc.afterMin, v, tc.lo, tc.hi)
		}
	}
}

// TestElevatedRiskOncePerEpisode: elevated_risk is due when the risk first
// reaches the level, not again while it stays above or hovers around the
// level, and again after it has fallen below half the level. A single
// anomaly that reaches the level alone opens an episode without one.
func TestElevatedRiskOncePerEpisode(t *testing.T) {
	s := DefaultRiskSettings()
	M, C := baseline.Medium, baseline.Critical
	type step struct {
		afterH float64
		sev    baseline.Severity
		due    bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"three medium, then more", []step{{0, M, false}, {1, M, false}, {2, M, true}, {2.5, M, false}, {3, M, false}}},
		// 8.05 at 2 h; 4 h later (5.1, above 4) two more bring it back
		// over 8: the same episode, no second alert.
		{"hovering", []step{{0, M, false}, {1, M, false}, {2, M, true}, {6, M, false}, {6.5, M, false}}},
		// 8.05 at 2 h, 3.2 eight hours later (below 4): a new episode,
		// which two more medium ones (8.5) open.
		{"two episodes", []step{{0, M, false}, {1, M, false}, {2, M, true}, {10, M, false}, {11, M, true}, {11.5, M, false}}},
		{"one critical alone", []step{{0, C, false}, {0.5, M, false}}},
		{"a critical after two medium", []step{{0, M, false}, {1, M, false}, {1.5, C, false}}},
		{"a medium after a critical has decayed", []step{{0, C, false}, {8, M, false}, {8.5, M, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r riskState
			for i, st := range tc.steps {
				if due := r.add(&s, t0+int64(st.afterH*float64(hourMs)), st.sev, anomaly.Behaviour); due != st.due {
					t.Fatalf("step %d (%.1f h, %s): due %v, want %v (risk %.3f)", i, st.afterH, st.sev, due, st.due, r.value)
				}
			}
		})
	}
}

// TestRiskAboveSince: the above-level time is when the risk reached the
// level, kept while it stays there, and reset once it has fallen below.
func TestRiskAboveSince(t *testing.T) {
	s := DefaultRiskSettings()
	var r riskState
	half := hourMs / 2
	for i := range 3 {
		r.add(&s, t0+int64(i)*half, baseline.Medium, anomaly.Drift)
	}
	// 8.50 at 1 h is 8.03 half an hour later: still above.
	if r.sinceMs != t0+hourMs {
		t.Fatalf("since %d, want %d", r.sinceMs, t0+hourMs)
	}
	r.add(&s, t0+3*half, baseline.Medium, anomaly.Drift)
	if r.sinceMs != t0+hourMs {
		t.Fatalf("since moved to %d while the risk stayed above", r.sinceMs)
	}
	// 11.03 at 1.5 h is 6.56 at 6 h, below 8; a high one brings it back.
	at := t0 + 6*hourMs
	r.add(&s, at, baseline.High, anomaly.Behaviour)
	if r.value < s.Level || r.sinceMs != at {
		t.Fatalf("risk %.3f since %d, want above since %d", r.value, r.sinceMs, at)
	}
}

// TestEmitCarriesRisk runs anomalies through the processor's emit: each
// per-agent anomaly carries its agent's risk, the third medium one brings
// an elevated_risk that explains what added up, and grouped anomalies
// carry none and add nothing.
func TestEmitCarriesRisk(t *testing.T) {
	set := testSettings()
	set.Risk = DefaultRiskSettings()
	p := NewProcessor(set, nil, func() int64 { return 42 })
	pt := p.part(3)
	pt.agents["agent-a"] = &agentState{id: "agent-a"}
	mk := func(kind string, endMs int64, sev string) anomaly.Anomaly {
		return anomaly.Anomaly{
			V: anomaly.Version, ID: anomaly.ID("agent-a", endMs-60_000, kind), AgentID: "agent-a", Role: "billing", Owner: "team-x",
			CredentialID: "cred-1", Kind: kind, WindowStartMs: endMs - 60_000, WindowEndMs: endMs, Severity: sev, Partition: 3,
			Routes: []anomaly.RouteCount{{Route: "/x", Calls: 3}},
		}
	}
	p.emit(mk(anomaly.Behaviour, t0, "medium"))
	p.emit(anomaly.Anomaly{AgentID: "*global/calls", Kind: anomaly.GlobalEvent, Severity: "critical", Partition: 3, WindowEndMs: t0})
	p.emit(mk(anomaly.OffHours, t0+hourMs, "medium"))
	p.emit(mk(anomaly.Drift, t0+2*hourMs, "medium"))
	as, _ := p.Take()
	if len(as) != 5 {
		t.Fatalf("%d anomalies, want 5", len(as))
	}
	if as[0].Risk != 3 || as[0].RiskLevel != 8 || as[0].RiskAboveSinceMs != 0 {
		t.Fatalf("first anomaly: risk %g level %g since %d", as[0].Risk, as[0].RiskLevel, as[0].RiskAboveSinceMs)
	}
	if g := as[1]; g.Risk != 0 || g.RiskLevel != 0 {
		t.Fatalf("grouped anomaly carries risk %g", g.Risk)
	}
	if as[2].Risk != round(3+3*math.Exp2(-1.0/6)) {
		t.Fatalf("second anomaly: risk %g", as[2].Risk)
	}
	third, el := as[3], as[4]
	if third.Kind != anomaly.Drift || !(third.Risk >= 8) || third.RiskAboveSinceMs != t0+2*hourMs || third.RiskAboveUntilMs <= third.RiskAboveSinceMs {
		t.Fatalf("third anomaly: %+v", third)
	}
	if el.Kind != anomaly.ElevatedRisk || el.ID != anomaly.ID("agent-a", t0+2*hourMs-60_000, anomaly.ElevatedRisk) ||
		el.Risk != third.Risk || el.RiskAboveUntilMs != third.RiskAboveUntilMs || el.Severity != "medium" ||
		el.CredentialID != "cred-1" || el.Role != "billing" || el.DetectedMs != 42 || len(el.Routes) != 1 {
		t.Fatalf("elevated_risk: %+v", el)
	}
	for _, want := range []string{`Agent "agent-a" has a risk of 8.1 (level 8)`, "3 medium anomalies since Oct 19 10:14 UTC (behaviour, off_hours, drift)", "halves every 6h"} {
		if !strings.Contains(el.Summary, want) {
			t.Fatalf("summary %q lacks %q", el.Summary, want)
		}
	}
	if st := p.Stats(); st.Anomalies[anomaly.ElevatedRisk] != 1 {
		t.Fatalf("stats count %d elevated_risk", st.Anomalies[anomaly.ElevatedRisk])
	}
	// Off: nothing carries a risk.
	q := NewProcessor(testSettings(), nil, nil)
	q.part(3).agents["agent-a"] = &agentState{id: "agent-a"}
	q.emit(mk(anomaly.Behaviour, t0, "critical"))
	if as, _ := q.Take(); len(as) != 1 || as[0].Risk != 0 || q.parts[3].agents["agent-a"].risk != nil {
		t.Fatalf("risk off: %+v", as)
	}
}

func TestFmtHalfLife(t *testing.T) {
	for d, want := range map[time.Duration]string{6 * time.Hour: "6h", 90 * time.Minute: "1h30m", 45 * time.Second: "45s"} {
		if got := fmtHalfLife(d); got != want {
			t.Errorf("fmtHalfLife(%s) = %q, want %q", d, got, want)
		}
	}
}

// TestFalsePositiveTakesBackRisk: a false-positive verdict on one of the
// anomalies that added up takes back what it added (decayed to the
// latest anomaly), which ends the episode; the same verdict again, or
// one on an anomaly the risk does not remember, changes nothing.
func TestFalsePositiveTakesBackRisk(t *testing.T) {
	set := testSettings()
	set.Risk = DefaultRiskSettings()
	p := NewProcessor(set, nil, nil)
	p.part(0).agents["agent-a"] = &agentState{id: "agent-a"}
	for i, kind := range []string{anomaly.Behaviour, anomaly.OffHours, anomaly.Drift} {
		end := t0 + int64(i)*hourMs
		p.emit(anomaly.Anomaly{V: anomaly.Version, AgentID: "agent-a", Kind: kind, WindowStartMs: end - 60_000, WindowEndMs: end, Severity: "medium"})
	}
	a := p.parts[0].agents["agent-a"]
	if a.risk.value < 8 || a.risk.sinceMs == 0 {
		t.Fatalf("three medium anomalies: risk %g since %d; want at or above the level", a.risk.value, a.risk.sinceMs)
	}
	s := &set.Risk
	want := a.risk.value - s.decay(3, hourMs) // the off_hours one, an hour before the latest
	v := anomaly.Verdict{ID: "v1", AgentID: "agent-a", Kind: anomaly.OffHours, WindowStartMs: t0 + hourMs - 60_000, WindowEndMs: t0 + hourMs,
		Verdict: anomaly.VerdictFalsePositive, AtMs: t0 + 3*hourMs}
	if !p.ApplyVerdict(v) {
		t.Fatal("the verdict was not applied")
	}
	if math.Abs(a.risk.value-want) > 1e-9 || a.risk.sinceMs != 0 || len(a.risk.hits) != 2 {
		t.Fatalf("after the verdict: risk %g (want %g), since %d, %d hits", a.risk.value, want, a.risk.sinceMs, len(a.risk.hits))
	}
	if p.ApplyVerdict(v) {
		t.Error("the same verdict applied twice")
	}
	other := v
	other.ID, other.WindowEndMs = "v2", t0-5*hourMs
	if p.ApplyVerdict(other) || math.Abs(a.risk.value-want) > 1e-9 {
		t.Errorf("a verdict on an anomaly the risk does not remember changed it to %g", a.risk.value)
	}
}
