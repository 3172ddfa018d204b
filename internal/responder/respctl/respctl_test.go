package respctl

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
)

const manualPlaybook = `
playbooks:
  - name: contain
    manual_only: true
    steps:
      - notify: {channel: "#soc-alerts"}
      - revoke: {adapter: denylist}
`

// embeddedConfig is the embedded mode on temporary directories: every
// store is a file, nothing reaches the network.
func embeddedConfig(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.LoadEnv("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pb := filepath.Join(dir, "playbooks.yaml")
	if err := os.WriteFile(pb, []byte(manualPlaybook), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.Brokers = nil
	cfg.Embedded.DataDir = filepath.Join(dir, "embedded")
	cfg.Responder.StateDir = filepath.Join(dir, "state")
	cfg.Responder.Playbooks = []string{pb}
	cfg.Responder.GroupWait = 0
	cfg.Responder.Slack.TokenEnv, cfg.Responder.Slack.SigningSecretEnv = "", ""
	return cfg
}

// holdOutbox opens the state directory's outbox, as a running responder
// does, until the test ends.
func holdOutbox(t *testing.T, cfg config.Config) {
	t.Helper()
	if err := os.MkdirAll(cfg.Responder.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := outbox.OpenFile(filepath.Join(cfg.Responder.StateDir, respond.OutboxFile), outbox.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
}

// fakeAPI records the requests a command sends to the responder's API and
// answers each with answer.
type fakeAPI struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []string // "METHOD PATH BODY"
}

func newFakeAPI(t *testing.T, answer string) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, r.Method+" "+r.URL.RequestURI()+" "+strings.TrimSpace(string(b)))
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, answer)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAPI) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

func TestRunPlaybookLocalDryRun(t *testing.T) {
	cfg := embeddedConfig(t)
	var out bytes.Buffer
	o := RunPlaybookOptions{Playbook: "contain", AgentID: "a1", DryRun: true, Reason: "test", RequestID: "r1"}
	if err := RunPlaybook(t.Context(), cfg, nil, o, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"playbook contain for agent a1: incident ", "STEP", "0     notify", "1     revoke"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// The same request id runs once.
	out.Reset()
	if err := RunPlaybook(t.Context(), cfg, nil, o, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "(this request ran before: nothing ran now)") {
		t.Errorf("second run of request r1:\n%s", out.String())
	}
}

func TestRunPlaybookThroughAPI(t *testing.T) {
	cfg := embeddedConfig(t)
	holdOutbox(t, cfg)
	api := newFakeAPI(t, `{"incident":"i1"}`)
	o := RunPlaybookOptions{Playbook: "contain", AgentID: "a1", RequestID: "r1", API: api.URL + "/"}

	t.Setenv("RESPONDER_API_TOKEN", "")
	err := RunPlaybook(t.Context(), cfg, nil, o, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `set RESPONDER_API_TOKEN (or RESPONDER_API_TOKEN_FILE) to a token with playbook "contain" allowed`) {
		t.Fatalf("RunPlaybook beside a running responder, no token: %v", err)
	}

	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RESPONDER_API_TOKEN", "tok")
	t.Setenv("RESPONDER_API_TOKEN_FILE", tokFile)
	if err := RunPlaybook(t.Context(), cfg, nil, o, io.Discard); err == nil || !strings.Contains(err.Error(), "both RESPONDER_API_TOKEN and RESPONDER_API_TOKEN_FILE") {
		t.Fatalf("both set: %v", err)
	}
	t.Setenv("RESPONDER_API_TOKEN", "")
	var out bytes.Buffer
	if err := RunPlaybook(t.Context(), cfg, nil, o, &out); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RESPONDER_API_TOKEN_FILE", "")
	if got, want := out.String(), "{\n  \"incident\": \"i1\"\n}\n"; got != want {
		t.Errorf("output = %q; want %q", got, want)
	}
	want := `POST /v1/playbooks/contain/run {"agent_id":"a1","dry_run":false,"reason":"","request_id":"r1"}`
	if got := api.requests(); len(got) != 1 || got[0] != want {
		t.Errorf("API requests = %q; want %q", got, want)
	}
}

func TestFalsePositiveThroughAPI(t *testing.T) {
	cfg := embeddedConfig(t)
	holdOutbox(t, cfg)
	api := newFakeAPI(t, `{}`)
	t.Setenv("RESPONDER_API_TOKEN", "tok")
	var out bytes.Buffer
	if err := FalsePositive(t.Context(), cfg, nil, FalsePositiveOptions{IncidentID: "i1", AnomalyID: "an1", API: api.URL}, &out); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "anomaly an1 of incident i1 marked a false positive\n"; got != want {
		t.Errorf("output = %q; want %q", got, want)
	}
	if got := api.requests(); len(got) != 1 || got[0] != `POST /v1/incidents/i1/false-positive {"anomaly_id":"an1"}` {
		t.Errorf("API requests = %q", got)
	}
}

func TestSilencesLocal(t *testing.T) {
	cfg := embeddedConfig(t)
	ctx := t.Context()
	var out bytes.Buffer
	err := SilenceAdd(ctx, cfg, SilenceAddOptions{Matchers: `agent_id=`, For: time.Hour, Comment: "x"}, &out)
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "--match: ") {
		t.Fatalf("SilenceAdd with bad matchers: %v; want a *UsageError about --match", err)
	}
	if err := SilenceAdd(ctx, cfg, SilenceAddOptions{Matchers: `agent_id="a1"`, For: time.Hour, Comment: "maintenance"}, &out); err != nil {
		t.Fatal(err)
	}
	line := out.String()
	f := strings.Fields(line)
	if len(f) < 4 || f[0] != "silence" || f[2] != "agent_id=a1" || f[3] != "until" {
		t.Fatalf("add output = %q", line)
	}
	id := strings.TrimSuffix(f[1], ":")

	out.Reset()
	if err := SilenceList(ctx, cfg, SilenceListOptions{}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), id) || !strings.Contains(out.String(), "maintenance") {
		t.Errorf("list output lacks silence %s:\n%s", id, out.String())
	}

	out.Reset()
	if err := SilenceExpire(ctx, cfg, SilenceExpireOptions{ID: id}, &out); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "silence "+id+" expired\n"; got != want {
		t.Errorf("expire output = %q; want %q", got, want)
	}
	out.Reset()
	if err := SilenceList(ctx, cfg, SilenceListOptions{}, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), id) {
		t.Errorf("list without --expired shows expired silence %s:\n%s", id, out.String())
	}

	// Both changes are audited, and so is reading the audit trail.
	out.Reset()
	if err := Audit(ctx, cfg, nil, AuditOptions{Filter: audit.Filter{Limit: 10}, JSON: true}, &out); err != nil {
		t.Fatal(err)
	}
	var recs []audit.Record
	for dec := json.NewDecoder(&out); dec.More(); {
		var r audit.Record
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("audit --json output: %v", err)
		}
		recs = append(recs, r)
	}
	if len(recs) != 2 || recs[0].Action != "silence" || recs[1].Action != "silence" {
		t.Errorf("audit records = %+v; want the two silence changes", recs)
	}
	out.Reset()
	if err := Audit(ctx, cfg, nil, AuditOptions{Filter: audit.Filter{Limit: 10}}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), audit.ActionAuditQuery) {
		t.Errorf("audit table lacks the first query:\n%s", out.String())
	}
}

func TestSilenceListThroughAPI(t *testing.T) {
	cfg := embeddedConfig(t)
	if err := os.MkdirAll(cfg.Responder.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := silence.Open(filepath.Join(cfg.Responder.StateDir, respond.SilencesFile), silence.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	api := newFakeAPI(t, `{"silences":[{"id":"s1","matchers":[{"name":"agent_id","value":"a1"}],"starts_at":"2026-11-01T00:00:00Z","ends_at":"2026-11-01T02:00:00Z","created_by":"api:x","comment":"c"}]}`)
	t.Setenv("RESPONDER_API_TOKEN", "tok")
	var out bytes.Buffer
	if err := SilenceList(t.Context(), cfg, SilenceListOptions{Expired: true, API: api.URL}, &out); err != nil {
		t.Fatal(err)
	}
	if got := api.requests(); len(got) != 1 || got[0] != "GET /v1/silences?expired=1 " {
		t.Errorf("API requests = %q", got)
	}
	if !strings.Contains(out.String(), "s1") || !strings.Contains(out.String(), "2026-11-01 02:00") {
		t.Errorf("list output:\n%s", out.String())
	}
}

func TestOutbox(t *testing.T) {
	cfg := embeddedConfig(t)
	ctx := t.Context()
	var out bytes.Buffer
	if err := RunPlaybook(ctx, cfg, nil, RunPlaybookOptions{Playbook: "contain", AgentID: "a1", DryRun: true, RequestID: "r1"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if err := OutboxList(ctx, cfg, OutboxListOptions{All: true}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "KEY") || strings.Count(out.String(), "\n") < 2 {
		t.Errorf("outbox list --all after a run:\n%s", out.String())
	}
	if err := OutboxRequeue(ctx, cfg, OutboxRequeueOptions{Key: "no-such-key"}, &out); err == nil {
		t.Error("requeue of an unknown key: nil error")
	}
	if err := OutboxDismiss(ctx, cfg, OutboxDismissOptions{Key: "no-such-key", Reason: "r"}, &out); err == nil {
		t.Error("dismiss of an unknown key: nil error")
	}

	holdOutbox(t, cfg)
	err := OutboxList(ctx, cfg, OutboxListOptions{}, &out)
	if err == nil || !strings.Contains(err.Error(), "stop it first (the outbox belongs to one process)") {
		t.Errorf("outbox list beside a running responder: %v", err)
	}
}

func TestIncidentsAndVerifyEmpty(t *testing.T) {
	cfg := embeddedConfig(t)
	var out bytes.Buffer
	if err := Incidents(cfg, IncidentsOptions{}, &out); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); !strings.HasPrefix(got, "INCIDENT") || strings.Contains(got, "\n") {
		t.Errorf("incidents of an empty state directory:\n%s", out.String())
	}
	if err := Incidents(cfg, IncidentsOptions{Incident: "i9"}, &out); err == nil || !strings.HasPrefix(err.Error(), "no incident i9 in ") {
		t.Errorf("incidents --incident i9: %v", err)
	}
	out.Reset()
	if err := os.MkdirAll(cfg.Responder.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Verify(t.Context(), cfg, nil, VerifyOptions{}, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, "evidence chain verifies: 0 records") {
		t.Errorf("verify of an empty chain: %q", got)
	}
	err := Restore(t.Context(), cfg, nil, RestoreOptions{IncidentID: "i1", CredentialID: "c1"}, &out)
	if err == nil || err.Error() != "no revocation or quarantine of credential c1 is recorded for incident i1" {
		t.Errorf("restore with nothing revoked: %v", err)
	}
}
