package respapi

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/internal/visibility/tabular"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// Visibility answers the visibility questions (a *visibility.Service):
// each method audits its question under who before it answers.
type Visibility interface {
	Agents(ctx context.Context, who audit.Actor, span visibility.Span) ([]visibility.AgentRow, error)
	Routes(ctx context.Context, who audit.Actor, span visibility.Span) ([]visibility.RouteRow, error)
	AgentRoutes(ctx context.Context, who audit.Actor, span visibility.Span, agentID string) ([]visibility.AgentRouteRow, error)
	Findings(ctx context.Context, who audit.Actor) ([]visibility.Finding, error)
	Access(ctx context.Context, who audit.Actor, req visibility.AccessRequest) (visibility.AccessAnswer, error)
	Agent(ctx context.Context, who audit.Actor, agentID string, span visibility.Span) (visibility.AgentProfile, error)
	Route(ctx context.Context, who audit.Actor, route string, span visibility.Span) (visibility.RouteProfile, error)
	Events(ctx context.Context, who audit.Actor, q visibility.EventQuery) ([]event.Event, error)
}

var _ Visibility = (*visibility.Service)(nil)

// The visibility routes (tokens with can_read_inventory).
const (
	invAgentsGet      = "GET /v1/inventory/agents"
	invRoutesGet      = "GET /v1/inventory/routes"
	invAgentRoutesGet = "GET /v1/inventory/agent-routes"
	findingsGet       = "GET /v1/findings"
	accessGet         = "GET /v1/access"
	agentGet          = "GET /v1/agents/{id}"
	routeGet          = "GET /v1/routes"
	eventsGet         = "GET /v1/events"
)

// Default time ranges of the visibility questions without from.
const (
	// DefaultInventorySpan is the inventory's, an agent's and a route's.
	DefaultInventorySpan = 30 * 24 * time.Hour
	// DefaultAccessSpan is the access question's and the events'.
	DefaultAccessSpan = 24 * time.Hour
)

func (h *Handler) serveVisibility() {
	h.mux.HandleFunc(invAgentsGet, h.ask("inventory agents", []string{"from", "to"}, DefaultInventorySpan,
		func(ctx context.Context, who audit.Actor, q url.Values, sp visibility.Span) (any, string, error) {
			rows, err := h.vis.Agents(ctx, who, sp)
			return rows, "agents", err
		}))
	h.mux.HandleFunc(invRoutesGet, h.ask("inventory routes", []string{"from", "to"}, DefaultInventorySpan,
		func(ctx context.Context, who audit.Actor, q url.Values, sp visibility.Span) (any, string, error) {
			rows, err := h.vis.Routes(ctx, who, sp)
			return rows, "routes", err
		}))
	h.mux.HandleFunc(invAgentRoutesGet, h.ask("inventory agent-routes", []string{"from", "to", "agent"}, DefaultInventorySpan,
		func(ctx context.Context, who audit.Actor, q url.Values, sp visibility.Span) (any, string, error) {
			rows, err := h.vis.AgentRoutes(ctx, who, sp, q.Get("agent"))
			return rows, "agent-routes", err
		}))
	h.mux.HandleFunc(findingsGet, h.ask("findings", nil, 0,
		func(ctx context.Context, who audit.Actor, q url.Values, _ visibility.Span) (any, string, error) {
			fs, err := h.vis.Findings(ctx, who)
			return fs, "findings", err
		}))
	h.mux.HandleFunc(accessGet, h.ask("access", []string{"from", "to", "tag", "template", "agent", "samples"}, DefaultAccessSpan,
		func(ctx context.Context, who audit.Actor, q url.Values, sp visibility.Span) (any, string, error) {
			req := visibility.AccessRequest{Span: sp, Tag: q.Get("tag"), Template: q.Get("template"), AgentID: q.Get("agent")}
			if v := q.Get("samples"); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil {
					return nil, "", badParam("samples: %.40q is not a number", v)
				}
				req.Samples = n
			}
			ans, err := h.vis.Access(ctx, who, req)
			return ans, "access", err
		}))
	h.mux.HandleFunc(agentGet, h.ask("agent", []string{"from", "to"}, DefaultInventorySpan,
		func(ctx context.Context, who audit.Actor, q url.Values, sp visibility.Span) (any, string, error) {
			p, err := h.vis.Agent(ctx, who, q.Get(pathAgent), sp)
			return p, "agent", err
		}))
	h.mux.HandleFunc(routeGet, h.ask("route", []string{"from", "to", "route"}, DefaultInventorySpan,
		func(ctx context.Context, who audit.Actor, q url.Values, sp visibility.Span) (any, string, error) {
			p, err := h.vis.Route(ctx, who, q.Get("route"), sp)
			return p, "route", err
		}))
	h.mux.HandleFunc(eventsGet, h.ask("events", []string{"from", "to", "agent", "route", "limit"}, DefaultAccessSpan,
		func(ctx context.Context, who audit.Actor, q url.Values, sp visibility.Span) (any, string, error) {
			eq := visibility.EventQuery{Span: sp, AgentID: q.Get("agent"), Routes: q["route"]}
			if v := q.Get("limit"); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil {
					return nil, "", badParam("limit: %.40q is not a number", v)
				}
				eq.Limit = n
			}
			evs, err := h.vis.Events(ctx, who, eq)
			return evs, "events", err
		}))
}

// pathAgent carries the {id} path value among the query values; a key no
// query parameter can be, as parameters are checked against a list.
const pathAgent = "\x00agent"

// paramError is a bad parameter found before the question reaches the
// service: refused and audited here.
type paramError struct{ msg string }

func (e *paramError) Error() string { return e.msg }

func badParam(format string, a ...any) error { return &paramError{msg: fmt.Sprintf(format, a...)} }

// askFunc asks the service one question; it returns the answer and the
// name of its CSV file.
type askFunc func(ctx context.Context, who audit.Actor, q url.Values, sp visibility.Span) (any, string, error)

// ask serves one visibility question: authentication, the
// can_read_inventory grant, the parameters (only those of params, each
// once but route; format and from/to for all), then the service, which
// audits the question itself. A refusal before the service (no grant, a
// bad parameter) is audited here, as an ask refused.
func (h *Handler) ask(name string, params []string, defSpan time.Duration, fn askFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := audit.Record{Actor: audit.Actor{Kind: audit.ActorAPI}, Action: audit.ActionAsk, Result: audit.ResultRefused}
		tok, err := h.authenticate(r)
		if err != nil {
			h.unauthorized(w, r, rec, err)
			return
		}
		rec.Actor.TokenName = tok.name
		question := name + " " + r.URL.RequestURI()
		rec.Detail = question
		if !tok.canReadInventory {
			h.refuse(w, r, rec, http.StatusForbidden, "token "+tok.name+" may not ask the visibility questions (can_read_inventory)")
			return
		}
		q, format, sp, err := h.visParams(r, params, defSpan)
		if id := r.PathValue("id"); err == nil && id != "" {
			q.Set(pathAgent, id)
			rec.AgentID = id
		}
		if err != nil {
			h.refuseAsk(w, r, rec, err.Error())
			return
		}
		ans, file, err := fn(r.Context(), rec.Actor, q, sp)
		var pe *paramError
		switch {
		case errors.As(err, &pe):
			h.refuseAsk(w, r, rec, pe.msg)
			return
		case errors.Is(err, visibility.ErrInvalid):
			// The service audited the refusal.
			writeError(w, http.StatusBadRequest, err.Error())
			return
		case errors.Is(err, visibility.ErrNotFound):
			writeError(w, http.StatusNotFound, err.Error())
			return
		case errors.Is(err, visibility.ErrNotAudited):
			h.log.Error("visibility question refused: audit write failed", "token", tok.name, "err", err)
			h.metrics.auditError()
			writeError(w, http.StatusServiceUnavailable, "the question could not be written to the audit trail, so it is not answered; retry later")
			return
		case err != nil:
			h.log.Error("visibility question failed", "token", tok.name, "question", name, "err", err)
			h.fail(w, r, rec, name, err)
			return
		}
		if format == tabular.FormatCSV {
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			w.Header().Set("Content-Disposition", `attachment; filename="`+file+`.csv"`)
			w.WriteHeader(http.StatusOK)
			if err := tabular.Write(w, tabular.FormatCSV, ans); err != nil {
				h.log.Error("write CSV answer", "token", tok.name, "err", err)
			}
			return
		}
		writeJSON(w, http.StatusOK, ans)
	}
}

// refuseAsk answers 400 with msg and audits the question (rec.Detail)
// as refused, with msg.
func (h *Handler) refuseAsk(w http.ResponseWriter, r *http.Request, rec audit.Record, msg string) {
	rec.Result, rec.Detail = audit.ResultRefused, rec.Detail+": "+msg
	h.record(r.Context(), rec)
	h.log.Warn("api request refused", "status", http.StatusBadRequest, "token", rec.Actor.TokenName, "reason", msg, "remote", r.RemoteAddr)
	writeError(w, http.StatusBadRequest, msg)
}

// visParams reads a question's query string: only the parameters of
// params and format, each once (route may repeat), from and to through
// visibility.ParseSpan (a day alone is that whole UTC day). The format is
// CSV with format=csv or an Accept header preferring text/csv, JSON
// otherwise.
func (h *Handler) visParams(r *http.Request, params []string, defSpan time.Duration) (url.Values, tabular.Format, visibility.Span, error) {
	var sp visibility.Span
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, "", sp, fmt.Errorf("query string: %w", err)
	}
	known := append([]string{"format"}, params...)
	var errs []error
	for k, v := range q {
		switch {
		case !contains(known, k):
			errs = append(errs, fmt.Errorf("%.40q: unknown parameter; use %s", k, strings.Join(known, ", ")))
		case len(v) > 1 && k != "route":
			errs = append(errs, fmt.Errorf("%s: given %d times; give it once", k, len(v)))
		}
	}
	format := tabular.FormatJSON
	switch f := q.Get("format"); f {
	case "csv":
		format = tabular.FormatCSV
	case "json":
	case "":
		if acceptsCSV(r.Header.Values("Accept")) {
			format = tabular.FormatCSV
		}
	default:
		errs = append(errs, fmt.Errorf("format: %.40q; want json or csv", f))
	}
	if contains(params, "from") {
		sp, err = visibility.ParseSpan(q.Get("from"), q.Get("to"), h.now(), defSpan)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return q, format, sp, errors.Join(errs...)
}

// acceptsCSV reports whether the Accept header names text/csv before any
// JSON type (order, not q-values: clients that ask for CSV name it).
func acceptsCSV(vals []string) bool {
	for _, v := range vals {
		for _, part := range strings.Split(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			switch mt {
			case "text/csv":
				return true
			case "application/json", "*/*":
				return false
			}
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
