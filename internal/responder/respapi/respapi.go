// Package respapi is the responder's HTTP API: run a playbook by hand
// (POST /v1/playbooks/{name}/run) and read the audit records
// (GET /v1/audit). Callers authenticate with a bearer token from the
// configuration (Token); each token may run only its allowed playbooks and
// read the audit only if allowed. Every request to either route, allowed or
// refused, leaves an audit record naming the token.
//
// Handler is an http.Handler; the responder serves it on an address of its
// choosing (loopback, enforced there) and provides the Runner that plans
// and executes the playbook.
package respapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/clientlimit"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// Request is a manual run the API asks the Runner for.
type Request struct {
	// Manual is what playbooks.Plan needs. The handler sets Playbook,
	// AgentID, DryRun and Key ("api:" + token name + ":" + request_id, so
	// that one caller's request ids never collide with another's, nor with
	// CLI or Slack keys); the Runner fills Agent from the registry.
	playbooks.Manual
	// Actor is who asked (kind api, the token's name), for the Runner's
	// per-step audit records.
	Actor audit.Actor
	// Reason is the caller's reason, "" if none given: use it as the Why
	// of the step records.
	Reason string
	// RequestID is the caller's request_id, as given.
	RequestID string
}

// Runner plans and runs a manual playbook run. The responder implements it;
// it must be safe for concurrent use.
type Runner interface {
	// Run plans req (playbooks.Plan) and executes the decision, or, when
	// the decision's id has been run before (the same Key, playbook and
	// agent: a retried request), executes nothing and returns the earlier
	// decision and outcomes with Duplicate set. It writes one audit
	// record per step; the handler writes the record of the request.
	//
	// Run should return once every step has ended or is durably queued
	// (an approve step waiting for a human is needs_approval), within the
	// handler's RunTimeout. A dry run makes no outbound call.
	//
	// An error that wraps playbooks.ErrUnknownPlaybook answers 404, one
	// that wraps ErrBadRequest answers 400 with the error's text, any
	// other 500 (the text goes to the log, not the caller).
	Run(ctx context.Context, req Request) (Result, error)
}

// ErrBadRequest is for a Runner's error that is the caller's mistake (an
// agent the registry does not know, say): the handler answers 400 with the
// error's text, so write it for the caller.
var ErrBadRequest = errors.New("bad request")

// Result is what a run did.
type Result struct {
	// Decision is the planned decision (its ID is the incident id).
	Decision playbooks.Decision
	// Steps are the outcomes of Decision.Steps, by index. A missing
	// entry (Steps shorter than Decision.Steps) is reported as pending.
	Steps []StepResult
	// Duplicate says the decision had run before: nothing ran now.
	Duplicate bool
}

// StepResult is one step's outcome.
type StepResult struct {
	Status audit.Result
	// Detail says more: an error, the gateway's answer, the snapshot id.
	Detail string
}

// Outcome sums the result up for the request's audit record: skipped for
// a duplicate; else the first of failed, refused, needs_approval that a
// step has; else dry_run for a dry-run decision; else ok.
func (r Result) Outcome() audit.Result {
	if r.Duplicate {
		return audit.ResultSkipped
	}
	for _, worst := range []audit.Result{audit.ResultFailed, audit.ResultRefused, audit.ResultNeedsApproval} {
		for _, s := range r.Steps {
			if s.Status == worst {
				return worst
			}
		}
	}
	if r.Decision.DryRun {
		return audit.ResultDryRun
	}
	return audit.ResultOK
}

// Defaults of Options.
const (
	DefaultMaxBody    = 16 << 10
	DefaultRunTimeout = time.Minute
	// MaxAuditLimit is the most records one GET /v1/audit returns.
	MaxAuditLimit = 10000
	// DefaultAuditWindow is how far back GET /v1/audit looks without from.
	DefaultAuditWindow = 24 * time.Hour
)

// Options configures New. Tokens, Runner and Audit are required.
type Options struct {
	// Tokens are the accepted bearer tokens.
	Tokens []Token
	// Runner runs the playbooks.
	Runner Runner
	// Audit gets one record per request and answers GET /v1/audit. The
	// handler does not close it.
	Audit *audit.Logger
	// Log gets refused and failed requests; nil discards.
	Log *slog.Logger
	// Metrics counts requests; nil counts nothing.
	Metrics *Metrics
	// MaxBody caps a request body, in bytes; 0 means DefaultMaxBody.
	// A larger body answers 413.
	MaxBody int64
	// RunTimeout bounds Runner.Run; 0 means DefaultRunTimeout. The run's
	// context is not canceled when the caller hangs up, so a run is never
	// cut short halfway by a client.
	RunTimeout time.Duration
	// Now is the clock for the default audit window; nil means time.Now.
	Now func() time.Time
	// Silences, when set, is served at /v1/silences.
	Silences Silences
	// Verdicts, when set, takes false positives at
	// /v1/incidents/{incident}/false-positive (tokens with can_silence).
	Verdicts Verdicts
	// Denylist, when set, is served at GET /v1/denylist (tokens with
	// can_read_denylist).
	Denylist Denylist
	// KillSwitch, when set, is read and set at /v1/kill-switch (tokens
	// with can_kill_switch).
	KillSwitch KillSwitch
	// Outbox, when set, requeues and dismisses outbox entries at
	// /v1/outbox/requeue and /v1/outbox/dismiss (tokens with
	// can_repair_outbox).
	Outbox Outbox
	// Visibility, when set, answers the visibility questions at
	// /v1/inventory/agents, /v1/inventory/routes,
	// /v1/inventory/agent-routes, /v1/findings, /v1/access,
	// /v1/agents/{id}, /v1/routes and /v1/events (tokens with
	// can_read_inventory), in JSON or CSV.
	Visibility Visibility
	// Getenv reads Token.SecretEnv; nil means os.Getenv.
	Getenv func(string) string
	// Limit rate-limits each client (a token once it authenticates, else
	// the remote address) and samples the refusals, 429s and 401s alike,
	// into the audit: one row per client and interval. nil means a
	// limiter with clientlimit's defaults writing to Audit; whoever
	// serves the handler should run Limiter().Run, so that the last
	// interval's rows are written without waiting for a later refusal.
	Limit *clientlimit.Limiter
}

// Handler serves the API. It is safe for concurrent use.
type Handler struct {
	tokens     []principal
	runner     Runner
	audit      *audit.Logger
	log        *slog.Logger
	metrics    *Metrics
	maxBody    int64
	runTimeout time.Duration
	now        func() time.Time
	mux        *http.ServeMux
	silences   Silences
	verdicts   Verdicts
	denylist   Denylist
	kill       KillSwitch
	outbox     Outbox
	vis        Visibility
	limit      *clientlimit.Limiter
	// equal compares two SHA-256 digests: subtle.ConstantTimeCompare,
	// replaced in tests to see that it is what decides.
	equal func(x, y []byte) int
}

var _ http.Handler = (*Handler)(nil)

// Routes.
const (
	runPattern   = "POST /v1/playbooks/{name}/run"
	auditPattern = "GET /v1/audit"
)

// New validates o and returns the handler. The errors name the field
// (tokens[i].sha256, …) and say how to fix it.
func New(o Options) (*Handler, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	tokens, err := compileTokens(o.Tokens, o.Getenv)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	if o.Runner == nil {
		errs = append(errs, errors.New("runner: required"))
	}
	if o.Audit == nil {
		errs = append(errs, errors.New("audit: required"))
	}
	if o.MaxBody < 0 || o.RunTimeout < 0 {
		errs = append(errs, errors.New("max_body and run_timeout: must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("responder api: %w", err)
	}
	h := &Handler{
		tokens: tokens, runner: o.Runner, audit: o.Audit, log: o.Log, metrics: o.Metrics,
		maxBody: o.MaxBody, runTimeout: o.RunTimeout, now: o.Now, equal: subtle.ConstantTimeCompare, limit: o.Limit,
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.log = h.log.With("component", "respapi")
	if h.maxBody == 0 {
		h.maxBody = DefaultMaxBody
	}
	if h.runTimeout == 0 {
		h.runTimeout = DefaultRunTimeout
	}
	if h.now == nil {
		h.now = time.Now
	}
	if h.limit == nil {
		h.limit = clientlimit.New(clientlimit.Options{Endpoint: "api", Audit: o.Audit, Log: h.log, Now: h.now})
	}
	h.mux = http.NewServeMux()
	h.mux.HandleFunc(runPattern, h.run)
	h.mux.HandleFunc(auditPattern, h.query)
	if o.Silences != nil {
		h.silences = o.Silences
		h.mux.HandleFunc(silencesGet, h.listSilences)
		h.mux.HandleFunc(silencesPost, h.addSilence)
		h.mux.HandleFunc(silencesDelete, h.expireSilence)
	}
	if o.Denylist != nil {
		h.denylist = o.Denylist
		h.mux.HandleFunc(denylistGet, h.serveDenylist)
	}
	if o.KillSwitch != nil {
		h.kill = o.KillSwitch
		h.mux.HandleFunc(killSwitchGet, h.getKillSwitch)
		h.mux.HandleFunc(killSwitchPut, h.putKillSwitch)
	}
	if o.Verdicts != nil {
		h.verdicts = o.Verdicts
		h.mux.HandleFunc(falsePositivePattern, h.falsePositive)
	}
	if o.Outbox != nil {
		h.outbox = o.Outbox
		h.mux.HandleFunc(outboxRequeuePattern, h.outboxRepair(OutboxRequeue))
		h.mux.HandleFunc(outboxDismissPattern, h.outboxRepair(OutboxDismiss))
	}
	if o.Visibility != nil {
		h.vis = o.Visibility
		h.serveVisibility()
	}
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	route := "other"
	switch _, p := h.mux.Handler(r); p {
	case runPattern:
		route = "run"
	case auditPattern:
		route = "audit"
	case silencesGet, silencesPost, silencesDelete:
		route = "silences"
	case falsePositivePattern:
		route = "false_positive"
	case denylistGet:
		route = "denylist"
	case killSwitchGet, killSwitchPut:
		route = "kill_switch"
	case outboxRequeuePattern, outboxDismissPattern:
		route = "outbox"
	case invAgentsGet, invRoutesGet, invAgentRoutesGet, findingsGet, accessGet, agentGet, routeGet, eventsGet:
		route = "visibility"
	}
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	sw.Header().Set("Cache-Control", "no-store")
	sw.Header().Set("X-Content-Type-Options", "nosniff")
	// A token that authenticates is its own client; anything else is its
	// address, so that a flood without a token cannot spend a token's
	// budget.
	client := clientlimit.IP(r.RemoteAddr)
	tok, err := h.authenticate(r)
	if err == nil {
		client = clientlimit.Client{Kind: "token", ID: tok.name}
	}
	r = r.WithContext(context.WithValue(r.Context(), authKey{}, authResult{tok, err}))
	if ok, wait := h.limit.Admit(client); !ok {
		h.limit.Refused(r.Context(), client, clientlimit.ReasonRateLimited, r.URL.Path)
		sw.Header().Set("Retry-After", clientlimit.RetryAfter(wait))
		writeError(sw, http.StatusTooManyRequests, "too many requests; retry after "+clientlimit.RetryAfter(wait)+" s")
	} else {
		h.mux.ServeHTTP(sw, r)
	}
	h.metrics.request(route, sw.code, time.Since(start).Seconds())
}

// Limiter returns the handler's limiter, to run (Run) beside the server.
func (h *Handler) Limiter() *clientlimit.Limiter { return h.limit }

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// runBody is the body of POST /v1/playbooks/{name}/run.
type runBody struct {
	AgentID   string `json:"agent_id"`
	DryRun    bool   `json:"dry_run"`
	Reason    string `json:"reason"`
	RequestID string `json:"request_id"`
}

// Limits on the run body's fields.
const (
	maxAgentID = 256
	maxReason  = 1024
)

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

func (b *runBody) validate() error {
	var errs []error
	switch {
	case b.RequestID == "":
		errs = append(errs, errors.New("request_id: required; it is the idempotency key: send the same one to retry, a new one (e.g. a UUID) for a new run"))
	case !requestIDRE.MatchString(b.RequestID):
		errs = append(errs, errors.New("request_id: 1 to 128 letters, digits, '.', '_', ':' or '-'"))
	}
	switch {
	case b.AgentID == "":
		errs = append(errs, errors.New("agent_id: required"))
	case len(b.AgentID) > maxAgentID:
		errs = append(errs, fmt.Errorf("agent_id: longer than %d bytes", maxAgentID))
	case strings.HasPrefix(b.AgentID, "*"):
		errs = append(errs, errors.New("agent_id: names no single agent (a global_event or agent_flood id); give a real agent id"))
	case strings.IndexFunc(b.AgentID, unicode.IsControl) >= 0:
		errs = append(errs, errors.New("agent_id: holds a control character"))
	}
	if len(b.Reason) > maxReason {
		errs = append(errs, fmt.Errorf("reason: longer than %d bytes", maxReason))
	}
	return errors.Join(errs...)
}

// decodeStrict decodes exactly one JSON value into v: unknown fields,
// repeated keys and trailing data are errors (encoding/json refuses raw
// control characters in strings itself).
func decodeStrict(body []byte, v any) error {
	if k, dup := duplicateKey(body); dup {
		// encoding/json would let the last one win, case-insensitively;
		// no decoder of agentwatch picks a winner.
		return fmt.Errorf("body: key %.64q appears twice in one object", k)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("body: data after the JSON object")
	}
	return nil
}

// duplicateKey returns the first key that repeats within one object of
// the JSON text body, keys compared as encoding/json matches them to
// fields (case folded). Broken JSON is left to the decoder to report.
func duplicateKey(body []byte) (string, bool) {
	type frame struct {
		obj, wantKey bool
		keys         map[string]struct{}
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				stack = append(stack, frame{obj: d == '{', wantKey: true})
				continue
			}
			stack = stack[:len(stack)-1]
			tok = nil // the closed container is its parent's value
		}
		if len(stack) == 0 || !stack[len(stack)-1].obj {
			continue
		}
		f := &stack[len(stack)-1]
		if !f.wantKey {
			f.wantKey = true
			continue
		}
		k, _ := tok.(string)
		folded := foldKey(k)
		if _, dup := f.keys[folded]; dup {
			return k, true
		}
		if f.keys == nil {
			f.keys = map[string]struct{}{}
		}
		f.keys[folded] = struct{}{}
		f.wantKey = false
	}
}

// foldKey maps every rune of k to the smallest of its simple case folds,
// so that keys encoding/json would match to one field (EqualFold) map to
// one string.
func foldKey(k string) string {
	return strings.Map(func(r rune) rune {
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		return min
	}, k)
}

// run serves POST /v1/playbooks/{name}/run.
func (h *Handler) run(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rec := audit.Record{Actor: audit.Actor{Kind: audit.ActorAPI}, Action: audit.ActionPlaybook, Playbook: name, Result: audit.ResultRefused}
	tok, err := h.authenticate(r)
	if err != nil {
		h.unauthorized(w, r, rec, err)
		return
	}
	rec.Actor.TokenName = tok.name

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			h.refuse(w, r, rec, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", h.maxBody))
		} else {
			h.refuse(w, r, rec, http.StatusBadRequest, "read body: "+err.Error())
		}
		return
	}
	var in runBody
	bad := decodeStrict(body, &in)
	if bad == nil {
		bad = in.validate()
	}
	rec.AgentID, rec.DryRun = in.AgentID, in.DryRun
	rec.Why = why(in.Reason)

	if !tok.mayRun(name) {
		h.refuse(w, r, rec, http.StatusForbidden, fmt.Sprintf("token %s may not run playbook %.80q", tok.name, name))
		return
	}
	if bad != nil {
		h.refuse(w, r, rec, http.StatusBadRequest, bad.Error())
		return
	}
	if !playbookRE.MatchString(name) {
		h.refuse(w, r, rec, http.StatusNotFound, fmt.Sprintf("unknown playbook %.80q", name))
		return
	}

	req := Request{
		Manual: playbooks.Manual{Playbook: name, AgentID: in.AgentID, DryRun: in.DryRun,
			Key: "api:" + tok.name + ":" + in.RequestID},
		Actor: rec.Actor, Reason: in.Reason, RequestID: in.RequestID,
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.runTimeout)
	defer cancel()
	res, err := h.runner.Run(ctx, req)
	switch {
	case errors.Is(err, playbooks.ErrUnknownPlaybook):
		h.refuse(w, r, rec, http.StatusNotFound, fmt.Sprintf("unknown playbook %.80q", name))
		return
	case errors.Is(err, ErrBadRequest):
		h.refuse(w, r, rec, http.StatusBadRequest, err.Error())
		return
	case err != nil:
		rec.Result, rec.Detail = audit.ResultFailed, err.Error()
		h.record(ctx, rec)
		h.log.Error("playbook run failed", "playbook", name, "agent_id", in.AgentID, "token", tok.name,
			"request_id", in.RequestID, "err", err)
		writeError(w, http.StatusInternalServerError, "run failed; the responder log has the reason (request_id "+in.RequestID+")")
		return
	}
	d := res.Decision
	rec.DecisionID, rec.IncidentID, rec.CredentialID = d.ID, d.ID, d.Target.CredentialID
	rec.DryRun = rec.DryRun || d.DryRun
	rec.Result, rec.Detail = res.Outcome(), summary(res)
	h.record(ctx, rec)
	writeJSON(w, http.StatusOK, runResponse(res))
}

func why(reason string) string {
	if reason == "" {
		return "manual run via API"
	}
	return "manual run via API: " + reason
}

// summary is the request record's detail: the step outcomes counted.
func summary(res Result) string {
	if res.Duplicate {
		return "duplicate request_id: decision " + res.Decision.ID + " ran before, nothing ran now"
	}
	counts := map[audit.Result]int{}
	var order []audit.Result
	for i := range res.Decision.Steps {
		s := audit.Result("pending")
		if i < len(res.Steps) {
			s = res.Steps[i].Status
		}
		if counts[s] == 0 {
			order = append(order, s)
		}
		counts[s]++
	}
	parts := make([]string, len(order))
	for i, s := range order {
		parts[i] = fmt.Sprintf("%d %s", counts[s], s)
	}
	return fmt.Sprintf("%d steps: %s", len(res.Decision.Steps), strings.Join(parts, ", "))
}

// RunResponse is the JSON answer to a run.
type RunResponse struct {
	DecisionID   string `json:"decision_id"`
	Playbook     string `json:"playbook"`
	AgentID      string `json:"agent_id"`
	CredentialID string `json:"credential_id,omitempty"`
	DryRun       bool   `json:"dry_run"`
	// Duplicate says the request_id was seen before: the decision is the
	// earlier run's and nothing ran now.
	Duplicate bool `json:"duplicate"`
	// Result is Result.Outcome.
	Result audit.Result   `json:"result"`
	Steps  []StepResponse `json:"steps"`
}

// StepResponse is one step of a RunResponse.
type StepResponse struct {
	ID         string `json:"id"`
	Index      int    `json:"index"`
	Kind       string `json:"kind"`
	DryRun     bool   `json:"dry_run"`
	TTLSeconds int64  `json:"ttl_seconds,omitempty"`
	// Skip is why the plan skips the step, if it does.
	Skip string `json:"skip,omitempty"`
	// Status is an audit.Result, or "pending" if the Runner gave none.
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

func runResponse(res Result) RunResponse {
	d := res.Decision
	out := RunResponse{
		DecisionID: d.ID, Playbook: d.Playbook, AgentID: d.Target.AgentID, CredentialID: d.Target.CredentialID,
		DryRun: d.DryRun, Duplicate: res.Duplicate, Result: res.Outcome(), Steps: make([]StepResponse, len(d.Steps)),
	}
	for i, a := range d.Steps {
		s := StepResponse{ID: a.ID, Index: a.Index, Kind: string(a.Kind()), DryRun: a.DryRun,
			TTLSeconds: int64(a.TTL / time.Second), Skip: a.Skip, Status: "pending"}
		if i < len(res.Steps) {
			s.Status, s.Detail = string(res.Steps[i].Status), res.Steps[i].Detail
		}
		out.Steps[i] = s
	}
	return out
}

// AuditResponse is the JSON answer to GET /v1/audit.
type AuditResponse struct {
	Records []audit.Record `json:"records"`
	// Truncated says more records match: narrow the time range.
	Truncated bool `json:"truncated"`
}

// query serves GET /v1/audit?agent=&incident=&from=&to=&limit=.
func (h *Handler) query(w http.ResponseWriter, r *http.Request) {
	rec := audit.Record{Actor: audit.Actor{Kind: audit.ActorAPI}, Action: audit.ActionAuditQuery, Result: audit.ResultRefused}
	tok, err := h.authenticate(r)
	if err != nil {
		h.unauthorized(w, r, rec, err)
		return
	}
	rec.Actor.TokenName = tok.name
	f, limit, bad := h.parseFilter(r.URL.RawQuery)
	rec.AgentID, rec.IncidentID = f.AgentID, f.IncidentID
	if !tok.canReadAudit {
		h.refuse(w, r, rec, http.StatusForbidden, "token "+tok.name+" may not read the audit")
		return
	}
	if bad != nil {
		h.refuse(w, r, rec, http.StatusBadRequest, bad.Error())
		return
	}
	f.Limit = limit + 1 // one more, to tell whether there are more
	recs, err := h.audit.Query(r.Context(), f)
	if err != nil {
		h.log.Error("audit query failed", "token", tok.name, "err", err)
		h.fail(w, r, rec, "audit query", err)
		return
	}
	out := AuditResponse{Records: recs, Truncated: len(recs) > limit}
	if out.Truncated {
		out.Records = recs[:limit]
	}
	if out.Records == nil {
		out.Records = []audit.Record{}
	}
	rec.Result = audit.ResultOK
	rec.Detail = fmt.Sprintf("from %d to %d: %d records", f.FromMs, f.ToMs, len(out.Records))
	h.record(r.Context(), rec)
	writeJSON(w, http.StatusOK, out)
}

// parseFilter reads the audit query's parameters: agent, incident, from
// (inclusive) and to (exclusive), each RFC 3339 or Unix milliseconds (to
// defaults to no bound, from to DefaultAuditWindow before to or now),
// limit (default
// audit.DefaultLimit, at most MaxAuditLimit). Unknown or repeated
// parameters are errors, so a typo is not a silently wider query.
func (h *Handler) parseFilter(raw string) (audit.Filter, int, error) {
	var f audit.Filter
	q, err := url.ParseQuery(raw)
	if err != nil {
		return f, 0, fmt.Errorf("query string: %w", err)
	}
	var errs []error
	for k, v := range q {
		switch k {
		case "agent", "incident", "from", "to", "limit":
			if len(v) > 1 {
				errs = append(errs, fmt.Errorf("%s: given %d times; give it once", k, len(v)))
			}
		default:
			errs = append(errs, fmt.Errorf("%.40q: unknown parameter; use agent, incident, from, to, limit", k))
		}
	}
	f.AgentID, f.IncidentID = q.Get("agent"), q.Get("incident")
	if v := q.Get("to"); v != "" {
		if f.ToMs, err = parseTime(v); err != nil {
			errs = append(errs, fmt.Errorf("to: %w", err))
		}
	}
	if v := q.Get("from"); v != "" {
		if f.FromMs, err = parseTime(v); err != nil {
			errs = append(errs, fmt.Errorf("from: %w", err))
		}
	} else {
		end := h.now().UnixMilli()
		if f.ToMs != 0 {
			end = f.ToMs
		}
		f.FromMs = end - DefaultAuditWindow.Milliseconds()
	}
	limit := audit.DefaultLimit
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > MaxAuditLimit {
			errs = append(errs, fmt.Errorf("limit: want 1 to %d", MaxAuditLimit))
		}
	}
	if err := f.Validate(); err != nil {
		errs = append(errs, err)
	}
	return f, limit, errors.Join(errs...)
}

// parseTime reads RFC 3339 (fractions allowed) or Unix milliseconds.
func parseTime(s string) (int64, error) {
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("%.40q: want RFC 3339 (2025-03-04T12:00:00Z) or Unix milliseconds", s)
	}
	return t.UnixMilli(), nil
}

// unauthorized answers 401 and counts the refusal for the client's sampled
// audit row: anyone who can reach the port can send these, so one row
// each would let them fill the trail. The presented secret is never
// recorded.
func (h *Handler) unauthorized(w http.ResponseWriter, r *http.Request, _ audit.Record, err error) {
	challenge := `Bearer realm="agentwatch-responder"`
	reason := clientlimit.ReasonNoToken
	if errors.Is(err, errBadToken) {
		challenge += `, error="invalid_token"`
		reason = clientlimit.ReasonBadToken
	}
	w.Header().Set("WWW-Authenticate", challenge)
	h.limit.Refused(r.Context(), clientlimit.IP(r.RemoteAddr), reason, r.URL.Path)
	writeError(w, http.StatusUnauthorized, "a valid bearer token is required")
}

// refuse answers code with detail and records the refusal.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, rec audit.Record, code int, detail string) {
	rec.Result, rec.Detail = audit.ResultRefused, detail
	h.record(r.Context(), rec)
	h.log.Warn("api request refused", "status", code, "token", rec.Actor.TokenName, "reason", detail, "remote", r.RemoteAddr)
	writeError(w, code, detail)
}

// fail audits rec as failed with err and answers 500 naming what failed;
// the reason goes to the audit (and so the log), not to the client.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, rec audit.Record, what string, err error) {
	rec.Result, rec.Detail = audit.ResultFailed, err.Error()
	h.record(r.Context(), rec)
	writeError(w, http.StatusInternalServerError, what+" failed; the responder log has the reason")
}

// record appends rec to the audit. A failure is logged and counted, not
// returned: the caller's answer does not depend on it, and the Logger has
// already written the record to the log.
func (h *Handler) record(ctx context.Context, rec audit.Record) {
	if err := h.audit.Append(context.WithoutCancel(ctx), rec); err != nil {
		h.metrics.auditError()
		h.log.Error("audit record not stored", "action", rec.Action, "token", rec.Actor.TokenName, "err", err)
	}
}

func writeError(w http.ResponseWriter, code int, msg string) {
	if !utf8.ValidString(msg) {
		msg = strings.ToValidUTF8(msg, "\uFFFD")
	}
	writeJSON(w, code, map[string]string{"error": msg})
}

// writeJSON answers code with v as JSON, inert on a terminal
// (audit.InertJSON).
func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(audit.InertJSON(b), '\n'))
}
