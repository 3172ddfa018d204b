// Package console is agentwatch's web console for analysts and auditors:
// server-rendered pages (html/template, no script) over the visibility
// questions (overview, incidents, agents, inventory, findings, the access
// search and the reports), and the responder's actions (silence, false
// positive, approval answers, restore) for the people allowed to take
// them.
//
// People sign in with one of the responder's API tokens, which opens a
// server-side session, or through an authenticating proxy's header,
// trusted only from the configured proxy addresses. Every page carries a
// strict Content-Security-Policy; every POST needs the session's CSRF
// token and passes net/http's cross-origin protection.
//
// Handler is an http.Handler to mount under a prefix (the responder
// serves it at /console/ on its API listener; `agentwatch console` serves
// it alone, read-only).
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/clientlimit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

//go:embed templates/*.html static/console.css
var assets embed.FS

// Visibility is what the console asks of the visibility service (a
// *visibility.Service): each question is audited there with who asked.
type Visibility interface {
	Agents(ctx context.Context, who audit.Actor, span visibility.Span) ([]visibility.AgentRow, error)
	Routes(ctx context.Context, who audit.Actor, span visibility.Span) ([]visibility.RouteRow, error)
	Findings(ctx context.Context, who audit.Actor) ([]visibility.Finding, error)
	Access(ctx context.Context, who audit.Actor, req visibility.AccessRequest) (visibility.AccessAnswer, error)
	Agent(ctx context.Context, who audit.Actor, agentID string, span visibility.Span) (visibility.AgentProfile, error)
}

// Records are the responder's records the incidents pages are built from
// (a visibility.Source satisfies it).
type Records interface {
	Anomalies(ctx context.Context, span visibility.Span, agentID string) ([]anomaly.Anomaly, error)
	Actions(ctx context.Context, span visibility.Span, agentID string) ([]audit.Record, error)
}

// Scores reads an agent's window scores (respond.ScoreSource: ClickHouse's
// window_scores, or the embedded detector), for the agent page's
// observed-versus-baseline plots.
type Scores interface {
	Scores(ctx context.Context, agentID string, fromMs, toMs int64) ([]anomaly.Score, error)
}

// Actions takes the responder's actions for a signed-in person, through
// the same code paths as the HTTP API (and, with several responders, on
// the instance that owns the incident). The implementation writes the
// audit records of what it does, naming who. Errors that wrap
// respapi.ErrNotFound or respapi.ErrBadRequest are the person's mistake
// and are shown to them; respapi.ErrQueued means handed to the owner.
type Actions interface {
	// Silence adds a silence (matchers in the text form of
	// docs/silences.md) for d from now and returns its id.
	Silence(ctx context.Context, who audit.Actor, matchers string, d time.Duration, comment string) (string, error)
	// FalsePositive records the verdict on an anomaly of an incident.
	FalsePositive(ctx context.Context, who audit.Actor, incident, anomalyID string) error
	// Answer approves or denies an approval request (its step id).
	Answer(ctx context.Context, who audit.Actor, request string, approved bool) error
	// Restore undoes the revocations and quarantines of an incident.
	Restore(ctx context.Context, who audit.Actor, incident, why string) error
}

// Recorder keeps the audit trail of sign-ins and refused requests (an
// *audit.Logger).
type Recorder interface {
	Append(ctx context.Context, recs ...audit.Record) error
}

// Options configures New. Visibility and Records are required; Prefix is
// where the handler is mounted.
type Options struct {
	Visibility Visibility
	Records    Records
	// Scores, when set, draws the agent page's feature plots.
	Scores Scores
	// Actions, when set, offers the action forms to people with the act
	// or admin scope; nil makes the console read-only.
	Actions Actions
	// Audit, when set, gets sign-ins, sign-outs and refused POSTs.
	Audit Recorder
	// Tokens are the API tokens people sign in with.
	Tokens []respapi.Token
	// Getenv reads Token.SecretEnv; nil means os.Getenv.
	Getenv func(string) string
	// Proxy, when its Header is set, signs people in from an
	// authenticating proxy's header.
	Proxy Proxy
	// ReportsDir lists the generated reports (.html, .pdf); "" shows none.
	ReportsDir string
	// EvidenceDir is the responder's evidence root; "" shows no bundles.
	EvidenceDir string
	// SessionTTL is how long a session lasts (default 8h).
	SessionTTL time.Duration
	// Prefix is the path the handler is mounted at, without a trailing
	// slash ("/console"); "" means the root.
	Prefix string
	// Lookback is how far back the incidents and overview look (default
	// 30 days).
	Lookback time.Duration
	// ReadOnly hides and refuses every action whatever the scope.
	ReadOnly bool
	// Limit rate-limits sign-in attempts per remote address and samples
	// the refusals of requests without a session into the audit (one row
	// per address and interval, as the API does): anyone who can reach
	// the port can send those. nil means a limiter with clientlimit's
	// defaults writing to Audit; whoever serves the handler should run
	// Limiter().Run.
	Limit *clientlimit.Limiter
	Log   *slog.Logger
	Now   func() time.Time
}

// Defaults of Options.
const (
	DefaultSessionTTL = 8 * time.Hour
	DefaultLookback   = 30 * 24 * time.Hour
)

// Handler serves the console. It is safe for concurrent use.
type Handler struct {
	o        Options
	verifier *respapi.Verifier
	sessions *sessions
	tmpl     map[string]*template.Template
	mux      *http.ServeMux
	root     http.Handler
	limit    *clientlimit.Limiter
	log      *slog.Logger
	now      func() time.Time
	overview *overviewCache
}

var _ http.Handler = (*Handler)(nil)

// New validates o and returns the handler.
func New(o Options) (*Handler, error) {
	var errs []error
	if o.Visibility == nil {
		errs = append(errs, errors.New("visibility: required"))
	}
	if o.Records == nil {
		errs = append(errs, errors.New("records: required"))
	}
	if o.SessionTTL < 0 || o.Lookback < 0 {
		errs = append(errs, errors.New("session_ttl and lookback: must not be negative"))
	}
	if o.Prefix != "" && (!strings.HasPrefix(o.Prefix, "/") || strings.HasSuffix(o.Prefix, "/")) {
		errs = append(errs, fmt.Errorf("prefix %q: must start and not end with '/'", o.Prefix))
	}
	if err := o.Proxy.validate(); err != nil {
		errs = append(errs, err)
	}
	var v *respapi.Verifier
	if len(o.Tokens) > 0 {
		var err error
		if v, err = respapi.NewVerifier(o.Tokens, o.Getenv); err != nil {
			errs = append(errs, err)
		}
	}
	if len(o.Tokens) == 0 && o.Proxy.Header == "" {
		errs = append(errs, errors.New("tokens and proxy: neither configured, so nobody could sign in"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if o.SessionTTL == 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	if o.Lookback == 0 {
		o.Lookback = DefaultLookback
	}
	h := &Handler{o: o, verifier: v, log: o.Log, now: o.Now}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.log = h.log.With("component", "console")
	if h.now == nil {
		h.now = time.Now
	}
	h.sessions = newSessions(o.SessionTTL, h.now)
	h.overview = newOverviewCache(time.Now)
	h.limit = o.Limit
	if h.limit == nil {
		var app clientlimit.Appender = discardAppender{}
		if o.Audit != nil {
			app = o.Audit
		}
		h.limit = clientlimit.New(clientlimit.Options{Endpoint: "console", Audit: app, Log: h.log, Now: h.now})
	}
	tm, err := parseTemplates()
	if err != nil {
		return nil, err
	}
	h.tmpl = tm
	h.routes()
	return h, nil
}

func (h *Handler) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(assets, "static")
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /signin", h.signinPage)
	m.HandleFunc("POST /signin", h.signin)
	m.HandleFunc("POST /signout", h.signout)
	m.HandleFunc("GET /{$}", h.page(scopeRead, h.overviewPage))
	m.HandleFunc("GET /incidents", h.page(scopeRead, h.incidents))
	m.HandleFunc("GET /incident", h.page(scopeRead, h.incidentPage))
	m.HandleFunc("GET /agents", h.page(scopeRead, h.agents))
	m.HandleFunc("GET /agent", h.page(scopeRead, h.agentPage))
	m.HandleFunc("GET /inventory", h.page(scopeRead, h.inventory))
	m.HandleFunc("GET /findings", h.page(scopeRead, h.findings))
	m.HandleFunc("GET /access", h.page(scopeRead, h.access))
	m.HandleFunc("GET /access.csv", h.page(scopeRead, h.accessCSV))
	m.HandleFunc("GET /reports", h.page(scopeRead, h.reports))
	m.HandleFunc("GET /reports/{name}", h.page(scopeRead, h.reportFile))
	m.HandleFunc("POST /actions/silence", h.page(scopeAct, h.actSilence))
	m.HandleFunc("POST /actions/false-positive", h.page(scopeAct, h.actFalsePositive))
	m.HandleFunc("POST /actions/answer", h.page(scopeAdmin, h.actAnswer))
	m.HandleFunc("POST /actions/restore", h.page(scopeAdmin, h.actRestore))
	h.mux = m
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.refused(r, h.cookieSession(r), "cross-origin request")
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
	}))
	var root http.Handler = m
	if h.o.Prefix != "" {
		root = http.StripPrefix(h.o.Prefix, m)
	}
	h.root = cop.Handler(root)
}

// csp is the console's Content-Security-Policy: no script at all, styles
// and images only from the console itself (inline SVG plots are part of
// the document; data: images are the PNGs a report may embed).
const csp = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Cache-Control", "no-store")
	hd.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.root.ServeHTTP(w, r)
}

// path returns p under the prefix.
func (h *Handler) path(p string) string { return h.o.Prefix + p }

// Limiter returns the handler's limiter, to run (Run) beside the server.
func (h *Handler) Limiter() *clientlimit.Limiter { return h.limit }

// refused audits a refused request (a forged or cross-origin POST, a
// scope too small, a failed sign-in): one record naming the person when
// the request has a session, else counted for the address's sampled row.
func (h *Handler) refused(r *http.Request, s *session, detail string) {
	if s == nil {
		h.limit.Refused(r.Context(), clientlimit.IP(r.RemoteAddr), detail, r.URL.Path)
		return
	}
	h.log.Warn("console request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "reason", detail, "who", s.actor.String())
	h.record(r.Context(), audit.Record{Actor: s.actor, Action: "console", Result: audit.ResultRefused,
		Detail: detail + ": " + r.Method + " " + r.URL.Path + " from " + r.RemoteAddr})
}

type discardAppender struct{}

func (discardAppender) Append(context.Context, ...audit.Record) error { return nil }

func (h *Handler) record(ctx context.Context, rec audit.Record) {
	if h.o.Audit == nil {
		return
	}
	if err := h.o.Audit.Append(context.WithoutCancel(ctx), rec); err != nil {
		h.log.Error("audit record not stored", "action", rec.Action, "err", err)
	}
}

var (
	_ Visibility = (*visibility.Service)(nil)
	_ Records    = (visibility.Source)(nil)
	_ Recorder   = (*audit.Logger)(nil)
)
