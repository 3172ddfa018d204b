package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

const (
	testRegistry = `
agents:
  - id: billing-bot
    owner: payments-team
    role: billing
    approved_routes: ['/v1/customers/{id}']
  - id: support-bot
    role: support
    approved_routes: ['/v1/tickets']
`
	testRoutes = `
routes:
  - template: /v1/customers/{id}
    tags: [pii]
  - template: /v1/invoices
  - template: /v1/reports
    tags: [deprecated]
`
)

// TestBrowserWithService browses a console over the real visibility
// service (on the fixture's MemSource, with a registry and a route
// inventory): every page loads clean, the access question answers, hostile
// ids stay text, and every question is audited with who asked.
func TestBrowserWithService(t *testing.T) {
	f := newFixture()
	reg, err := inventory.ParseRegistry("agents.yaml", []byte(testRegistry))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.ParseRoutes("routes.yaml", []byte(testRoutes))
	if err != nil {
		t.Fatal(err)
	}
	svc := visibility.New(f.src, func() *inventory.Registry { return reg }, func() *inventory.Inventory { return inv }, f.audit,
		visibility.Config{}, func() time.Time { return testNow })
	base := testServer(t, f, func(o *Options) { o.Visibility = svc }).URL
	tb := newTab(t)
	tb.signIn(base, secretRead)
	for _, p := range []struct{ path, want string }{
		{"/console/", "Open incidents"},
		{"/console/agents", "payments-team"},
		{"/console/agent?id=billing-bot", "/v1/invoices"},
		{"/console/agent?id=" + url.QueryEscape(hostileImg), hostileRoute},
		{"/console/inventory", hostileRoute},
		{"/console/findings", hostileScript},
		{"/console/incident?id=inc-1", "billing-bot read 40x"},
	} {
		tb.run(chromedp.Navigate(base+p.path), chromedp.WaitReady(chromedp.CSS("footer")))
		if st := tb.statusOf(base + p.path); st != http.StatusOK {
			t.Errorf("%s: status %d", p.path, st)
		}
		if text := get(tb, chromedp.Text(chromedp.CSS("main"))); !strings.Contains(text, p.want) {
			t.Errorf("%s: %q not shown:\n%.600s", p.path, p.want, text)
		}
		if n := tb.count("img, script, [onerror], [src]"); n != 0 {
			t.Errorf("%s: %d injected elements", p.path, n)
		}
	}
	tb.run(chromedp.Navigate(base+"/console/access"), chromedp.WaitVisible(chromedp.ID("access-form")),
		chromedp.SetValue(chromedp.ID("from"), "2026-03-15T00:00"), chromedp.SetValue(chromedp.ID("to"), "2026-03-16T00:00"),
		chromedp.SetValue(chromedp.ID("tag"), "pii"), chromedp.Click(chromedp.ID("search")),
		chromedp.WaitVisible(chromedp.ID("access")))
	if got, want := tb.texts("#access tbody tr td:first-child"), []string{"billing-bot", "support-bot", hostileScript}; !sameSet(got, want) {
		t.Fatalf("access rows %q, want %q", got, want)
	}
	tb.clean()
	asked := 0
	for _, r := range f.mem.All() {
		if r.Action == audit.ActionAsk && r.Actor.Name == "auditor" {
			asked++
		}
	}
	if asked < 8 {
		t.Errorf("%d questions audited as asked by auditor, want at least 8", asked)
	}
}
