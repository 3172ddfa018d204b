package playbooks

import (
	"errors"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// matchSet exercises every trigger condition; none is final except
// where a case says so.
const matchSet = `playbooks:
  - name: exfil
    trigger: {kinds: [behaviour], min_severity: high, features: [response_bytes, response_bytes_max]}
    steps:
      - snapshot: {}
      - revoke: {adapter: kong}
  - name: scored
    trigger: {kinds: [behaviour, drift], min_score: 50}
    steps: [{notify: {channel: "#a"}}]
  - name: big-share
    trigger: {features: [sensitive_calls], min_contribution: 0.4}
    steps: [{notify: {channel: "#a"}}]
  - name: export-route
    trigger: {routes: ["/customers/{customerId}/export"]}
    steps: [{notify: {channel: "#a"}}]
  - name: cs-role
    trigger: {roles: [customer_service], class: rule}
    steps: [{notify: {channel: "#a"}}]
  - name: finance-owner
    trigger: {owners: [finance@example.com], exclude_kinds: [off_hours]}
    steps: [{notify: {channel: "#a"}}]
  - name: tier1
    trigger: {labels: {tier: "1", team: cx}}
    steps: [{notify: {channel: "#a"}}]
  - name: storm
    trigger: {classes: [auth_storm, credential_replay]}
    steps: [{notify: {channel: "#a"}}]
  - name: night
    trigger: {features: [calls_this_hour]}
    steps: [{notify: {channel: "#a"}}]
  - name: by-hand
    manual_only: true
    steps: [{notify: {channel: "#a"}}]
  - name: everything
    trigger: {}
    steps: [{notify: {channel: "#a"}}]
`

func TestMatch(t *testing.T) {
	set := mustParse(t, matchSet)
	base := anomaly.Anomaly{ID: "a1", AgentID: "cs-agent-1", Kind: anomaly.Behaviour, Severity: "medium", Score: 13}
	with := func(f func(a *anomaly.Anomaly)) anomaly.Anomaly {
		a := base
		f(&a)
		return a
	}
	feat := func(name string, contribution float64) []anomaly.Feature {
		return []anomaly.Feature{{Name: "calls", Observed: 9, Expected: 1, Contribution: 0.5}, {Name: name, Observed: 9, Expected: 1, Contribution: contribution}}
	}
	for _, tc := range []struct {
		name string
		a    anomaly.Anomaly
		info AgentInfo
		want []string
	}{
		{"only the catch-all", base, AgentInfo{}, []string{"everything"}},
		{"exfiltration", with(func(a *anomaly.Anomaly) { a.Severity, a.Explanation = "critical", feat("response_bytes", 0.3) }),
			AgentInfo{}, []string{"exfil", "everything"}},
		{"exfiltration, at the default minimum contribution", with(func(a *anomaly.Anomaly) { a.Severity, a.Explanation = "critical", feat("response_bytes", 0.2) }),
			AgentInfo{}, []string{"exfil", "everything"}},
		{"bytes a bystander below the default minimum", with(func(a *anomaly.Anomaly) { a.Severity, a.Explanation = "critical", feat("response_bytes", 0.19) }),
			AgentInfo{}, []string{"everything"}},
		{"bytes features together above the minimum", with(func(a *anomaly.Anomaly) {
			a.Severity = "critical"
			a.Explanation = []anomaly.Feature{{Name: "sensitive_calls", Observed: 9, Expected: 1, Contribution: 0.4}, {Name: "response_bytes", Observed: 9, Expected: 1, Contribution: 0.13},
				{Name: "response_bytes_max", Observed: 9, Expected: 1, Contribution: 0.13}}
		}), AgentInfo{}, []string{"exfil", "big-share", "everything"}},
		{"a feature below its expectation is no reason", with(func(a *anomaly.Anomaly) {
			a.Severity = "critical"
			a.Explanation = []anomaly.Feature{{Name: "response_bytes", Observed: 1, Expected: 9, Contribution: 0.6}}
		}), AgentInfo{}, []string{"everything"}},
		{"a feature listed twice counts once", with(func(a *anomaly.Anomaly) {
			a.Severity = "critical"
			a.Explanation = []anomaly.Feature{{Name: "response_bytes", Observed: 9, Expected: 1, Contribution: 0.15},
				{Name: "response_bytes", Observed: 9, Expected: 1, Contribution: 0.15}}
		}), AgentInfo{}, []string{"everything"}},
		{"bytes a bystander at 0.5%", with(func(a *anomaly.Anomaly) { a.Severity, a.Explanation = "critical", feat("response_bytes_max", 0.005) }),
			AgentInfo{}, []string{"everything"}},
		{"class", with(func(a *anomaly.Anomaly) {
			a.Severity = "critical"
			a.Explanation = []anomaly.Feature{{Name: "denials_401_403", Observed: 34, Expected: 0.1, Contribution: 0.45},
				{Name: "response_bytes_max", Observed: 9000, Expected: 2600, Contribution: 0.005}}
		}), AgentInfo{}, []string{"storm", "everything"}},
		{"class of a rule kind", with(func(a *anomaly.Anomaly) { a.Kind = anomaly.NewSourceIP }), AgentInfo{}, []string{"storm", "everything"}},
		{"other class", with(func(a *anomaly.Anomaly) {
			a.Explanation = []anomaly.Feature{{Name: "max_ids_per_route", Observed: 25, Expected: 1, Contribution: 0.54}}
		}), AgentInfo{}, []string{"everything"}},
		{"a feature without contribution matches by presence", with(func(a *anomaly.Anomaly) {
			a.Kind, a.Explanation = anomaly.OffHours, []anomaly.Feature{{Name: "calls_this_hour", Observed: 21, Expected: 4.7}}
		}), AgentInfo{}, []string{"night", "everything"}},
		{"severity below threshold", with(func(a *anomaly.Anomaly) { a.Explanation = feat("response_bytes", 0.9) }),
			AgentInfo{}, []string{"everything"}},
		{"unknown severity is below low", with(func(a *anomaly.Anomaly) { a.Severity, a.Explanation = "", feat("response_bytes", 0.9) }),
			AgentInfo{}, []string{"everything"}},
		{"wrong feature", with(func(a *anomaly.Anomaly) { a.Severity, a.Explanation = "high", feat("client_4xx", 0.9) }),
			AgentInfo{}, []string{"everything"}},
		{"wrong kind", with(func(a *anomaly.Anomaly) {
			a.Kind, a.Severity, a.Explanation = anomaly.Drift, "high", feat("response_bytes", 0.9)
		}), AgentInfo{}, []string{"everything"}},
		{"score", with(func(a *anomaly.Anomaly) { a.Score = 50 }), AgentInfo{}, []string{"scored", "everything"}},
		{"score just below", with(func(a *anomaly.Anomaly) { a.Score = 49.99 }), AgentInfo{}, []string{"everything"}},
		{"contribution", with(func(a *anomaly.Anomaly) { a.Explanation = feat("sensitive_calls", 0.4) }), AgentInfo{}, []string{"big-share", "everything"}},
		{"contribution too small", with(func(a *anomaly.Anomaly) { a.Explanation = feat("sensitive_calls", 0.39) }), AgentInfo{}, []string{"everything"}},
		{"route compares normalised", with(func(a *anomaly.Anomaly) {
			a.Kind, a.Routes = anomaly.UnapprovedRoute, []anomaly.RouteCount{{Route: "/x", Calls: 1}, {Route: "/customers/{id}/export/", Calls: 3}}
		}), AgentInfo{}, []string{"export-route", "everything"}},
		{"role from the anomaly, rule class", with(func(a *anomaly.Anomaly) { a.Kind, a.Role = anomaly.ZombieRoute, "customer_service" }),
			AgentInfo{Role: "hr"}, []string{"cs-role", "everything"}},
		{"role from the registry", with(func(a *anomaly.Anomaly) { a.Kind = anomaly.ZombieRoute }),
			AgentInfo{Role: "customer_service"}, []string{"cs-role", "everything"}},
		{"role but statistical", with(func(a *anomaly.Anomaly) { a.Role = "customer_service" }), AgentInfo{}, []string{"everything"}},
		{"owner", with(func(a *anomaly.Anomaly) { a.Owner = "finance@example.com" }), AgentInfo{}, []string{"finance-owner", "everything"}},
		{"owner is exact", with(func(a *anomaly.Anomaly) { a.Owner = "Finance@example.com" }), AgentInfo{}, []string{"everything"}},
		{"owner, excluded kind", with(func(a *anomaly.Anomaly) { a.Kind, a.Owner = anomaly.OffHours, "finance@example.com" }),
			AgentInfo{}, []string{"everything"}},
		{"labels, all of them", base, AgentInfo{Labels: map[string]string{"tier": "1", "team": "cx", "x": "y"}}, []string{"tier1", "everything"}},
		{"labels, one missing", base, AgentInfo{Labels: map[string]string{"tier": "1"}}, []string{"everything"}},
		{"labels, one different", base, AgentInfo{Labels: map[string]string{"tier": "2", "team": "cx"}}, []string{"everything"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds := Match(set, tc.a, tc.info)
			var got []string
			for _, d := range ds {
				got = append(got, d.Playbook)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Match = %v; want %v", got, tc.want)
			}
		})
	}
}

func TestMatchFinal(t *testing.T) {
	set := mustParse(t, `playbooks:
  - name: first
    trigger: {kinds: [drift]}
    steps: [{notify: {channel: "#a"}}]
  - name: stop
    trigger: {kinds: [drift, behaviour]}
    final: true
    steps: [{notify: {channel: "#a"}}]
  - name: never-after-stop
    trigger: {}
    steps: [{notify: {channel: "#a"}}]
`)
	names := func(a anomaly.Anomaly) []string {
		var out []string
		for _, d := range Match(set, a, AgentInfo{}) {
			out = append(out, d.Playbook)
		}
		return out
	}
	if got := names(anomaly.Anomaly{ID: "x", AgentID: "a", Kind: anomaly.Drift}); !slices.Equal(got, []string{"first", "stop"}) {
		t.Errorf("drift: %v", got)
	}
	if got := names(anomaly.Anomaly{ID: "x", AgentID: "a", Kind: anomaly.ZombieRoute}); !slices.Equal(got, []string{"never-after-stop"}) {
		t.Errorf("zombie: %v", got)
	}
}

func TestMatchDecision(t *testing.T) {
	set := mustParse(t, `playbooks:
  - name: exfil
    dry_run: false
    trigger: {kinds: [behaviour]}
    steps:
      - snapshot: {before: 30m}
      - notify: {channel: "#a", mention: here, mention_ids: [U0123ABCD], mention_min_severity: critical}
      - approve: {channel: "#a", timeout: 15m}
      - revoke: {adapter: kong}
        ttl: 24h
        dry_run: true
      - quarantine: {adapter: denylist}
        ttl: 1h
  - name: drill
    dry_run: true
    trigger: {kinds: [behaviour]}
    steps: [{notify: {channel: "#a", mention: channel}}]
`)
	a := anomaly.Anomaly{
		ID: anomaly.ID("cs-1", 1_700_000_000_000, anomaly.Behaviour), AgentID: "cs-1", Kind: anomaly.Behaviour,
		Severity: "high", Score: 30, CredentialID: "key_old", Role: "customer_service",
	}
	info := AgentInfo{CredentialID: "key_new", Owner: "cx@example.com", Role: "other", Labels: map[string]string{"team": "cx"}}
	ds := Match(set, a, info)
	if len(ds) != 2 {
		t.Fatalf("%d decisions", len(ds))
	}
	d := ds[0]
	hex32 := regexp.MustCompile(`^[0-9a-f]{32}$`)
	if !hex32.MatchString(d.ID) || d.ID != DecisionID(a.ID, "exfil") || d.ID == ds[1].ID {
		t.Errorf("ids %q %q", d.ID, ds[1].ID)
	}
	wantTarget := Target{AgentID: "cs-1", CredentialID: "key_old", Role: "customer_service", Owner: "cx@example.com", Labels: info.Labels}
	if !reflect.DeepEqual(d.Target, wantTarget) {
		t.Errorf("target %+v; want %+v", d.Target, wantTarget)
	}
	if d.AnomalyID != a.ID || d.Kind != a.Kind || d.Severity != "high" || d.Manual || d.DryRun || d.Why != "kind behaviour" {
		t.Errorf("decision %+v", d)
	}
	var kinds []Kind
	for i, s := range d.Steps {
		kinds = append(kinds, s.Kind())
		if s.Index != i || s.ID != d.ID+"-"+string(rune('0'+i)) || s.UndoID() != s.ID+"-undo" || s.Skip != "" {
			t.Errorf("step %d: %+v", i, s)
		}
	}
	if !slices.Equal(kinds, []Kind{KindSnapshot, KindNotify, KindApprove, KindRevoke, KindQuarantine}) {
		t.Errorf("kinds %v", kinds)
	}
	if n := d.Steps[1].Notify; n.Mention != MentionNone || n.MentionIDs != nil {
		t.Errorf("high < critical: mentions kept: %+v", n)
	}
	if !d.Steps[3].DryRun || d.Steps[4].DryRun || d.Steps[3].TTL != 24*60*60e9 {
		t.Errorf("step dry run / ttl: %+v %+v", d.Steps[3], d.Steps[4])
	}
	if !ds[1].DryRun || !ds[1].Steps[0].DryRun || ds[1].Steps[0].Notify.Mention != MentionChannel {
		t.Errorf("dry-run playbook: %+v", ds[1])
	}
	// Replaying the anomaly gives the same decisions.
	if again := Match(set, a, info); !reflect.DeepEqual(again, ds) {
		t.Errorf("replay differs:\n%+v\n%+v", again, ds)
	}
	// Decisions are copies: changing one leaves the set alone.
	d.Steps[0].Snapshot.Before = 0
	if set.Playbooks[0].Steps[0].Snapshot.Before == 0 || set.Playbooks[0].Steps[1].Notify.Mention != MentionHere {
		t.Error("a decision shares its parameters with the set")
	}
	// Critical keeps the mentions.
	a.Severity = "critical"
	if n := Match(set, a, info)[0].Steps[1].Notify; n.Mention != MentionHere || !slices.Equal(n.MentionIDs, []string{"U0123ABCD"}) {
		t.Errorf("critical: %+v", n)
	}
	// Another anomaly of the same agent is another incident.
	b := a
	b.ID = anomaly.ID("cs-1", 1_700_000_060_000, anomaly.Behaviour)
	if Match(set, b, info)[0].ID == d.ID {
		t.Error("two anomalies share a decision id")
	}
}

func TestMatchSkips(t *testing.T) {
	set := Set{Playbooks: []Playbook{{
		Name: "all", Trigger: &Trigger{},
		Steps: []Step{{Revoke: &Revoke{Adapter: AdapterKong}}, {Quarantine: &Quarantine{Adapter: AdapterKong}, TTL: 3600e9}, {Notify: &Notify{Channel: "#a"}}},
	}}}
	// In code nothing stops a Set that Validate would refuse from being
	// matched; Skip is the second line of defence.
	d := Match(set, anomaly.Anomaly{ID: "g", AgentID: "*global/server_5xx", Kind: anomaly.GlobalEvent}, AgentInfo{})[0]
	if d.Steps[0].Skip == "" || d.Steps[1].Skip == "" || d.Steps[2].Skip != "" {
		t.Errorf("global event: %q %q %q", d.Steps[0].Skip, d.Steps[1].Skip, d.Steps[2].Skip)
	}
	d = Match(set, anomaly.Anomaly{ID: "s", AgentID: "ghost", Kind: anomaly.ShadowAgent}, AgentInfo{})[0]
	if !strings.Contains(d.Steps[0].Skip, "no credential") || d.Steps[1].Skip != "" {
		t.Errorf("no credential: %q %q", d.Steps[0].Skip, d.Steps[1].Skip)
	}
}

func TestPlan(t *testing.T) {
	set := mustParse(t, matchSet)
	m := Manual{Playbook: "by-hand", AgentID: "cs-1", Agent: AgentInfo{CredentialID: "k"}, Key: "req-1"}
	d, err := Plan(set, m)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Manual || d.AnomalyID != "" || d.Target.CredentialID != "k" || d.Why != "manual run" || len(d.Steps) != 1 || d.DryRun {
		t.Errorf("plan %+v", d)
	}
	if again, _ := Plan(set, m); !reflect.DeepEqual(again, d) {
		t.Error("same request, different decision")
	}
	for _, other := range []Manual{
		{Playbook: "by-hand", AgentID: "cs-1", Key: "req-2"},
		{Playbook: "by-hand", AgentID: "cs-2", Key: "req-1"},
		{Playbook: "everything", AgentID: "cs-1", Key: "req-1"},
	} {
		if o, err := Plan(set, other); err != nil || o.ID == d.ID {
			t.Errorf("%+v: id %s, %v", other, o.ID, err)
		}
	}
	// A manual id never equals the automatic id of the same strings.
	if DecisionID("req-1", "by-hand") == d.ID {
		t.Error("manual and automatic ids collide")
	}
	// Triggered playbooks run by hand too, without their trigger.
	if d, err := Plan(set, Manual{Playbook: "exfil", AgentID: "x", Key: "k", DryRun: true}); err != nil || !d.DryRun || !d.Steps[1].DryRun || d.Steps[1].Skip == "" {
		t.Errorf("exfil by hand: %+v, %v", d, err)
	}
	if _, err := Plan(set, Manual{Playbook: "nope", AgentID: "x", Key: "k"}); !errors.Is(err, ErrUnknownPlaybook) || !strings.Contains(err.Error(), "known: exfil, scored") {
		t.Errorf("unknown: %v", err)
	}
	for _, bad := range []Manual{
		{Playbook: "by-hand", Key: "k"},
		{Playbook: "by-hand", AgentID: "*global/calls", Key: "k"},
		{Playbook: "by-hand", AgentID: "a"},
	} {
		if _, err := Plan(set, bad); err == nil || errors.Is(err, ErrUnknownPlaybook) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	// Manual-only playbooks never match an anomaly.
	for _, d := range Match(set, anomaly.Anomaly{ID: "x", AgentID: "a", Kind: anomaly.Behaviour}, AgentInfo{}) {
		if d.Playbook == "by-hand" {
			t.Error("manual_only playbook matched")
		}
	}
}

func TestReferences(t *testing.T) {
	set := mustParse(t, `playbooks:
  - name: a
    trigger: {kinds: [behaviour]}
    steps:
      - notify: {channel: "#b"}
      - approve: {channel: "#a"}
      - revoke: {adapter: kong}
      - webhook: {target: siem}
      - quarantine: {adapter: denylist}
        ttl: 1h
      - notify: {channel: "#a"}
`)
	want := References{Channels: []string{"#a", "#b"}, Adapters: []string{"denylist", "kong"}, WebhookTargets: []string{"siem"}}
	if got := set.References(); !reflect.DeepEqual(got, want) {
		t.Errorf("References = %+v; want %+v", got, want)
	}
}

// TestMatchWhyNamesTheClass: the audit record of a class trigger says
// which class held.
func TestMatchWhyNamesTheClass(t *testing.T) {
	set := mustParse(t, "playbooks:\n  - name: enum\n    trigger: {classes: [id_enumeration], min_severity: medium}\n    steps: [{notify: {channel: '#a'}}]\n")
	a := anomaly.Anomaly{ID: "x", AgentID: "hr-1", Kind: anomaly.Behaviour, Severity: "high",
		Explanation: []anomaly.Feature{{Name: "max_ids_per_route", Observed: 25, Expected: 1, Contribution: 0.54}}}
	ds := Match(set, a, AgentInfo{})
	if len(ds) != 1 || ds[0].Why != "kind behaviour, class id_enumeration, severity high >= medium" {
		t.Fatalf("decisions %+v; want one whose why names the class", ds)
	}
}

func TestMatchWhyNamesTheFeatures(t *testing.T) {
	set := mustParse(t, "playbooks:\n  - name: bytes\n    trigger: {features: [response_bytes, response_bytes_max]}\n    steps: [{notify: {channel: '#a'}}]\n")
	a := anomaly.Anomaly{ID: "x", AgentID: "hr-1", Kind: anomaly.Behaviour, Severity: "high", Explanation: []anomaly.Feature{
		{Name: "sensitive_calls", Observed: 30, Expected: 1, Contribution: 0.35}, {Name: "response_bytes", Observed: 3e8, Expected: 1e5, Contribution: 0.13},
		{Name: "response_bytes_max", Observed: 3e6, Expected: 1e4, Contribution: 0.13}}}
	ds := Match(set, a, AgentInfo{})
	if len(ds) != 1 || ds[0].Why != "kind behaviour, feature response_bytes+response_bytes_max (contribution 0.26)" {
		t.Fatalf("decisions %+v; want one whose why sums the features", ds)
	}
}
