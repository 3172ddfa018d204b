package report

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// Hostile names: a report must show them as text.
const (
	evilAgent = `<script>alert(1)</script>`
	evilRoute = `/v1/"><img src=x onerror=alert(2)>`
)

// regEntry is one agent of the fake registry.
type regEntry struct {
	owner    string
	approved []string // nil: no list
}

// fakeQuestions answers like the visibility service from a MemSource and
// a registry and route inventory held in maps: small, but it computes
// from the events, so a test's expectations follow from its events.
type fakeQuestions struct {
	src        *visibility.MemSource
	reg        map[string]regEntry
	documented map[string]bool
	deprecated map[string]bool
	findings   []visibility.Finding
	asked      []string
}

func (f *fakeQuestions) Agents(ctx context.Context, _ audit.Actor, span visibility.Span) ([]visibility.AgentRow, error) {
	f.asked = append(f.asked, "agents")
	us, err := f.src.Agents(ctx, span, "")
	if err != nil {
		return nil, err
	}
	var out []visibility.AgentRow
	for _, u := range us {
		e, ok := f.reg[u.AgentID]
		row := visibility.AgentRow{AgentID: u.AgentID, Registered: ok, Owner: e.owner, AgentUsage: u, ApprovedRoutes: -1}
		if e.approved != nil {
			row.ApprovedRoutes = len(e.approved)
			ars, _ := f.src.AgentRoutes(ctx, span, u.AgentID, "")
			for _, ar := range ars {
				if !slices.Contains(e.approved, ar.Route) {
					row.UnapprovedRoutes++
				}
			}
		}
		out = append(out, row)
	}
	return out, nil
}

func (f *fakeQuestions) Routes(ctx context.Context, _ audit.Actor, span visibility.Span) ([]visibility.RouteRow, error) {
	f.asked = append(f.asked, "routes")
	ars, err := f.src.AgentRoutes(ctx, span, "", "")
	if err != nil {
		return nil, err
	}
	by := map[string]*visibility.RouteRow{}
	for _, ar := range ars {
		r := by[ar.Route]
		if r == nil {
			r = &visibility.RouteRow{Route: ar.Route, Documented: f.documented[ar.Route], Deprecated: f.deprecated[ar.Route]}
			by[ar.Route] = r
		}
		r.Calls += ar.Calls
		r.Callers = append(r.Callers, ar.AgentID)
		r.CallerCount++
	}
	var out []visibility.RouteRow
	for _, r := range by {
		sort.Strings(r.Callers)
		out = append(out, *r)
	}
	return out, nil
}

func (f *fakeQuestions) AgentRoutes(ctx context.Context, _ audit.Actor, span visibility.Span, agentID string) ([]visibility.AgentRouteRow, error) {
	f.asked = append(f.asked, "agent_routes "+agentID)
	ars, err := f.src.AgentRoutes(ctx, span, agentID, "")
	if err != nil {
		return nil, err
	}
	var out []visibility.AgentRouteRow
	for _, ar := range ars {
		e, ok := f.reg[ar.AgentID]
		out = append(out, visibility.AgentRouteRow{AgentRouteUsage: ar, Known: ok && e.approved != nil, Approved: slices.Contains(e.approved, ar.Route)})
	}
	return out, nil
}

func (f *fakeQuestions) Findings(context.Context, audit.Actor) ([]visibility.Finding, error) {
	f.asked = append(f.asked, "findings")
	return f.findings, nil
}

var _ Questions = (*fakeQuestions)(nil)

// november is the fixture's period.
var november = must(ParsePeriod("2026-11"))

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func ms(day, hour, min int) int64 {
	return time.Date(2026, 11, day, hour, min, 0, 0, time.UTC).UnixMilli()
}

// fixture is a small November 2026 with every number of the report
// non-trivial; the expected values are worked out by hand in
// TestBuildNumbers.
func fixture() (*fakeQuestions, *visibility.MemSource) {
	var evs []event.Event
	n := 0
	call := func(agent, route string, status uint16, t int64) {
		n++
		evs = append(evs, event.Event{EventID: fmt.Sprintf("e%d", n), EventTimeMs: t, AgentID: agent, Route: route, Status: status, RequestBytes: 100, ResponseBytes: 1000})
	}
	// billing-bot: registered, owned, approved for /v1/invoices only;
	// also calls the zombie /v0/customers (unapproved) 3 times, twice denied.
	for d := 1; d <= 10; d++ {
		call("billing-bot", "/v1/invoices", 200, ms(d, 9, 0))
	}
	call("billing-bot", "/v0/customers", 200, ms(3, 10, 0))
	call("billing-bot", "/v0/customers", 403, ms(3, 10, 5))
	call("billing-bot", "/v0/customers", 401, ms(4, 10, 0))
	// report-bot: registered, no owner, no approved list.
	for d := 5; d <= 6; d++ {
		call("report-bot", "/v1/reports", 200, ms(d, 12, 0))
	}
	// the hostile shadow agent: unregistered, calls an undocumented route
	// and the zombie route.
	call(evilAgent, evilRoute, 403, ms(20, 1, 0))
	call(evilAgent, "/v0/customers", 200, ms(21, 1, 0))
	// October: the zombie route was called once.
	call("billing-bot", "/v0/customers", 200, time.Date(2026, 10, 30, 0, 0, 0, 0, time.UTC).UnixMilli())
	// December: outside the period.
	call("billing-bot", "/v1/invoices", 500, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixMilli())

	anom := func(id, agent, kind, sev string, start int64, detectAfter time.Duration) anomaly.Anomaly {
		return anomaly.Anomaly{ID: id, AgentID: agent, Kind: kind, Severity: sev, WindowStartMs: start, WindowEndMs: start + 60_000,
			DetectedMs: start + 60_000 + detectAfter.Milliseconds()}
	}
	anoms := []anomaly.Anomaly{
		anom("a1", "billing-bot", anomaly.ZombieRoute, "high", ms(3, 10, 0), 30*time.Second),
		anom("a2", "billing-bot", anomaly.UnapprovedRoute, "medium", ms(3, 10, 5), 10*time.Second),
		anom("a3", evilAgent, anomaly.ShadowAgent, "critical", ms(20, 1, 0), 50*time.Second),
		anom("a4", "report-bot", anomaly.Behaviour, "low", ms(5, 12, 0), 20*time.Second),
		anom("a4", "report-bot", anomaly.Behaviour, "low", ms(5, 12, 0), 20*time.Second), // a replay
		anom("a0", "report-bot", anomaly.Behaviour, "low", time.Date(2026, 10, 31, 23, 0, 0, 0, time.UTC).UnixMilli(), time.Second),
	}
	slack := audit.Actor{Kind: audit.ActorSlack, Name: "alice", UserID: "U1"}
	recs := []audit.Record{
		// a3 revoked automatically 2 minutes after detection, then
		// restored by a person.
		{ID: "r1", AtMs: anoms[2].DetectedMs + 120_000, Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: "revoke", AnomalyID: "a3", AgentID: evilAgent, Result: audit.ResultOK},
		{ID: "r2", AtMs: anoms[2].DetectedMs + 600_000, Actor: slack, Action: "restore", AnomalyID: "a3", AgentID: evilAgent, Result: audit.ResultOK},
		// a1 quarantined by a person 10 minutes after detection.
		{ID: "r3", AtMs: anoms[0].DetectedMs + 600_000, Actor: slack, Action: "quarantine", AnomalyID: "a1", AgentID: "billing-bot", Result: audit.ResultOK},
		// a dry-run revocation of a2: neither containment nor a revocation.
		{ID: "r4", AtMs: anoms[1].DetectedMs + 1000, Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: "revoke", AnomalyID: "a2", Result: audit.ResultDryRun, DryRun: true},
		// a failed revocation of a2 by a person: not a judgement, not containment.
		{ID: "r5", AtMs: anoms[1].DetectedMs + 2000, Actor: slack, Action: "revoke", AnomalyID: "a2", Result: audit.ResultFailed},
	}
	verdicts := []anomaly.Verdict{
		{ID: "v1", AnomalyID: "a4", AgentID: "report-bot", Verdict: anomaly.VerdictFalsePositive, Author: "U1", AtMs: ms(6, 0, 0)},
		{ID: "v0", AnomalyID: "a0", AgentID: "report-bot", Verdict: anomaly.VerdictFalsePositive, Author: "U1", AtMs: ms(1, 1, 0)},
	}
	src := visibility.NewMemSource(evs, anoms, recs, verdicts)
	q := &fakeQuestions{
		src: src,
		reg: map[string]regEntry{
			"billing-bot": {owner: "payments-team", approved: []string{"/v1/invoices"}},
			"report-bot":  {},
		},
		documented: map[string]bool{"/v1/invoices": true, "/v1/reports": true, "/v0/customers": true},
		deprecated: map[string]bool{"/v0/customers": true},
		findings: []visibility.Finding{
			{Kind: visibility.FindingShadow, AgentID: evilAgent, Detail: "seen in traffic, not in the registry; calls " + evilRoute},
			{Kind: visibility.FindingNoOwner, AgentID: "report-bot", Detail: "no owner in the registry"},
			{Kind: visibility.FindingUndocumented, Route: evilRoute, Detail: "called, not documented"},
			{Kind: visibility.FindingUnapproved, AgentID: "billing-bot", Route: "/v0/customers", Owner: "payments-team", Detail: "calls /v0/customers, not approved"},
			{Kind: visibility.FindingZombieCalled, AgentID: evilAgent, Route: "/v0/customers", Detail: "calls the deprecated /v0/customers"},
		},
	}
	return q, src
}

func fixtureBuilder() (*Builder, *fakeQuestions) {
	q, src := fixture()
	return &Builder{Questions: q, Source: src, Who: audit.Actor{Kind: audit.ActorCLI, Name: "test"},
		Now: func() time.Time { return time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC) }}, q
}

// makeWritable lets TempDir's cleanup remove read-only bundles.
func makeWritable(root string) {
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o755)
		}
		return nil
	})
}
