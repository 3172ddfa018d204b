package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/clientlimit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
)

// scope is what a signed-in person may do; each includes the ones below.
type scope int

const (
	scopeNone scope = iota
	// scopeRead sees every page.
	scopeRead
	// scopeAct also silences and marks false positives.
	scopeAct
	// scopeAdmin also answers approval requests and restores.
	scopeAdmin
)

// Scope names, as the configuration gives them.
const (
	ScopeRead  = "read"
	ScopeAct   = "act"
	ScopeAdmin = "admin"
)

func parseScope(s string) (scope, bool) {
	switch s {
	case ScopeRead:
		return scopeRead, true
	case ScopeAct:
		return scopeAct, true
	case ScopeAdmin:
		return scopeAdmin, true
	}
	return scopeNone, false
}

func (s scope) String() string {
	switch s {
	case scopeRead:
		return ScopeRead
	case scopeAct:
		return ScopeAct
	case scopeAdmin:
		return ScopeAdmin
	}
	return "none"
}

// TokenScope is the console scope an API token's grants give. Every
// console page shows the inventory, so every scope needs
// can_read_inventory: a token the API refuses GET /v1/access must not
// read the same here.
//   - admin: can_read_inventory, can_silence and allowed_playbooks ["*"]
//     (a token that may already run every playbook may answer approvals
//     and restore);
//   - act: can_read_inventory and can_silence (silences and false
//     positives, as in the API);
//   - read: can_read_inventory;
//   - none otherwise (a gateway's deny-list token, an audit-only or a
//     silence-only token cannot sign in).
func TokenScope(t respapi.Token) string { return tokenScope(t).String() }

func tokenScope(t respapi.Token) scope {
	switch {
	case !t.CanReadInventory:
		return scopeNone
	case t.CanSilence && len(t.AllowedPlaybooks) == 1 && t.AllowedPlaybooks[0] == "*":
		return scopeAdmin
	case t.CanSilence:
		return scopeAct
	}
	return scopeRead
}

// Proxy configures sign-in through an authenticating proxy (oauth2-proxy's
// X-Forwarded-User and X-Forwarded-Email, Grafana's auth proxy
// X-WEBAUTH-USER): the header is believed only on requests whose remote
// address is in Trusted; from anywhere else it is ignored.
type Proxy struct {
	// Header names the user; "" disables proxy sign-in.
	Header string
	// EmailHeader, when set and present, names the person in the audit
	// instead of Header (oauth2-proxy's X-Forwarded-Email).
	EmailHeader string
	// GroupsHeader, when set, holds the user's groups, comma-separated
	// (oauth2-proxy's X-Forwarded-Groups).
	GroupsHeader string
	// Trusted are the proxy's addresses.
	Trusted []netip.Prefix
	// Users and Groups map a user (or email) and a group to a scope
	// (read, act, admin); the widest match wins. DefaultScope is for a
	// user matched by neither; "" refuses them.
	Users, Groups map[string]string
	DefaultScope  string
}

func (p Proxy) validate() error {
	if p.Header == "" {
		return nil
	}
	var errs []error
	for _, hd := range []string{p.Header, p.EmailHeader, p.GroupsHeader} {
		if hd != "" && strings.IndexFunc(hd, func(r rune) bool { return !(r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) }) >= 0 {
			errs = append(errs, fmt.Errorf("proxy header %q: not a header name", hd))
		}
	}
	if len(p.Trusted) == 0 {
		errs = append(errs, errors.New("proxy.trusted: required with proxy.header, or anyone could send the header"))
	}
	for k, v := range p.Users {
		if _, ok := parseScope(v); !ok {
			errs = append(errs, fmt.Errorf("proxy.users[%q]: scope %q: want read, act or admin", k, v))
		}
	}
	for k, v := range p.Groups {
		if _, ok := parseScope(v); !ok {
			errs = append(errs, fmt.Errorf("proxy.groups[%q]: scope %q: want read, act or admin", k, v))
		}
	}
	if _, ok := parseScope(p.DefaultScope); !ok && p.DefaultScope != "" {
		errs = append(errs, fmt.Errorf("proxy.default_scope %q: want read, act, admin or empty", p.DefaultScope))
	}
	return errors.Join(errs...)
}

// trusted reports whether the request came from a configured proxy.
func (p Proxy) trusted(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, pr := range p.Trusted {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// person returns who the proxy says the request is from and their scope;
// ok is false when the request does not come from a trusted proxy or
// names nobody.
func (p Proxy) person(r *http.Request) (name string, sc scope, ok bool) {
	if p.Header == "" || !p.trusted(r) {
		return "", scopeNone, false
	}
	// The proxy must set or strip each header; a second value is one it
	// let through from the client, so none of them can be believed.
	for _, hd := range []string{p.Header, p.EmailHeader, p.GroupsHeader} {
		if hd != "" && len(r.Header.Values(hd)) > 1 {
			return "", scopeNone, false
		}
	}
	user := strings.TrimSpace(r.Header.Get(p.Header))
	if user == "" || len(user) > 256 || strings.IndexFunc(user, unicode.IsControl) >= 0 {
		return "", scopeNone, false
	}
	name = user
	email := ""
	if p.EmailHeader != "" {
		email = strings.TrimSpace(r.Header.Get(p.EmailHeader))
		if email != "" && len(email) <= 256 && strings.IndexFunc(email, unicode.IsControl) < 0 {
			name = email
		} else {
			email = ""
		}
	}
	sc, _ = parseScope(p.DefaultScope)
	widen := func(v string) {
		if s, ok := parseScope(v); ok && s > sc {
			sc = s
		}
	}
	if v, found := p.Users[user]; found {
		sc, _ = parseScope(v) // a user's own entry decides, even narrower than the default
	}
	if v, found := p.Users[email]; email != "" && found {
		widen(v)
	}
	if p.GroupsHeader != "" {
		for g := range strings.SplitSeq(r.Header.Get(p.GroupsHeader), ",") {
			if v, found := p.Groups[strings.TrimSpace(g)]; found {
				widen(v)
			}
		}
	}
	return name, sc, true
}

// proxyActorPrefix starts the audit name of a person signed in through
// the proxy (audit.Actor.String gives "api:proxy:<name>"), where a token's
// is "api:<token>".
const proxyActorPrefix = "proxy:"

// session is one signed-in person.
type session struct {
	id, csrf string
	actor    audit.Actor
	scope    scope
	// via is "token" or "proxy".
	via     string
	expires time.Time
}

// sessions is the server-side session store: in memory, so a session
// lives in one process (behind several responders, make the load balancer
// keep a person on one, or use proxy sign-in, which opens a session
// wherever it lands).
type sessions struct {
	mu  sync.Mutex
	m   map[string]*session
	ttl time.Duration
	now func() time.Time
}

// maxSessions caps the live sessions of one process.
const maxSessions = 10000

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[string]*session{}, ttl: ttl, now: now}
}

func randomHex() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func (ss *sessions) open(actor audit.Actor, sc scope, via string) *session {
	s := &session{id: randomHex(), csrf: randomHex(), actor: actor, scope: sc, via: via, expires: ss.now().Add(ss.ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := ss.now()
	for id, o := range ss.m { // sweep: the map stays as small as the live sessions
		if !now.Before(o.expires) {
			delete(ss.m, id)
		}
	}
	if len(ss.m) >= maxSessions {
		// A client that drops its cookie opens a session per request
		// (proxy sign-in): the one closest to its end goes first.
		var oldest *session
		for _, o := range ss.m {
			if oldest == nil || o.expires.Before(oldest.expires) {
				oldest = o
			}
		}
		delete(ss.m, oldest.id)
	}
	ss.m[s.id] = s
	return s
}

func (ss *sessions) get(id string) *session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	if !ok {
		return nil
	}
	if !ss.now().Before(s.expires) {
		delete(ss.m, id)
		return nil
	}
	return s
}

func (ss *sessions) close(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, id)
}

// Cookie names.
const (
	sessionCookie = "aw_console"
	// preCookie holds the sign-in form's CSRF token before there is a
	// session (double submit), so that a third-party page cannot sign a
	// person in as someone else.
	preCookie = "aw_console_pre"
)

func (h *Handler) cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: h.path("/"), MaxAge: maxAge, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode}
}

// cookieSession is the session of the request's cookie, if any, without
// looking at the proxy's headers.
func (h *Handler) cookieSession(r *http.Request) *session {
	if c, err := r.Cookie(sessionCookie); err == nil {
		return h.sessions.get(c.Value)
	}
	return nil
}

// sessionOf returns the request's session: the proxy's person when the
// request comes from a trusted proxy (opening a session for them, or
// reusing theirs), else the session cookie's; nil when neither.
func (h *Handler) sessionOf(w http.ResponseWriter, r *http.Request) *session {
	var s *session
	if c, err := r.Cookie(sessionCookie); err == nil {
		s = h.sessions.get(c.Value)
	}
	name, sc, ok := h.o.Proxy.person(r)
	if !ok {
		if s != nil && s.via == "proxy" {
			return nil // a proxy session is good only through the proxy
		}
		return s
	}
	// A proxy person is "proxy:<name>" in the audit, with no token name:
	// an SSO user called like a token is not taken for the token.
	actor := audit.Actor{Kind: audit.ActorAPI, Name: proxyActorPrefix + name}
	if s != nil && s.via == "proxy" && s.actor == actor && s.scope == sc {
		return s
	}
	if sc == scopeNone {
		return nil
	}
	s = h.sessions.open(actor, sc, "proxy")
	http.SetCookie(w, h.cookie(r, sessionCookie, s.id, int(h.o.SessionTTL/time.Second)))
	h.record(r.Context(), audit.Record{Actor: s.actor, Action: "console_signin", Result: audit.ResultOK,
		Detail: "signed in through the proxy with scope " + sc.String()})
	return s
}

// maxForm caps a form body.
const maxForm = 16 << 10

// page wraps a page or action: it needs a session with scope need, and a
// POST needs the session's CSRF token in its form.
func (h *Handler) page(need scope, fn func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := h.sessionOf(w, r)
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, h.path("/signin")+"?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			h.refused(r, nil, "no session")
			http.Error(w, "sign in first", http.StatusForbidden)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				http.Error(w, "bad form", http.StatusBadRequest)
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.csrf)) != 1 {
				h.refused(r, s, "missing or wrong CSRF token")
				http.Error(w, "missing or wrong CSRF token; reload the page and try again", http.StatusForbidden)
				return
			}
		}
		if s.scope < need {
			h.refused(r, s, "scope "+s.scope.String()+" is not "+need.String())
			http.Error(w, "your scope ("+s.scope.String()+") does not allow this", http.StatusForbidden)
			return
		}
		fn(w, r, s)
	}
}

func (h *Handler) signinPage(w http.ResponseWriter, r *http.Request) {
	if s := h.sessionOf(w, r); s != nil {
		http.Redirect(w, r, h.path("/"), http.StatusSeeOther)
		return
	}
	pre := randomHex()
	http.SetCookie(w, h.cookie(r, preCookie, pre, 600))
	h.render(w, r, nil, "signin", map[string]any{"Pre": pre, "Next": r.URL.Query().Get("next"), "Tokens": h.verifier != nil,
		"Proxy": h.o.Proxy.Header != ""}, http.StatusOK)
}

func (h *Handler) signin(w http.ResponseWriter, r *http.Request) {
	// Tokens are long random secrets, so guessing is hopeless; the limit
	// keeps a flood of attempts from costing more than a refusal each.
	if ok, wait := h.limit.Admit(clientlimit.IP(r.RemoteAddr)); !ok {
		h.limit.Refused(r.Context(), clientlimit.IP(r.RemoteAddr), clientlimit.ReasonRateLimited, r.URL.Path)
		w.Header().Set("Retry-After", clientlimit.RetryAfter(wait))
		http.Error(w, "too many sign-in attempts; retry after "+clientlimit.RetryAfter(wait)+" s", http.StatusTooManyRequests)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	c, err := r.Cookie(preCookie)
	if err != nil || c.Value == "" || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostForm.Get("csrf"))) != 1 {
		h.refused(r, nil, "sign-in without its CSRF token")
		http.Error(w, "missing or wrong CSRF token; reload the page and try again", http.StatusForbidden)
		return
	}
	tok, ok := h.verifier.Verify(strings.TrimSpace(r.PostForm.Get("token")))
	sc := tokenScope(tok)
	if !ok || sc == scopeNone {
		detail := "unknown token"
		if ok {
			detail = "token " + tok.Name + " has no console scope"
		}
		h.refused(r, nil, "sign-in: "+detail)
		pre := randomHex()
		http.SetCookie(w, h.cookie(r, preCookie, pre, 600))
		h.render(w, r, nil, "signin", map[string]any{"Pre": pre, "Next": r.PostForm.Get("next"), "Tokens": true,
			"Proxy": h.o.Proxy.Header != "", "Error": "That token is not accepted here."}, http.StatusUnauthorized)
		return
	}
	s := h.sessions.open(audit.Actor{Kind: audit.ActorAPI, TokenName: tok.Name, Name: tok.Name}, sc, "token")
	http.SetCookie(w, h.cookie(r, preCookie, "", -1))
	http.SetCookie(w, h.cookie(r, sessionCookie, s.id, int(h.o.SessionTTL/time.Second)))
	h.record(r.Context(), audit.Record{Actor: s.actor, Action: "console_signin", Result: audit.ResultOK,
		Detail: "signed in with a token, scope " + sc.String()})
	http.Redirect(w, r, h.localNext(r.PostForm.Get("next")), http.StatusSeeOther)
}

// localNext returns next when it is a path under the prefix, else the
// overview: never a redirect to elsewhere.
func (h *Handler) localNext(next string) string {
	u, err := url.Parse(next)
	if next == "" || err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") ||
		!strings.HasPrefix(u.Path, h.path("/")) {
		return h.path("/")
	}
	// The escaped form is what the browser goes to: "/console%2F0" has
	// the prefix only once decoded.
	if out := u.RequestURI(); strings.HasPrefix(out, h.path("/")) && !strings.HasPrefix(out, "//") {
		return out
	}
	return h.path("/")
}

func (h *Handler) signout(w http.ResponseWriter, r *http.Request) {
	h.page(scopeNone, func(w http.ResponseWriter, r *http.Request, s *session) {
		h.sessions.close(s.id)
		http.SetCookie(w, h.cookie(r, sessionCookie, "", -1))
		h.record(r.Context(), audit.Record{Actor: s.actor, Action: "console_signout", Result: audit.ResultOK})
		http.Redirect(w, r, h.path("/signin"), http.StatusSeeOther)
	})(w, r)
}
