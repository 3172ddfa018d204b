package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/embedstore"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/testkit/clitest"
	"github.com/agentwatch/agentwatch/pkg/event"
)

const hostileAgent = "evil\x1b]0;owned\x07<script>"

// visDataDir writes an embedded data dir in the demo's layout: yesterday's
// and today's events, a registry and an OpenAPI document.
func visDataDir(t *testing.T) (dir, yesterday string) {
	t.Helper()
	dir = t.TempDir()
	es, err := embedstore.Open(filepath.Join(dir, "events"))
	if err != nil {
		t.Fatal(err)
	}
	day := time.Now().UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
	evs := []event.Event{
		{EventID: "e1", AgentID: "cs-1", Route: "/customers/{id}", EventTimeMs: day.Add(10 * time.Hour).UnixMilli(), Status: 200, RequestID: "req-1", ResponseBytes: 500},
		{EventID: "e2", AgentID: "cs-1", Route: "/tickets", EventTimeMs: day.Add(11 * time.Hour).UnixMilli(), Status: 403, RequestID: "req-2"},
		{EventID: "e3", AgentID: hostileAgent, Route: "/customers/{id}", EventTimeMs: day.Add(12 * time.Hour).UnixMilli(), Status: 200, RequestID: "=cmd|' /C calc'!A0"},
	}
	if err := es.InsertEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	es.Close()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("agents.yaml", "agents:\n  - id: cs-1\n    owner: cx@example.com\n    approved_routes: ['/customers/{id}']\n  - id: ghost\n")
	write("openapi.yaml", `openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /customers/{customerId}:
    get:
      x-agentwatch-tags: [pii]
      responses: {"200": {description: OK}}
  /tickets:
    get:
      responses: {"200": {description: OK}}
`)
	return dir, day.Format(time.DateOnly)
}

func TestVisibilityCommands(t *testing.T) {
	dir, y := visDataDir(t)
	d := "--embedded.data_dir=" + dir
	clitest.Run(t, newRoot, []clitest.Case{
		{Args: []string{"inventory", "agents", d}, Out: "cs-1"},
		{Args: []string{"inventory", "agents", d}, Out: "never_seen"},
		{Args: []string{"inventory", "agents", d}, Out: `evil\u001b]0;owned\u0007<script>`},
		{Args: []string{"inventory", "routes", d, "-o", "csv"}, Out: "/customers/{id},yes,no,no,pii,2,2,"},
		{Args: []string{"inventory", "agent-routes", d, "--agent", "cs-1"}, Out: "unapproved"},
		{Args: []string{"findings", d}, Out: "shadow_agent"},
		{Args: []string{"findings", d}, Out: "unapproved_route"},
		{Args: []string{"access", d, "--tag", "pii", "--from", y, "--to", y}, Out: "req-1"},
		{Args: []string{"access", d, "--tag", "pii", "--from", y, "--to", y, "-o", "csv"}, Out: `'=cmd|' /C calc'!A0`},
		{Args: []string{"access", d, "--template", "/tickets/**", "--from", y, "-o", "json"}, Out: `"AgentID": "cs-1"`},
		{Args: []string{"agent", "cs-1", d}, Out: "routes used versus approved"},
		{Args: []string{"agent", "nobody", d}, Code: 1, Err: `agent "nobody" is neither registered nor seen`},
		{Args: []string{"route", "/customers/{id}", d, "-o", "json"}, Out: `"CallerCount": 2`},
		{Args: []string{"events", d, "--agent", "cs-1", "--from", y}, Out: "req-2"},
		{Args: []string{"access", d, "--tag", "p i i"}, Code: 2, Err: `tag: "p i i"`},
		{Args: []string{"access", d, "--from", "yesterday"}, Code: 2, Err: `from: "yesterday" is neither RFC 3339 nor YYYY-MM-DD`},
		{Args: []string{"access", d, "--from", "2026-03-16", "--to", "2026-03-15"}, Code: 2, Err: "is not after from"},
		{Args: []string{"findings", d, "-o", "xml"}, Code: 2, Err: "--output"},
		{Args: []string{"findings", d, "--dormant-days", "0"}, Code: 2, Err: "dormant_days: 0"},
		{Args: []string{"inventory", d}, Code: 2, Err: "needs a subcommand: agent-routes, agents, routes"},
		{Args: []string{"agent", d}, Code: 2, Err: "ID"},
	})
	// Every question was audited to the embedded responder's audit file,
	// by the OS user, the refused ones too.
	fs, err := audit.OpenFileStore(filepath.Join(dir, "responder", "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := fs.Query(context.Background(), audit.Filter{Action: audit.ActionAsk})
	if err != nil {
		t.Fatal(err)
	}
	var refused int
	questions := map[string]bool{}
	for _, r := range recs {
		if r.Actor.Kind != audit.ActorCLI || r.Actor.Name == "" {
			t.Errorf("record %+v: want the CLI and the OS user", r)
		}
		if r.Result == audit.ResultRefused {
			refused++
		}
		questions[strings.Fields(r.Detail)[0]] = true
	}
	// 16 questions reach the service (one not found), 3 of them invalid:
	// bad tag, backwards span and --from yesterday are refused by the
	// command line before any service, so only the tag is audited.
	if len(recs) != 15 || refused != 1 {
		t.Errorf("%d questions audited, %d refused; want 15 and 1", len(recs), refused)
	}
	for _, q := range []string{"inventory", "findings", "access", "agent", "route", "events"} {
		if !questions[q] {
			t.Errorf("no %q question audited", q)
		}
	}
	// responder audit --action ask would list them; here the table.
	var b bytes.Buffer
	if err := audit.WriteTable(&b, recs, audit.TableOptions{}); err != nil || !strings.Contains(b.String(), " ask ") {
		t.Errorf("audit table: %v\n%s", err, b.String())
	}
}

func TestVisibilityJSONAndCSVParse(t *testing.T) {
	dir, y := visDataDir(t)
	run := func(args ...string) []byte {
		var out, errb bytes.Buffer
		if code := cli.Run(t.Context(), newRoot(), append(args, "--embedded.data_dir="+dir), &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
		return out.Bytes()
	}
	t.Setenv("AGENTWATCH_CONFIG_FILE", "")
	var ans struct {
		Routes []string
		Rows   []struct {
			AgentID string
			Calls   uint64
		}
	}
	if err := json.Unmarshal(run("access", "--tag", "pii", "--from", y, "--to", y, "-o", "json"), &ans); err != nil {
		t.Fatal(err)
	}
	if len(ans.Routes) != 1 || ans.Routes[0] != "/customers/{id}" || len(ans.Rows) != 2 || ans.Rows[1].AgentID != hostileAgent {
		t.Fatalf("access answer %+v", ans)
	}
	recs, err := csv.NewReader(bytes.NewReader(run("findings", "-o", "csv"))).ReadAll()
	if err != nil || len(recs) < 2 || recs[0][0] != "KIND" {
		t.Fatalf("findings CSV %q, %v", recs, err)
	}
}
