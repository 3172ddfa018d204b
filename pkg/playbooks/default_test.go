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

// TestDefaultSet pins what the shipped playbooks do for each kind of
// anomaly, with the severities the detector gives them.
func TestDefaultSet(t *testing.T) {
	set := defaultSet(t)
	feats := func(names ...string) []anomaly.Feature {
		var out []anomaly.Feature
		for _, n := range names {
			out = append(out, anomaly.Feature{Name: n, Contribution: 0.3})
		}
		return out
	}
	type want struct {
		playbook string
		steps    []Kind
		mention  string // of the notify step
	}
	for _, tc := range []struct {
		name string
		a    anomaly.Anomaly
		want []want
	}{
		{"exfiltration", anomaly.Anomaly{Kind: anomaly.Behaviour, Severity: "critical", Explanation: feats("sensitive_calls", "response_bytes")},
			[]want{{"exfiltration", []Kind{KindSnapshot, KindNotify, KindApprove, KindRevoke}, MentionHere}}},
		{"exfiltration, high", anomaly.Anomaly{Kind: anomaly.Behaviour, Severity: "high", Explanation: feats("response_bytes_max")},
			[]want{{"exfiltration", []Kind{KindSnapshot, KindNotify, KindApprove, KindRevoke}, MentionHere}}},
		{"slow exfiltration", anomaly.Anomaly{Kind: anomaly.Drift, Severity: "high", Explanation: feats("response_bytes")},
			[]want{{"exfiltration", []Kind{KindSnapshot, KindNotify, KindApprove, KindRevoke}, MentionHere}}},
		{"bytes, but medium", anomaly.Anomaly{Kind: anomaly.Behaviour, Severity: "medium", Explanation: feats("response_bytes")},
			[]want{{"notify-medium", []Kind{KindNotify}, MentionNone}}},
		{"critical, not bytes", anomaly.Anomaly{Kind: anomaly.Behaviour, Severity: "critical", Explanation: feats("server_5xx")},
			[]want{{"notify-medium", []Kind{KindNotify}, MentionHere}}},
		{"low", anomaly.Anomaly{Kind: anomaly.Behaviour, Severity: "low", Explanation: feats("response_bytes")}, nil},
		{"shadow agent", anomaly.Anomaly{Kind: anomaly.ShadowAgent, Severity: "high"},
			[]want{{"shadow-agent", []Kind{KindSnapshot, KindNotify, KindQuarantine}, MentionHere}}},
		{"unapproved route", anomaly.Anomaly{Kind: anomaly.UnapprovedRoute, Severity: "medium"},
			[]want{{"route-policy", []Kind{KindSnapshot, KindNotify}, MentionNone}}},
		{"first sensitive route", anomaly.Anomaly{Kind: anomaly.FirstSensitive, Severity: "medium"},
			[]want{{"route-policy", []Kind{KindSnapshot, KindNotify}, MentionNone}}},
		{"zombie route", anomaly.Anomaly{Kind: anomaly.ZombieRoute, Severity: "medium"}, []want{{"notify-medium", []Kind{KindNotify}, MentionNone}}},
		{"off hours", anomaly.Anomaly{Kind: anomaly.OffHours, Severity: "medium"}, []want{{"notify-medium", []Kind{KindNotify}, MentionNone}}},
		{"new source ip", anomaly.Anomaly{Kind: anomaly.NewSourceIP, Severity: "medium"},
			[]want{{"stolen-credential", []Kind{KindSnapshot, KindNotify, KindApprove, KindRevoke}, MentionHere}}},
		{"agent flood", anomaly.Anomaly{Kind: anomaly.AgentFlood, Severity: "high", AgentID: "*flood/p2"},
			[]want{{"agent-flood", []Kind{KindNotify}, MentionHere}}},
		{"global event", anomaly.Anomaly{Kind: anomaly.GlobalEvent, Severity: "critical", AgentID: "*global/response_bytes", Explanation: feats("response_bytes")},
			[]want{{"global-event", []Kind{KindNotify}, MentionHere}}},
		{"global event, high", anomaly.Anomaly{Kind: anomaly.GlobalEvent, Severity: "high", AgentID: "*global/server_5xx", Explanation: feats("server_5xx")},
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
				a := anomaly.Anomaly{ID: "x", AgentID: "cs-1", CredentialID: "k", Kind: kind, Severity: sev, Score: 100,
					Explanation: []anomaly.Feature{{Name: f, Contribution: 1}}}
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
