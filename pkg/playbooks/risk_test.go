package playbooks

import (
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// riskSet asks for approval to revoke an agent whose risk stays at or
// above the detector's level for an hour, and notifies on a high risk. It
// needs no exclude_kinds: a risk condition cannot match an anomaly that
// names no single agent.
const riskSet = `playbooks:
  - name: risky
    trigger: {min_risk: 12}
    steps: [{notify: {channel: "#a"}}]
  - name: revoke-on-risk
    trigger:
      risk_for: 1h
    steps:
      - approve: {channel: "#soc"}
      - revoke: {adapter: kong}
`

// TestMatchRisk: min_risk compares the anomaly's risk; risk_for holds when
// the episode at or above the level lasts the duration, counting the time
// already spent above it and the time decay alone keeps it there, and not
// before; anomalies without a risk match neither.
func TestMatchRisk(t *testing.T) {
	set := mustParse(t, riskSet)
	at := time.Date(2026, 10, 19, 12, 14, 0, 0, time.UTC).UnixMilli()
	min := int64(60_000)
	base := anomaly.Anomaly{ID: "a1", AgentID: "agent-1", CredentialID: "cred-1", Kind: anomaly.Drift, Severity: "medium",
		WindowStartMs: at - min, WindowEndMs: at, RiskLevel: 8}
	for _, tc := range []struct {
		name         string
		risk         float64
		since, until int64 // minutes from the window end; 0 none
		want         []string
		why          string
	}{
		{"no risk (an older detector)", 0, 0, 0, nil, ""},
		{"below the level", 6, 0, 0, nil, ""},
		// Just reached 8.05: it stays above for 3 more minutes only.
		{"just above", 8.05, 0, 3, nil, ""},
		// Above for 20 minutes and for 39 more: 59 minutes in all.
		{"59 minutes", 9, -20, 39, nil, ""},
		{"an hour", 9, -20, 40, []string{"revoke-on-risk"}, "risk at or above level 8 for 1h >= 1h"},
		// Reached at once by a high burst: certain to last 2 h 5 min.
		{"certain to last", 10.2, 0, 125, []string{"revoke-on-risk"}, "risk at or above level 8 for 2h5m >= 1h"},
		{"high risk", 12.5, -5, 200, []string{"risky", "revoke-on-risk"}, "risk 12.5 >= 12"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := base
			a.Risk = tc.risk
			if tc.until != 0 {
				a.RiskAboveSinceMs, a.RiskAboveUntilMs = at+tc.since*min, at+tc.until*min
			}
			ds := Match(set, a, AgentInfo{})
			var got []string
			for _, d := range ds {
				got = append(got, d.Playbook)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("matched %v, want %v", got, tc.want)
			}
			if tc.why != "" && !strings.Contains(ds[0].Why, tc.why) {
				t.Fatalf("why %q lacks %q", ds[0].Why, tc.why)
			}
		})
	}
	// A grouped anomaly never matches a risk condition, whatever it says.
	g := base
	g.AgentID, g.Kind, g.Risk, g.RiskAboveSinceMs, g.RiskAboveUntilMs = "*global/calls", anomaly.GlobalEvent, 20, at-time.Hour.Milliseconds(), at+time.Hour.Milliseconds()
	if ds := Match(set, g, AgentInfo{}); len(ds) != 0 {
		t.Fatalf("global_event matched %d playbooks", len(ds))
	}
}

func TestParseRiskErrors(t *testing.T) {
	_, err := Parse("f.yaml", []byte(`playbooks:
  - name: pb
    trigger:
      min_risk: -1
      risk_for: -1h
    steps: [{notify: {channel: '#a'}}]
  - name: long
    trigger: {risk_for: 1000h}
    steps: [{notify: {channel: '#a'}}]
  - name: no-risk-revoke
    trigger: {min_score: 3}
    steps: [{revoke: {adapter: kong}}]
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`f.yaml:4: playbook "pb": trigger.min_risk: must be a number >= 0, got -1`,
		`f.yaml:5: playbook "pb": trigger.risk_for: must be in [0, 720h], got -1h`,
		`f.yaml:8: playbook "long": trigger.risk_for: must be in [0, 720h], got 1000h`,
		// Without a risk condition a revoke step still needs the kinds
		// that name no single agent excluded.
		`playbook "no-risk-revoke": steps[0].revoke: the trigger can match global_event`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}
