package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/internal/responder/preview"
	"github.com/agentwatch/agentwatch/internal/testkit/clitest"
)

// TestPreviewCommand runs `responder preview` on a testdata file of
// anomalies, one of them hostile, and reads the two files it writes.
func TestPreviewCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "preview")
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"anomaly_id": "a1", "agent_id": "x", "kind": "exfil", "severity": "low"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	clitest.Run(t, newRoot, []clitest.Case{
		{Args: []string{"preview"}, Code: 2, Err: "needs at least one file of anomalies"},
		{Args: []string{"preview", filepath.Join(t.TempDir(), "missing.json")}, Code: 2, Err: "no such file"},
		{Args: []string{"preview", bad}, Code: 2, Err: `bad.json: record 1: kind "exfil" is not one of`},
		{Args: []string{"preview", "--help"}, Code: 0, Out: "--playbooks"},
		{Args: []string{"preview", "testdata/preview-anomalies.jsonl", "--out", out}, Code: 0, Out: "2 anomalies → Slack messages per incident"},
	})
	b, err := os.ReadFile(filepath.Join(out, preview.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var f preview.File
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", preview.JSONFile, err)
	}
	if len(f.Incidents) != 2 || f.Stats.Incidents != 2 {
		t.Fatalf("%d incidents (stats %+v), want the two agents'", len(f.Incidents), f.Stats)
	}
	exf, intruder := f.Incidents[0], f.Incidents[1]
	if len(exf.Messages) == 0 || len(intruder.Messages) == 0 {
		t.Fatalf("an incident without messages: %+v", f.Incidents)
	}
	var card struct {
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Text string `json:"text"`
			} `json:"text"`
		} `json:"blocks"`
	}
	if err := json.Unmarshal(mustJSON(t, exf.Messages[0]), &card); err != nil {
		t.Fatal(err)
	}
	var header string
	for _, bl := range card.Blocks {
		if bl.Type == "header" && bl.Text != nil {
			header = bl.Text.Text
		}
	}
	if !strings.Contains(header, "CRITICAL") || !strings.Contains(header, "cs-agent-006") {
		t.Errorf("the exfiltration's top-level header is %q", header)
	}
	// The playbook asks before it revokes: the request is in the thread,
	// with its buttons.
	thread := string(mustJSON(t, exf.Messages[0].Thread))
	for _, want := range []string{"Approval needed", `"action_id":"aw_approve"`, `"action_id":"aw_deny"`} {
		if !strings.Contains(thread, want) {
			t.Errorf("the exfiltration's thread lacks %s:\n%s", want, thread)
		}
	}
	// The intruder's strings reach Slack escaped, never as a mention, a
	// link or markup.
	in := string(mustJSON(t, intruder))
	for _, bad := range []string{"<!channel>", "<!here>", "<script>", "<https://", "<img"} {
		if strings.Contains(in, bad) {
			t.Errorf("the intruder's messages hold %s:\n%s", bad, in)
		}
	}
	if !strings.Contains(in, `intruder\"&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;!channel&gt;`) {
		t.Errorf("the intruder's messages lack its escaped agent id:\n%s", in)
	}

	page, err := os.ReadFile(filepath.Join(out, preview.HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	html := string(page)
	for _, want := range []string{
		"<!DOCTYPE html>", "Content-Security-Policy",
		`<div class="header">🔴 CRITICAL · behaviour · cs-agent-006</div>`,
		`<span class="alert">@here</span>`, // the playbook's own mention
		`<div class="thread">`, "Approval needed", `<span class="btn danger" role="button"`,
		"intruder&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;!channel&gt;",
		"&lt;!here&gt; &lt;https://evil.example|click&gt; called /admin/&lt;img src=x onerror=alert(2)&gt;",
	} {
		if !strings.Contains(html, want) {
			t.Errorf("%s lacks %s", preview.HTMLFile, want)
		}
	}
	for _, bad := range []string{"<script", "<img src=x", `href="https://evil.example"`} {
		if strings.Contains(html, bad) {
			t.Errorf("%s holds %s", preview.HTMLFile, bad)
		}
	}
}

// mustJSON is v's JSON as messages.json holds it ("<" as "<").
func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
