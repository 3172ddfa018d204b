package respond

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

func consoleConfig(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.LoadEnv("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Responder.StateDir = t.TempDir()
	cfg.Responder.APIAddr = "127.0.0.1:0"
	cfg.Responder.Tokens = []config.APIToken{{Name: "alice", SHA256: respapi.HashSecret(strings.Repeat("s", 40)), CanSilence: true}}
	cfg.Console.Enabled = true
	return cfg
}

func TestConsoleMountedAndItsSilenceAudited(t *testing.T) {
	cfg := consoleConfig(t)
	src := visibility.NewMemSource(nil, nil, nil, nil)
	svc, err := Build(cfg, Deps{Getenv: func(string) string { return "" }, WebConsole: ConsoleDeps{Source: src, Registry: inventory.EmptyRegistry}}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	rec := httptest.NewRecorder()
	svc.Handler.ServeHTTP(rec, httptest.NewRequest("GET", "/console/signin", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Header().Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("GET /console/signin: %d, CSP %q", rec.Code, rec.Header().Get("Content-Security-Policy"))
	}
	// The console's silence goes into the responder's silence store and
	// its audit, naming the person.
	who := audit.Actor{Kind: audit.ActorAPI, Name: "alice@example.com"}
	acts := consoleActions{e: svc.Engine, sil: svc.silences, verdicts: svc.Engine, audit: svc.Audit, now: time.Now}
	id, err := acts.Silence(context.Background(), who, `agent_id="a1"`, time.Hour, "maintenance")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range svc.silences.List(false) {
		found = found || (s.ID == id && s.CreatedBy == "api:alice@example.com")
	}
	if !found {
		t.Fatalf("silence %s not in the store: %+v", id, svc.silences.List(false))
	}
	recs, err := svc.Audit.Query(context.Background(), audit.Filter{Action: "silence"})
	if err != nil || len(recs) != 1 || recs[0].Actor.Name != "alice@example.com" || recs[0].Result != audit.ResultOK {
		t.Fatalf("audit %+v, %v", recs, err)
	}
	if err := acts.FalsePositive(context.Background(), who, "no-such-incident", "an-1"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("false positive on an unknown incident: %v", err)
	}
}

func TestConsoleEnabledWithoutSource(t *testing.T) {
	cfg := consoleConfig(t)
	_, err := Build(cfg, Deps{Getenv: func(string) string { return "" }}, nil, prometheus.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), "console.enabled") {
		t.Fatalf("Build = %v, want a console.enabled error", err)
	}
}
