package console

import (
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/visibility"
)

// FuzzLocalNext: whatever the next parameter holds, the redirect after
// sign-in stays under the console's prefix on the same host.
func FuzzLocalNext(f *testing.F) {
	for _, s := range []string{"/console/agents?x=1", "//evil.example", "https://evil.example/console/", `/console/\\evil`, "/console/../../x", "\x00", "/console/%2F%2Fevil"} {
		f.Add(s)
	}
	h, err := newTestHandler(newFixture(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, next string) {
		got := h.localNext(next)
		u, err := url.Parse(got)
		if err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(got, "//") || !strings.HasPrefix(got, "/console/") {
			t.Fatalf("localNext(%q) = %q: leaves the console", next, got)
		}
	})
}

// FuzzProxyPerson: a header from an untrusted address never signs
// anyone in, and a name from a trusted one has no control character.
func FuzzProxyPerson(f *testing.F) {
	f.Add("alice", "alice@example.com", "secops, staff", true)
	f.Add("bob\r\nX-Evil: 1", "", "", true)
	f.Add("", "x", "", false)
	p := Proxy{Header: "X-Forwarded-User", EmailHeader: "X-Forwarded-Email", GroupsHeader: "X-Forwarded-Groups",
		Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Groups: map[string]string{"secops": "act"}, DefaultScope: "read"}
	f.Fuzz(func(t *testing.T, user, email, groups string, trusted bool) {
		r := httptest.NewRequest("GET", "/console/", nil)
		r.RemoteAddr = "192.0.2.1:1234"
		if trusted {
			r.RemoteAddr = "10.1.2.3:1234"
		}
		r.Header["X-Forwarded-User"] = []string{user}
		r.Header["X-Forwarded-Email"] = []string{email}
		r.Header["X-Forwarded-Groups"] = []string{groups}
		name, sc, ok := p.person(r)
		if ok && !trusted {
			t.Fatalf("signed in %q from an untrusted address", name)
		}
		if ok && (name == "" || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) || len(name) > 256 || sc < scopeRead) {
			t.Fatalf("person %q scope %v", name, sc)
		}
	})
}

// FuzzSpan: the from and to parameters give a span with from before to,
// or an error.
func FuzzSpan(f *testing.F) {
	for _, s := range [][2]string{{"2026-03-15", "2026-03-15"}, {"2026-03-15T08:00", "2026-03-15T09:00"}, {"x", ""}, {"2026-03-16", "2026-03-15"}} {
		f.Add(s[0], s[1])
	}
	def := visibility.Span{From: time.Unix(0, 0), To: time.Unix(100, 0)}
	f.Fuzz(func(t *testing.T, from, to string) {
		r := httptest.NewRequest("GET", "/console/agents?"+url.Values{"from": {from}, "to": {to}}.Encode(), nil)
		sp, err := spanOf(r, def)
		if err == nil && !sp.From.Before(sp.To) {
			t.Fatalf("from %q to %q: span %v..%v without an error", from, to, sp.From, sp.To)
		}
	})
}
