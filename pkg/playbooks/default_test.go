package playbooks

import (
	"os"
	"slices"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

const defaultFile = "../../deploy/playbooks/default.yaml"

func defaultSet(t testing.TB) Set {
	t.Helper()
	data, err := os.ReadFile(defaultFile)
	if err != nil {
		t.Fatal(err)
	}
	set, err := Parse(defaultFile, data)
	if err != nil {
		t.Fatalf("the default playbooks do not validate:\n%v", err)
	}
	return set
}

// TestDefaultSet pins what the shipped playbooks do for each kind and
// attack class of anomaly, with the severities the detector gives them.
// The explanations are rows the detector wrote in the labelled scenarios
// (docs/evaluation.md), rounded.
func TestDefaultSet(t *testing.T) {
	set := defaultSet(t)
	row := func(name string, obs, exp, contribution float64) anomaly.Feature {
		return anomaly.Feature{Name: name, Observed: obs, Expected: exp, Contribution: contribution}
	}
	statistical := func(kind, sev string, fs ...anomaly.Feature) anomaly.Anomaly {
		return anomaly.Anomaly{Kind: kind, Severity: sev, Explanation: fs}
	}
	bulk := []anomaly.Feature{row("sensitive_calls", 29, 0.37, 0.35), row("response_bytes", 1.1e9, 4.6e4, 0.3),
		row("response_bytes_max", 8.8e7, 1740, 0.2), row("calls", 29, 1.31, 0.15)}
	drowned := []anomaly.Feature{row("sensitive_calls", 30, 0.03, 0.51), row("max_ids_per_route", 30, 0.75, 0.21),
		row("calls", 30, 1, 0.19), row("response_bytes", 1.06e9, 1.94e5, 0.04), row("response_bytes_max", 8.78e7, 7870, 0.04)}
	slow := []anomaly.Feature{row("response_bytes", 3.48e6, 4940, 0.39), row("response_bytes_max", 3.48e6, 2100, 0.33),
		row("sensitive_calls", 1, 0.003, 0.11)}
	// The two anomalies that used to fire the exfiltration playbook and
	// its revocation approval, through response_bytes_max at 0.5% and 0.1%.
	storm := []anomaly.Feature{row("denials_401_403", 34, 0.137, 0.45), row("client_4xx", 34, 0.948, 0.29),
		row("calls", 34, 1.39, 0.19), row("max_ids_per_route", 11, 0.82, 0.05), row("response_bytes_max", 9000, 2600, 0.005)}
	enumeration := []anomaly.Feature{row("max_ids_per_route", 25, 1.03, 0.54), row("calls", 26, 1.99, 0.42),
		row("response_bytes_max", 14500, 2650, 0.001)}
	recon := []anomaly.Feature{row("new_routes", 16, 0.05, 0.38), row("client_4xx", 16, 0.43, 0.26), row("distinct_routes", 18, 2, 0.12)}
	sensitive := []anomaly.Feature{row("sensitive_calls", 6, 0.006, 0.71), row("calls", 6, 1.15, 0.12)}
	fiveRoutes := []anomaly.RouteCount{{Route: "/.env", Calls: 1}, {Route: "/.git/config", Calls: 1}, {Route: "/actuator/env", Calls: 1},
		{Route: "/admin", Calls: 1}, {Route: "/console", Calls: 1}}
	type want struct {
		playbook string
		steps    []Kind
		mention  string // of the notify step
	}
	revokeAfterApproval := []Kind{KindSnapshot, KindNotify, KindApprove, KindRevoke}
	for _, tc := range []struct {
		name string
		a    anomaly.Anomaly
		want []want
	}{
		{"exfiltration", statistical(anomaly.Behaviour, "critical", bulk...), []want{{"exfiltration", revokeAfterApproval, MentionHere}}},
		{"exfiltration drowned by its sensitive calls", statistical(anomaly.Behaviour, "high", drowned...),
			[]want{{"exfiltration", revokeAfterApproval, MentionHere}}},
		{"exfiltration, but medium", statistical(anomaly.Behaviour, "medium", bulk...), []want{{"notify-medium", []Kind{KindNotify}, MentionNone}}},
		{"slow exfiltration", statistical(anomaly.Behaviour, "medium", slow...), []want{{"slow-exfiltration", revokeAfterApproval, MentionHere}}},
		{"slow exfiltration, drift", statistical(anomaly.Drift, "high", slow...), []want{{"slow-exfiltration", revokeAfterApproval, MentionHere}}},
		{"401/403 storm with response_bytes_max at 0.5%", statistical(anomaly.Behaviour, "critical", storm...),
			[]want{{"auth-storm", []Kind{KindSnapshot, KindNotify}, MentionHere}}},
		{"401/403 storm, medium", statistical(anomaly.Behaviour, "medium", storm...),
			[]want{{"auth-storm", []Kind{KindSnapshot, KindNotify}, MentionNone}}},
		{"id enumeration with response_bytes_max at 0.1%", statistical(anomaly.Behaviour, "high", enumeration...),
			[]want{{"id-enumeration", []Kind{KindSnapshot, KindNotify, KindApprove, KindQuarantine}, MentionHere}}},
		{"reconnaissance", statistical(anomaly.Behaviour, "critical", recon...), []want{{"recon", []Kind{KindSnapshot, KindNotify}, MentionHere}}},
		{"reconnaissance by unapproved routes", anomaly.Anomaly{Kind: anomaly.UnapprovedRoute, Severity: "medium", Routes: fiveRoutes},
			[]want{{"recon", []Kind{KindSnapshot, KindNotify}, MentionHere}}},
		{"sensitive calls beyond the agent's habit", statistical(anomaly.Behaviour, "medium", sensitive...),
			[]want{{"route-policy", []Kind{KindSnapshot, KindNotify}, MentionNone}}},
		{"critical, no known class", statistical(anomaly.Behaviour, "critical", row("server_5xx", 12, 0.1, 0.7)),
			[]want{{"notify-medium", []Kind{KindNotify}, MentionHere}}},
		{"low", statistical(anomaly.Behaviour, "low", bulk...), nil},
		{"low slow exfiltration", statistical(anomaly.Behaviour, "low", slow...), nil},
		{"new source addresses, behaviour", statistical(anomaly.Behaviour, "medium", row("new_source_ips", 2, 0.01, 0.6)),
			[]want{{"stolen-credential", revokeAfterApproval, MentionHere}}},
		{"shadow agent", anomaly.Anomaly{Kind: anomaly.ShadowAgent, Severity: "high"},
			[]want{{"shadow-agent", []Kind{KindSnapshot, KindNotify, KindQuarantine}, MentionHere}}},
		{"unapproved route", anomaly.Anomaly{Kind: anomaly.UnapprovedRoute, Severity: "medium", Routes: fiveRoutes[:1]},
			[]want{{"route-policy", []Kind{KindSnapshot, KindNotify}, MentionNone}}},
		{"first sensitive route", anomaly.Anomaly{Kind: anomaly.FirstSensitive, Severity: "medium"},
			[]want{{"route-policy", []Kind{KindSnapshot, KindNotify}, MentionNone}}},
		{"zombie route", anomaly.Anomaly{Kind: anomaly.ZombieRoute, Severity: "medium"}, []want{{"route-policy", []Kind{KindSnapshot, KindNotify}, MentionNone}}},
		{"off hours", anomaly.Anomaly{Kind: anomaly.OffHours, Severity: "medium"}, []want{{"notify-medium", []Kind{KindNotify}, MentionNone}}},
		{"new source ip", anomaly.Anomaly{Kind: anomaly.NewSourceIP, Severity: "medium"},
			[]want{{"stolen-credential", revokeAfterApproval, MentionHere}}},
		{"agent flood", anomaly.Anomaly{Kind: anomaly.AgentFlood, Severity: "high", AgentID: "*flood/p2"},
			[]want{{"agent-flood", []Kind{KindNotify}, MentionHere}}},
		{"global event", anomaly.Anomaly{Kind: anomaly.GlobalEvent, Severity: "critical", AgentID: "*global/response_bytes", Explanation: bulk},
			[]want{{"global-event", []Kind{KindNotify}, MentionHere}}},
		{"global event, high", anomaly.Anomaly{Kind: anomaly.GlobalEvent, Severity: "high", AgentID: "*global/server_5xx", Explanation: []anomaly.Feature{row("server_5xx", 40, 1, 1)}},
			[]want{{"global-event", []Kind{KindNotify}, MentionNone}}},
		{"fleet gauge", anomaly.Anomaly{Kind: anomaly.FleetGauge, Severity: "high", AgentID: "*fleet/p1/calls"},
			[]want{{"global-event", []Kind{KindNotify}, MentionNone}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := tc.a
			a.ID = "id"
			if a.AgentID == "" {
				a.AgentID, a.CredentialID = "cs-agent-1", "key_1"
			}
			ds := Match(set, a, AgentInfo{})
			if len(ds) != len(tc.want) {
				t.Fatalf("%d decisions %v; want %v", len(ds), ds, tc.want)
			}
			for i, d := range ds {
				var kinds []Kind
				mention := ""
				for _, s := range d.Steps {
					kinds = append(kinds, s.Kind())
					if s.Notify != nil {
						mention = s.Notify.Mention
						if mention == "" {
							mention = MentionNone
						}
					}
				}
				w := tc.want[i]
				if d.Playbook != w.playbook || !slices.Equal(kinds, w.steps) || mention != w.mention {
					t.Errorf("got %s %v mention %s; want %+v", d.Playbook, kinds, mention, w)
				}
			}
		})
	}
	if pb, _ := set.Lookup("shadow-agent"); pb.Steps[2].TTL != time.Hour {
		t.Errorf("shadow-agent quarantine ttl %s; want 1h", pb.Steps[2].TTL)
	}
}

// TestDefaultSetSafety checks promises of the default set over every kind,
// severity and feature: every anomaly of medium severity or more gets
// exactly one notification, a low-severity window none (rules are never
// low); nothing acts on a global event or a flood; nothing revokes before
// an approval that defaults to deny.
func TestDefaultSetSafety(t *testing.T) {
	set := defaultSet(t)
	for _, kind := range anomaly.Kinds() {
		for _, sev := range []string{"low", "medium", "high", "critical"} {
			for _, f := range featureNames() {
				// Observed above expected, so the feature names the
				// anomaly's attack class.
				a := anomaly.Anomaly{ID: "x", AgentID: "cs-1", CredentialID: "k", Kind: kind, Severity: sev, Score: 100,
					Explanation: []anomaly.Feature{{Name: f, Observed: 10, Expected: 1, Contribution: 1}}}
				if f == "new_routes" {
					// Five routes at once: an unapproved_route of
					// reconnaissance, not out-of-role access.
					for _, r := range []string{"/a", "/b", "/c", "/d", "/e"} {
						a.Routes = append(a.Routes, anomaly.RouteCount{Route: r, Calls: 1})
					}
				}
				notifies := 0
				for _, d := range Match(set, a, AgentInfo{}) {
					approved := false
					for _, s := range d.Steps {
						switch k := s.Kind(); {
						case k == KindNotify:
							notifies++
						case k == KindApprove:
							approved = s.Approve.Default == DecisionDeny
						case k.ActsOnAgent() && (kind == anomaly.GlobalEvent || kind == anomaly.AgentFlood):
							t.Errorf("%s %s %s: %s acts on an agent (%s)", kind, sev, f, d.Playbook, k)
						case k == KindRevoke && !approved:
							t.Errorf("%s %s %s: %s revokes without approval", kind, sev, f, d.Playbook)
						}
					}
				}
				switch {
				case notifies > 1:
					t.Errorf("%s %s %s: %d notifications; want one alert per anomaly", kind, sev, f, notifies)
				case notifies == 0 && sev != "low":
					t.Errorf("%s %s %s: no notification", kind, sev, f)
				case notifies > 0 && sev == "low" && (kind == anomaly.Behaviour || kind == anomaly.Drift):
					t.Errorf("%s %s %s: low-severity windows should stay quiet", kind, sev, f)
				}
			}
		}
	}
}

func BenchmarkParseDefault(b *testing.B) {
	data, err := os.ReadFile(defaultFile)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(defaultFile, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMatchDefault(b *testing.B) {
	set := defaultSet(b)
	a := anomaly.Anomaly{ID: "x", AgentID: "cs-1", CredentialID: "k", Kind: anomaly.Behaviour, Severity: "critical",
		Explanation: []anomaly.Feature{{Name: "sensitive_calls", Contribution: 0.4}, {Name: "response_bytes", Contribution: 0.3}}}
	b.ReportAllocs()
	for b.Loop() {
		if len(Match(set, a, AgentInfo{})) != 1 {
			b.Fatal("no decision")
		}
	}
}
