package console

import (
	"context"
	"errors"
	"fmt"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/event"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/clientlimit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
)

// client is a browser-like client of a test server: a cookie jar, no
// automatic redirects, and the same-origin headers a browser sends.
type client struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newClient(t *testing.T, srv *httptest.Server) *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: srv.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *client) do(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if method == http.MethodPost {
		req.Header.Set("Origin", c.base)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var hiddenRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// signIn signs c in with secret and returns the session's CSRF token.
func (c *client) signIn(secret string) string {
	c.t.Helper()
	_, page := c.do("GET", "/console/signin", nil, nil)
	m := hiddenRE.FindStringSubmatch(page)
	if m == nil {
		c.t.Fatalf("sign-in page has no CSRF token:\n%s", page)
	}
	resp, body := c.do("POST", "/console/signin", url.Values{"csrf": {m[1]}, "token": {secret}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		c.t.Fatalf("sign in: %d %s", resp.StatusCode, body)
	}
	_, page = c.do("GET", "/console/", nil, nil)
	m = hiddenRE.FindStringSubmatch(page)
	if m == nil {
		c.t.Fatalf("overview has no CSRF token (not signed in?):\n%.500s", page)
	}
	return m[1]
}

func testServer(t *testing.T, f *fixture, mod func(*Options)) *httptest.Server {
	t.Helper()
	h, err := newTestHandler(f, mod)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/console/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestHeadersAndSignInRedirect(t *testing.T) {
	srv := testServer(t, newFixture(), nil)
	c := newClient(t, srv)
	resp, _ := c.do("GET", "/console/agents", nil, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/console/signin?next=") {
		t.Fatalf("unsigned GET: %d to %q, want 303 to the sign-in page", resp.StatusCode, resp.Header.Get("Location"))
	}
	for k, want := range map[string]string{"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	c.signIn(secretRead)
	for _, p := range []string{"/console/", "/console/incidents", "/console/agents", "/console/inventory", "/console/findings", "/console/access", "/console/reports",
		"/console/agent?id=billing-bot", "/console/incident?id=inc-1"} {
		if resp, body := c.do("GET", p, nil, nil); resp.StatusCode != 200 {
			t.Errorf("GET %s: %d %.300s", p, resp.StatusCode, body)
		}
	}
}

func TestSessionCookie(t *testing.T) {
	srv := testServer(t, newFixture(), nil)
	c := newClient(t, srv)
	_, page := c.do("GET", "/console/signin", nil, nil)
	pre := hiddenRE.FindStringSubmatch(page)[1]
	resp, _ := c.do("POST", "/console/signin", url.Values{"csrf": {pre}, "token": {secretRead}}, nil)
	var sc *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie && ck.Value != "" {
			sc = ck
		}
	}
	if sc == nil || !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/console/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/console/", sc)
	}
	if loc := resp.Header.Get("Location"); loc != "/console/" {
		t.Errorf("after sign-in to %q, want /console/", loc)
	}
}

func TestSignInRefusals(t *testing.T) {
	f := newFixture()
	srv := testServer(t, f, nil)
	for name, tc := range map[string]struct {
		secret   string
		withCSRF bool
		code     int
	}{
		"unknown token":        {"nope-0123456789abcdef0123456789abcdef", true, http.StatusUnauthorized},
		"deny-list-only token": {secretGate, true, http.StatusUnauthorized},
		"no csrf token":        {secretAdmin, false, http.StatusForbidden},
	} {
		t.Run(name, func(t *testing.T) {
			c := newClient(t, srv)
			_, page := c.do("GET", "/console/signin", nil, nil)
			form := url.Values{"token": {tc.secret}}
			if tc.withCSRF {
				form.Set("csrf", hiddenRE.FindStringSubmatch(page)[1])
			}
			resp, _ := c.do("POST", "/console/signin", form, nil)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if resp, _ := c.do("GET", "/console/", nil, nil); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("signed in after a refused sign-in: %d", resp.StatusCode)
			}
		})
	}
}

func TestLoginCSRFFromAnotherSession(t *testing.T) {
	// A token from someone else's sign-in page does not go with my cookie.
	srv := testServer(t, newFixture(), nil)
	a, b := newClient(t, srv), newClient(t, srv)
	_, page := a.do("GET", "/console/signin", nil, nil)
	b.do("GET", "/console/signin", nil, nil)
	resp, _ := b.do("POST", "/console/signin", url.Values{"csrf": {hiddenRE.FindStringSubmatch(page)[1]}, "token": {secretRead}}, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", resp.StatusCode)
	}
}

func TestForgedPostRefused(t *testing.T) {
	f := newFixture()
	srv := testServer(t, f, nil)
	c := newClient(t, srv)
	csrf := c.signIn(secretAct)
	fp := url.Values{"incident": {"inc-1"}, "anomaly": {"an-1"}}
	resp, _ := c.do("POST", "/console/actions/false-positive", fp, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST without CSRF token: %d, want 403", resp.StatusCode)
	}
	fp.Set("csrf", strings.Repeat("0", len(csrf)))
	if resp, _ = c.do("POST", "/console/actions/false-positive", fp, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST with a wrong CSRF token: %d, want 403", resp.StatusCode)
	}
	fp.Set("csrf", csrf)
	if resp, _ = c.do("POST", "/console/actions/false-positive", fp, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site POST with the right token: %d, want 403", resp.StatusCode)
	}
	for _, r := range f.mem.All() {
		if r.Action == "false_positive" && r.Result == audit.ResultOK {
			t.Fatalf("a refused POST took the action: %+v", r)
		}
	}
	if resp, _ = c.do("POST", "/console/actions/false-positive", fp, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST with its token: %d, want 303", resp.StatusCode)
	}
}

func TestScopes(t *testing.T) {
	f := newFixture()
	srv := testServer(t, f, nil)
	cases := []struct {
		secret          string
		silence, answer int
	}{
		{secretRead, http.StatusForbidden, http.StatusForbidden},
		{secretAct, http.StatusSeeOther, http.StatusForbidden},
		{secretAdmin, http.StatusSeeOther, http.StatusSeeOther},
	}
	for _, tc := range cases {
		c := newClient(t, srv)
		csrf := c.signIn(tc.secret)
		resp, _ := c.do("POST", "/console/actions/silence", url.Values{"csrf": {csrf}, "matchers": {`agent_id="billing-bot"`}, "duration": {"1h"}}, nil)
		if resp.StatusCode != tc.silence {
			t.Errorf("%.6s silence: %d, want %d", tc.secret, resp.StatusCode, tc.silence)
		}
		resp, _ = c.do("POST", "/console/actions/answer", url.Values{"csrf": {csrf}, "incident": {"inc-1"}, "request": {"inc-1-3"}, "answer": {"approve"}}, nil)
		if resp.StatusCode != tc.answer {
			t.Errorf("%.6s answer: %d, want %d", tc.secret, resp.StatusCode, tc.answer)
		}
	}
	if got := TokenScope(testTokens()[3]); got != "none" {
		t.Errorf("deny-list token scope %q, want none", got)
	}
}

// TestTokenScopeNeedsInventory: the console shows the inventory, so a
// token the API refuses GET /v1/access gets no console scope at all.
func TestTokenScopeNeedsInventory(t *testing.T) {
	for _, tc := range []struct {
		tok  respapi.Token
		want string
	}{
		{respapi.Token{CanReadAudit: true}, "none"},
		{respapi.Token{CanSilence: true}, "none"},
		{respapi.Token{CanSilence: true, AllowedPlaybooks: []string{"*"}}, "none"},
		{respapi.Token{CanReadDenylist: true, CanKillSwitch: true}, "none"},
		{respapi.Token{CanReadInventory: true}, "read"},
		{respapi.Token{CanReadInventory: true, CanReadAudit: true}, "read"},
		{respapi.Token{CanReadInventory: true, CanSilence: true}, "act"},
		{respapi.Token{CanReadInventory: true, CanSilence: true, AllowedPlaybooks: []string{"*"}}, "admin"},
		{respapi.Token{CanReadInventory: true, CanSilence: true, AllowedPlaybooks: []string{"a"}}, "act"},
	} {
		if got := TokenScope(tc.tok); got != tc.want {
			t.Errorf("TokenScope(%+v) = %q, want %q", tc.tok, got, tc.want)
		}
	}
}

func TestReadOnly(t *testing.T) {
	srv := testServer(t, newFixture(), func(o *Options) { o.ReadOnly = true })
	c := newClient(t, srv)
	csrf := c.signIn(secretAdmin)
	_, page := c.do("GET", "/console/incident?id=inc-1", nil, nil)
	if strings.Contains(page, "/actions/") {
		t.Error("a read-only console shows action forms")
	}
	resp, _ := c.do("POST", "/console/actions/restore", url.Values{"csrf": {csrf}, "incident": {"inc-1"}, "reason": {"x"}}, nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("restore on a read-only console: %d, want 403", resp.StatusCode)
	}
}

func proxyOpts(o *Options) {
	o.Proxy = Proxy{Header: "X-Forwarded-User", EmailHeader: "X-Forwarded-Email", GroupsHeader: "X-Forwarded-Groups",
		Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Users: map[string]string{"mallory": "read", "bob": "admin"},
		Groups: map[string]string{"secops": "act"}, DefaultScope: "read"}
}

func TestProxySignIn(t *testing.T) {
	f := newFixture()
	srv := testServer(t, f, proxyOpts)
	c := newClient(t, srv)
	hdr := map[string]string{"X-Forwarded-User": "alice", "X-Forwarded-Email": "alice@example.com", "X-Forwarded-Groups": "staff, secops"}
	resp, page := c.do("GET", "/console/", nil, hdr)
	if resp.StatusCode != 200 || !strings.Contains(page, "alice@example.com (act)") {
		t.Fatalf("proxy sign-in: %d %.400s", resp.StatusCode, page)
	}
	csrf := hiddenRE.FindStringSubmatch(page)[1]
	resp, _ = c.do("POST", "/console/actions/false-positive", url.Values{"csrf": {csrf}, "incident": {"inc-1"}, "anomaly": {"an-1"}}, hdr)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("proxy user's action: %d", resp.StatusCode)
	}
	found := false
	for _, r := range f.mem.All() {
		found = found || (r.Action == "false_positive" && r.Actor.Name == "proxy:alice@example.com" && r.Actor.TokenName == "" && r.Actor.Kind == audit.ActorAPI)
	}
	if !found {
		t.Fatalf("no false_positive record naming proxy:alice@example.com: %+v", f.mem.All())
	}
	// The session cookie alone, without the proxy's header, is not enough.
	if resp, _ := c.do("GET", "/console/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("proxy session without the proxy: %d, want 303 to sign in", resp.StatusCode)
	}
	// Users and groups map to scopes; the widest wins.
	for hdr, want := range map[[2]string]string{{"mallory", ""}: "mallory (read)", {"mallory", "secops"}: "mallory (act)", {"bob", ""}: "bob (admin)"} {
		m := newClient(t, srv)
		if _, page := m.do("GET", "/console/", nil, map[string]string{"X-Forwarded-User": hdr[0], "X-Forwarded-Groups": hdr[1]}); !strings.Contains(page, want) {
			t.Errorf("%v: want %q in %.300s", hdr, want, page)
		}
	}
}

// TestProxyPersonNotTakenForToken: an SSO user named like a token
// ("auditor") is recorded apart from the token in the audit.
func TestProxyPersonNotTakenForToken(t *testing.T) {
	f := newFixture()
	srv := testServer(t, f, proxyOpts)
	p := newClient(t, srv)
	if resp, _ := p.do("GET", "/console/", nil, map[string]string{"X-Forwarded-User": "auditor"}); resp.StatusCode != 200 {
		t.Fatalf("proxy sign-in: %d", resp.StatusCode)
	}
	tk := newClient(t, srv)
	tk.signIn(secretRead)
	var proxy, token []string
	for _, r := range f.mem.All() {
		if r.Action != "console_signin" {
			continue
		}
		if err := r.Validate(); err != nil {
			t.Errorf("sign-in record invalid: %v", err)
		}
		if strings.Contains(r.Detail, "proxy") {
			proxy = append(proxy, r.Actor.String())
		} else {
			token = append(token, r.Actor.String())
		}
	}
	if len(proxy) != 1 || len(token) != 1 {
		t.Fatalf("sign-ins: proxy %v, token %v", proxy, token)
	}
	if proxy[0] == token[0] {
		t.Errorf("proxy user and token both recorded as %q", proxy[0])
	}
	if proxy[0] != "api:proxy:auditor" || token[0] != "api:auditor" {
		t.Errorf("proxy %q, token %q; want api:proxy:auditor and api:auditor", proxy[0], token[0])
	}
}

// TestProxyRepeatedHeaderRefused: a header with two values is one the
// proxy let a client add to; the request is not signed in through it.
func TestProxyRepeatedHeaderRefused(t *testing.T) {
	srv := testServer(t, newFixture(), proxyOpts)
	for _, hd := range []string{"X-Forwarded-User", "X-Forwarded-Email", "X-Forwarded-Groups"} {
		req, err := http.NewRequest("GET", srv.URL+"/console/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Forwarded-User", "mallory")
		req.Header.Set("X-Forwarded-Email", "mallory@example.com")
		req.Header.Set("X-Forwarded-Groups", "staff")
		req.Header.Add(hd, map[string]string{"X-Forwarded-User": "bob", "X-Forwarded-Email": "alice@example.com", "X-Forwarded-Groups": "secops"}[hd])
		cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusSeeOther {
			t.Errorf("two values of %s: %d, want 303 to sign in", hd, resp.StatusCode)
		}
	}
}

func TestProxyHeaderFromUntrustedAddressIgnored(t *testing.T) {
	srv := testServer(t, newFixture(), func(o *Options) {
		proxyOpts(o)
		o.Proxy.Trusted = []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")}
	})
	c := newClient(t, srv)
	resp, _ := c.do("GET", "/console/", nil, map[string]string{"X-Forwarded-User": "alice"})
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "/signin") {
		t.Fatalf("header from an untrusted address: %d %q, want 303 to sign-in", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestLocalNext(t *testing.T) {
	h, err := newTestHandler(newFixture(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"/console/agents?from=2026-03-01": "/console/agents?from=2026-03-01",
		"https://evil.example/console/":   "/console/",
		"//evil.example/console/":         "/console/",
		"/other":                          "/console/",
		`/console/\evil`:                  "/console/",
		"":                                "/console/",
	} {
		if got := h.localNext(in); got != want {
			t.Errorf("localNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAccessCSV(t *testing.T) {
	f := newFixture()
	srv := testServer(t, f, nil)
	c := newClient(t, srv)
	c.signIn(secretRead)
	resp, body := c.do("GET", "/console/access.csv?from=2026-03-15T00:00&to=2026-03-16T00:00&tag=pii", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("csv: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	// billing-bot, support-bot and the <script> agent called the pii route
	// on the 15th; report-bot only on the 13th.
	if len(lines) != 4 || !strings.Contains(body, "billing-bot,3,") || !strings.Contains(body, "support-bot,1,") || strings.Contains(body, "report-bot") {
		t.Fatalf("csv:\n%s", body)
	}
}

// TestAccessCSVCellsSafe: an agent id that is a formula, in invalid
// UTF-8, is exported as valid UTF-8 text.
func TestAccessCSVCellsSafe(t *testing.T) {
	f := newFixture()
	f.src = visibility.NewMemSource([]event.Event{{EventID: "e1", EventTimeMs: day15.Add(time.Hour).UnixMilli(), AgentID: "=HYPERLINK(1)\xff",
		Route: "/v1/customers/{id}", Status: 200, RequestID: "r1", CredentialID: "c1"}}, nil, nil, nil)
	srv := testServer(t, f, nil)
	c := newClient(t, srv)
	c.signIn(secretRead)
	resp, body := c.do("GET", "/console/access.csv?from=2026-03-15T00:00&to=2026-03-16T00:00&tag=pii", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("csv: %d %s", resp.StatusCode, body)
	}
	if !utf8.ValidString(body) || !strings.Contains(body, "'=HYPERLINK(1)\uFFFD") {
		t.Errorf("csv not defused or not valid UTF-8:\n%q", body)
	}
}

func TestReports(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "agentwatch-2026-03.html"), []byte("<h1>March</h1>"), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o600)
	srv := testServer(t, newFixture(), func(o *Options) { o.ReportsDir = dir })
	c := newClient(t, srv)
	c.signIn(secretRead)
	_, page := c.do("GET", "/console/reports", nil, nil)
	if !strings.Contains(page, "agentwatch-2026-03.html") || strings.Contains(page, "notes.txt") {
		t.Fatalf("reports page:\n%s", page)
	}
	resp, body := c.do("GET", "/console/reports/agentwatch-2026-03.html", nil, nil)
	if resp.StatusCode != 200 || body != "<h1>March</h1>" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") {
		t.Fatalf("report: %d %q csp %q", resp.StatusCode, body, resp.Header.Get("Content-Security-Policy"))
	}
	for _, p := range []string{"/console/reports/notes.txt", "/console/reports/..%2f..%2fetc%2fpasswd.html", "/console/reports/.hidden.html"} {
		if resp, _ := c.do("GET", p, nil, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Options{})
	if err == nil || !strings.Contains(err.Error(), "visibility: required") || !strings.Contains(err.Error(), "nobody could sign in") {
		t.Fatalf("New(zero) = %v", err)
	}
	f := newFixture()
	_, err = newTestHandler(f, func(o *Options) { o.Proxy = Proxy{Header: "X-Forwarded-User", Users: map[string]string{"a": "root"}} })
	if err == nil || !strings.Contains(err.Error(), "proxy.trusted") || !strings.Contains(err.Error(), `scope "root"`) {
		t.Fatalf("bad proxy: %v", err)
	}
}

func TestSignInRateLimited(t *testing.T) {
	f := newFixture()
	srv := testServer(t, f, func(o *Options) {
		o.Limit = clientlimit.New(clientlimit.Options{Endpoint: "console", Rate: 0.001, Burst: 2, Audit: f.audit, Now: func() time.Time { return testNow }})
	})
	c := newClient(t, srv)
	_, page := c.do("GET", "/console/signin", nil, nil)
	pre := hiddenRE.FindStringSubmatch(page)[1]
	var codes []int
	for range 3 {
		resp, body := c.do("POST", "/console/signin", url.Values{"csrf": {pre}, "token": {"wrong-0123456789abcdef0123456789abcdef"}}, nil)
		codes = append(codes, resp.StatusCode)
		if m := hiddenRE.FindStringSubmatch(body); m != nil {
			pre = m[1] // a refused sign-in gives a new form
		}
	}
	if codes[0] != http.StatusUnauthorized || codes[1] != http.StatusUnauthorized || codes[2] != http.StatusTooManyRequests {
		t.Fatalf("statuses %v, want 401 401 429", codes)
	}
	// Refusals without a session are sampled, not one audit row each.
	for _, r := range f.mem.All() {
		if r.Result == audit.ResultRefused {
			t.Fatalf("a refusal without a session has its own audit row: %+v", r)
		}
	}
}

func TestSessionsExpireAndAreCapped(t *testing.T) {
	now := testNow
	ss := newSessions(time.Hour, func() time.Time { return now })
	first := ss.open(audit.Actor{Name: "a"}, scopeRead, "token")
	if ss.get(first.id) != first {
		t.Fatal("a new session is not found")
	}
	now = now.Add(time.Hour)
	if ss.get(first.id) != nil {
		t.Fatal("an expired session is still found")
	}
	for i := range maxSessions + 5 {
		now = now.Add(time.Millisecond)
		ss.open(audit.Actor{Name: fmt.Sprint(i)}, scopeRead, "proxy")
	}
	if n := len(ss.m); n != maxSessions {
		t.Fatalf("%d sessions, want the cap %d", n, maxSessions)
	}
}

func TestIncidentHoldsTheAnomaliesThatJoinedIt(t *testing.T) {
	srv := testServer(t, newFixture(), nil)
	c := newClient(t, srv)
	c.signIn(secretRead)
	_, page := c.do("GET", "/console/incident?id=inc-1", nil, nil)
	if !strings.Contains(page, "billing-bot read 40x") || !strings.Contains(page, "billing-bot read 5x its usual invoices") {
		t.Fatalf("inc-1 lacks the anomaly its record names or the one that joined it:\n%s", page)
	}
	if strings.Contains(page, "an earlier, separate blip") {
		t.Fatalf("inc-1 holds an anomaly from before its first:\n%s", page)
	}
}

// TestAgentSilenceBackLink: the silence form returns to the same agent
// and span, the id URL-encoded (an id with & or # in it stays whole).
func TestAgentSilenceBackLink(t *testing.T) {
	srv := testServer(t, newFixture(), nil)
	c := newClient(t, srv)
	c.signIn(secretAct)
	id := "team a&b#1?x=y"
	q := url.Values{"id": {id}, "from": {"2026-03-10"}, "to": {"2026-03-12"}}
	resp, page := c.do("GET", "/console/agent?"+q.Encode(), nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("agent page: %d", resp.StatusCode)
	}
	m := regexp.MustCompile(`name="back" value="([^"]*)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no back field in %.600s", page)
	}
	u, err := url.Parse(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	got := u.Query()
	if u.Path != "/console/agent" || got.Get("id") != id || got.Get("from") != "2026-03-10" || got.Get("to") != "2026-03-12" {
		t.Errorf("back %q: path %q, query %v; want the same agent and span", m[1], u.Path, got)
	}
}

// TestReadsAudited: the console's own reads (incidents, an incident,
// window scores, a report) are written to the audit trail under the
// signed-in person before they are answered, and refused (503) when that
// record cannot be written.
func TestReadsAudited(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "agentwatch-2026-03.html"), []byte("<h1>March</h1>"), 0o600)
	f := newFixture()
	srv := testServer(t, f, func(o *Options) { o.ReportsDir = dir })
	c := newClient(t, srv)
	c.signIn(secretRead)
	pages := []struct{ path, detail string }{
		{"/console/incidents", "incidents span="},
		{"/console/incident?id=inc-1", `incident "inc-1"`},
		{"/console/agent?id=billing-bot", `scores agent="billing-bot" span=`},
		{"/console/reports/agentwatch-2026-03.html", `report "agentwatch-2026-03.html"`},
	}
	for _, p := range pages {
		if resp, _ := c.do("GET", p.path, nil, nil); resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", p.path, resp.StatusCode)
		}
		found := false
		for _, r := range f.mem.All() {
			found = found || (r.Action == audit.ActionAsk && r.Actor.Name == "auditor" && strings.HasPrefix(r.Detail, p.detail))
		}
		if !found {
			t.Errorf("GET %s: no ask record %q under auditor", p.path, p.detail)
		}
	}
	// The same reads with an audit trail that cannot be written are refused.
	srv = testServer(t, newFixture(), func(o *Options) {
		o.ReportsDir = dir
		o.Audit = askRefusing{o.Audit}
	})
	c = newClient(t, srv)
	c.signIn(secretRead)
	for _, p := range append(pages, struct{ path, detail string }{"/console/", ""}) {
		if resp, body := c.do("GET", p.path, nil, nil); resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(body, "March") {
			t.Errorf("GET %s with the audit trail down: %d, want 503", p.path, resp.StatusCode)
		}
	}
}

// askRefusing fails the ask records the console writes itself, and
// stores the rest (sign-ins).
type askRefusing struct{ next Recorder }

func (a askRefusing) Append(ctx context.Context, recs ...audit.Record) error {
	for _, r := range recs {
		if r.Action == audit.ActionAsk {
			return errors.New("audit store down")
		}
	}
	return a.next.Append(ctx, recs...)
}
