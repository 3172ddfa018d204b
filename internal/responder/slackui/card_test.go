package slackui

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/attack"
)

var update = flag.Bool("update", false, "rewrite testdata/cards from RenderCard, RenderDigest and RenderEscalation")

// hostileID is what an attacker puts in the strings of the golden cards:
// a channel mention, a link, mrkdwn, a bidi override and a control
// character. The golden files show what the analyst sees of it.
const hostileID = "<!channel> <https://evil.example/x|click> *bold* admin\u202Egnp\x07"

// classSample is one anomaly of class c, as the detector reports it, with
// hostile strings where an attacker can reach.
func classSample(c attack.Class) anomaly.Anomaly {
	a := sample()
	a.AgentID = "agent-" + hostileID
	a.Owner, a.Role = hostileID, "support"
	a.Summary = "Agent " + hostileID + " did what " + string(c) + " does"
	a.Routes = []anomaly.RouteCount{{Route: "/customers/{id}", Calls: 120}, {Route: "/x/" + hostileID, Calls: 2}}
	a.SampleRequestIDs = []string{"req-" + hostileID}
	feat := func(name string, obs, exp, share float64) {
		a.Explanation = []anomaly.Feature{{Name: name, Observed: obs, Expected: exp, Surprise: 40, Contribution: share}}
	}
	switch c {
	case attack.Exfiltration:
		feat("response_bytes", 92514087, 9420, 0.93)
		a.Explanation = append(a.Explanation, anomaly.Feature{Name: "calls", Observed: 900, Expected: 60, Surprise: 3, Contribution: 0.05})
	case attack.SlowExfiltration:
		a.Kind = anomaly.Drift
		feat("response_bytes", 3.1e6, 1.2e6, 0.7)
	case attack.IDEnumeration:
		feat("max_ids_per_route", 340, 3, 0.88)
	case attack.AuthStorm:
		feat("denials_401_403", 0.92, 0.01, 0.95)
	case attack.ReconSprawl:
		feat("distinct_routes", 48, 4, 0.8)
	case attack.OutOfRole:
		a.Kind, a.Explanation, a.Count = anomaly.UnapprovedRoute, nil, 12
	case attack.OffHours:
		a.Kind, a.Explanation, a.Count = anomaly.OffHours, nil, 57
	case attack.CredentialReplay:
		a.Kind, a.Explanation, a.Count = anomaly.NewSourceIP, nil, 3
		a.SourceIPs = []string{"203.0.113.9", hostileID}
	case attack.ZombieAPI:
		a.Kind, a.Explanation, a.Count = anomaly.ZombieRoute, nil, 4
	case attack.ShadowAgent:
		a.Kind, a.AgentID, a.Explanation, a.Count = anomaly.ShadowAgent, "*shadow/p2/"+hostileID, nil, 3
		a.AgentIDs = []string{"ghost-1", hostileID, "ghost-3"}
	case attack.FleetEvent:
		a.Kind, a.AgentID, a.Count = anomaly.GlobalEvent, "*global/server_5xx", 31
		feat("server_5xx", 0.4, 0.01, 1)
	default:
		feat("calls", 900, 120, 0.6)
	}
	return a
}

func classCard(c attack.Class) Card {
	a := classSample(c)
	return Card{Status: StatusContained, Severity: "critical", Class: attack.Describe(c), Count: 7,
		Kinds:   []KindCount{{Kind: a.Kind, N: 5}, {Kind: hostileID, N: 2}},
		FirstMs: 1795600500000, LastMs: 1795600920000, Lead: a,
		Actions: []CardAction{
			{AtMs: 1795600560000, Text: "evidence snapshot ev-1234"},
			{AtMs: 1795600570000, Text: "revoke done: credential key_4bmhh0k07p of agent " + hostileID + " revoked (automatic)"},
			{AtMs: 1795600600000, Text: "Acknowledged by " + hostileID},
		}}
}

// golden compares got with testdata/cards/name.json, or rewrites it with
// -update.
func golden(t *testing.T, name string, m Message) {
	t.Helper()
	got, err := json.MarshalIndent(struct {
		Text   string
		Blocks any
	}{m.Text, m.Blocks}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "cards", name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s (if the change is meant, rerun with -update and review the diff):\n%s", name, path, got)
	}
}

// One card per attack class, with hostile strings in every field an
// attacker reaches: the golden files are the Block Kit an analyst gets.
func TestCardGolden(t *testing.T) {
	ac := sampleContext(t)
	for _, c := range attack.Classes() {
		t.Run(string(c), func(t *testing.T) {
			if got := attack.Classify(classSample(c)); got != c {
				t.Fatalf("the sample of %s classifies as %s: change classSample to the class's signature", c, got)
			}
			m, err := RenderCard(classCard(c), ac)
			if err != nil {
				t.Fatal(err)
			}
			checkMessage(t, m)
			golden(t, "card-"+string(c), m)
		})
	}
}

func TestCardShowsTheIncident(t *testing.T) {
	c := classCard(attack.Exfiltration)
	c.Class = attack.Info{Class: attack.Exfiltration, Title: "Data exfiltration", Meaning: "It is taking data out.",
		CheckFirst: "Which records did it read?", Refs: []attack.Ref{{Catalogue: "MITRE ATT&CK", ID: "T1567", Title: "Exfiltration Over Web Service"}}}
	m, err := RenderCard(c, sampleContext(t))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m.Blocks)
	s := string(b)
	for _, want := range []string{"Status\\nCONTAINED", "Highest severity\\nCRITICAL", "Data exfiltration", "Anomalies\\n7 (behaviour 5",
		"First seen (UTC)\\n2026-11-25", "What this usually means: It is taking data out.", "Check first: Which records did it read?",
		"MITRE ATT\\u0026amp;CK T1567 Exfiltration Over Web Service", "Actions taken", "revoke done", "aw_ack", "aw_revoke"} {
		if !strings.Contains(s, want) {
			t.Errorf("card lacks %q:\n%s", want, s)
		}
	}
	if ids := blockIDs(m); ids[0] != "aw_header" || ids[1] != "aw_card" {
		t.Errorf("card blocks %v: want the header, then the incident's status", ids)
	}
	// Past maxCardActions the card shows the latest and says how many.
	for i := range 20 {
		c.Actions = append(c.Actions, CardAction{AtMs: int64(i), Text: "snapshot"})
	}
	m, err = RenderCard(c, sampleContext(t))
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, m)
	if b, _ := json.Marshal(m.Blocks); !strings.Contains(string(b), "and 14 earlier ones") {
		t.Errorf("a long action list is not capped with its count: %s", b)
	}
}

func TestCardDigestEscalationHostileStrings(t *testing.T) {
	for name, h := range hostile {
		t.Run(name, func(t *testing.T) {
			c := classCard(attack.Exfiltration)
			c.Lead = hostileAnomaly(h)
			c.Kinds = []KindCount{{Kind: h, N: 1}}
			c.Actions = []CardAction{{Text: h}}
			c.Class = attack.Info{Title: h, Meaning: h, CheckFirst: h, Refs: []attack.Ref{{Catalogue: h, ID: h, Title: h}}}
			m, err := RenderCard(c, hostileContext(t, h))
			if err != nil {
				t.Fatal(err)
			}
			checkMessage(t, m)
			d := Digest{IncidentID: h, AgentID: h, New: 3, Kinds: []KindCount{{Kind: h, N: 3}}, Severity: h,
				Features: []DigestFeature{{Feature: anomaly.Feature{Name: h, Observed: 1}, WindowMs: 60_000}}, Routes: []anomaly.RouteCount{{Route: h, Calls: 2}}, NewRoutes: []string{h, h}}
			checkMessage(t, RenderDigest(d))
			checkMessage(t, RenderEscalation(Escalation{IncidentID: h, From: h, To: h, Class: c.Class, AgentID: h}, AlertContext{}))
		})
	}
}

func TestDigestAndEscalationGolden(t *testing.T) {
	d := Digest{IncidentID: "inc-7f3a", AgentID: "agent-" + hostileID, FromMs: 1795600500000, ToMs: 1795600800000, New: 5,
		Kinds: []KindCount{{Kind: anomaly.Behaviour, N: 3}, {Kind: anomaly.UnapprovedRoute, N: 2}}, Severity: "high",
		Features:  []DigestFeature{{Feature: anomaly.Feature{Name: "response_bytes", Observed: 92514087, Expected: 9420, Contribution: 0.9}, WindowMs: 60_000}},
		Routes:    []anomaly.RouteCount{{Route: "/customers/{id}", Calls: 400}, {Route: "/x/" + hostileID, Calls: 3}},
		NewRoutes: []string{"/x/" + hostileID}}
	m := RenderDigest(d)
	checkMessage(t, m)
	golden(t, "digest", m)
	e := Escalation{IncidentID: "inc-7f3a", From: "medium", To: "critical", Class: attack.Describe(attack.Exfiltration),
		AgentID: "agent-" + hostileID, CardMs: 1795600500000}
	m = RenderEscalation(e, AlertContext{})
	checkMessage(t, m)
	golden(t, "escalation", m)
	// The mention, which checkMessage refuses anywhere else, comes first.
	m = RenderEscalation(e, AlertContext{Mention: "here", MentionIDs: []string{"S0SOC", "<@U1>"}})
	if !strings.HasPrefix(m.Text, "<!here> <!subteam^S0SOC> Escalated to CRITICAL") || blockIDs(m)[0] != "aw_mentions" {
		t.Errorf("escalation %q, blocks %v: want the mentions first (and only the valid ones)", m.Text, blockIDs(m))
	}
}

func blockIDs(m Message) []string {
	var out []string
	for _, b := range m.Blocks {
		out = append(out, b.ID())
	}
	return out
}
