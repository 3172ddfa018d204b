package playbooks

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// valid is a minimal valid playbook file; cases edit copies of it.
const valid = `playbooks:
  - name: pb
    trigger: {kinds: [behaviour]}
    steps:
      - notify: {channel: "#soc"}
`

// fieldErrors parses data and returns its problems, failing the test if
// one is not a *FieldError.
func fieldErrors(t *testing.T, name, data string) []*FieldError {
	t.Helper()
	set, err := Parse(name, []byte(data))
	if err == nil {
		return nil
	}
	if len(set.Playbooks) != 0 {
		t.Fatalf("Parse returned %d playbooks and an error", len(set.Playbooks))
	}
	var out []*FieldError
	for _, e := range unjoin(err) {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("error %q (%T) is not a *FieldError", e, e)
		}
		if fe.File != name {
			t.Errorf("error %q names file %q; want %q", fe, fe.File, name)
		}
		out = append(out, fe)
	}
	return out
}

func TestParseErrors(t *testing.T) {
	// Each case is a file and the errors it must give, one per line, each
	// as a prefix of the error text (file:line: playbook: field: message).
	for _, tc := range []struct {
		name, data string
		want       []string
	}{
		{"empty file", ``, []string{`f.yaml: empty file`}},
		{"two documents", valid + "---\n" + valid, []string{`f.yaml: more than one YAML document`}},
		{"not a mapping", `[1, 2]`, []string{`f.yaml:1: want a mapping with key "playbooks", not a list`}},
		{"no playbooks key", `playbook: []`, []string{`f.yaml:1: unknown field "playbook"; did you mean "playbooks"?`}},
		{"playbooks not a list", `playbooks: {a: 1}`, []string{`f.yaml:1: playbooks: want a list of playbooks, not a mapping`}},
		{"syntax", "playbooks:\n  - name: a\n   b: c\n", []string{`f.yaml:1: YAML syntax: did not find expected '-' indicator`}},
		{"unknown playbook field", strings.Replace(valid, "trigger:", "trigger:\n      kinds: [behaviour]\n    trigers:", 1)[:0] +
			"playbooks:\n  - name: pb\n    trigger: {}\n    stepz: []\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{`f.yaml:4: playbook "pb": unknown field "stepz"; did you mean "steps"?`}},
		{"unknown field far from any", "playbooks:\n  - name: pb\n    trigger: {}\n    colour: red\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{`f.yaml:4: playbook "pb": unknown field "colour"; known fields are name, description, manual_only, trigger, final, dry_run, steps`}},
		{"typo hides the required error", "playbooks:\n  - name: pb\n    trigger: {}\n    steps: [{notify: {chanel: '#a'}}]\n",
			[]string{`f.yaml:4: playbook "pb": steps[0].notify: unknown field "chanel"; did you mean "channel"?`}},
		{"field twice", "playbooks:\n  - name: pb\n    name: pb\n    trigger: {}\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{`f.yaml:3: playbook "pb": name: given twice`}},
		{"wrong type", "playbooks:\n  - name: pb\n    trigger: {kinds: behaviour}\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{`f.yaml:3: playbook "pb": trigger.kinds: want a list, not the scalar "behaviour"`}},
		{"bool", "playbooks:\n  - name: pb\n    final: yes\n    trigger: {}\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{`f.yaml:3: playbook "pb": final: want true or false, got "yes"`}},
		{"unnamed playbook", "playbooks:\n  - trigger: {}\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{`f.yaml:2: playbooks[0]: name: required`}},
		{"bad name", strings.Replace(valid, "name: pb", "name: Exfil Now", 1),
			[]string{`f.yaml:2: playbook "Exfil Now": name: must be lowercase letters`}},
		{"duplicate name", valid + strings.TrimPrefix(valid, "playbooks:\n"),
			[]string{`f.yaml:6: playbook "pb": name: duplicate of the playbook in f.yaml:2`}},
		{"no trigger", "playbooks:\n  - name: pb\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{`f.yaml:2: playbook "pb": trigger: required; write trigger: {}`}},
		{"manual with trigger", "playbooks:\n  - name: pb\n    manual_only: true\n    trigger: {}\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{`f.yaml:4: playbook "pb": trigger: a manual_only playbook never matches`}},
		{"no steps", "playbooks:\n  - name: pb\n    trigger: {}\n    steps: []\n",
			[]string{`f.yaml:4: playbook "pb": steps: need at least one step`}},
		{"trigger", `playbooks:
  - name: pb
    trigger:
      kinds: [behavior]
      exclude_kinds: [drift, behaviour]
      class: rules
      min_severity: hi
      min_score: -1
      features: [response_byte]
      min_contribution: 2
      routes: [customers]
      roles: [" hr"]
      owners: [""]
    steps: [{notify: {channel: '#a'}}]
`, []string{
			`f.yaml:4: playbook "pb": trigger.kinds[0]: unknown anomaly kind "behavior"; did you mean "behaviour"?`,
			`f.yaml:6: playbook "pb": trigger.class: must be rule or statistical`,
			`f.yaml:7: playbook "pb": trigger.min_severity: must be one of low, medium, high, critical, got "hi"`,
			`f.yaml:8: playbook "pb": trigger.min_score: must be a number >= 0, got -1`,
			`f.yaml:9: playbook "pb": trigger.features[0]: unknown feature "response_byte"; did you mean "response_bytes"?`,
			`f.yaml:10: playbook "pb": trigger.min_contribution: must be in [0, 1]`,
			`f.yaml:11: playbook "pb": trigger.routes[0]: want a route template`,
			`f.yaml:12: playbook "pb": trigger.roles[0]: must be non-empty`,
			`f.yaml:13: playbook "pb": trigger.owners[0]: must be non-empty`,
		}},
		{"kinds and exclude_kinds", "playbooks:\n  - name: pb\n    trigger: {kinds: [drift], exclude_kinds: [drift]}\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{`f.yaml:3: playbook "pb": trigger.exclude_kinds[0]: "drift" is in kinds too`}},
		{"class excludes kinds", "playbooks:\n  - name: pb\n    trigger: {kinds: [shadow_agent], class: statistical}\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{`f.yaml:3: playbook "pb": trigger: matches no anomaly kind`}},
		{"contribution without features", "playbooks:\n  - name: pb\n    trigger: {min_contribution: 0.5}\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{`f.yaml:3: playbook "pb": trigger.min_contribution: applies to features`}},
		{"contribution 0", "playbooks:\n  - name: pb\n    trigger:\n      features: [response_bytes]\n      min_contribution: 0\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{`f.yaml:5: playbook "pb": trigger.min_contribution: 0 would let a feature that explains nothing match; leave it out for the default 0.2`}},
		{"unknown classes", "playbooks:\n  - name: pb\n    trigger:\n      classes: [exfiltraton, bola]\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{
				`f.yaml:4: playbook "pb": trigger.classes[0]: unknown attack class "exfiltraton"; did you mean "exfiltration"?`,
				`f.yaml:4: playbook "pb": trigger.classes[1]: unknown attack class "bola"; known: exfiltration, slow_exfiltration, id_enumeration, auth_storm, recon_sprawl, out_of_role, off_hours, credential_replay, zombie_api, shadow_agent, fleet_event, unclassified`,
			}},
		{"classes exclude kinds", "playbooks:\n  - name: pb\n    trigger: {kinds: [new_source_ip], classes: [exfiltration]}\n    steps: [{notify: {channel: '#a'}}]\n",
			[]string{`f.yaml:3: playbook "pb": trigger: matches no anomaly kind`}},
		{"a class that can be a global event, and a revoke", "playbooks:\n  - name: pb\n    trigger: {classes: [fleet_event]}\n    steps: [{revoke: {adapter: kong}}]\n",
			[]string{`f.yaml:4: playbook "pb": steps[0].revoke: the trigger can match global_event`}},
		{"steps", `playbooks:
  - name: exfiltration
    trigger: {kinds: [behaviour]}
    steps:
      - {}
      - notify: {channel: "#a"}
        revoke: {adapter: kong}
      - revoke: {adapter: kong}
        ttl: -1h
      - notify: {channel: "soc", mention: everyone, mention_ids: [bob], mention_min_severity: urgent}
        ttl: 1h
      - throttle: {adapter: denylist}
      - quarantine: {adapter: kong}
        ttl: 800h
      - snapshot: {before: -1m, after: 48h}
      - webhook: {target: "https://evil.example"}
      - approve: {channel: "#a", timeout: 0s, default: maybe, approvers: [x]}
      - approve: {channel: "#a"}
`, []string{
			`f.yaml:5: playbook "exfiltration": steps[0]: needs its kind: one of notify, revoke, throttle, quarantine, snapshot, webhook, approve`,
			`f.yaml:6: playbook "exfiltration": steps[1]: has notify, revoke; one kind per step, so split it into 2 steps`,
			`f.yaml:9: playbook "exfiltration": steps[2].ttl: must be positive, got -1h`,
			`f.yaml:10: playbook "exfiltration": steps[3].notify.channel: want a Slack channel`,
			`f.yaml:10: playbook "exfiltration": steps[3].notify.mention: must be none, here or channel`,
			`f.yaml:10: playbook "exfiltration": steps[3].notify.mention_ids[0]: want a Slack user id`,
			`f.yaml:10: playbook "exfiltration": steps[3].notify.mention_min_severity: must be one of low, medium, high, critical, got "urgent"`,
			`f.yaml:11: playbook "exfiltration": steps[3].ttl: notify cannot be undone; remove ttl`,
			`f.yaml:12: playbook "exfiltration": steps[4].ttl: required: a throttle is temporary`,
			`f.yaml:12: playbook "exfiltration": steps[4].throttle.adapter: must be one of kong, webhook, got "denylist"`,
			`f.yaml:12: playbook "exfiltration": steps[4].throttle.rate_per_minute: required`,
			`f.yaml:14: playbook "exfiltration": steps[5].ttl: at most 720h, got 800h`,
			`f.yaml:15: playbook "exfiltration": steps[6].snapshot.before: must be in [0, 24h], got -1m`,
			`f.yaml:15: playbook "exfiltration": steps[6].snapshot.after: must be in [0, 24h], got 48h`,
			`f.yaml:16: playbook "exfiltration": steps[7].webhook.target: want the name of a target in the responder's webhook allow-list`,
			`f.yaml:17: playbook "exfiltration": steps[8].approve.timeout: must be in (0, 24h], got 0s`,
			`f.yaml:17: playbook "exfiltration": steps[8].approve.default: must be approve or deny`,
			`f.yaml:17: playbook "exfiltration": steps[8].approve.approvers[0]: want a Slack user id`,
			`f.yaml:18: playbook "exfiltration": steps[9].approve: gates nothing`,
		}},
		{"acting on a global event", `playbooks:
  - name: all
    trigger: {min_severity: high}
    steps: [{quarantine: {adapter: kong}, ttl: 1h}]
  - name: floods
    trigger: {kinds: [agent_flood, behaviour]}
    steps: [{revoke: {adapter: kong}}]
`, []string{
			`f.yaml:4: playbook "all": steps[0].quarantine: the trigger can match global_event, which names no single agent`,
			`f.yaml:7: playbook "floods": steps[0].revoke: the trigger can match agent_flood`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fieldErrors(t, "f.yaml", tc.data)
			if len(got) != len(tc.want) {
				t.Errorf("got %d errors, want %d:\n%s", len(got), len(tc.want), joinErrs(got))
			}
			for i := range min(len(got), len(tc.want)) {
				if !strings.HasPrefix(got[i].Error(), tc.want[i]) {
					t.Errorf("error %d:\n got  %s\n want %s…", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func joinErrs(es []*FieldError) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.Error() + "\n")
	}
	return b.String()
}

// The parts of a FieldError are there for callers, not only in the text.
func TestFieldErrorParts(t *testing.T) {
	got := fieldErrors(t, "deploy/playbooks/default.yaml", `playbooks:
  - name: exfiltration
    trigger: {kinds: [behaviour]}
    steps:
      - notify: {channel: "#a"}
      - snapshot: {}
      - revoke: {adapter: kong}
        ttl: -1h
`)
	want := &FieldError{File: "deploy/playbooks/default.yaml", Line: 8, Index: 0, Playbook: "exfiltration", Field: "steps[2].ttl", Msg: "must be positive, got -1h"}
	if len(got) != 1 || *got[0] != *want {
		t.Fatalf("got %v; want %+v", got, want)
	}
	if s := got[0].Error(); s != `deploy/playbooks/default.yaml:8: playbook "exfiltration": steps[2].ttl: must be positive, got -1h` {
		t.Errorf("Error() = %s", s)
	}
}

// A Set built in code has no file or lines; errors still name the
// playbook and field.
func TestValidateInCode(t *testing.T) {
	s := Set{Playbooks: []Playbook{
		{Trigger: &Trigger{}, Steps: []Step{{Notify: &Notify{Channel: "#a"}}}},
		{Name: "x", Trigger: &Trigger{}, Steps: []Step{{Approve: &Approve{Channel: "#a"}}, {Notify: &Notify{Channel: "#a"}}}},
	}}
	err := s.Validate()
	want := "playbooks[0]: name: required; e.g. name: exfiltration\n" +
		`playbook "x": steps[0].approve.timeout: must be in (0, 24h], got 0s` + "\n" +
		`playbook "x": steps[0].approve.default: must be approve or deny (what happens when nobody answers in time), got ""`
	if err == nil || err.Error() != want {
		t.Fatalf("Validate() =\n%v\nwant\n%s", err, want)
	}
	if err := (Set{}).Validate(); err != nil {
		t.Errorf("empty set: %v", err)
	}
}

func TestParseTTL(t *testing.T) {
	for _, tc := range []struct {
		ttl  string
		want time.Duration
		err  string
	}{
		{"1h", time.Hour, ""},
		{"90m", 90 * time.Minute, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"720h", MaxTTL, ""},
		{`"45s"`, 45 * time.Second, ""},
		{"0", 0, ""}, // no undo
		{"-1h", 0, "steps[0].ttl: must be positive, got -1h"},
		{"721h", 0, "steps[0].ttl: at most 720h, got 721h"},
		{"1", 0, `steps[0].ttl: want a duration like 30s, 15m or 1h, got "1"`},
		{"1d", 0, `steps[0].ttl: want a duration like 30s, 15m or 1h, got "1d"`},
		{"[1h]", 0, `steps[0].ttl: want a duration like 30s, 15m or 1h, not a list`},
	} {
		data := "playbooks:\n  - name: pb\n    trigger: {kinds: [behaviour]}\n    steps:\n      - revoke: {adapter: kong}\n        ttl: " + tc.ttl + "\n"
		set, err := Parse("f.yaml", []byte(data))
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ttl %s: error %v; want …%s", tc.ttl, err, tc.err)
			}
		case err != nil:
			t.Errorf("ttl %s: %v", tc.ttl, err)
		case set.Playbooks[0].Steps[0].TTL != tc.want:
			t.Errorf("ttl %s = %s; want %s", tc.ttl, set.Playbooks[0].Steps[0].TTL, tc.want)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	set := mustParse(t, `playbooks:
  - name: pb
    trigger: {}
    steps:
      - snapshot:
      - snapshot: {before: 0s}
      - approve: {channel: "#a"}
      - notify: {channel: C0123ABCD}
`)
	st := set.Playbooks[0].Steps
	if *st[0].Snapshot != (Snapshot{Before: 15 * time.Minute, After: 5 * time.Minute}) {
		t.Errorf("snapshot defaults: %+v", st[0].Snapshot)
	}
	if *st[1].Snapshot != (Snapshot{Before: 0, After: 5 * time.Minute}) {
		t.Errorf("explicit 0 lost: %+v", st[1].Snapshot)
	}
	if a := st[2].Approve; a.Timeout != 30*time.Minute || a.Default != DecisionDeny {
		t.Errorf("approve defaults: %+v", a)
	}
}

func TestParseJSON(t *testing.T) {
	set := mustParse(t, "{\n\t\"playbooks\": [{\n\t\t\"name\": \"pb\", \"trigger\": {\"kinds\": [\"behaviour\"], \"min_score\": 7.5},\n"+
		"\t\t\"steps\": [{\"snapshot\": {}}, {\"revoke\": {\"adapter\": \"kong\"}, \"ttl\": \"2h\", \"dry_run\": true}]\n\t}]\n}\n")
	pb := set.Playbooks[0]
	if pb.Trigger.MinScore != 7.5 || pb.Steps[1].TTL != 2*time.Hour || !pb.Steps[1].DryRun || pb.Steps[1].Kind() != KindRevoke {
		t.Errorf("parsed %+v", pb)
	}
	got := fieldErrors(t, "f.json", `{"playbooks": [{"name": "pb", "trigger": {}, "steps": [{"notify": {"channel": "#a", "mentions": "here"}}]}]}`)
	if len(got) != 1 || got[0].Error() != `f.json:1: playbook "pb": steps[0].notify: unknown field "mentions"; did you mean "mention"?` {
		t.Errorf("got %v", got)
	}
}

func TestParseAliases(t *testing.T) {
	set := mustParse(t, `playbooks:
  - name: a
    trigger: &t {kinds: [behaviour], min_severity: high}
    steps: &s [{notify: {channel: "#a"}}]
  - name: b
    trigger: *t
    steps: *s
`)
	if !reflect.DeepEqual(set.Playbooks[0].Trigger, set.Playbooks[1].Trigger) {
		t.Errorf("alias: %+v vs %+v", set.Playbooks[0].Trigger, set.Playbooks[1].Trigger)
	}
	// A billion laughs is refused, not expanded.
	var b strings.Builder
	// 1000 playbooks of 1000 steps each are 5M nodes from a 20 KB file.
	b.WriteString("playbooks:\n  - &p {name: pb, trigger: {}, steps: &s [&st {notify: {channel: '#a', mention_ids: [U1234567]}}")
	b.WriteString(strings.Repeat(", *st", 999) + "]}\n")
	b.WriteString(strings.Repeat("  - *p\n", 999))
	if _, err := Parse("f.yaml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), "aliases expand to more than") {
		t.Errorf("billion laughs: %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	in := `playbooks:
  - name: everything
    description: "every field: set"
    final: true
    dry_run: true
    trigger:
      kinds: [behaviour, drift, shadow_agent]
      exclude_kinds: [off_hours]
      min_severity: medium
      min_score: 7.25
      features: [response_bytes]
      min_contribution: 0.1
      routes: ["/customers/{id}/export"]
      roles: [customer_service]
      owners: [a@example.com]
      labels: {team: cx, "tier": "1"}
    steps:
      - snapshot: {before: 0s, after: 1h}
      - notify: {channel: "#soc", mention: here, mention_ids: [U0123ABCD, S0123ABCD], mention_min_severity: high}
      - approve: {channel: "#soc", timeout: 10m, default: approve, approvers: [U0123ABCD]}
      - revoke: {adapter: kong}
        ttl: 24h
      - throttle: {adapter: webhook, rate_per_minute: 60}
        ttl: 90m
        dry_run: true
      - quarantine: {adapter: denylist}
        ttl: 1h
      - webhook: {target: siem.ingest}
  - name: by-hand
    manual_only: true
    steps: [{notify: {channel: "#soc"}}]
`
	set := mustParse(t, in)
	out, err := Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("again.yaml", out)
	if err != nil {
		t.Fatalf("reparse of\n%s: %v", out, err)
	}
	if !equalSets(set, again) {
		t.Fatalf("round trip changed the set; marshalled:\n%s", out)
	}
	if !strings.Contains(string(out), "before: 0s") || !strings.Contains(string(out), "ttl: 1h30m") {
		t.Errorf("marshalled:\n%s", out)
	}
}

func mustParse(t testing.TB, data string) Set {
	t.Helper()
	set, err := Parse("f.yaml", []byte(data))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return set
}

// equalSets compares sets without their files and lines.
func equalSets(a, b Set) bool {
	strip := func(s Set) Set {
		out := Set{Playbooks: make([]Playbook, len(s.Playbooks))}
		for i, pb := range s.Playbooks {
			pb.File, pb.src = "", source{}
			out.Playbooks[i] = pb
		}
		return out
	}
	return reflect.DeepEqual(strip(a), strip(b))
}
