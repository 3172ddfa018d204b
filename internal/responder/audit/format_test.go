package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

func TestTerminalSafe(t *testing.T) {
	ok := func(in string, max int, want string) {
		t.Helper()
		if got := TerminalSafe(in, max); got != want {
			t.Errorf("TerminalSafe(%q, %d) = %q; want %q", in, max, got, want)
		}
	}
	ok("agent-7", 0, "agent-7")
	ok("a\x1b[31mred\x1b[0m", 0, `a\u001b[31mred\u001b[0m`)
	ok("title\x1b]0;pwned\x07", 0, `title\u001b]0;pwned\u0007`)
	ok("a\nb\tc\rd", 0, `a\nb\tc\rd`)
	ok(`back\slash`, 0, `back\\slash`)
	ok("c1\u009b31m", 0, `c1\u009b31m`) // CSI as a UTF-8 rune
	ok("raw\x9b31m", 0, `raw\x9b31m`)   // CSI as a lone 8-bit byte
	ok("rtl\u202egnp.exe", 0, `rtl\u202egnp.exe`)
	ok("tag\U000E0041", 0, `tag\U000e0041`)
	ok("ünïcødé 漢字", 0, "ünïcødé 漢字")
	ok("abcdef", 6, "abcdef")
	ok("abcdefg", 6, "abcde…")
	ok("\x1b\x1b", 8, `\u001b…`)
}

func TestWriteTable(t *testing.T) {
	hostile := "agent\x1b[2J\x1b[H\x1b]0;owned\x07\u009b6n\r\nFAKE ROW\tok"
	recs := []Record{
		{ID: "1", AtMs: t0 + 123, Actor: Actor{Kind: ActorAPI, TokenName: "ci"}, Action: ActionPlaybook, Playbook: "quarantine-agent",
			IncidentID: "inc-a", AgentID: hostile, Result: ResultRefused, Why: "manual run via API: " + hostile,
			Detail: "token ci may not run quarantine-agent"},
		{ID: "2", AtMs: t0 + 2000, Actor: Actor{Kind: ActorSlack, Name: "mallory\x1b[8m", UserID: "U1"}, Action: "revoke",
			Playbook: "revoke-on-exfil", IncidentID: "inc-b", Result: ResultOK, DryRun: true},
		{ID: "3", AtMs: t0 + 3000, Actor: Actor{Kind: ActorAutomatic}, Action: "notify", Result: ResultDryRun, DryRun: true,
			Detail: strings.Repeat("x", 500)},
		{ID: "4", AtMs: t0 + 4000, Actor: Actor{Kind: ActorCLI, Name: "alice"}, Action: ActionAsk, AgentID: hostile, Result: ResultOK,
			Detail: "agent id=" + hostile + " span=2026-03-15..2026-03-16"},
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, recs, TableOptions{}); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, r := range out {
		if r != '\n' && (unicode.In(r, unicode.Cc, unicode.Cf) || r == utf8.RuneError) {
			t.Fatalf("table holds control or invalid character %U:\n%s", r, out)
		}
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1+len(recs) {
		t.Fatalf("table has %d lines; want %d:\n%s", len(lines), 1+len(recs), out)
	}
	for _, want := range []string{
		"WHEN", "ACTOR", "DETAIL",
		"2025-03-04T12:00:00.123Z", "api:ci", `\u001b[2J\u001b[H\u001b]0;owned\u0007\u009b6n\r\nFAKE ROW\tok`,
		`slack:mallory\u001b[8m (U1)`, "ok (dry run)", "automatic",
		"cli:alice", " ask ", `agent id=agent\u001b[2J`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(lines[3], "dry_run (dry run)") {
		t.Errorf("dry run said twice: %s", lines[3])
	}
	if n := utf8.RuneCountInString(lines[3]); n > 300 {
		t.Errorf("a 500-byte detail made a %d-rune line; want it capped", n)
	}
	buf.Reset()
	WriteTable(&buf, recs[:1], TableOptions{Location: time.FixedZone("X", 3600)})
	if !strings.Contains(buf.String(), "2025-03-04T13:00:00.123+01:00") {
		t.Errorf("Location not used:\n%s", buf.String())
	}
}

func TestWriteJSON(t *testing.T) {
	r := rec("1", t0, "agent\x1b[31m\u009b\u202e\U000E0041<b>", "inc")
	var buf bytes.Buffer
	if err := WriteJSON(&buf, []Record{r, r}); err != nil {
		t.Fatal(err)
	}
	for _, b := range buf.Bytes() {
		if b >= 0x80 || (b < 0x20 && b != '\n') {
			t.Fatalf("JSON output holds byte %#x: %q", b, buf.String())
		}
	}
	sc := bufio.NewScanner(&buf)
	n := 0
	for sc.Scan() {
		var got Record
		if err := json.Unmarshal(sc.Bytes(), &got); err != nil || !reflect.DeepEqual(got, r) {
			t.Fatalf("line %d decodes to %+v, %v; want %+v", n, got, err, r)
		}
		n++
	}
	if n != 2 {
		t.Errorf("%d lines; want 2", n)
	}
}
