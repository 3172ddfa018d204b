package console

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// The browser tests drive Debian's headless chromium with chromedp: one
// browser for the package, each test in its own tabs. Without chromium
// they skip, unless REQUIRE_INTEGRATION or REQUIRE_BROWSER is set (make
// test sets REQUIRE_BROWSER for the unit tests, after deploy/test-tools.sh
// installed chromium): then they fail.

var updateScreenshots = flag.Bool("update-screenshots", false, "write the overview and agent screenshots to docs/img")

// chromiumPath is Debian's chromium (deploy/test-tools.sh installs it).
const chromiumPath = "/usr/bin/chromium"

var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel func()
	err    error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel()
	}
	os.Exit(code)
}

// browserCtx returns the shared browser's context, starting it once.
func browserCtx(t *testing.T) context.Context {
	t.Helper()
	browser.once.Do(func() {
		path := chromiumPath
		if env := os.Getenv("CHROMIUM_PATH"); env != "" {
			path = env // and nothing else: the run asked for this one
			if _, err := os.Stat(path); err != nil {
				browser.err = fmt.Errorf("CHROMIUM_PATH %s: %w", path, err)
				return
			}
		} else if _, err := os.Stat(path); err != nil {
			if p, lerr := exec.LookPath("chromium"); lerr == nil {
				path = p
			} else {
				browser.err = fmt.Errorf("chromium not found at %s or on PATH (apt-get install chromium; deploy/test-tools.sh does it)", chromiumPath)
				return
			}
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
			chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
		actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, bcancel := chromedp.NewContext(actx)
		if err := chromedp.Do(bctx); err != nil { // starts the browser
			bcancel()
			acancel()
			browser.err = fmt.Errorf("start chromium: %w", err)
			return
		}
		browser.ctx, browser.cancel = bctx, func() { bcancel(); acancel() }
	})
	if browser.err != nil {
		if os.Getenv("REQUIRE_INTEGRATION") != "" || os.Getenv("REQUIRE_BROWSER") != "" {
			t.Fatalf("browser test needs chromium (REQUIRE_INTEGRATION or REQUIRE_BROWSER is set): %v", browser.err)
		}
		t.Skipf("no browser: %v", browser.err)
	}
	return browser.ctx
}

// tab is one browser tab with what it saw: document statuses, console and
// log entries (CSP violations are reported there), dialogs.
type tab struct {
	t      *testing.T
	ctx    context.Context
	mu     sync.Mutex
	status map[string]int64
	logs   []string
	dialog []string
}

func newTab(t *testing.T) *tab {
	t.Helper()
	tb := &tab{t: t, status: map[string]int64{}}
	ctx, cancel := chromedp.NewContext(browserCtx(t), chromedp.WithListener(tb.listen))
	ctx, tcancel := context.WithTimeout(ctx, 30*time.Second)
	t.Cleanup(func() { tcancel(); cancel() })
	tb.ctx = ctx
	if err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		if _, err := cdp.Call(ctx, t, network.Enable, network.EnableParams{}); err != nil {
			return err
		}
		if _, err := cdp.Call(ctx, t, cdplog.Enable, cdp.Empty{}); err != nil {
			return err
		}
		if _, err := cdp.Call(ctx, t, runtime.Enable, cdp.Empty{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, t, page.Enable, page.EnableParams{})
		return err
	})); err != nil {
		t.Fatal(err)
	}
	return tb
}

// listen runs in the tab's message loop: it only notes what it sees (a
// dialog is dismissed from another goroutine).
func (tb *tab) listen(ev any) {
	{
		tb.mu.Lock()
		defer tb.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventResponseReceived:
			if ev.Type == network.ResourceTypeDocument {
				tb.status[ev.Response.URL] = ev.Response.Status
			}
		case *cdplog.EventEntryAdded:
			tb.logs = append(tb.logs, string(ev.Entry.Source)+" "+string(ev.Entry.Level)+": "+ev.Entry.Text)
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value))
			}
			tb.logs = append(tb.logs, "console "+string(ev.Type)+": "+strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			tb.logs = append(tb.logs, "exception: "+ev.ExceptionDetails.Text)
		case *page.EventJavascriptDialogOpening:
			tb.dialog = append(tb.dialog, ev.Message)
			go func() {
				_, _ = chromedp.Call(tb.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
			}()
		}
	}
}

func (tb *tab) run(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, actions...); err != nil {
		tb.t.Fatal(err)
	}
}

// get runs one action of the tab and returns its value.
func get[T any](tb *tab, a chromedp.Action[T]) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, a)
	if err != nil {
		tb.t.Fatal(err)
	}
	return v
}

// clean fails the test on any log entry (a CSP violation is one) or
// dialog seen so far.
func (tb *tab) clean() {
	tb.t.Helper()
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, l := range tb.logs {
		tb.t.Errorf("browser log: %s", l)
	}
	for _, d := range tb.dialog {
		tb.t.Errorf("a dialog opened: %q", d)
	}
	tb.logs, tb.dialog = nil, nil
}

func (tb *tab) statusOf(url string) int64 {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.status[url]
}

// signIn signs the tab's browser in through the sign-in form.
func (tb *tab) signIn(base, secret string) {
	tb.t.Helper()
	tb.run(chromedp.Navigate(base+"/console/signin"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), secret), chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.CSS("form.who span")))
	if who := get(tb, chromedp.Text(chromedp.CSS("form.who span"))); who == "" {
		tb.t.Fatal("not signed in")
	}
}

// texts returns the text of every element sel selects.
func (tb *tab) texts(sel string) []string {
	tb.t.Helper()
	return get(tb, chromedp.Evaluate[[]string](fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).map(e => e.textContent)`, sel)))
}

func (tb *tab) count(sel string) int {
	tb.t.Helper()
	return get(tb, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
}

func screenshotDir(t *testing.T) string {
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "agentwatch-console-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBrowserPagesLoad(t *testing.T) {
	f := newFixture()
	f.clean = true // the documentation's screenshots show an ordinary fleet
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "agentwatch-2026-03.html"), []byte("<h1>March</h1>"), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "agentwatch-2026-03.pdf"), []byte("%PDF-1.4"), 0o600)
	base := testServer(t, f, func(o *Options) { o.ReportsDir = dir }).URL
	tb := newTab(t)
	tb.signIn(base, secretAdmin)
	shots := screenshotDir(t)
	pages := []struct{ name, path, want string }{
		{"overview", "/console/", "Open incidents"},
		{"incidents", "/console/incidents", "inc-1"},
		{"incident", "/console/incident?id=inc-1", "billing-bot read 40x"},
		{"agents", "/console/agents", "billing-bot"},
		{"agent", "/console/agent?id=billing-bot", "Observed versus baseline"},
		{"inventory", "/console/inventory", "/v1/customers/{id}"},
		{"findings", "/console/findings", "unused_grant"},
		{"access", "/console/access?from=2026-03-15T00%3A00&to=2026-03-16T00%3A00&tag=pii", "support-bot"},
		{"reports", "/console/reports", "agentwatch-2026-03.pdf"},
	}
	for _, p := range pages {
		tb.run(chromedp.Navigate(base+p.path), chromedp.WaitReady(chromedp.CSS("footer")))
		text := get(tb, chromedp.Text(chromedp.CSS("main")))
		png := get(tb, chromedp.FullScreenshot(100))
		if got := tb.statusOf(base + p.path); got != http.StatusOK {
			t.Errorf("%s: status %d, want 200", p.name, got)
		}
		if !strings.Contains(text, p.want) {
			t.Errorf("%s: %q not on the page:\n%.500s", p.name, p.want, text)
		}
		if err := os.WriteFile(filepath.Join(shots, "console-"+p.name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		if *updateScreenshots && (p.name == "overview" || p.name == "agent") {
			if err := os.WriteFile(filepath.Join("..", "..", "docs", "img", "console-"+p.name+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The stylesheet was applied: CSP allows 'self' styles.
	tb.run(chromedp.Navigate(base+"/console/"), chromedp.WaitReady(chromedp.CSS("header")))
	if bg := get(tb, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("header")).backgroundColor`)); bg != "rgb(29, 35, 48)" {
		t.Errorf("header background %q: the stylesheet did not load", bg)
	}
	// The feature plots are inline SVG with a band, the expectation and
	// the observed values.
	tb.run(chromedp.Navigate(base+"/console/agent?id=billing-bot"), chromedp.WaitReady(chromedp.CSS("footer")))
	if n := tb.count("figure.plot svg path"); n < 6 {
		t.Errorf("agent page has %d plot paths, want at least 6 (two features, three paths each)", n)
	}
	tb.clean()
	t.Logf("screenshots in %s", shots)
}

// A page that breaks the policy must be reported, or clean() proves
// nothing: an inline style and an inline script are refused.
func TestBrowserSeesCSPViolations(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		fmt.Fprint(w, `<!doctype html><p style="color:red">x</p><script>alert(1)</script>`)
	}))
	defer srv.Close()
	tb := newTab(t)
	tb.run(chromedp.Navigate(srv.URL), chromedp.WaitReady(chromedp.CSS("p")), chromedp.Sleep(200*time.Millisecond))
	tb.mu.Lock()
	defer tb.mu.Unlock()
	n := 0
	for _, l := range tb.logs {
		if strings.Contains(l, "Content Security Policy") {
			n++
		}
	}
	if n == 0 || len(tb.dialog) != 0 {
		t.Fatalf("CSP violations not seen (logs %q, dialogs %q)", tb.logs, tb.dialog)
	}
}

func TestBrowserAccessSearch(t *testing.T) {
	f := newFixture()
	base := testServer(t, f, nil).URL
	tb := newTab(t)
	tb.signIn(base, secretRead)
	tb.run(chromedp.Navigate(base+"/console/access"), chromedp.WaitVisible(chromedp.ID("access-form")),
		chromedp.SetValue(chromedp.ID("from"), "2026-03-15T00:00"), chromedp.SetValue(chromedp.ID("to"), "2026-03-16T00:00"),
		chromedp.SetValue(chromedp.ID("tag"), "pii"), chromedp.Click(chromedp.ID("search")),
		chromedp.WaitVisible(chromedp.ID("access")))
	got := tb.texts("#access tbody tr td:first-child")
	// Who called the pii route on March 15th: report-bot called it on the
	// 13th only.
	if want := []string{"billing-bot", "support-bot", hostileScript}; !sameSet(got, want) {
		t.Fatalf("access rows %q, want %q", got, want)
	}
	calls := tb.texts("#access tbody tr td:nth-child(2)")
	for i, a := range got {
		if a == "billing-bot" && calls[i] != "3" {
			t.Errorf("billing-bot calls %q, want 3", calls[i])
		}
	}
	href := get(tb, chromedp.Evaluate[string](`document.getElementById("csv").getAttribute("href")`))
	if !strings.Contains(href, "/console/access.csv?") || !strings.Contains(href, "tag=pii") {
		t.Errorf("CSV link %q", href)
	}
	tb.clean()
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

func TestBrowserFalsePositiveRoundTrip(t *testing.T) {
	f := newFixture()
	base := testServer(t, f, nil).URL
	tb := newTab(t)
	tb.signIn(base, secretAct)
	tb.run(chromedp.Navigate(base+"/console/incident?id=inc-1"), chromedp.WaitVisible(chromedp.CSS("button.fp")),
		chromedp.Click(chromedp.CSS("button.fp")), chromedp.WaitVisible(chromedp.ID("flash")))
	if flash := get(tb, chromedp.Text(chromedp.ID("flash"))); !strings.Contains(flash, "marked false positive") {
		t.Fatalf("flash %q", flash)
	}
	if tl := get(tb, chromedp.Text(chromedp.ID("timeline"))); !strings.Contains(tl, "false_positive") || !strings.Contains(tl, "api:analyst") {
		t.Fatalf("the timeline does not show the verdict with who gave it:\n%s", tl)
	}
	var rec *audit.Record
	for _, r := range f.mem.All() {
		if r.Action == "false_positive" {
			rec = &r
		}
	}
	if rec == nil || rec.Actor.Name != "analyst" || rec.Actor.Kind != audit.ActorAPI || rec.IncidentID != "inc-1" || rec.AnomalyID != "an-1" {
		t.Fatalf("audit record %+v: want false_positive on inc-1/an-1 by analyst", rec)
	}
	// The incident is closed now.
	tb.run(chromedp.Navigate(base+"/console/incidents"), chromedp.WaitVisible(chromedp.ID("incidents")))
	if state := strings.Join(tb.texts("#incidents tbody tr td:nth-child(3)"), ","); !strings.Contains(state, "closed") {
		t.Errorf("incident states after the verdict: %s", state)
	}
	// A silence from the agent page, with its own audit record.
	tb.run(chromedp.Navigate(base+"/console/agent?id=billing-bot"), chromedp.WaitVisible(chromedp.ID("silence")),
		chromedp.SendKeys(chromedp.CSS(`#silence-form input[name="comment"]`), "maintenance window"),
		chromedp.Click(chromedp.ID("silence")), chromedp.WaitVisible(chromedp.ID("flash")))
	found := false
	for _, r := range f.mem.All() {
		found = found || (r.Action == "silence" && r.Actor.Name == "analyst" && r.Why == "maintenance window" && strings.Contains(r.Detail, "billing-bot"))
	}
	if !found {
		t.Errorf("no silence record by analyst: %+v", f.mem.All())
	}
	tb.clean()
}

func TestBrowserHostileIDsAreText(t *testing.T) {
	f := newFixture()
	base := testServer(t, f, nil).URL
	tb := newTab(t)
	tb.signIn(base, secretAdmin)
	q := url.QueryEscape
	pages := []struct {
		path  string
		wants []string
	}{
		{"/console/", []string{hostileScript, hostileImg}},
		{"/console/agents", []string{hostileScript, hostileImg, hostileSlack}},
		{"/console/inventory", []string{hostileRoute, hostileImg}},
		{"/console/findings", []string{hostileScript, hostileImg, hostileRoute, hostileSlack}},
		{"/console/incidents", []string{"inc-" + hostileScript, hostileImg}},
		{"/console/incident?id=" + q("inc-"+hostileScript), []string{hostileImg, hostileRoute, hostileSlack, hostileScript}},
		{"/console/agent?id=" + q(hostileImg), []string{hostileImg, hostileRoute}},
		{"/console/agent?id=" + q(hostileScript), []string{hostileScript}},
		{"/console/access?from=2026-03-15T00%3A00&to=2026-03-16T00%3A00&template=" + q("/v1/customers/*"), []string{hostileScript}},
	}
	for _, p := range pages {
		tb.run(chromedp.Navigate(base+p.path), chromedp.WaitReady(chromedp.CSS("footer")))
		text := get(tb, chromedp.Text(chromedp.CSS("main")))
		if n := tb.count("img, script, [onerror], [src]"); n != 0 {
			t.Errorf("%s: %d img, script or onerror elements: markup from an id was parsed", p.path, n)
		}
		for _, w := range p.wants {
			if !strings.Contains(text, w) {
				t.Errorf("%s: %q not shown as text:\n%.800s", p.path, w, text)
			}
		}
		if st := tb.statusOf(base + p.path); st != http.StatusOK {
			t.Errorf("%s: status %d", p.path, st)
		}
	}
	// A link to a hostile agent leads to that agent's page.
	tb.run(chromedp.Navigate(base+"/console/agents"), chromedp.WaitVisible(chromedp.ID("agents")),
		chromedp.Click(`//table[@id="agents"]//a[contains(., "onerror")]`), chromedp.WaitVisible(chromedp.ID("agent-id")))
	if h1 := get(tb, chromedp.Text(chromedp.ID("agent-id"))); h1 != hostileImg {
		t.Errorf("agent page heading %q, want %q", h1, hostileImg)
	}
	tb.clean()
}

func TestBrowserForgedPostRefused(t *testing.T) {
	f := newFixture()
	base := testServer(t, f, nil).URL
	tb := newTab(t)
	tb.signIn(base, secretAct)
	// The console's own form with its CSRF token taken out.
	tb.run(chromedp.Navigate(base+"/console/incident?id=inc-1"), chromedp.WaitVisible(chromedp.CSS("button.fp")),
		chromedp.Evaluate[chromedp.Void](`document.querySelector("form.inline input[name=csrf]").remove()`),
		chromedp.Click(chromedp.CSS("button.fp")), chromedp.WaitReady(chromedp.CSS("body")), chromedp.Sleep(200*time.Millisecond))
	if got := tb.statusOf(base + "/console/actions/false-positive"); got != http.StatusForbidden {
		t.Errorf("form without its CSRF token: status %d, want 403", got)
	}
	// A form on another origin posting to the console. 127.0.0.1 on
	// another port is the same site, so the SameSite=Strict cookie goes
	// along and the refusal is the server's (Sec-Fetch-Site: same-site).
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s/console/actions/false-positive"><input type="hidden" name="incident" value="inc-1"><input type="hidden" name="anomaly" value="an-1"><button id="go">win a prize</button></form>`, base)
	}))
	defer evil.Close()
	tb.mu.Lock()
	delete(tb.status, base+"/console/actions/false-positive")
	tb.mu.Unlock()
	tb.run(chromedp.Navigate(evil.URL), chromedp.WaitVisible(chromedp.ID("go")), chromedp.Click(chromedp.ID("go")),
		chromedp.Sleep(300*time.Millisecond), chromedp.WaitReady(chromedp.CSS("body")))
	if got := tb.statusOf(base + "/console/actions/false-positive"); got != http.StatusForbidden {
		t.Errorf("cross-origin form: status %d, want 403", got)
	}
	refused := 0
	for _, r := range f.mem.All() {
		if r.Action == "false_positive" && r.Result == audit.ResultOK {
			t.Fatalf("a forged form took the action: %+v", r)
		}
		if r.Action == "console" && r.Result == audit.ResultRefused {
			refused++
		}
	}
	if refused < 2 {
		t.Errorf("%d refused POSTs audited, want 2", refused)
	}
}

func TestBrowserProxyHeaderFromUntrustedAddress(t *testing.T) {
	for _, tc := range []struct {
		name, trusted string
		signedIn      bool
	}{{"untrusted", "192.0.2.0/24", false}, {"trusted", "127.0.0.0/8", true}} {
		t.Run(tc.name, func(t *testing.T) {
			base := testServer(t, newFixture(), func(o *Options) {
				proxyOpts(o)
				o.Proxy.Trusted = []netip.Prefix{netip.MustParsePrefix(tc.trusted)}
			}).URL
			tb := newTab(t)
			if _, err := chromedp.Call(tb.ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
				Headers: network.Headers{"X-Forwarded-User": "alice", "X-Forwarded-Groups": "secops"}}); err != nil {
				t.Fatal(err)
			}
			tb.run(chromedp.Navigate(base+"/console/"), chromedp.WaitReady(chromedp.CSS("h1")))
			loc := get(tb, chromedp.Location())
			if signedIn := !strings.Contains(loc, "/signin"); signedIn != tc.signedIn {
				t.Fatalf("proxy header from a %s address: at %s, signed in %v", tc.name, loc, signedIn)
			}
			if tc.signedIn {
				if who := get(tb, chromedp.Text(chromedp.CSS("form.who span"))); who != "alice (act)" {
					t.Errorf("signed in as %q, want alice (act)", who)
				}
			}
		})
	}
}
