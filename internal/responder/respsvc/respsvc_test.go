package respsvc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/bus/membus"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/embedstore"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

const alertPlaybook = `
playbooks:
  - name: alert
    trigger: {kinds: [behaviour]}
    final: true
    steps:
      - notify: {channel: "#soc-alerts"}
`

// testConfig is the default configuration on a temporary state
// directory, with no listener: nothing in it reaches the network.
func testConfig(t *testing.T, brokers ...string) config.Config {
	t.Helper()
	cfg, err := config.LoadEnv("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.Brokers = brokers
	cfg.HTTP.Addr, cfg.Responder.APIAddr = "", ""
	cfg.Responder.StateDir = t.TempDir()
	cfg.Responder.GroupWait = 0
	return cfg
}

func testStores(t *testing.T) *respond.Deps {
	t.Helper()
	set, err := playbooks.Parse("test.yaml", []byte(alertPlaybook))
	if err != nil {
		t.Fatal(err)
	}
	return &respond.Deps{Set: set, Console: io.Discard}
}

func noSecrets(string) string { return "" }

// TestNewConsumesFromReader builds the distributed responder on files and
// an in-process bus, as the benchmark's in-process test does, and checks
// that an anomaly written to the topic is alerted.
func TestNewConsumesFromReader(t *testing.T) {
	cfg := testConfig(t, "127.0.0.1:1") // distributed, but Stores and Reader replace every client
	b := membus.New(0)
	defer b.Close()
	b.CreateTopic(cfg.Kafka.AnomaliesTopic, 2)
	rd, err := b.Reader(cfg.Kafka.ResponderGroup, cfg.Kafka.AnomaliesTopic)
	if err != nil {
		t.Fatal(err)
	}
	wrapped := false
	r, err := New(t.Context(), cfg, Options{
		Stores: testStores(t), Reader: rd, Getenv: noSecrets,
		Registry: respond.RegistryFunc(func() *inventory.Registry { return nil }),
		WrapSeen: func(s outbox.Seen) outbox.Seen { wrapped = true; return s },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Consumer == nil || r.Service.Console == nil {
		t.Fatalf("consumer %v, console %v: want both", r.Consumer, r.Service.Console)
	}
	if wrapped {
		t.Error("WrapSeen called without a shared handled set")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	start := time.Now().Truncate(time.Minute).Add(-time.Minute)
	a := anomaly.Anomaly{V: anomaly.Version, ID: anomaly.ID("a1", start.UnixMilli(), anomaly.Behaviour), AgentID: "a1", Kind: anomaly.Behaviour,
		WindowStartMs: start.UnixMilli(), WindowEndMs: start.Add(time.Minute).UnixMilli(), Score: 9, Severity: "high", Summary: "a1 pulled 40x its usual bytes"}
	v, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Writer(cfg.Kafka.AnomaliesTopic).Write(ctx, bus.Message{Key: []byte(a.AgentID), Value: v}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.Service.Console.Posts()["#soc-alerts"] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no alert within 10s of the anomaly's write")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}

// TestNewEmbeddedWithoutReader: the embedded mode has no consumer; the
// caller hands anomalies to the engine, and Run stops with its context.
func TestNewEmbeddedWithoutReader(t *testing.T) {
	cfg := testConfig(t)
	r, err := New(t.Context(), cfg, Options{Stores: testStores(t), Getenv: noSecrets})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Consumer != nil {
		t.Fatal("embedded responder without a Reader has a consumer")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := r.Run(ctx); err != nil {
		t.Fatalf("Run on a cancelled context: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestNewBadConfigReleasesState: a failed New closes the files it opened,
// so the state directory is free for the next one.
func TestNewBadConfigReleasesState(t *testing.T) {
	cfg := testConfig(t)
	cfg.Responder.EgressAllow = []string{"not an address["}
	if _, err := New(t.Context(), cfg, Options{Stores: testStores(t), Getenv: noSecrets}); err == nil {
		t.Fatal("New with a bad responder.egress_allow: nil error")
	}
	cfg.Responder.EgressAllow = nil
	r, err := New(t.Context(), cfg, Options{Stores: testStores(t), Getenv: noSecrets})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}

func TestFailpointUnset(t *testing.T) {
	t.Setenv("RESPONDER_FAILPOINT", "")
	if Failpoint(nil) != nil {
		t.Fatal("Failpoint without RESPONDER_FAILPOINT is armed")
	}
	t.Setenv("RESPONDER_FAILPOINT", "something-else:x")
	if Failpoint(nil) != nil {
		t.Fatal("Failpoint with an unknown RESPONDER_FAILPOINT is armed")
	}
}

// TestFailpointIgnoresOtherKinds: an armed failpoint hangs only on the
// kinds it names, so "pause-after-post" lets a revocation through and the
// other way round. (Hanging itself is what the crash tests exercise.)
func TestFailpointIgnoresOtherKinds(t *testing.T) {
	for _, tc := range []struct{ spec, other string }{
		{"pause-after-revoke:", "notify"},
		{"pause-after-post:", "revoke"},
		{"pause-after-post:", "quarantine"},
	} {
		marker := filepath.Join(t.TempDir(), "paused")
		t.Setenv("RESPONDER_FAILPOINT", tc.spec+marker)
		fp := Failpoint(slog.New(slog.DiscardHandler))
		if fp == nil {
			t.Fatalf("%s is not armed", tc.spec)
		}
		fp(tc.other, "k") // returns: not its kind
		if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s fired on kind %s", tc.spec, tc.other)
		}
	}
}

// TestFailpointsArmOnePoint checks each form arms its own hook only, and
// that a point another process reached first (its marker exists) does not
// hang this one.
func TestFailpointsArmOnePoint(t *testing.T) {
	for _, tc := range []struct {
		point                 string
		kind                  string
		before, after, commit bool
	}{
		{"pause-before-revoke", "revoke", true, false, false},
		{"hold-before-revoke", "revoke", true, false, false},
		{"pause-after-revoke", "revoke", false, true, false},
		{"pause-after-post", "notify", false, true, false},
		{"pause-before-commit", "", false, false, true},
		{"pause-nowhere", "", false, false, false},
	} {
		t.Run(tc.point, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "marker")
			t.Setenv("RESPONDER_FAILPOINT", tc.point+":"+marker)
			h := Failpoints(nil)
			if (h.BeforeAction != nil) != tc.before || (h.AfterAction != nil) != tc.after || (h.BeforeCommit != nil) != tc.commit {
				t.Fatalf("armed before-action %v, after-action %v, before-commit %v; want %v %v %v",
					h.BeforeAction != nil, h.AfterAction != nil, h.BeforeCommit != nil, tc.before, tc.after, tc.commit)
			}
			if err := os.WriteFile(marker, []byte("another process"), 0o644); err != nil {
				t.Fatal(err)
			}
			// Reached first elsewhere: each armed hook must return.
			if h.BeforeAction != nil {
				h.BeforeAction(tc.kind, "k")
			}
			if h.AfterAction != nil {
				h.AfterAction(tc.kind, "k")
			}
			if h.BeforeCommit != nil {
				h.BeforeCommit()
			}
			if b, _ := os.ReadFile(marker); string(b) != "another process" {
				t.Errorf("the marker was rewritten: %q", b)
			}
		})
	}
}

// TestHoldBeforeRevokeGoesOnOnceItsMarkerIsRemoved: the hold point waits
// at the action until the test removes its marker, then lets it run.
func TestHoldBeforeRevokeGoesOnOnceItsMarkerIsRemoved(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "marker")
	t.Setenv("RESPONDER_FAILPOINT", "hold-before-revoke:"+marker)
	h := Failpoints(nil)
	done := make(chan struct{})
	go func() {
		h.BeforeAction("revoke", "key-1")
		close(done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(marker); err == nil && strings.HasSuffix(string(b), "key-1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hold point never wrote its marker")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-done:
		t.Fatal("the hold point went on while its marker was there")
	case <-time.After(100 * time.Millisecond):
	}
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the hold point did not go on once its marker was removed")
	}
}

// TestNewServesVisibility: in the embedded mode, a token with
// can_read_inventory asks the API about the data dir's traffic, and the
// question is on the responder's audit trail under the token's name.
func TestNewServesVisibility(t *testing.T) {
	cfg := testConfig(t)
	cfg.Embedded.DataDir = t.TempDir()
	es, err := embedstore.Open(filepath.Join(cfg.Embedded.DataDir, "events"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := es.InsertEvents(t.Context(), []event.Event{{EventID: "e1", AgentID: "cs-1", Route: "/customers/{id}",
		EventTimeMs: now.Add(-time.Hour).UnixMilli(), Status: 200, RequestID: "req-1"}}); err != nil {
		t.Fatal(err)
	}
	es.Close()
	const secret = "auditor-0123456789abcdef0123456789abcdef"
	cfg.Responder.Tokens = []config.APIToken{{Name: "auditor", SecretEnv: "AUDITOR_TOKEN", CanReadInventory: true}}
	r, err := New(t.Context(), cfg, Options{Stores: testStores(t), Getenv: func(k string) string {
		if k == "AUDITOR_TOKEN" {
			return secret
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	srv := httptest.NewServer(r.Service.Handler)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/access?template=/customers/**", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"SampleRequestIDs":["req-1"]`) {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	fs, err := audit.OpenFileStore(filepath.Join(cfg.Responder.StateDir, respond.AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := fs.Query(t.Context(), audit.Filter{Action: audit.ActionAsk})
	if err != nil || len(recs) != 1 || recs[0].Actor.TokenName != "auditor" || !strings.HasPrefix(recs[0].Detail, "access template=") {
		t.Fatalf("audit %+v, %v", recs, err)
	}
}
