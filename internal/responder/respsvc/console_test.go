package respsvc

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/embedstore"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

func TestConsoleSharesTheAPISource(t *testing.T) {
	src := visibility.NewMemSource(nil, nil, nil, nil)
	reg := func() *inventory.Registry { return inventory.EmptyRegistry() }
	r := &Responder{visOpened: true, visSrc: src, visReg: reg, visInv: inventory.EmptyInventory}
	d, err := r.console(t.Context(), config.Config{}, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil || d.Source != src || d.Registry == nil || d.Inventory == nil {
		t.Fatalf("console deps %+v, %v: want the API's source and fleet", d, err)
	}
}

// TestNewServesConsole: with console.enabled the responder serves the web
// console on its handler, over the same source as the API, and the
// console's questions go on the responder's audit trail with who asked.
func TestNewServesConsole(t *testing.T) {
	cfg := testConfig(t)
	cfg.Embedded.DataDir = t.TempDir()
	es, err := embedstore.Open(filepath.Join(cfg.Embedded.DataDir, "events"))
	if err != nil {
		t.Fatal(err)
	}
	if err := es.InsertEvents(t.Context(), []event.Event{{EventID: "e1", AgentID: "cs-1", Route: "/customers/{id}",
		EventTimeMs: time.Now().Add(-time.Hour).UnixMilli(), Status: 200, RequestID: "req-1"}}); err != nil {
		t.Fatal(err)
	}
	es.Close()
	const secret = "auditor-0123456789abcdef0123456789abcdef"
	cfg.Responder.Tokens = []config.APIToken{{Name: "auditor", SecretEnv: "AUDITOR_TOKEN", CanReadInventory: true}}
	cfg.Console.Enabled = true
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
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	get := func(p string) string {
		resp, err := c.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`).FindStringSubmatch(get("/console/signin"))
	if m == nil {
		t.Fatal("no sign-in form at /console/signin")
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/console/signin", strings.NewReader(url.Values{"csrf": {m[1]}, "token": {secret}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if page := get("/console/agents"); !strings.Contains(page, "cs-1") || !strings.Contains(page, "auditor (read)") {
		t.Fatalf("agents page:\n%.600s", page)
	}
	fs, err := audit.OpenFileStore(filepath.Join(cfg.Responder.StateDir, respond.AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := fs.Query(t.Context(), audit.Filter{Action: audit.ActionAsk})
	if err != nil || len(recs) == 0 || recs[0].Actor.Name != "auditor" {
		t.Fatalf("audit %+v, %v", recs, err)
	}
}
