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

// FindingKinds lists every finding kind, in the order Findings sorts them.
func FindingKinds() []FindingKind {
	return []FindingKind{FindingShadow, FindingUnapproved, FindingZombieCalled, FindingCredentialExpired, FindingNoOwner,
		FindingReviewDue, FindingUndocumented, FindingUnusedGrant, FindingDormant, FindingNeverSeen}
}

// Findings are the least-privilege and lifecycle findings over the
// lookback, ending now: shadow agents, unapproved routes called, zombie
// routes called (per caller), credentials past their deadline, agents
// without an owner, entries past their review date, undocumented routes
// called, approved routes unused for UnusedGrantDays, dormant agents and
// registered agents never seen. Sorted by kind (in FindingKinds' order),
// agent and route.
func (s *Service) Findings(ctx context.Context, who audit.Actor) (_ []Finding, err error) {
	defer s.observe("findings", time.Now(), &err)
	if err := s.ask(ctx, who, "findings", "", nil); err != nil {
		return nil, err
	}
	v := s.view()
	pairs, err := s.src.AgentRoutes(ctx, v.look, "", "")
	if err != nil {
		return nil, fmt.Errorf("findings: %w", err)
	}
	rows, err := s.agentRows(ctx, v, v.look, pairs)
	if err != nil {
		return nil, fmt.Errorf("findings: %w", err)
	}
	byAgent := map[string][]AgentRouteUsage{}
	for _, p := range pairs {
		byAgent[p.AgentID] = append(byAgent[p.AgentID], p)
	}
	out := []Finding{}
	for _, row := range rows {
		out = append(out, s.agentFindings(v, row, byAgent[row.AgentID])...)
	}
	out = append(out, undocumented(v, pairs)...)
	sortFindings(out)
	return out, nil
}

// agentFindings are one agent's findings from its row and its pairs over
// the lookback.
func (s *Service) agentFindings(v view, row AgentRow, pairs []AgentRouteUsage) []Finding {
	var out []Finding
	a, registered := v.reg.Lookup(row.AgentID)
	owner := row.Owner
	add := func(kind FindingKind, route, format string, args ...any) {
		out = append(out, Finding{Kind: kind, AgentID: row.AgentID, Route: route, Owner: owner, Detail: fmt.Sprintf(format, args...)})
	}
	lookDays := int(s.cfg.Lookback / day)
	switch row.Lifecycle {
	case LifecycleShadow:
		add(FindingShadow, "", "not in the agent registry; %s to %s from %s to %s: register it with an owner, or revoke its credential",
			plural(row.Calls, "call"), plural(uint64(row.Routes), "route"), fmtMs(row.FirstSeenMs), fmtMs(row.LastSeenMs))
	case LifecycleNeverSeen:
		add(FindingNeverSeen, "", "registered, no call in the last %d days: remove the entry and its credential if the agent is gone", lookDays)
	case LifecycleDormant:
		add(FindingDormant, "", "no call since %s (%d days): a candidate to decommission",
			fmtMs(row.LastSeenMs), int(v.now.Sub(time.UnixMilli(row.LastSeenMs))/day))
	}
	for _, p := range pairs {
		if p.Calls == 0 {
			continue
		}
		if ok, known := v.reg.Approved(p.AgentID, p.Route); known && !ok {
			add(FindingUnapproved, p.Route, "called %s outside its approved routes, last at %s", times(p.Calls), fmtMs(p.LastMs))
		}
		if r, ok := v.inv.Lookup(p.Route); ok && r.Deprecated {
			add(FindingZombieCalled, p.Route, "deprecated route still called: %s, last at %s; move the agent off it", times(p.Calls), fmtMs(p.LastMs))
		}
	}
	if !registered {
		return out
	}
	today := v.now.Truncate(day)
	if a.Owner == "" {
		add(FindingNoOwner, "", "registered without an owner: nobody answers for it")
	}
	if !a.ReviewBy.IsZero() && today.After(a.ReviewBy) {
		add(FindingReviewDue, "", "review was due by %s", a.ReviewBy.Format(inventory.DateLayout))
	}
	if d, ok := a.CredentialDeadline(); ok && !today.Before(d) {
		add(FindingCredentialExpired, "", "credential %s had to be renewed by %s", cmp.Or(a.CredentialID, "(unnamed)"), d.Format(inventory.DateLayout))
	}
	if a.ApprovedRoutes != nil && row.LastSeenMs != 0 {
		from := v.now.Add(-time.Duration(s.cfg.UnusedGrantDays) * day).UnixMilli()
		last := map[string]int64{} // normalised route → last call
		for _, p := range pairs {
			k := inventory.NormalizeTemplate(p.Route)
			last[k] = max(last[k], p.LastMs)
		}
		for _, t := range a.ApprovedRoutes {
			switch l := last[inventory.NormalizeTemplate(t)]; {
			case l == 0:
				add(FindingUnusedGrant, t, "approved, not called in the last %d days: narrow the grant", lookDays)
			case l < from:
				add(FindingUnusedGrant, t, "approved, not called in the last %d days (last at %s): narrow the grant", s.cfg.UnusedGrantDays, fmtMs(l))
			}
		}
	}
	return out
}

// undocumented are the routes called but absent from an enabled route
// inventory, one finding per route.
func undocumented(v view, pairs []AgentRouteUsage) []Finding {
	if !v.inv.Enabled() {
		return nil
	}
	var out []Finding
	for _, r := range routeRows(v, pairs, false) {
		if r.Documented || r.Route == "" || r.Calls == 0 {
			continue
		}
		out = append(out, Finding{Kind: FindingUndocumented, Route: r.Route, Detail: fmt.Sprintf(
			"called %s by %s, last at %s, but absent from the route inventory and the OpenAPI document", times(r.Calls), plural(uint64(r.CallerCount), "agent"), fmtMs(r.LastMs))})
	}
	return out
}

func sortFindings(fs []Finding) {
	order := map[FindingKind]int{}
	for i, k := range FindingKinds() {
		order[k] = i
	}
	slices.SortStableFunc(fs, func(a, b Finding) int {
		if c := cmp.Compare(order[a.Kind], order[b.Kind]); c != 0 {
			return c
		}
		if c := cmp.Compare(a.AgentID, b.AgentID); c != 0 {
			return c
		}
		return cmp.Compare(a.Route, b.Route)
	})
}

// fmtMs renders Unix milliseconds as RFC 3339 UTC, to the second.
func fmtMs(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

// times says how many times: "once", "twice", "3 times".
func times(n uint64) string {
	switch n {
	case 1:
		return "once"
	case 2:
		return "twice"
	}
	return fmt.Sprintf("%d times", n)
}

// plural is "1 call", "2 calls".
func plural(n uint64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
