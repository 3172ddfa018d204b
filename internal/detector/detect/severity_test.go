package detect

import (
	"fmt"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/baseline"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/features"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// TestOutOfRoleServedRanksAboveRefused: the same out-of-role call to a
// sensitive route ranks higher, and grades high rather than medium, when
// the gateway served it than when it refused it, for both route rules;
// the anomaly says how many calls were served.
func TestOutOfRoleServedRanksAboveRefused(t *testing.T) {
	reg, err := inventory.ParseRegistry("agents.yaml", []byte(`agents:
  - id: served-bot
    role: finance
    approved_routes: ["/invoices"]
  - id: refused-bot
    role: finance
    approved_routes: ["/invoices"]
`))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.ParseRoutes("routes.yaml", []byte("routes:\n  - template: /invoices\n  - template: /payroll/export\n    tags: [sensitive]\n"))
	if err != nil {
		t.Fatal(err)
	}
	set := testSettings()
	set.NoveltyMatureMs = 0
	p := NewProcessor(set, StaticCatalog{reg, inv}, nil)
	base := int64(1_800_000_000_000)
	off := int64(0)
	add := func(agent, route string, status uint16) {
		p.Add(0, off, &event.Event{AgentID: agent, EventTimeMs: base + off, Route: route, Path: route, Method: "GET", Status: status, RequestID: fmt.Sprint("r", off)})
		off++
	}
	add("served-bot", "/invoices", 200)
	add("refused-bot", "/invoices", 200)
	add("served-bot", "/payroll/export", 403)
	add("served-bot", "/payroll/export", 200) // one of two got through
	add("refused-bot", "/payroll/export", 403)
	add("refused-bot", "/payroll/export", 401)
	p.FlushAll()
	as, _ := p.Take()
	got := map[string]anomaly.Anomaly{}
	for _, a := range as {
		got[a.AgentID+" "+a.Kind] = a
	}
	for _, kind := range []string{anomaly.UnapprovedRoute, anomaly.FirstSensitive} {
		served, ok1 := got["served-bot "+kind]
		refused, ok2 := got["refused-bot "+kind]
		if !ok1 || !ok2 {
			t.Fatalf("%s: want one anomaly per agent, got %v", kind, as)
		}
		if !(served.Score > refused.Score) || served.Severity != "high" || refused.Severity != "medium" {
			t.Errorf("%s: served %s %.1f, refused %s %.1f; want served high above refused medium",
				kind, served.Severity, served.Score, refused.Severity, refused.Score)
		}
		if len(served.Routes) != 1 || served.Routes[0].Calls != 2 || served.Routes[0].Succeeded != 1 {
			t.Errorf("%s: served routes %+v, want /payroll/export with 2 calls, 1 served", kind, served.Routes)
		}
		if len(refused.Routes) != 1 || refused.Routes[0].Succeeded != 0 {
			t.Errorf("%s: refused routes %+v, want none served", kind, refused.Routes)
		}
		if !strings.Contains(served.Summary, "1 of 2 answered 2xx") || !strings.Contains(refused.Summary, "none answered 2xx") {
			t.Errorf("%s: summaries do not say what got through:\n%s\n%s", kind, served.Summary, refused.Summary)
		}
	}
}

// TestSeverityIsTheGradeOfTheScore: on simulated traffic with incidents,
// every anomaly, statistical or rule, has the severity its score grades
// to on the configured scale, and every explanation row is a value above
// its expectation, with contributions that sum to at most 1.
func TestSeverityIsTheGradeOfTheScore(t *testing.T) {
	rs, s := simRecords(t, twoDays(1))
	set := testSettings()
	p := NewProcessor(set, simCatalog(t, s), nil)
	as, _ := run(p, rs)
	if len(as) == 0 {
		t.Fatal("no anomalies on simulated traffic")
	}
	kinds, rows := map[string]int{}, 0
	for _, a := range as {
		kinds[a.Kind]++
		want := max(set.Baseline.Grade(a.Score), baseline.Low).String()
		if a.Severity != want {
			t.Errorf("%s %s: score %g has severity %s, grades %s", a.Kind, a.AgentID, a.Score, a.Severity, want)
		}
		sum := 0.0
		for _, f := range a.Explanation {
			rows++
			if !(f.Observed > f.Expected) {
				t.Errorf("%s %s: explanation row %s observed %g is not above expected %g", a.Kind, a.AgentID, f.Name, f.Observed, f.Expected)
			}
			sum += f.Contribution
		}
		if sum > 1.005 { // each share is rounded to 0.001
			t.Errorf("%s %s: contributions sum to %g", a.Kind, a.AgentID, sum)
		}
		if strings.Contains(a.Summary, "e+") || strings.Contains(a.Summary, "Inf") {
			t.Errorf("%s %s: raw number in summary: %s", a.Kind, a.AgentID, a.Summary)
		}
	}
	if kinds[anomaly.Behaviour] == 0 || rows == 0 {
		t.Fatalf("no behaviour anomaly or explanation to check: %v", kinds)
	}
	t.Logf("checked %d anomalies (%v), %d explanation rows", len(as), kinds, rows)
}

// TestExplainSkipsFeaturesAtOrBelowExpectation: a feature with surprise
// but an observation at or below its expectation (possible after
// rounding, or a drift row) is left out, and the hour-slot term reads as
// activity above its usual share.
func TestExplainSkipsFeaturesAtOrBelowExpectation(t *testing.T) {
	var res baseline.Result
	var v features.Vector
	v[features.RespBytes], res.Features[features.RespBytes] = 9e7, baseline.FeatureScore{Expected: 9e3, Surprise: 40, P: 1e-17}
	v[features.Calls], res.Features[features.Calls] = 57, baseline.FeatureScore{Expected: 180, Surprise: 3, P: 0.05}
	v[features.Denials], res.Features[features.Denials] = 2, baseline.FeatureScore{Expected: 1.9999, Surprise: 2, P: 0.1}
	res.OffHours = baseline.FeatureScore{Observed: 3, Expected: 180, P: 0.02, Surprise: 3.9}
	ex := explain(&res, &v)
	if len(ex) != 2 || ex[0].Name != "response_bytes" || ex[1].Name != "off_hours" {
		t.Fatalf("explanation %+v, want response_bytes then off_hours", ex)
	}
	if oh := ex[1]; oh.Observed != 1 || oh.Expected != 0.02 || oh.Contribution <= 0 {
		t.Errorf("off_hours row %+v, want active (1) vs 0.02 with a contribution", oh)
	}
	if sum := ex[0].Contribution + ex[1].Contribution; sum > 1 {
		t.Errorf("contributions sum to %g", sum)
	}
}
