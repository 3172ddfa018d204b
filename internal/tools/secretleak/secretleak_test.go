package secretleak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/agentwatch/agentwatch/internal/detector/detect"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"

	"github.com/agentwatch/agentwatch/internal/ingest"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/syncbuf"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// A channel is one way a secret reaches the configuration.
type channel string

const (
	inFile     channel = "file"      // the key in the YAML file
	inFileFile channel = "file_file" // KEY_file in the YAML file
	inEnv      channel = "env"       // AGENTWATCH_KEY
	inEnvFile  channel = "env_file"  // AGENTWATCH_KEY_FILE
	inFlag     channel = "flag"      // --KEY
	inFlagFile channel = "flag_file"
	inNamedEnv channel = "named_env" // the variable a *_env key names (Slack, Kong)
)

// secret is one secret key, its value and the channels it can take.
type secret struct {
	key   string
	value string
	named bool // has a *_env key naming a variable
}

// recorder is a reverse proxy in front of a test server that keeps the
// request headers, so the test can tell that a secret was used.
type recorder struct {
	srv    *httptest.Server
	mu     sync.Mutex
	hdr    []http.Header
	bodies []string
}

func newRecorder(t *testing.T, target string) *recorder {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	r := &recorder{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
		r.mu.Lock()
		r.hdr = append(r.hdr, req.Header.Clone())
		r.bodies = append(r.bodies, string(body))
		r.mu.Unlock()
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// saw reports whether a request carried value in the header name or, for
// name "", in its body (form-encoded).
func (r *recorder) saw(name, value string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, h := range r.hdr {
		if (name != "" && strings.Contains(h.Get(name), value)) || (name == "" && strings.Contains(r.bodies[i], url.QueryEscape(value))) {
			return true
		}
	}
	return false
}

func (r *recorder) host() string { u, _ := url.Parse(r.srv.URL); return u.Host }

func TestNoSecretInLogsErrorsOrConfigShow(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	secrets := []secret{
		{key: "clickhouse.password", value: "ch-pw-4b1d7e0c9f2a"},
		{key: "responder.slack.token", value: "xoxb-slack-token-9a8b7c6d5e", named: true},
		{key: "responder.slack.signing_secret", value: "slack-signing-secret-0f1e2d3c4b5a69788796", named: true},
		{key: "responder.kong.token", value: "kong-admin-token-5e6f7a8b9c", named: true},
		{key: "responder.ledger_key", value: id.String()},
		{key: "kafka.sasl.password", value: "kafka-sasl-pw-7c3e9a1b5d"},
	}
	plans := [][]channel{
		{inFileFile, inEnv, inEnvFile, inFile, inFlagFile, inFlag},
		{inEnv, inNamedEnv, inFlag, inNamedEnv, inEnvFile, inFileFile},
		{inFlagFile, inFileFile, inNamedEnv, inEnvFile, inFile, inEnv},
		{inFile, inFlagFile, inFile, inFlag, inEnv, inEnvFile},
	}
	for i, plan := range plans {
		t.Run(fmt.Sprint("plan", i), func(t *testing.T) {
			for j, s := range secrets {
				if plan[j] == inNamedEnv && !s.named {
					t.Fatalf("%s has no *_env key", s.key)
				}
			}
			runPlan(t, secrets, plan)
		})
	}
}

func runPlan(t *testing.T, secrets []secret, plan []channel) {
	ctx := t.Context()
	dir := t.TempDir()
	kongKey := "kong-credential-key-3c2b1a"
	apiSecret := "api-token-secret-0123456789abcdef0123456789abcdef"
	webhookAuth := "Bearer webhook-credential-77aa88bb"
	values := []string{kongKey, apiSecret, webhookAuth}

	slack, kong := testsrv.NewSlack(), testsrv.NewKong()
	t.Cleanup(slack.Close)
	t.Cleanup(kong.Close)
	kong.Add("agent-1", "cred-1", kongKey)
	slackRec, kongRec := newRecorder(t, slack.URL()), newRecorder(t, kong.URL())
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(hook.Close)
	hookRec := newRecorder(t, hook.URL)
	hookFile := filepath.Join(dir, "webhook-auth")
	if err := os.WriteFile(hookFile, []byte(webhookAuth+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Half the plans give the webhook's credential in the file, half from
	// a file of its own.
	revokeHook := map[string]any{"url": hookRec.srv.URL + "/revoke/{{.CredentialID}}"}
	if plan[0] == inFile || plan[0] == inFileFile {
		revokeHook["header"] = map[string]string{"Authorization": webhookAuth}
	} else {
		revokeHook["header_file"] = map[string]string{"Authorization": hookFile}
	}

	apiFile := filepath.Join(dir, "api-token")
	if err := os.WriteFile(apiFile, []byte(apiSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tree := map[string]any{
		"log":        map[string]any{"level": "debug"},
		"http":       map[string]any{"addr": ""},
		"clickhouse": map[string]any{"addr": []string{"127.0.0.1:1"}, "dial_timeout": "1s"},
		"responder": map[string]any{
			"state_dir":    filepath.Join(dir, "state"),
			"api_addr":     "",
			"egress_allow": []string{kongRec.host(), slackRec.host(), hookRec.host()},
			"group_wait":   "0s",
			"tokens":       []map[string]any{{"name": "soc", "secret_file": apiFile, "can_read_audit": true}},
			"webhooks":     map[string]any{"revoke": revokeHook},
			"slack":        map[string]any{"api_url": slackRec.srv.URL + "/"},
			"kong":         map[string]any{"admin_url": kongRec.srv.URL},
		},
	}
	set := func(key, val string) {
		parts := strings.Split(key, ".")
		m := tree
		for _, p := range parts[:len(parts)-1] {
			if m[p] == nil {
				m[p] = map[string]any{}
			}
			m = m[p].(map[string]any)
		}
		m[parts[len(parts)-1]] = val
	}
	var environ, args []string
	named := map[string]string{}
	for j, s := range secrets {
		values = append(values, s.value)
		file := filepath.Join(dir, fmt.Sprintf("secret-%d", j))
		if err := os.WriteFile(file, []byte(s.value+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := "AGENTWATCH_" + strings.ToUpper(strings.ReplaceAll(s.key, ".", "_"))
		switch plan[j] {
		case inFile:
			set(s.key, s.value)
		case inFileFile:
			set(s.key+"_file", file)
		case inEnv:
			environ = append(environ, env+"="+s.value)
		case inEnvFile:
			environ = append(environ, env+"_FILE="+file)
		case inFlag:
			args = append(args, "--"+s.key+"="+s.value)
		case inFlagFile:
			args = append(args, "--"+s.key+"_file="+file)
		case inNamedEnv:
			v := "TEST_" + strings.ToUpper(strings.ReplaceAll(s.key, ".", "_"))
			set(s.key+"_env", v)
			named[v] = s.value
		}
	}
	text, err := yaml.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "agentwatch.yaml")
	if err := os.WriteFile(path, text, 0o600); err != nil {
		t.Fatal(err)
	}

	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	config.Flags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadEnv(path, fs, environ)
	if err != nil {
		t.Fatalf("load: %v\n%s", err, text)
	}

	var out syncbuf.Buffer // everything that must not hold a secret
	var show bytes.Buffer
	if err := config.WriteEffective(&show, cfg); err != nil {
		t.Fatal(err)
	}
	out.Write(show.Bytes())
	log := slog.New(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	getenv := func(k string) string { return named[k] }

	// The responder, in the embedded mode (no Kafka), with Slack and Kong.
	r, err := respsvc.New(ctx, cfg, respsvc.Options{Log: log, Getenv: getenv})
	if err != nil {
		t.Fatalf("responder: %v", err)
	}
	defer r.Close()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	a := anomaly.Anomaly{V: 1, ID: "an-1", AgentID: "agent-1", CredentialID: "cred-1", Kind: anomaly.AgentFlood, Severity: "high", Score: 10,
		WindowStartMs: time.Now().Add(-time.Minute).UnixMilli(), WindowEndMs: time.Now().UnixMilli(), Summary: "ids minted", DetectedMs: time.Now().UnixMilli()}
	if _, err := r.Service.Engine.Handle(ctx, a); err != nil {
		t.Fatalf("handle: %v", err)
	}
	deadline := time.After(30 * time.Second)
	for len(slack.Posts()) == 0 {
		select {
		case <-slack.Changes():
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("no Slack post in 30s")
		}
	}
	// The HTTP API with the token, once right and once wrong.
	for _, tok := range []string{apiSecret, "wrong-token-wrong-token-wrong-token-wrong"} {
		req := httptest.NewRequest(http.MethodGet, "/v1/audit", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		r.Service.Handler.ServeHTTP(rec, req)
		fmt.Fprintf(&out, "api %d %s\n", rec.Code, rec.Body.String())
		if want := map[bool]int{true: 200, false: 401}[tok == apiSecret]; rec.Code != want {
			t.Fatalf("GET /v1/audit = %d, want %d: %s", rec.Code, want, rec.Body.String())
		}
	}
	// A Slack interaction with a bad signature.
	req := httptest.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader("payload=%7B%7D"))
	req.Header.Set("X-Slack-Request-Timestamp", fmt.Sprint(time.Now().Unix()))
	req.Header.Set("X-Slack-Signature", "v0=00")
	rec := httptest.NewRecorder()
	r.Service.Handler.ServeHTTP(rec, req)
	fmt.Fprintf(&out, "slack %d %s\n", rec.Code, rec.Body.String())
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("bad signature = %d", rec.Code)
	}
	cancel()
	if err := <-done; err != nil && err != context.Canceled {
		t.Fatalf("responder run: %v", err)
	}

	// Revoke and restore through Kong, as responder restore does.
	guards, _, err := respond.Guards(cfg, getenv, log)
	if err != nil {
		t.Fatalf("guards: %v", err)
	}
	tg := revoke.Target{CredentialID: "cred-1", AgentID: "agent-1", Consumer: "agent-1", IncidentID: "inc-1", Origin: revoke.Manual}
	if _, err := guards["kong"].Revoke(ctx, tg); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if res, err := guards["kong"].Restore(ctx, tg); err != nil || res.Status != revoke.StatusRestored {
		t.Fatalf("restore: %+v, %v", res, err)
	}
	if _, err := guards["webhook"].Revoke(ctx, tg); err != nil {
		t.Fatalf("webhook revoke: %v", err)
	}
	ledger, err := os.ReadFile(filepath.Join(cfg.Responder.StateDir, "revocations.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	out.Write(ledger)
	// A kept key would sit base64-encoded in a saved field: decode them.
	for _, line := range bytes.Split(bytes.TrimSpace(ledger), []byte("\n")) {
		var d struct {
			Saved []byte `json:"saved"`
		}
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatalf("ledger line %q: %v", line, err)
		}
		out.Write(d.Saved)
	}

	// Ingest and the detector, up to where they reach ClickHouse (nothing
	// listens on its address): their errors and logs.
	kcfg := cfg
	kcfg.Kafka.Brokers = []string{"127.0.0.1:1"}
	kcfg.Kafka.CreateTopics = false
	if _, err := ingest.NewService(ctx, kcfg, log, prometheus.NewRegistry()); err == nil {
		t.Fatal("ingest started without ClickHouse")
	} else {
		fmt.Fprintf(&out, "ingest: %v\n", err)
	}
	if _, err := detect.NewService(ctx, kcfg, log, prometheus.NewRegistry()); err == nil {
		t.Fatal("detector started without ClickHouse")
	} else {
		fmt.Fprintf(&out, "detector: %v\n", err)
	}
	// Kafka's start-up check with SASL on, against a closed port: its
	// error and its warning (SASL without TLS) must name no password.
	if cfg.Kafka.SASL.Password != "kafka-sasl-pw-7c3e9a1b5d" {
		t.Errorf("the Kafka SASL password never reached the configuration")
	}
	kcfg.Kafka.SASL.Mechanism, kcfg.Kafka.SASL.Username = "scram-sha-512", "agentwatch-ingest"
	if _, err := kafka.Connect(ctx, kcfg.Kafka, log); err == nil {
		t.Fatal("connected to Kafka on a closed port")
	} else {
		fmt.Fprintf(&out, "kafka: %v\n", err)
	}
	if _, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log); err == nil {
		t.Fatal("opened ClickHouse on a closed port")
	} else {
		fmt.Fprintf(&out, "chstore: %v\n", err)
	}

	// The secrets were used...
	if !slackRec.saw("Authorization", secrets[1].value) && !slackRec.saw("", secrets[1].value) {
		t.Error("the Slack token never reached Slack")
	}
	if !kongRec.saw("Kong-Admin-Token", secrets[3].value) {
		t.Error("the Kong admin token never reached Kong")
	}
	if !hookRec.saw("Authorization", webhookAuth) {
		t.Error("the webhook's credential never reached the webhook")
	}
	if !kong.Has("cred-1") {
		t.Error("the restore did not bring the credential back")
	}
	// ...and none was written anywhere else.
	all := out.String()
	for _, v := range values {
		if strings.Contains(all, v) {
			t.Errorf("secret %.12q... appears in the logs, errors, config show or the ledger", v)
		}
	}
	for _, want := range []string{`"msg":"revoke done"`, `"msg":"responder started"`, `"saved_age":`, "password: " + config.SecretMask, "ledger_key: " + config.SecretMask} {
		if !strings.Contains(all, want) {
			t.Errorf("the capture lacks %q: it is not what the test means to search", want)
		}
	}
	if t.Failed() {
		t.Logf("config:\n%s\ncapture:\n%s", text, all)
	}
}
