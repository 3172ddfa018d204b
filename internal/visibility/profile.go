package visibility

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/routes"
)

// maxIDLen caps an asked agent id or route: longer ones match nothing
// the stores keep.
const maxIDLen = routes.MaxPathLen

func validateID(what, id string) error {
	if id == "" {
		return invalidf("%s: required", what)
	}
	if len(id) > maxIDLen {
		return invalidf("%s: longer than %d bytes", what, maxIDLen)
	}
	return nil
}

// Agent is one agent's profile over span: its inventory row (lifecycle
// and first and last call over the lookback), its registry entry, its
// routes used versus approved, its timeline (daily calls, anomalies, the
// responder's actions and the analysts' verdicts, in time order) and its
// findings. An agent neither registered nor seen over the lookback or the
// span is ErrNotFound.
func (s *Service) Agent(ctx context.Context, who audit.Actor, agentID string, span Span) (_ AgentProfile, err error) {
	defer s.observe("agent", time.Now(), &err)
	bad := validateID("agent", agentID)
	if bad == nil {
		bad = span.Validate()
	}
	if err := s.ask(ctx, who, question("agent", "id", quote(agentID), "span", spanArg(span)), agentID, bad); err != nil {
		return AgentProfile{}, err
	}
	v := s.view()
	p, err := s.agentProfile(ctx, v, agentID, span)
	if err != nil {
		return AgentProfile{}, fmt.Errorf("agent %.80q: %w", agentID, err)
	}
	return p, nil
}

func (s *Service) agentProfile(ctx context.Context, v view, id string, span Span) (AgentProfile, error) {
	var (
		p                AgentProfile
		all              []AgentUsage
		lookDaily        []DailyCount
		pairs, lookPairs []AgentRouteUsage
		timeline         []TimelineEntry
	)
	// The reads are independent and each is small (one agent's rows):
	// asked at once, the profile takes about as long as the slowest.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { all, err = s.src.Agents(gctx, span, id); return err })
	g.Go(func() (err error) { lookDaily, err = s.src.Daily(gctx, v.look, ByAgent, id, ""); return err })
	g.Go(func() (err error) { pairs, err = s.src.AgentRoutes(gctx, span, id, ""); return err })
	if span != v.look {
		g.Go(func() (err error) { lookPairs, err = s.src.AgentRoutes(gctx, v.look, id, ""); return err })
	}
	g.Go(func() (err error) { timeline, err = s.timeline(gctx, id, span); return err })
	if err := g.Wait(); err != nil {
		return p, err
	}
	if span == v.look {
		lookPairs = pairs
	}
	su := AgentUsage{AgentID: id}
	if i := slices.IndexFunc(all, func(u AgentUsage) bool { return u.AgentID == id }); i >= 0 {
		su = all[i]
	}
	var lu Usage
	for _, d := range lookDaily {
		lu.merge(d.Usage)
	}
	first, last := seen(lu, su.Usage)
	a, registered := v.reg.Lookup(id)
	if !registered && last == 0 {
		since := v.look.From
		if span.From.Before(since) {
			since = span.From
		}
		return p, notFoundf("agent %.80q is neither registered nor seen since %s", id, fmtTime(since))
	}
	if registered {
		c := *a
		p.Registry = &c
	}
	p.Routes = agentRouteRows(v.reg, pairs, []string{id})
	p.Agent = s.agentRow(v, id, su, first, last)
	for _, r := range p.Routes {
		if r.Known && !r.Approved && r.Calls > 0 {
			p.Agent.UnapprovedRoutes++
		}
	}
	p.Timeline = timeline
	lookRow := p.Agent
	if lookRow.LastSeenMs != 0 {
		lookRow.Calls, lookRow.Routes = lu.Calls, len(lookPairs)
	}
	p.Findings = s.agentFindings(v, lookRow, lookPairs)
	sortFindings(p.Findings)
	if p.Findings == nil {
		p.Findings = []Finding{}
	}
	return p, nil
}

// Timeline entry kinds, in the order entries of one instant are sorted.
const (
	TimelineCalls   = "calls"
	TimelineAnomaly = "anomaly"
	TimelineAction  = "action"
	TimelineVerdict = "verdict"
)

// timeline merges an agent's daily calls, anomalies, actions and
// verdicts within span, in time order.
func (s *Service) timeline(ctx context.Context, id string, span Span) ([]TimelineEntry, error) {
	var (
		daily    []DailyCount
		anoms    []anomaly.Anomaly
		acts     []audit.Record
		verdicts []anomaly.Verdict
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { daily, err = s.src.Daily(gctx, span, ByAgent, id, ""); return err })
	g.Go(func() (err error) { anoms, err = s.src.Anomalies(gctx, span, id); return err })
	g.Go(func() (err error) { acts, err = s.src.Actions(gctx, span, id); return err })
	g.Go(func() (err error) { verdicts, err = s.src.Verdicts(gctx, span); return err })
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := []TimelineEntry{}
	for i := range daily {
		d := &daily[i]
		out = append(out, TimelineEntry{AtMs: d.Day.UnixMilli(), Kind: TimelineCalls, Day: d,
			Summary: fmt.Sprintf("%d calls (%d 2xx, %d 4xx of which %d 401 and %d 403, %d 5xx), %d bytes in, %d bytes out",
				d.Calls, d.Status.S2xx, d.Status.S4xx, d.Status.S401, d.Status.S403, d.Status.S5xx, d.RequestBytes, d.ResponseBytes)})
	}
	for i := range anoms {
		a := &anoms[i]
		out = append(out, TimelineEntry{AtMs: a.WindowStartMs, Kind: TimelineAnomaly, Anomaly: a,
			Summary: fmt.Sprintf("%s anomaly, severity %s, score %.2f: %s", a.Kind, a.Severity, a.Score, a.Summary)})
	}
	for i := range acts {
		r := &acts[i]
		if r.Action == audit.ActionAsk || r.Action == audit.ActionAuditQuery {
			continue // questions about the agent, not actions on it
		}
		sum := fmt.Sprintf("%s %s by %s", r.Action, r.Result, r.Actor.String())
		if d := strings.Join(nonEmpty(r.Why, r.Detail), "; "); d != "" {
			sum += ": " + d
		}
		out = append(out, TimelineEntry{AtMs: r.AtMs, Kind: TimelineAction, Action: r, Summary: sum})
	}
	for i := range verdicts {
		vd := &verdicts[i]
		if vd.AgentID != id {
			continue
		}
		out = append(out, TimelineEntry{AtMs: vd.AtMs, Kind: TimelineVerdict, Verdict: vd,
			Summary: fmt.Sprintf("%s on %s anomaly %s by %s", vd.Verdict, vd.Kind, vd.AnomalyID, vd.Author)})
	}
	order := map[string]int{TimelineCalls: 0, TimelineAnomaly: 1, TimelineAction: 2, TimelineVerdict: 3}
	slices.SortStableFunc(out, func(a, b TimelineEntry) int {
		if c := cmp.Compare(a.AtMs, b.AtMs); c != 0 {
			return c
		}
		return cmp.Compare(order[a.Kind], order[b.Kind])
	})
	return out, nil
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Route is one route's profile over span: its row, its callers with their
// grants, and its callers per day. A route neither in the route
// inventory nor called in span is ErrNotFound.
func (s *Service) Route(ctx context.Context, who audit.Actor, route string, span Span) (_ RouteProfile, err error) {
	defer s.observe("route", time.Now(), &err)
	bad := validateID("route", route)
	if bad == nil {
		bad = span.Validate()
	}
	if err := s.ask(ctx, who, question("route", "route", quote(route), "span", spanArg(span)), "", bad); err != nil {
		return RouteProfile{}, err
	}
	v := s.view()
	pairs, err := s.src.AgentRoutes(ctx, span, "", route)
	if err != nil {
		return RouteProfile{}, fmt.Errorf("route %.80q: %w", route, err)
	}
	_, documented := v.inv.Lookup(route)
	if len(pairs) == 0 && !documented {
		return RouteProfile{}, notFoundf("route %.80q is neither in the route inventory nor called from %s to %s", route, fmtTime(span.From), fmtTime(span.To))
	}
	p := RouteProfile{Route: routeRow(v.inv, route), Callers: agentRouteRows(v.reg, pairs, nil)}
	if rows := routeRows(v, pairs, false); len(rows) == 1 {
		p.Route = rows[0]
	}
	if p.Daily, err = s.src.Daily(ctx, span, ByAgent, "", route); err != nil {
		return RouteProfile{}, fmt.Errorf("route %.80q: %w", route, err)
	}
	if p.Daily == nil {
		p.Daily = []DailyCount{}
	}
	return p, nil
}

// Events is the drill-down: the events q selects, newest first, at most
// q.Limit (default DefaultEventLimit, at most MaxEventLimit).
func (s *Service) Events(ctx context.Context, who audit.Actor, q EventQuery) (_ []event.Event, err error) {
	defer s.observe("events", time.Now(), &err)
	bad := q.Span.Validate()
	if bad == nil && (q.Limit < 0 || q.Limit > MaxEventLimit) {
		bad = invalidf("limit: %d; want 1 to %d (0: %d)", q.Limit, MaxEventLimit, DefaultEventLimit)
	}
	for _, r := range q.Routes {
		if bad == nil && (r == "" || len(r) > maxIDLen) {
			bad = invalidf("route: empty or longer than %d bytes", maxIDLen)
		}
	}
	rs := make([]string, len(q.Routes))
	for i, r := range q.Routes {
		rs[i] = quote(r)
	}
	qs := question("events", "agent", quoted(q.AgentID), "routes", strings.Join(rs, ","), "span", spanArg(q.Span), "limit", fmt.Sprint(q.EventLimit()))
	if err := s.ask(ctx, who, qs, q.AgentID, bad); err != nil {
		return nil, err
	}
	evs, err := s.src.Events(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	if evs == nil {
		evs = []event.Event{}
	}
	return evs, nil
}
