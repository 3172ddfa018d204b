package visibility

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// Agents is the agent inventory: every registered agent and every agent
// seen over the lookback or the span, with its lifecycle (relative to now)
// and first and last call over the lookback, its usage over span, and its
// owner and role from the registry. Sorted by agent id.
func (s *Service) Agents(ctx context.Context, who audit.Actor, span Span) (_ []AgentRow, err error) {
	defer s.observe("inventory_agents", time.Now(), &err)
	if err := s.ask(ctx, who, question("inventory agents", "span", spanArg(span)), "", span.Validate()); err != nil {
		return nil, err
	}
	pairs, err := s.src.AgentRoutes(ctx, span, "", "")
	if err != nil {
		return nil, fmt.Errorf("agent inventory: %w", err)
	}
	rows, err := s.agentRows(ctx, s.view(), span, pairs)
	if err != nil {
		return nil, fmt.Errorf("agent inventory: %w", err)
	}
	return rows, nil
}

// Routes is the route inventory: every route of the route inventory and
// every route called in span, with its tags, whether it is documented,
// deprecated or sensitive, and its callers and usage over span. Sorted by
// route.
func (s *Service) Routes(ctx context.Context, who audit.Actor, span Span) (_ []RouteRow, err error) {
	defer s.observe("inventory_routes", time.Now(), &err)
	if err := s.ask(ctx, who, question("inventory routes", "span", spanArg(span)), "", span.Validate()); err != nil {
		return nil, err
	}
	v := s.view()
	pairs, err := s.src.AgentRoutes(ctx, span, "", "")
	if err != nil {
		return nil, fmt.Errorf("route inventory: %w", err)
	}
	return routeRows(v, pairs, true), nil
}

// AgentRoutes is the agent × route table over span: each pair called,
// with whether the registry approves it, and each approved route not
// called in span (zero usage). agentID narrows to one agent; "" means
// every agent. Sorted by agent, then route.
func (s *Service) AgentRoutes(ctx context.Context, who audit.Actor, span Span, agentID string) (_ []AgentRouteRow, err error) {
	defer s.observe("inventory_agent_routes", time.Now(), &err)
	q := question("inventory agent-routes", "agent", quoted(agentID), "span", spanArg(span))
	if err := s.ask(ctx, who, q, agentID, span.Validate()); err != nil {
		return nil, err
	}
	v := s.view()
	pairs, err := s.src.AgentRoutes(ctx, span, agentID, "")
	if err != nil {
		return nil, fmt.Errorf("agent routes: %w", err)
	}
	ids := v.reg.IDs()
	if agentID != "" {
		ids = []string{agentID}
	}
	return agentRouteRows(v.reg, pairs, ids), nil
}

// agentRows builds the agent inventory over span; pairs are the agent ×
// route usage over span (AgentRoutes), which the caller has read.
func (s *Service) agentRows(ctx context.Context, v view, span Span, pairs []AgentRouteUsage) ([]AgentRow, error) {
	look, err := s.src.Agents(ctx, v.look, "")
	if err != nil {
		return nil, err
	}
	inSpan := look
	if span != v.look {
		if inSpan, err = s.src.Agents(ctx, span, ""); err != nil {
			return nil, err
		}
	}
	unapproved := map[string]int{}
	for _, p := range pairs {
		if ok, known := v.reg.Approved(p.AgentID, p.Route); known && !ok {
			unapproved[p.AgentID]++
		}
	}
	lookBy := make(map[string]AgentUsage, len(look))
	for _, u := range look {
		lookBy[u.AgentID] = u
	}
	spanBy := make(map[string]AgentUsage, len(inSpan))
	for _, u := range inSpan {
		spanBy[u.AgentID] = u
	}
	ids := slices.Concat(v.reg.IDs(), keys(lookBy), keys(spanBy))
	slices.Sort(ids)
	ids = slices.Compact(ids)
	rows := make([]AgentRow, 0, len(ids))
	for _, id := range ids {
		lu, su := lookBy[id], spanBy[id]
		if su.AgentID == "" {
			su.AgentID = id
		}
		first, last := seen(lu.Usage, su.Usage)
		row := s.agentRow(v, id, su, first, last)
		row.UnapprovedRoutes = unapproved[id]
		rows = append(rows, row)
	}
	return rows, nil
}

// agentRow fills one row but for UnapprovedRoutes.
func (s *Service) agentRow(v view, id string, u AgentUsage, first, last int64) AgentRow {
	for _, l := range []*[]string{&u.SourceIPs, &u.Credentials, &u.Gateways} {
		if *l == nil {
			*l = []string{} // JSON [], not null
		}
	}
	row := AgentRow{AgentID: id, AgentUsage: u, FirstSeenMs: first, LastSeenMs: last, ApprovedRoutes: -1}
	a, registered := v.reg.Lookup(id)
	if registered {
		row.Registered, row.Owner, row.Role = true, a.Owner, a.Role
		if a.ApprovedRoutes != nil {
			row.ApprovedRoutes = len(a.ApprovedRoutes)
		}
	}
	row.Lifecycle = s.lifecycle(v, registered, first, last)
	return row
}

// seen merges the first and last calls of two usages; 0 when neither
// has a call.
func seen(us ...Usage) (first, last int64) {
	for _, u := range us {
		if u.Calls == 0 {
			continue
		}
		if first == 0 || u.FirstMs < first {
			first = u.FirstMs
		}
		last = max(last, u.LastMs)
	}
	return first, last
}

// lifecycle places an agent: never seen (registered, no call), shadow
// (seen, absent from an enabled registry), dormant (no call for
// DormantDays), new (first call within NewDays), active.
func (s *Service) lifecycle(v view, registered bool, first, last int64) Lifecycle {
	switch {
	case last == 0:
		return LifecycleNeverSeen
	case v.reg.Enabled() && !registered:
		return LifecycleShadow
	case v.now.Sub(time.UnixMilli(last)) >= time.Duration(s.cfg.DormantDays)*day:
		return LifecycleDormant
	case v.now.Sub(time.UnixMilli(first)) < time.Duration(s.cfg.NewDays)*day:
		return LifecycleNew
	}
	return LifecycleActive
}

// routeRows sums pairs per route and adds, when withInventory, the
// inventory's routes nobody called (under the template as written, unless
// a called route has the same normalised form).
func routeRows(v view, pairs []AgentRouteUsage, withInventory bool) []RouteRow {
	type acc struct {
		row     RouteRow
		callers []string
	}
	by := map[string]*acc{}
	called := map[string]struct{}{} // normalised forms of the called routes
	for _, p := range pairs {
		a := by[p.Route]
		if a == nil {
			a = &acc{row: routeRow(v.inv, p.Route)}
			by[p.Route] = a
			called[inventory.NormalizeTemplate(p.Route)] = struct{}{}
		}
		a.row.Usage.merge(p.Usage)
		a.callers = append(a.callers, p.AgentID)
	}
	if withInventory {
		for _, t := range v.inv.Templates() {
			if _, ok := called[inventory.NormalizeTemplate(t)]; !ok {
				if _, dup := by[t]; !dup {
					by[t] = &acc{row: routeRow(v.inv, t)}
				}
			}
		}
	}
	out := make([]RouteRow, 0, len(by))
	for _, a := range by {
		slices.Sort(a.callers)
		a.callers = slices.Compact(a.callers)
		if a.callers == nil {
			a.callers = []string{} // JSON [], not null
		}
		a.row.CallerCount = len(a.callers)
		a.row.Callers = a.callers[:min(len(a.callers), MaxValues)]
		out = append(out, a.row)
	}
	slices.SortFunc(out, func(a, b RouteRow) int { return cmp.Compare(a.Route, b.Route) })
	return out
}

// routeRow is route's row with what the inventory says of it.
func routeRow(inv *inventory.Inventory, route string) RouteRow {
	row := RouteRow{Route: route, Callers: []string{}, Tags: []string{}}
	if r, ok := inv.Lookup(route); ok && route != "" {
		row.Documented, row.Deprecated, row.Sensitive = true, r.Deprecated, r.Sensitive
		if r.Tags != nil {
			row.Tags = r.Tags
		}
	}
	return row
}

// agentRouteRows marks each pair approved or not and adds, for the agents
// of ids with an approved list, each approved route not in pairs.
func agentRouteRows(reg *inventory.Registry, pairs []AgentRouteUsage, ids []string) []AgentRouteRow {
	out := make([]AgentRouteRow, 0, len(pairs))
	used := map[string]map[string]struct{}{}
	for _, p := range pairs {
		ok, known := reg.Approved(p.AgentID, p.Route)
		out = append(out, AgentRouteRow{AgentRouteUsage: p, Approved: ok, Known: known})
		if used[p.AgentID] == nil {
			used[p.AgentID] = map[string]struct{}{}
		}
		used[p.AgentID][inventory.NormalizeTemplate(p.Route)] = struct{}{}
	}
	for _, id := range ids {
		a, ok := reg.Lookup(id)
		if !ok {
			continue
		}
		for _, t := range a.ApprovedRoutes {
			if _, ok := used[id][inventory.NormalizeTemplate(t)]; !ok {
				out = append(out, AgentRouteRow{AgentRouteUsage: AgentRouteUsage{AgentID: id, Route: t}, Approved: true, Known: true})
			}
		}
	}
	slices.SortFunc(out, func(a, b AgentRouteRow) int {
		if c := cmp.Compare(a.AgentID, b.AgentID); c != 0 {
			return c
		}
		return cmp.Compare(a.Route, b.Route)
	})
	return out
}

// merge adds o to u.
func (u *Usage) merge(o Usage) {
	if o.Calls == 0 {
		return
	}
	u.Calls += o.Calls
	u.RequestBytes += o.RequestBytes
	u.ResponseBytes += o.ResponseBytes
	u.Status.S2xx += o.Status.S2xx
	u.Status.S3xx += o.Status.S3xx
	u.Status.S4xx += o.Status.S4xx
	u.Status.S5xx += o.Status.S5xx
	u.Status.S401 += o.Status.S401
	u.Status.S403 += o.Status.S403
	if u.FirstMs == 0 || o.FirstMs < u.FirstMs {
		u.FirstMs = o.FirstMs
	}
	u.LastMs = max(u.LastMs, o.LastMs)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
