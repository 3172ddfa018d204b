package slackui

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

const testSecret = "8f742231b10e8888abcd99yyyzzz85a5"

func testCodec(t testing.TB) *ActionCodec {
	t.Helper()
	c, err := NewActionCodec(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sample is the example record of docs/anomalies.md.
func sample() anomaly.Anomaly {
	return anomaly.Anomaly{
		V:             anomaly.Version,
		ID:            "02be9dacfbe7c11664140ff87051faf2",
		AgentID:       "cs-agent-006",
		Role:          "customer_service",
		Owner:         "support-eng@example.com",
		CredentialID:  "key_4bmhh0k07p",
		Kind:          anomaly.Behaviour,
		WindowStartMs: 1795600500000,
		WindowEndMs:   1795600560000,
		Score:         147.0,
		Severity:      "critical",
		Summary:       `Agent "cs-agent-006" behaved unusually (score 147.0, critical): sensitive_calls 32 vs 0.067 expected; ...`,
		Explanation: []anomaly.Feature{
			{Name: "sensitive_calls", Observed: 32, Expected: 0.067, Surprise: 188.9, Contribution: 0.41},
			{Name: "max_ids_per_route", Observed: 32, Expected: 1.33, Surprise: 73.8, Contribution: 0.16},
		},
		Routes:           []anomaly.RouteCount{{Route: "/customers/{id}/export", Calls: 32}},
		SampleRequestIDs: []string{"16e5bec686c1e431d9453c56ce683d1b"},
		Partition:        2,
		DetectedMs:       1795600591234,
	}
}

func sampleContext(t testing.TB) AlertContext {
	return AlertContext{IncidentID: "inc-7f3a", SnapshotID: "snap-0001", Codec: testCodec(t)}
}

// hostile are strings an attacker can put in an agent id, a path, a user
// agent or a header value.
var hostile = map[string]string{
	"channel":      "<!channel>",
	"here":         "<!here> wake up",
	"everyone":     "<!everyone>",
	"user":         "<@U123>",
	"subteam":      "<!subteam^S0614TZR7|@security>",
	"link":         "<https://evil.example/x|click here>",
	"bare-at":      "@channel @here",
	"backtick":     "`rm -rf /`",
	"fence":        "```\n*pwned*\n```",
	"bold":         "*bold* _x_ ~strike~ > quote",
	"amp":          "a&b &lt; &amp;",
	"newlines":     "line1\nline2\r\nline3\u2028line4",
	"control":      "a\x00b\x07c\x1bd\x7fe\u0085f",
	"bidi":         "admin\u202Egnp.exe\u2066x\u2069",
	"invalid-utf8": "ok\xff\xfe\xc3(bad",
	"emoji":        ":skull: 🔴 👩‍👩‍👧",
	"long":         strings.Repeat("A", 5000),
	"long-escape":  strings.Repeat("<>&", 3000),
	"ua-100k":      "Mozilla/5.0 " + strings.Repeat("(<!channel>) ", 100*1024/13),
	"blank":        " \t\n ",
}

// hostileAnomaly puts h in every attacker-reachable string of an anomaly.
func hostileAnomaly(h string) anomaly.Anomaly {
	a := sample()
	a.AgentID, a.Owner, a.Role, a.CredentialID = h, h, h, h
	a.Summary = `Agent "` + h + `" called ` + h + " with user agent " + h
	a.Explanation = append(a.Explanation, anomaly.Feature{Name: h, Observed: 1, Expected: 2})
	a.Routes = append(a.Routes, anomaly.RouteCount{Route: h, Calls: 3}, anomaly.RouteCount{Route: "/x/" + h, Calls: 1})
	a.SampleRequestIDs = append(a.SampleRequestIDs, h, h+h)
	a.SourceIPs = []string{h, "203.0.113.9"}
	return a
}

func hostileContext(t testing.TB, h string) AlertContext {
	ac := sampleContext(t)
	ac.SnapshotID = h
	ac.Agents = []string{h, "ok-agent", h}
	ac.Details = []Detail{{Label: "User-Agent", Value: h}, {Label: h, Value: h}}
	ac.Status = "Acknowledged by " + h
	return ac
}

func TestRenderHostileStrings(t *testing.T) {
	for name, h := range hostile {
		t.Run(name, func(t *testing.T) {
			ac := hostileContext(t, h)
			for _, kind := range []string{anomaly.Behaviour, anomaly.NewSourceIP, anomaly.GlobalEvent, anomaly.AgentFlood} {
				a := hostileAnomaly(h)
				a.Kind = kind
				m, err := Render(a, ac)
				if err != nil {
					t.Fatalf("Render(%s): %v", kind, err)
				}
				checkMessage(t, m)
				m, err = RenderFollowUp(a, ac)
				if err != nil {
					t.Fatalf("RenderFollowUp(%s): %v", kind, err)
				}
				checkMessage(t, m)
			}
		})
	}
}

// The escaped form of a hostile string is what the analyst sees: the input
// is shown, not dropped.
func TestRenderShowsEscapedInput(t *testing.T) {
	ac := sampleContext(t)
	a := sample()
	a.AgentID = "<!channel>"
	a.Routes[0].Route = "<https://evil|click>"
	a.SampleRequestIDs = []string{"<@U123>"}
	ac.Details = []Detail{{Label: "User-Agent", Value: "x `y` *z*"}}
	m, err := Render(a, ac)
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, m)
	all := strings.Join(allStrings(t, m), "\n")
	for _, want := range []string{
		"Agent\n&lt;!channel&gt;",
		"&lt;https://evil|click&gt;\n32 calls",
		"&lt;@U123&gt;",
		"User-Agent\nx `y` *z*", // plain_text: shown as typed, never formatted
		"Revoke credential key_4bmhh0k07p of agent &lt;!channel&gt; now?",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("rendered message lacks %q", want)
		}
	}
	if !strings.Contains(m.Text, "&lt;!channel&gt;") {
		t.Errorf("fallback text %q lacks the escaped agent id", m.Text)
	}
}

func TestRenderCapsHugeUserAgent(t *testing.T) {
	ac := sampleContext(t)
	ua := "Mozilla/5.0 " + strings.Repeat("x", 100*1024)
	ac.Details = []Detail{{Label: "User-Agent", Value: ua}}
	m, err := Render(sample(), ac)
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, m)
	b, _ := json.Marshal(m.Blocks)
	if len(b) > 20000 {
		t.Errorf("a 100 KB user agent made %d bytes of blocks; want it capped", len(b))
	}
	found := false
	for _, s := range allStrings(t, m) {
		if strings.HasPrefix(s, "User-Agent\nMozilla/5.0 xxx") {
			found = true
			if n := utf16Len(s); n > len("User-Agent\n")+capDetail || !strings.HasSuffix(s, ellipsis) {
				t.Errorf("user agent field has %d units and ends %q; want ≤ %d and an ellipsis", n, s[len(s)-5:], capDetail)
			}
		}
	}
	if !found {
		t.Error("user agent field missing")
	}
}

func TestRenderLayout(t *testing.T) {
	ac := sampleContext(t)
	m, err := Render(sample(), ac)
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, m)
	all := strings.Join(allStrings(t, m), "\n")
	for _, want := range []string{
		"🔴 CRITICAL · behaviour · cs-agent-006",
		"Owner\nsupport-eng@example.com",
		"Role\ncustomer_service",
		"Credential\nkey_4bmhh0k07p",
		"Score\n147 (critical)",
		"Window (UTC)\n2026-11-25 09:55:00–09:56:00",
		"sensitive_calls\n32 calls/min vs 0.067 calls/min usual (×480) · 41% of the surprise",
		"max_ids_per_route\n32 vs 1.33 usual (×24) · 16% of the surprise",
		"/customers/{id}/export\n32 calls",
		"16e5bec686c1e431d9453c56ce683d1b",
		"Incident\ninc-7f3a",
		"Evidence snapshot\nsnap-0001",
		"anomaly 02be9dacfbe7c11664140ff87051faf2",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("rendered alert lacks %q", want)
		}
	}
	got := actionIDs(m)
	want := []string{"aw_ack", "aw_false_positive", "aw_revoke", "aw_quarantine", "aw_snooze"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("buttons = %v; want %v", got, want)
	}
	// Every button value decodes to its kind, the incident and the anomaly.
	for _, b := range buttonsOf(m) {
		ref, err := ac.Codec.Decode(b.Value)
		if err != nil || slackActionID[ref.Kind] != b.ActionID || ref.IncidentID != "inc-7f3a" || ref.AnomalyID != sample().ID {
			t.Errorf("button %s: Decode = %+v, %v", b.ActionID, ref, err)
		}
	}

	ac.SnapshotID = ""
	m, _ = Render(sample(), ac)
	if all := strings.Join(allStrings(t, m), "\n"); !strings.Contains(all, "Evidence snapshot\nnot taken yet") {
		t.Error("empty snapshot id not shown as not taken yet")
	}
}

func TestRenderGroupedHasNoRevoke(t *testing.T) {
	ac := sampleContext(t)
	for i := range 300 {
		ac.Agents = append(ac.Agents, "agent-"+strings.Repeat("x", i%70))
	}
	for _, kind := range []string{anomaly.GlobalEvent, anomaly.AgentFlood} {
		a := sample()
		a.Kind, a.AgentID, a.Count = kind, "*global/calls", 37
		m, err := Render(a, ac)
		if err != nil {
			t.Fatal(err)
		}
		checkMessage(t, m)
		got := strings.Join(actionIDs(m), ",")
		if got != "aw_ack,aw_false_positive,aw_snooze" {
			t.Errorf("%s buttons = %s; want ack, false positive, snooze only", kind, got)
		}
		all := strings.Join(allStrings(t, m), "\n")
		if !strings.Contains(all, "Agents involved (300):") || !strings.Contains(all, "and 260 more") {
			t.Errorf("%s: affected agents not summarised", kind)
		}
	}
}

// TestRenderFoldedShadowAgents: a shadow_agent finding that folds many
// unregistered agents is rendered as a grouped alert from the record's own
// capped list: the total count, the first ids, the credential they share,
// and no button that would act on "the agent". A lone shadow agent keeps
// its per-agent alert and buttons.
func TestRenderFoldedShadowAgents(t *testing.T) {
	ac := sampleContext(t)
	a := sample()
	a.Kind, a.AgentID, a.Count, a.CredentialID = anomaly.ShadowAgent, "*shadow/p3/credential-0a1b2c3d4e5f", 180, "key-stolen"
	a.Explanation = nil
	for i := range anomaly.MaxAgentIDs {
		a.AgentIDs = append(a.AgentIDs, fmt.Sprintf("ghost-%03d", i))
	}
	m, err := Render(a, ac)
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, m)
	if got := strings.Join(actionIDs(m), ","); got != "aw_ack,aw_false_positive,aw_snooze" {
		t.Errorf("folded shadow buttons = %s; want ack, false positive, snooze only", got)
	}
	all := strings.Join(allStrings(t, m), "\n")
	for _, want := range []string{"shadow agents · 180 agents", "Agents involved (180):", "ghost-000", "and 140 more", "key-stolen"} {
		if !strings.Contains(all, want) {
			t.Errorf("folded shadow alert lacks %q", want)
		}
	}
	if strings.Contains(all, "Calls hitting the rule") {
		t.Error("folded shadow alert shows its agent count as calls")
	}

	// Any anomaly naming no single agent (agent id "*…") gets the grouped
	// alert, a fleet gauge too: no button may quarantine "*fleet/p0".
	fleet := sample()
	fleet.Kind, fleet.AgentID, fleet.Count = anomaly.FleetGauge, "*fleet/p0", 12345
	m, err = Render(fleet, ac)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(actionIDs(m), ","); got != "aw_ack,aw_false_positive,aw_snooze" {
		t.Errorf("fleet gauge buttons = %s; want ack, false positive, snooze only", got)
	}
	if all := strings.Join(allStrings(t, m), "\n"); !strings.Contains(all, "fleet gauge · partition 2") || strings.Contains(all, "12345 agents") {
		t.Errorf("fleet gauge alert miscounts: %s", all)
	}

	lone := sample()
	lone.Kind, lone.AgentID, lone.Count, lone.Explanation = anomaly.ShadowAgent, "ghost-7", 3, nil
	m, err = Render(lone, ac)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(actionIDs(m), ","); !strings.Contains(got, "aw_quarantine") {
		t.Errorf("lone shadow agent buttons = %s; want its quarantine button", got)
	}
}

func TestRenderFollowUp(t *testing.T) {
	ac := sampleContext(t)
	m, err := RenderFollowUp(sample(), ac)
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, m)
	if got := strings.Join(actionIDs(m), ","); got != "aw_false_positive" {
		t.Errorf("follow-up buttons = %s; want false positive only", got)
	}
	full, _ := Render(sample(), ac)
	if len(m.Blocks) >= len(full.Blocks) {
		t.Errorf("follow-up has %d blocks, the alert %d; want it shorter", len(m.Blocks), len(full.Blocks))
	}
}

func TestRenderHideActionsNeedsNoCodec(t *testing.T) {
	a := sample()
	a.ID = "not a valid id <>"
	m, err := Render(a, AlertContext{HideActions: true, Status: "Revoked by <@U1>"})
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, m)
	if len(actionIDs(m)) != 0 {
		t.Error("HideActions still rendered buttons")
	}
	if _, err := Render(sample(), AlertContext{IncidentID: "inc-1"}); err == nil {
		t.Error("Render without a codec succeeded")
	}
	if _, err := Render(sample(), AlertContext{IncidentID: "inc 1", Codec: testCodec(t)}); err == nil {
		t.Error("Render with an invalid incident id succeeded")
	}
}

func TestClean(t *testing.T) {
	ok := func(in string, max int, multi bool, want string) {
		t.Helper()
		if got := clean(in, max, multi); got != want {
			t.Errorf("clean(%q, %d, %v) = %q; want %q", in, max, multi, got, want)
		}
	}
	ok("plain", 10, false, "plain")
	ok("<!channel>", 100, false, "&lt;!channel&gt;")
	ok("a&b", 100, false, "a&amp;b")
	ok("a\nb", 10, false, "a b")
	ok("a\nb", 10, true, "a\nb")
	ok("a\x00b", 10, false, "a b")
	ok("\xff", 10, false, "\uFFFD")
	ok("a\u202Eb", 10, false, "a\uFFFDb")
	ok("", 10, false, "—")
	ok(" \n\t", 10, true, "—")
	ok("abcdef", 4, false, "abc…")
	ok("ab<cd", 6, false, "ab…") // "&lt;" does not fit with the ellipsis: cut before it, never inside
	ok("ab<cd", 7, false, "ab&lt;…")
	ok("abc  def", 5, false, "abc…") // no blank before the ellipsis
	ok("😀😀😀", 4, false, "😀…")        // UTF-16 units: an astral rune counts 2
}

// checkMessage asserts what must hold of every rendered message, whatever
// the input: Slack's limits, no live mention or link, valid text.
func checkMessage(t testing.TB, m Message) {
	t.Helper()
	if len(m.Blocks) == 0 || len(m.Blocks) > maxBlocks {
		t.Fatalf("%d blocks; want 1..%d", len(m.Blocks), maxBlocks)
	}
	if strings.ContainsAny(m.Text, "<>`") || utf16Len(m.Text) > 40000 || m.Text == "" {
		t.Errorf("fallback text %q: has < > or a backtick, or is empty or too long", m.Text)
	}
	if i := strings.Index(m.Text, "@"); i >= 0 && !strings.HasPrefix(m.Text[i:], "@\u2060") {
		t.Errorf("fallback text %q has a bare @", m.Text)
	}
	checkString(t, "text", m.Text)
	raw, err := json.Marshal(m.Blocks)
	if err != nil {
		t.Fatal(err)
	}
	// slack-go must read back what we send (slacktest decodes it the same way).
	var back slack.Blocks
	if err := json.Unmarshal(raw, &back); err != nil || len(back.BlockSet) != len(m.Blocks) {
		t.Fatalf("blocks do not round-trip through slack-go: %v", err)
	}
	var blocks []any
	if err := json.Unmarshal(raw, &blocks); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		checkBlock(t, b.(map[string]any))
	}
}

var ourMrkdwn = regexp.MustCompile(`^\*[A-Za-z ]+\*( \(top \d+ of \d+ features\))?$`)

func checkBlock(t testing.TB, b map[string]any) {
	t.Helper()
	if id, _ := b["block_id"].(string); len(id) > 255 {
		t.Errorf("block_id of %d chars", len(id))
	}
	walk(b, func(key string, obj map[string]any) {
		typ, _ := obj["type"].(string)
		text, isText := obj["text"].(string)
		if (typ == "plain_text" || typ == "mrkdwn") && isText {
			if n := utf16Len(text); n == 0 || n > maxText {
				t.Errorf("text object of %d units", n)
			}
			if typ == "mrkdwn" && !ourMrkdwn.MatchString(text) {
				t.Errorf("mrkdwn text %q is not one of our own headings", text)
			}
			if key == "confirm" && utf16Len(text) > 30 {
				t.Errorf("confirm label %q too long", text)
			}
		}
		switch typ {
		case "header":
			tx := obj["text"].(map[string]any)["text"].(string)
			if utf16Len(tx) > maxHeader || strings.Contains(tx, "\n") {
				t.Errorf("header %q: %d units or a newline", tx, utf16Len(tx))
			}
		case "section":
			fields, _ := obj["fields"].([]any)
			if len(fields) > maxFields {
				t.Errorf("section with %d fields", len(fields))
			}
			for _, f := range fields {
				tx := f.(map[string]any)["text"].(string)
				if utf16Len(tx) > maxField {
					t.Errorf("field of %d units", utf16Len(tx))
				}
				if f.(map[string]any)["type"] != "plain_text" {
					t.Errorf("field %q is not plain_text", tx)
				}
				if strings.Count(tx, "\n") > 1 {
					t.Errorf("field %q spans more than label and value", tx)
				}
			}
		case "context":
			if els, _ := obj["elements"].([]any); len(els) > 10 {
				t.Errorf("context with %d elements", len(els))
			}
		case "button":
			tx := obj["text"].(map[string]any)["text"].(string)
			v, _ := obj["value"].(string)
			id, _ := obj["action_id"].(string)
			if utf16Len(tx) > maxButtonText || len(v) > maxButtonValue || len(id) > 255 {
				t.Errorf("button %q: text %d, value %d, action_id %d chars", id, utf16Len(tx), len(v), len(id))
			}
			if c, ok := obj["confirm"].(map[string]any); ok {
				title := c["title"].(map[string]any)["text"].(string)
				body := c["text"].(map[string]any)["text"].(string)
				if utf16Len(title) > 100 || utf16Len(body) > maxConfirmText {
					t.Errorf("confirm dialog: title %d, text %d units", utf16Len(title), utf16Len(body))
				}
			}
		}
	})
	walkStrings(b, func(s string) { checkString(t, "block", s) })
}

// checkString: no < or > at all (every input one is escaped, and we write
// none), every & starts an escape, valid UTF-8, no control character but
// newline, no bidi override.
func checkString(t testing.TB, where, s string) {
	t.Helper()
	if strings.ContainsAny(s, "<>") {
		t.Errorf("%s string has an unescaped < or >: %.200q", where, s)
	}
	for i := strings.IndexByte(s, '&'); i >= 0; {
		rest := s[i:]
		if !strings.HasPrefix(rest, "&amp;") && !strings.HasPrefix(rest, "&lt;") && !strings.HasPrefix(rest, "&gt;") {
			t.Errorf("%s string has a bare &: %.200q", where, s)
			break
		}
		j := strings.IndexByte(s[i+1:], '&')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	if !utf8.ValidString(s) {
		t.Errorf("%s string is not valid UTF-8: %.200q", where, s)
	}
	for _, r := range s {
		if (unicode.IsControl(r) && r != '\n') || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029' {
			t.Errorf("%s string has control character %U: %.200q", where, r, s)
			break
		}
	}
}

func walk(v any, fn func(key string, obj map[string]any)) {
	var rec func(key string, v any)
	rec = func(key string, v any) {
		switch x := v.(type) {
		case map[string]any:
			fn(key, x)
			for k, c := range x {
				rec(k, c)
			}
		case []any:
			for _, c := range x {
				rec(key, c)
			}
		}
	}
	rec("", v)
}

func walkStrings(v any, fn func(string)) {
	switch x := v.(type) {
	case string:
		fn(x)
	case map[string]any:
		for _, c := range x {
			walkStrings(c, fn)
		}
	case []any:
		for _, c := range x {
			walkStrings(c, fn)
		}
	}
}

func allStrings(t testing.TB, m Message) []string {
	t.Helper()
	raw, err := json.Marshal(m.Blocks)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var out []string
	walkStrings(v, func(s string) { out = append(out, s) })
	return out
}

func buttonsOf(m Message) []*slack.ButtonBlockElement {
	var out []*slack.ButtonBlockElement
	for _, b := range m.Blocks {
		if ab, ok := b.(*slack.ActionBlock); ok {
			for _, e := range ab.Elements.ElementSet {
				if btn, ok := e.(*slack.ButtonBlockElement); ok {
					out = append(out, btn)
				}
			}
		}
	}
	return out
}

func actionIDs(m Message) []string {
	var out []string
	for _, b := range buttonsOf(m) {
		out = append(out, b.ActionID)
	}
	return out
}

func FuzzRender(f *testing.F) {
	for _, h := range hostile {
		if len(h) < 2000 {
			f.Add(h, h, h, h, h, uint8(0))
		}
	}
	f.Add("cs-agent-006", "support-eng@example.com", "/customers/{id}/export", "16e5bec6", "curl/8.0", uint8(1))
	kinds := anomaly.Kinds()
	f.Fuzz(func(t *testing.T, agent, owner, route, reqID, detail string, k uint8) {
		a := sample()
		a.Kind = kinds[int(k)%len(kinds)]
		a.AgentID, a.Owner, a.Role, a.Severity = agent, owner, detail, owner
		a.Summary = agent + " " + route + " " + detail
		a.Routes = append(a.Routes, anomaly.RouteCount{Route: route, Calls: 1})
		a.Explanation = append(a.Explanation, anomaly.Feature{Name: detail, Observed: 1})
		a.SampleRequestIDs = []string{reqID, agent}
		a.SourceIPs = []string{detail}
		ac := sampleContext(t)
		ac.SnapshotID, ac.Status = reqID, detail
		ac.Agents = []string{agent, owner}
		ac.Details = []Detail{{Label: route, Value: detail}}
		for _, render := range []func(anomaly.Anomaly, AlertContext) (Message, error){Render, RenderFollowUp} {
			m, err := render(a, ac)
			if err != nil {
				t.Fatalf("render: %v", err)
			}
			checkMessage(t, m)
		}
	})
}
