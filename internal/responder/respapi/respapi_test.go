package respapi

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/clientlimit"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

const (
	secretCI     = "ci-0123456789abcdef0123456789abcdef"     // may run every playbook
	secretOncall = "oncall-0123456789abcdef0123456789abcdef" // may run notify-only; reads the audit
)

// t0 is 2025-03-04T12:00:00Z.
var t0 = time.UnixMilli(1741089600000).UTC()

func testSet() playbooks.Set {
	return playbooks.Set{Playbooks: []playbooks.Playbook{
		{Name: "quarantine-agent", ManualOnly: true, Steps: []playbooks.Step{
			{Quarantine: &playbooks.Quarantine{Adapter: playbooks.AdapterDenylist}, TTL: time.Hour},
			{Notify: &playbooks.Notify{Channel: "#soc"}},
		}},
		{Name: "notify-only", ManualOnly: true, Steps: []playbooks.Step{{Notify: &playbooks.Notify{Channel: "#soc"}}}},
	}}
}

// fakeRunner plans with the real playbooks.Plan and runs each decision id
// once, as the responder's Runner must: a repeated id returns the first
// result with Duplicate set.
type fakeRunner struct {
	set playbooks.Set
	err error

	mu    sync.Mutex
	calls []Request
	ran   map[string]Result
	execs int
}

func (f *fakeRunner) Run(_ context.Context, req Request) (Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, req)
	if f.err != nil {
		return Result{}, f.err
	}
	req.Agent = playbooks.AgentInfo{CredentialID: "cred-9", Owner: "team-a"}
	d, err := playbooks.Plan(f.set, req.Manual)
	if err != nil {
		return Result{}, err
	}
	if r, ok := f.ran[d.ID]; ok {
		r.Duplicate = true
		return r, nil
	}
	f.execs++
	res := Result{Decision: d}
	for _, a := range d.Steps {
		st := StepResult{Status: audit.ResultOK, Detail: "done"}
		if a.DryRun {
			st = StepResult{Status: audit.ResultDryRun, Detail: "would " + string(a.Kind())}
		}
		res.Steps = append(res.Steps, st)
	}
	if f.ran == nil {
		f.ran = map[string]Result{}
	}
	f.ran[d.ID] = res
	return res, nil
}

func (f *fakeRunner) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeRunner) requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

type fixture struct {
	h      *Handler
	srv    *httptest.Server
	runner *fakeRunner
	store  *audit.MemStore
	reg    *prometheus.Registry
}

func newFixture(t *testing.T, mod ...func(*Options)) *fixture {
	t.Helper()
	fx := &fixture{runner: &fakeRunner{set: testSet()}, store: &audit.MemStore{}, reg: prometheus.NewRegistry()}
	o := Options{
		Tokens: []Token{
			{Name: "ci", SHA256: HashSecret(secretCI), AllowedPlaybooks: []string{"*"}},
			{Name: "oncall", Secret: secretOncall, AllowedPlaybooks: []string{"notify-only"}, CanReadAudit: true},
		},
		Runner:  fx.runner,
		Audit:   audit.NewLogger(fx.store, nil, func() time.Time { return t0 }),
		Metrics: NewMetrics(fx.reg),
		Now:     func() time.Time { return t0 },
	}
	for _, m := range mod {
		m(&o)
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	fx.h = h
	fx.srv = httptest.NewServer(h)
	t.Cleanup(fx.srv.Close)
	return fx
}

type response struct {
	code int
	hdr  http.Header
	body []byte
}

func (fx *fixture) do(t *testing.T, method, path, auth, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, fx.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := fx.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{code: resp.StatusCode, hdr: resp.Header, body: b}
}

func (fx *fixture) runAs(t *testing.T, secret, playbook, body string) response {
	t.Helper()
	return fx.do(t, http.MethodPost, "/v1/playbooks/"+playbook+"/run", "Bearer "+secret, body)
}

func (fx *fixture) lastAudit(t *testing.T) audit.Record {
	t.Helper()
	all := fx.store.All()
	if len(all) == 0 {
		t.Fatal("no audit record written")
	}
	return all[len(all)-1]
}

func wantCode(t *testing.T, r response, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("status %d; want %d; body %s", r.code, code, r.body)
	}
}

const runBodyOK = `{"agent_id":"agent-7","reason":"exfil burst seen in Grafana","request_id":"req-1"}`

func TestRunNoToken(t *testing.T) {
	fx := newFixture(t)
	for _, auth := range []string{"", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", secretCI} {
		r := fx.do(t, http.MethodPost, "/v1/playbooks/quarantine-agent/run", auth, runBodyOK)
		wantCode(t, r, http.StatusUnauthorized)
		if got := r.hdr.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer ") || strings.Contains(got, "invalid_token") {
			t.Errorf("Authorization %q: WWW-Authenticate %q; want a Bearer challenge without an error", auth, got)
		}
	}
	if n := len(fx.runner.requests()); n != 0 {
		t.Errorf("runner called %d times", n)
	}
	// Refusals without a token are sampled: none is written on its own,
	// and the interval's one row holds the count.
	if n := len(fx.store.All()); n != 0 {
		t.Errorf("%d audit records before the interval ended; want 0 (sampled)", n)
	}
	fx.h.Limiter().Flush(context.Background(), true)
	all := fx.store.All()
	if len(all) != 1 {
		t.Fatalf("%d audit records for 5 refused requests; want 1 row with the count: %+v", len(all), all)
	}
	rec := all[0]
	if rec.Result != audit.ResultRefused || rec.Action != "requests_refused" || rec.Actor.String() != "api:ip:127.0.0.1" ||
		!strings.Contains(rec.Detail, "5 api requests refused from ip:127.0.0.1") || !strings.Contains(rec.Detail, "no_token 5") {
		t.Errorf("audit record %+v", rec)
	}
}

func TestRunWrongToken(t *testing.T) {
	fx := newFixture(t)
	var mu sync.Mutex
	var compared [][2]int // lengths of each comparison's inputs
	fx.h.equal = func(x, y []byte) int {
		mu.Lock()
		compared = append(compared, [2]int{len(x), len(y)})
		mu.Unlock()
		return subtle.ConstantTimeCompare(x, y)
	}
	for _, secret := range []string{"wrong", secretCI + "x", strings.Repeat("z", 5000)} {
		r := fx.runAs(t, secret, "quarantine-agent", runBodyOK)
		wantCode(t, r, http.StatusUnauthorized)
		if got := r.hdr.Get("WWW-Authenticate"); !strings.Contains(got, `error="invalid_token"`) {
			t.Errorf("WWW-Authenticate %q; want invalid_token", got)
		}
	}
	// Every configured token is compared, as 32-byte digests, whatever
	// the length of the secret presented.
	mu.Lock()
	got := slices.Clone(compared)
	compared = nil
	mu.Unlock()
	if len(got) != 3*2 {
		t.Errorf("%d comparisons for 3 requests and 2 tokens; want 6", len(got))
	}
	for _, c := range got {
		if c != [2]int{32, 32} {
			t.Errorf("compared %d and %d bytes; want two SHA-256 digests", c[0], c[1])
		}
	}
	// A match on the first token does not stop the loop.
	wantCode(t, fx.runAs(t, secretCI, "quarantine-agent", runBodyOK), http.StatusOK)
	mu.Lock()
	n := len(compared)
	mu.Unlock()
	if n != 2 {
		t.Errorf("%d comparisons for a matching first token; want 2 (no early exit)", n)
	}
	if n := len(fx.runner.requests()); n != 1 {
		t.Errorf("runner called %d times; want 1", n)
	}
	fx.h.Limiter().Flush(context.Background(), true)
	all := fx.store.All()
	if rec := all[len(all)-1]; rec.Result != audit.ResultRefused || !strings.Contains(rec.Detail, "bad_token 3") ||
		strings.Contains(rec.Detail, "wrong") {
		t.Errorf("audit record %+v; want refused, unknown token, and no secret", rec)
	}
}

func TestRunAllowed(t *testing.T) {
	fx := newFixture(t)
	r := fx.runAs(t, secretCI, "quarantine-agent", runBodyOK)
	wantCode(t, r, http.StatusOK)
	reqs := fx.runner.requests()
	if len(reqs) != 1 {
		t.Fatalf("runner called %d times; want 1", len(reqs))
	}
	want := Request{
		Manual:    playbooks.Manual{Playbook: "quarantine-agent", AgentID: "agent-7", Key: "api:ci:req-1"},
		Actor:     audit.Actor{Kind: audit.ActorAPI, TokenName: "ci"},
		Reason:    "exfil burst seen in Grafana",
		RequestID: "req-1",
	}
	if got := reqs[0]; fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Errorf("runner got %+v; want %+v", got, want)
	}
	var resp RunResponse
	if err := json.Unmarshal(r.body, &resp); err != nil {
		t.Fatal(err)
	}
	d, _ := playbooks.Plan(testSet(), want.Manual)
	if resp.DecisionID != d.ID || resp.Playbook != "quarantine-agent" || resp.AgentID != "agent-7" || resp.CredentialID != "cred-9" ||
		resp.DryRun || resp.Duplicate || resp.Result != audit.ResultOK || len(resp.Steps) != 2 {
		t.Fatalf("response %s", r.body)
	}
	if s := resp.Steps[0]; s.ID != d.ID+"-0" || s.Kind != "quarantine" || s.TTLSeconds != 3600 || s.Status != "ok" || s.Detail != "done" {
		t.Errorf("step 0: %+v", s)
	}
	if r.hdr.Get("Content-Type") != "application/json" || r.hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", r.hdr)
	}
	rec := fx.lastAudit(t)
	if rec.Actor.TokenName != "ci" || rec.Action != audit.ActionPlaybook || rec.Playbook != "quarantine-agent" ||
		rec.DecisionID != d.ID || rec.IncidentID != d.ID || rec.AgentID != "agent-7" || rec.CredentialID != "cred-9" ||
		rec.Result != audit.ResultOK || rec.Why != "manual run via API: exfil burst seen in Grafana" || rec.Detail != "2 steps: 2 ok" ||
		rec.AtMs != t0.UnixMilli() || rec.ID == "" {
		t.Errorf("audit record %+v", rec)
	}
	if got := testutil.ToFloat64(fx.h.metrics.Requests.WithLabelValues("run", "200")); got != 1 {
		t.Errorf("requests{run,200} = %g; want 1", got)
	}
}

func TestRunForbiddenPlaybook(t *testing.T) {
	fx := newFixture(t)
	r := fx.runAs(t, secretOncall, "quarantine-agent", runBodyOK)
	wantCode(t, r, http.StatusForbidden)
	if n := len(fx.runner.requests()); n != 0 {
		t.Fatalf("runner called %d times; want 0", n)
	}
	rec := fx.lastAudit(t)
	if rec.Result != audit.ResultRefused || rec.Actor.TokenName != "oncall" || rec.Playbook != "quarantine-agent" ||
		rec.AgentID != "agent-7" || !strings.Contains(rec.Detail, "may not run") {
		t.Errorf("audit record %+v", rec)
	}
	// Forbidden is forbidden whatever the body, and whether the playbook
	// exists or not.
	wantCode(t, fx.runAs(t, secretOncall, "quarantine-agent", `{"bogus":1}`), http.StatusForbidden)
	wantCode(t, fx.runAs(t, secretOncall, "no-such-playbook", runBodyOK), http.StatusForbidden)
	// The allowed one runs.
	wantCode(t, fx.runAs(t, secretOncall, "notify-only", runBodyOK), http.StatusOK)
	if got := testutil.ToFloat64(fx.h.metrics.Requests.WithLabelValues("run", "403")); got != 3 {
		t.Errorf("requests{run,403} = %g; want 3", got)
	}
}

func TestRunDryRun(t *testing.T) {
	fx := newFixture(t)
	r := fx.runAs(t, secretCI, "quarantine-agent", `{"agent_id":"agent-7","dry_run":true,"request_id":"req-dry"}`)
	wantCode(t, r, http.StatusOK)
	reqs := fx.runner.requests()
	if len(reqs) != 1 || !reqs[0].DryRun {
		t.Fatalf("runner got %+v; want one dry-run request", reqs)
	}
	var resp RunResponse
	json.Unmarshal(r.body, &resp)
	if !resp.DryRun || resp.Result != audit.ResultDryRun || resp.Steps[0].Status != "dry_run" || !resp.Steps[0].DryRun {
		t.Errorf("response %s", r.body)
	}
	if rec := fx.lastAudit(t); !rec.DryRun || rec.Result != audit.ResultDryRun || rec.Why != "manual run via API" {
		t.Errorf("audit record %+v", rec)
	}
}

func TestRunIdempotent(t *testing.T) {
	fx := newFixture(t)
	var first, second RunResponse
	r := fx.runAs(t, secretCI, "quarantine-agent", runBodyOK)
	wantCode(t, r, http.StatusOK)
	json.Unmarshal(r.body, &first)
	r = fx.runAs(t, secretCI, "quarantine-agent", runBodyOK)
	wantCode(t, r, http.StatusOK)
	json.Unmarshal(r.body, &second)
	if first.DecisionID == "" || second.DecisionID != first.DecisionID || first.Duplicate || !second.Duplicate {
		t.Errorf("first %+v, second %+v; want the same decision, the second a duplicate", first, second)
	}
	fx.runner.mu.Lock()
	execs := fx.runner.execs
	fx.runner.mu.Unlock()
	if execs != 1 {
		t.Errorf("executed %d times; want 1", execs)
	}
	if rec := fx.lastAudit(t); rec.Result != audit.ResultSkipped || rec.DecisionID != first.DecisionID || !strings.Contains(rec.Detail, "duplicate") {
		t.Errorf("audit record of the retry %+v", rec)
	}
	// Another request id is another run, and so is the same request id
	// from another token (keys are per token).
	var other RunResponse
	json.Unmarshal(fx.runAs(t, secretCI, "quarantine-agent", strings.Replace(runBodyOK, "req-1", "req-2", 1)).body, &other)
	if other.DecisionID == first.DecisionID || other.Duplicate {
		t.Errorf("new request_id gave %+v", other)
	}
	json.Unmarshal(fx.runAs(t, secretOncall, "notify-only", runBodyOK).body, &other)
	if k := fx.runner.requests()[3].Key; k != "api:oncall:req-1" {
		t.Errorf("key %q; want it scoped to the token", k)
	}
}

func TestRunBadRequests(t *testing.T) {
	fx := newFixture(t)
	bad := func(body string, code int, want string) {
		t.Helper()
		r := fx.runAs(t, secretCI, "quarantine-agent", body)
		wantCode(t, r, code)
		if !strings.Contains(string(r.body), want) {
			t.Errorf("body %s; want it to mention %q", r.body, want)
		}
		if rec := fx.lastAudit(t); rec.Result != audit.ResultRefused || rec.Actor.TokenName != "ci" {
			t.Errorf("audit record %+v", rec)
		}
	}
	bad(`{"agent_id":"agent-7","request_id":"r","dryrun":true}`, http.StatusBadRequest, `unknown field \"dryrun\"`)
	bad(`{"agent_id":"agent-7"}`, http.StatusBadRequest, "request_id: required")
	bad(`{"agent_id":"agent-7","request_id":"has space"}`, http.StatusBadRequest, "request_id")
	bad(`{"request_id":"r"}`, http.StatusBadRequest, "agent_id: required")
	bad(`{"agent_id":"*global","request_id":"r"}`, http.StatusBadRequest, "no single agent")
	bad(`{"agent_id":"a\u001b[31m","request_id":"r"}`, http.StatusBadRequest, "control character")
	bad(`{"agent_id":"agent-7","request_id":"r"} {}`, http.StatusBadRequest, "after the JSON object")
	bad(`not json`, http.StatusBadRequest, "body")
	// Strict JSON, as ingest reads it: no repeated key (compared the way
	// encoding/json matches fields, so case and Unicode folds count), no
	// raw control character in a string.
	bad(`{"agent_id":"agent-7","request_id":"r","agent_id":"agent-8"}`, http.StatusBadRequest, "appears twice")
	bad(`{"agent_id":"agent-7","request_id":"r","AGENT_ID":"agent-8"}`, http.StatusBadRequest, "appears twice")
	bad(`{"agent_id":"agent-7","request_id":"r","reason":"a","rea\u017fon":"b"}`, http.StatusBadRequest, "appears twice")
	bad("{\"agent_id\":\"agent-7\",\"request_id\":\"r\",\"reason\":\"a\x00b\"}", http.StatusBadRequest, "invalid character")
	bad(`{"agent_id":"a","request_id":"r","reason":"`+strings.Repeat("x", 20<<10)+`"}`, http.StatusRequestEntityTooLarge, "body over 16384 bytes")
	if n := len(fx.runner.requests()); n != 0 {
		t.Errorf("runner called %d times", n)
	}
	if got := testutil.ToFloat64(fx.h.metrics.Requests.WithLabelValues("run", "413")); got != 1 {
		t.Errorf("requests{run,413} = %g; want 1", got)
	}
}

func TestRunOversizedBody(t *testing.T) {
	fx := newFixture(t, func(o *Options) { o.MaxBody = 64 })
	r := fx.runAs(t, secretCI, "quarantine-agent", `{"agent_id":"agent-7","request_id":"r","reason":"`+strings.Repeat("x", 64)+`"}`)
	wantCode(t, r, http.StatusRequestEntityTooLarge)
	if n := len(fx.runner.requests()); n != 0 {
		t.Errorf("runner called %d times", n)
	}
}

func TestRunRunnerErrors(t *testing.T) {
	fx := newFixture(t)
	wantCode(t, fx.runAs(t, secretCI, "no-such-playbook", runBodyOK), http.StatusNotFound) // from playbooks.Plan
	wantCode(t, fx.runAs(t, secretCI, "Bad%20Name", runBodyOK), http.StatusNotFound)       // never reaches the runner
	if n := len(fx.runner.requests()); n != 1 {
		t.Errorf("runner called %d times; want 1", n)
	}

	fx.runner.setErr(fmt.Errorf("agent %q: %w: not in the registry", "agent-7", ErrBadRequest))
	r := fx.runAs(t, secretCI, "quarantine-agent", runBodyOK)
	wantCode(t, r, http.StatusBadRequest)
	if !strings.Contains(string(r.body), "not in the registry") {
		t.Errorf("body %s", r.body)
	}

	fx.runner.setErr(errors.New("ledger at /secret/path: disk full"))
	r = fx.runAs(t, secretCI, "quarantine-agent", runBodyOK)
	wantCode(t, r, http.StatusInternalServerError)
	if strings.Contains(string(r.body), "/secret/path") {
		t.Errorf("internal error leaked to the caller: %s", r.body)
	}
	if rec := fx.lastAudit(t); rec.Result != audit.ResultFailed || !strings.Contains(rec.Detail, "disk full") {
		t.Errorf("audit record %+v", rec)
	}
}

func TestAuditQuery(t *testing.T) {
	fx := newFixture(t)
	ctx := context.Background()
	hostile := "agent-\u009b\u202e"
	for i, agent := range []string{"agent-7", "agent-8", "agent-7", hostile} {
		err := fx.store.Append(ctx, audit.Record{ID: fmt.Sprint("seed", i), AtMs: t0.Add(time.Duration(i-10) * time.Minute).UnixMilli(),
			Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: "revoke", AgentID: agent, IncidentID: "inc", Result: audit.ResultOK})
		if err != nil {
			t.Fatal(err)
		}
	}
	q := "/v1/audit?agent=agent-7&from=" + url.QueryEscape(t0.Add(-time.Hour).Format(time.RFC3339)) + "&to=" + fmt.Sprint(t0.UnixMilli())

	// CanReadAudit is required.
	r := fx.do(t, http.MethodGet, q, "Bearer "+secretCI, "")
	wantCode(t, r, http.StatusForbidden)
	if rec := fx.lastAudit(t); rec.Action != audit.ActionAuditQuery || rec.Result != audit.ResultRefused || rec.Actor.TokenName != "ci" || rec.AgentID != "agent-7" {
		t.Errorf("audit record %+v", rec)
	}
	wantCode(t, fx.do(t, http.MethodGet, q, "", ""), http.StatusUnauthorized)

	r = fx.do(t, http.MethodGet, q, "Bearer "+secretOncall, "")
	wantCode(t, r, http.StatusOK)
	var resp AuditResponse
	if err := json.Unmarshal(r.body, &resp); err != nil {
		t.Fatal(err)
	}
	if len(resp.Records) != 2 || resp.Records[0].ID != "seed0" || resp.Records[1].ID != "seed2" || resp.Truncated {
		t.Errorf("records %+v", resp)
	}
	if rec := fx.lastAudit(t); rec.Result != audit.ResultOK || rec.Actor.TokenName != "oncall" || !strings.Contains(rec.Detail, "2 records") {
		t.Errorf("audit record %+v", rec)
	}

	// limit, truncation, and the default window (24 h before now).
	r = fx.do(t, http.MethodGet, "/v1/audit?limit=2", "Bearer "+secretOncall, "")
	wantCode(t, r, http.StatusOK)
	json.Unmarshal(r.body, &resp)
	if len(resp.Records) != 2 || !resp.Truncated {
		t.Errorf("limit 2: %d records, truncated %v", len(resp.Records), resp.Truncated)
	}
	// Hostile strings come back escaped.
	r = fx.do(t, http.MethodGet, "/v1/audit?agent="+url.QueryEscape(hostile), "Bearer "+secretOncall, "")
	wantCode(t, r, http.StatusOK)
	if !strings.Contains(string(r.body), `agent-\u009b\u202e`) {
		t.Errorf("hostile agent id not escaped: %s", r.body)
	}

	for _, bad := range []string{"?agent_id=agent-7", "?agent=a&agent=b", "?from=yesterday", "?limit=0", "?limit=10001", "?from=2&to=1"} {
		wantCode(t, fx.do(t, http.MethodGet, "/v1/audit"+bad, "Bearer "+secretOncall, ""), http.StatusBadRequest)
	}
	wantCode(t, fx.do(t, http.MethodPost, "/v1/audit", "Bearer "+secretOncall, ""), http.StatusMethodNotAllowed)
	if got := testutil.ToFloat64(fx.h.metrics.Requests.WithLabelValues("other", "405")); got != 1 {
		t.Errorf("requests{other,405} = %g; want 1", got)
	}
}

func TestNewValidatesTokens(t *testing.T) {
	env := map[string]string{"GOOD": secretCI + "-env", "SHORT": "short"}
	mk := func(tokens ...Token) error {
		_, err := New(Options{Tokens: tokens, Runner: &fakeRunner{}, Audit: audit.NewLogger(&audit.MemStore{}, nil, nil),
			Getenv: func(k string) string { return env[k] }})
		return err
	}
	ok := func(tokens ...Token) {
		t.Helper()
		if err := mk(tokens...); err != nil {
			t.Errorf("New(%+v): %v", tokens, err)
		}
	}
	bad := func(want string, tokens ...Token) {
		t.Helper()
		if err := mk(tokens...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(%+v) = %v; want it to mention %q", tokens, err, want)
		}
	}
	ok(Token{Name: "ci", SHA256: strings.ToUpper(HashSecret(secretCI)), AllowedPlaybooks: []string{"*"}})
	ok(Token{Name: "env", SecretEnv: "GOOD", AllowedPlaybooks: []string{"a", "b-c"}}, Token{Name: "reader", Secret: secretCI, CanReadAudit: true})
	bad("tokens: none configured")
	bad("tokens[0].name", Token{Name: "has space", Secret: secretCI})
	bad(`"ci" is also tokens[0]'s name`, Token{Name: "ci", Secret: secretCI}, Token{Name: "ci", Secret: secretOncall})
	bad("exactly one of sha256, secret, secret_env and secret_file (got 0)", Token{Name: "ci"})
	bad("exactly one of sha256, secret, secret_env and secret_file (got 2)", Token{Name: "ci", Secret: secretCI, SHA256: HashSecret(secretCI)})
	bad("(got 2)", Token{Name: "ci", SecretEnv: "GOOD", SecretFile: "/x"})
	dir := t.TempDir()
	goodFile, shortFile := filepath.Join(dir, "good"), filepath.Join(dir, "short")
	if err := os.WriteFile(goodFile, []byte(secretOncall+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shortFile, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok(Token{Name: "file", SecretFile: goodFile})
	bad("same secret as tokens[0]", Token{Name: "a", Secret: secretOncall}, Token{Name: "b", SecretFile: goodFile}) // the newline is trimmed
	bad("tokens[0].secret_file: the secret in "+shortFile+" is 5 bytes", Token{Name: "ci", SecretFile: shortFile})
	bad("tokens[0].secret_file: cannot read the secret: open "+filepath.Join(dir, "nope"), Token{Name: "ci", SecretFile: filepath.Join(dir, "nope")})
	bad("tokens[0].sha256: must be 64 hex digits", Token{Name: "ci", SHA256: "abc"})
	bad("tokens[0].secret: 5 bytes is too short", Token{Name: "ci", Secret: "short"})
	bad(`"MISSING" is not set`, Token{Name: "ci", SecretEnv: "MISSING"})
	bad(`the secret in "SHORT" is 5 bytes`, Token{Name: "ci", SecretEnv: "SHORT"})
	bad("same secret as tokens[0]", Token{Name: "a", Secret: secretCI}, Token{Name: "b", SHA256: HashSecret(secretCI)})
	bad(`allowed_playbooks[1]: "*" must stand alone`, Token{Name: "ci", Secret: secretCI, AllowedPlaybooks: []string{"a", "*"}})
	bad("allowed_playbooks[0]", Token{Name: "ci", Secret: secretCI, AllowedPlaybooks: []string{"Bad Name"}})
	if _, err := New(Options{Tokens: []Token{{Name: "ci", Secret: secretCI}}}); err == nil ||
		!strings.Contains(err.Error(), "runner: required") || !strings.Contains(err.Error(), "audit: required") {
		t.Errorf("New without runner and audit = %v", err)
	}
}

func TestOutcome(t *testing.T) {
	steps := func(rs ...audit.Result) Result {
		res := Result{}
		for _, r := range rs {
			res.Steps = append(res.Steps, StepResult{Status: r})
		}
		return res
	}
	ok := func(r Result, want audit.Result) {
		t.Helper()
		if got := r.Outcome(); got != want {
			t.Errorf("Outcome(%+v) = %s; want %s", r, got, want)
		}
	}
	ok(steps(audit.ResultOK, audit.ResultSkipped), audit.ResultOK)
	ok(steps(audit.ResultOK, audit.ResultNeedsApproval, audit.ResultFailed), audit.ResultFailed)
	ok(steps(audit.ResultNeedsApproval, audit.ResultRefused), audit.ResultRefused)
	ok(steps(audit.ResultOK, audit.ResultNeedsApproval), audit.ResultNeedsApproval)
	dry := steps(audit.ResultDryRun)
	dry.Decision.DryRun = true
	ok(dry, audit.ResultDryRun)
	dry.Duplicate = true
	ok(dry, audit.ResultSkipped)
}

// countingHandler counts log records by level.
type countingHandler struct {
	mu sync.Mutex
	n  map[slog.Level]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n[r.Level]++
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
func (h *countingHandler) count(l slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[l]
}

// A local process without a token sends 3,000 requests over three minutes
// (by the handler's clock, 60 ms apart): past the burst they get 429 with
// Retry-After, the audit gets one row per client and sampling interval
// (never one per request), the log a bounded number of WARN lines, and a
// token's own budget is untouched.
func TestUnauthenticatedFloodIsLimitedAndSampled(t *testing.T) {
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	logs := &countingHandler{n: map[slog.Level]int{}}
	const rate, burst, interval = 5.0, 20, time.Minute
	var lim *clientlimit.Limiter
	fx := newFixture(t, func(o *Options) {
		o.Now = clock
		o.Log = slog.New(logs)
		lim = clientlimit.New(clientlimit.Options{Endpoint: "api", Rate: rate, Burst: burst, SampleInterval: interval,
			Audit: o.Audit, Log: o.Log, Now: clock})
		o.Limit = lim
	})
	const n, step = 3000, 60 * time.Millisecond
	codes := map[int]int{}
	first429 := -1
	for i := 0; i < n; i++ {
		r := fx.do(t, http.MethodPost, "/v1/playbooks/quarantine-agent/run", "", runBodyOK)
		codes[r.code]++
		if r.code == http.StatusTooManyRequests {
			if first429 < 0 {
				first429 = i
			}
			if ra := r.hdr.Get("Retry-After"); ra == "" || ra == "0" {
				t.Fatalf("429 without a usable Retry-After: %q", ra)
			}
		}
		mu.Lock()
		now = now.Add(step)
		mu.Unlock()
	}
	elapsed := time.Duration(n) * step
	// The bucket admits the burst at once and then rate per second.
	maxAdmitted := burst + int(rate*elapsed.Seconds()) + 1
	if codes[http.StatusUnauthorized] > maxAdmitted || codes[http.StatusUnauthorized] < burst {
		t.Errorf("%d requests got through to 401; want between %d and %d", codes[http.StatusUnauthorized], burst, maxAdmitted)
	}
	// The burst drains by 1 - rate*step per request.
	if last := int(burst/(1-rate*step.Seconds())) + 1; first429 < burst || first429 > last {
		t.Errorf("first 429 at request %d; want %d to %d (once the burst is spent)", first429, burst, last)
	}
	if codes[http.StatusUnauthorized]+codes[http.StatusTooManyRequests] != n {
		t.Errorf("codes %v; want only 401 and 429", codes)
	}
	if n := len(fx.runner.requests()); n != 0 {
		t.Errorf("runner called %d times", n)
	}
	// A token has its own bucket: the flood does not lock it out.
	wantCode(t, fx.runAs(t, secretCI, "quarantine-agent", runBodyOK), http.StatusOK)

	lim.Flush(context.Background(), true)
	var rows []audit.Record
	total := 0
	for _, rec := range fx.store.All() {
		if rec.Action != clientlimit.ActionRefused {
			continue
		}
		rows = append(rows, rec)
		var k int
		if _, err := fmt.Sscanf(rec.Detail, "%d api requests refused", &k); err != nil {
			t.Fatalf("row %q: %v", rec.Detail, err)
		}
		total += k
	}
	// One client: one row per interval that saw refusals, plus the
	// partial one flushed at the end.
	bound := int(elapsed/interval) + 1
	if len(rows) == 0 || len(rows) > bound {
		t.Errorf("%d sampled rows for %d refused requests over %s; want 1 to %d", len(rows), n, elapsed, bound)
	}
	if total != n {
		t.Errorf("rows count %d refusals; want %d (every one counted)", total, n)
	}
	if all := len(fx.store.All()); all != len(rows)+1 {
		t.Errorf("%d audit records; want the %d sampled rows and the token's run", all, len(rows))
	}
	// WARN: the first refusal of each interval and each interval's row.
	if w := logs.count(slog.LevelWarn); w > 2*bound {
		t.Errorf("%d WARN lines for %d refused requests; want at most %d", w, n, 2*bound)
	}
	t.Logf("%d requests: %v; %d audit rows, %d WARN lines", n, codes, len(rows), logs.count(slog.LevelWarn))
	if got := testutil.ToFloat64(fx.h.metrics.Requests.WithLabelValues("run", "429")); int(got) != codes[http.StatusTooManyRequests] {
		t.Errorf("api_requests_total{code=429} = %v; want %d", got, codes[http.StatusTooManyRequests])
	}
}
