package console

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// Hostile ids: each must show as text wherever it appears.
const (
	hostileScript = `<script>alert(1)</script>`
	hostileImg    = `"><img src=x onerror=alert(1)>`
	hostileSlack  = `<!here>`
	hostileRoute  = `/v1/<script>alert(2)</script>/{id}`
)

// testNow is the fixture's clock: mid-March, so the month holds data.
var testNow = time.Date(2026, 3, 16, 12, 0, 0, 0, time.UTC)

// fixture is the data every test reads: a MemSource with ordinary and
// hostile agents, an incident with an anomaly, and an audit log the
// actions write to and the incidents read.
type fixture struct {
	src   *visibility.MemSource
	audit *audit.Logger
	mem   *audit.MemStore
	tags  map[string][]string
	// asked are the visibility questions, with who asked.
	mu    sync.Mutex
	asked []audit.Actor
	// clean leaves out the hostile findings (the screenshots).
	clean bool
}

var day15 = time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)

func newFixture() *fixture {
	var evs []event.Event
	add := func(agent, route string, at time.Time, status uint16, n int) {
		for i := range n {
			evs = append(evs, event.Event{EventID: fmt.Sprintf("%s-%s-%d-%d", agent, route, at.Unix(), i), EventTimeMs: at.Add(time.Duration(i) * time.Minute).UnixMilli(),
				AgentID: agent, Route: route, Status: status, RequestBytes: 100, ResponseBytes: 2048, RequestID: fmt.Sprintf("req-%s-%d", agent, i),
				SourceIP: "10.0.0.7", Gateway: "kong", CredentialID: "cred-" + agent})
		}
	}
	add("billing-bot", "/v1/customers/{id}", day15.Add(9*time.Hour), 200, 3)
	add("billing-bot", "/v1/invoices", day15.Add(10*time.Hour), 200, 2)
	add("support-bot", "/v1/customers/{id}", day15.Add(11*time.Hour), 403, 1)
	add("report-bot", "/v1/reports", day15.Add(8*time.Hour), 200, 4)
	add("report-bot", "/v1/customers/{id}", day15.Add(-48*time.Hour), 200, 2) // March 13th: outside the question
	add(hostileScript, "/v1/customers/{id}", day15.Add(12*time.Hour), 200, 1)
	add(hostileImg, hostileRoute, day15.Add(13*time.Hour), 200, 1)
	add(hostileSlack, "/v1/invoices", day15.Add(14*time.Hour), 200, 1)
	ans := []anomaly.Anomaly{
		{ID: "an-1", AgentID: "billing-bot", Kind: anomaly.Behaviour, Severity: "high", Score: 12.5, WindowStartMs: day15.Add(9 * time.Hour).UnixMilli(),
			WindowEndMs: day15.Add(9*time.Hour + time.Minute).UnixMilli(), DetectedMs: day15.Add(9*time.Hour + 2*time.Minute).UnixMilli(),
			Summary: "billing-bot read 40x its usual customer records", Explanation: []anomaly.Feature{{Name: "response_bytes", Observed: 9e6, Expected: 2e5, Surprise: 9, Contribution: 0.8}}},
		{ID: "an-2", AgentID: hostileImg, Kind: anomaly.UnapprovedRoute, Severity: "medium", Score: 5, WindowStartMs: day15.Add(13 * time.Hour).UnixMilli(),
			WindowEndMs: day15.Add(13*time.Hour + time.Minute).UnixMilli(), Summary: "called " + hostileRoute + " " + hostileSlack,
			Routes: []anomaly.RouteCount{{Route: hostileRoute, Calls: 1}}},
		// an-3 joined inc-1 without a record naming it; an-4 came before it.
		{ID: "an-3", AgentID: "billing-bot", Kind: anomaly.Behaviour, Severity: "medium", Score: 6, WindowStartMs: day15.Add(10 * time.Hour).UnixMilli(),
			WindowEndMs: day15.Add(10*time.Hour + time.Minute).UnixMilli(), Summary: "billing-bot read 5x its usual invoices"},
		{ID: "an-4", AgentID: "billing-bot", Kind: anomaly.Behaviour, Severity: "low", Score: 3, WindowStartMs: day15.Add(7 * time.Hour).UnixMilli(),
			WindowEndMs: day15.Add(7*time.Hour + time.Minute).UnixMilli(), Summary: "an earlier, separate blip"},
	}
	mem := &audit.MemStore{}
	f := &fixture{
		src: visibility.NewMemSource(evs, ans, nil, nil), mem: mem, audit: audit.NewLogger(mem, nil, func() time.Time { return testNow }),
		tags: map[string][]string{"pii": {"/v1/customers/{id}"}},
	}
	ctx := context.Background()
	_ = f.audit.Append(ctx,
		audit.Record{Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: "notify", IncidentID: "inc-1", AnomalyID: "an-1", AgentID: "billing-bot", Result: audit.ResultOK, Detail: "posted to #sec"},
		audit.Record{Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: "revoke", IncidentID: "inc-1", AnomalyID: "an-1", AgentID: "billing-bot", Result: audit.ResultOK, Detail: "credential revoked at kong"},
		audit.Record{Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: "approve", StepID: "inc-1-3", IncidentID: "inc-1", AnomalyID: "an-1", AgentID: "billing-bot", Result: audit.ResultNeedsApproval, Detail: "asked for approval of quarantine"},
		audit.Record{Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: "notify", IncidentID: "inc-" + hostileScript, AnomalyID: "an-2", AgentID: hostileImg, Result: audit.ResultOK, Detail: hostileSlack + " " + hostileScript},
	)
	return f
}

func (f *fixture) saw(who audit.Actor) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, who)
}

// Anomalies implements Records.
func (f *fixture) Anomalies(ctx context.Context, span visibility.Span, agentID string) ([]anomaly.Anomaly, error) {
	return f.src.Anomalies(ctx, span, agentID)
}

// Actions implements Records from the audit the actions write.
func (f *fixture) Actions(ctx context.Context, span visibility.Span, agentID string) ([]audit.Record, error) {
	recs, err := f.audit.Query(ctx, audit.Filter{AgentID: agentID, FromMs: span.From.UnixMilli(), ToMs: span.To.UnixMilli()})
	if f.clean {
		recs = slices.DeleteFunc(recs, func(r audit.Record) bool { return hostile(r.AgentID) })
	}
	return recs, err
}

func hostile(s string) bool { return strings.ContainsAny(s, "<>") }

// fakeVis answers the visibility questions from the MemSource the way the
// service does, in miniature.
type fakeVis struct{ f *fixture }

func (v fakeVis) Agents(ctx context.Context, who audit.Actor, span visibility.Span) ([]visibility.AgentRow, error) {
	v.f.saw(who)
	us, err := v.f.src.Agents(ctx, span, "")
	var out []visibility.AgentRow
	for _, u := range us {
		if v.f.clean && hostile(u.AgentID) {
			continue
		}
		r := visibility.AgentRow{AgentID: u.AgentID, AgentUsage: u, Lifecycle: visibility.LifecycleActive, ApprovedRoutes: -1,
			FirstSeenMs: u.FirstMs, LastSeenMs: u.LastMs}
		if u.AgentID == "billing-bot" {
			r.Registered, r.Owner, r.Role, r.ApprovedRoutes = true, "payments-team", "billing", 1
		} else {
			r.Lifecycle = visibility.LifecycleShadow
		}
		out = append(out, r)
	}
	return out, err
}

func (v fakeVis) Routes(ctx context.Context, who audit.Actor, span visibility.Span) ([]visibility.RouteRow, error) {
	v.f.saw(who)
	ars, err := v.f.src.AgentRoutes(ctx, span, "", "")
	byRoute := map[string]*visibility.RouteRow{}
	var order []string
	for _, ar := range ars {
		if v.f.clean && (hostile(ar.Route) || hostile(ar.AgentID)) {
			continue
		}
		r := byRoute[ar.Route]
		if r == nil {
			r = &visibility.RouteRow{Route: ar.Route, Documented: !strings.Contains(ar.Route, "<")}
			for t, rs := range v.f.tags {
				if slices.Contains(rs, ar.Route) {
					r.Tags = append(r.Tags, t)
				}
			}
			byRoute[ar.Route] = r
			order = append(order, ar.Route)
		}
		r.Callers = append(r.Callers, ar.AgentID)
		r.CallerCount++
		r.Calls += ar.Calls
		r.FirstMs = min(r.FirstMs|ar.FirstMs, ar.FirstMs)
		r.LastMs = max(r.LastMs, ar.LastMs)
	}
	slices.Sort(order)
	var out []visibility.RouteRow
	for _, k := range order {
		out = append(out, *byRoute[k])
	}
	return out, err
}

func (v fakeVis) Findings(_ context.Context, who audit.Actor) ([]visibility.Finding, error) {
	v.f.saw(who)
	if v.f.clean {
		return []visibility.Finding{{Kind: visibility.FindingUnusedGrant, AgentID: "billing-bot", Route: "/v1/refunds", Owner: "payments-team", Detail: "approved, unused for 30 days"},
			{Kind: visibility.FindingShadow, AgentID: "report-bot", Detail: "seen in traffic, not registered"},
			{Kind: visibility.FindingNoOwner, AgentID: "support-bot", Detail: "no owner in the registry"}}, nil
	}
	return []visibility.Finding{
		{Kind: visibility.FindingShadow, AgentID: hostileScript, Detail: "seen in traffic, not registered: " + hostileScript},
		{Kind: visibility.FindingUndocumented, AgentID: hostileImg, Route: hostileRoute, Detail: "route not in the inventory " + hostileSlack},
		{Kind: visibility.FindingUnusedGrant, AgentID: "billing-bot", Route: "/v1/refunds", Owner: "payments-team", Detail: "approved, unused for 30 days"},
	}, nil
}

func (v fakeVis) Access(ctx context.Context, who audit.Actor, req visibility.AccessRequest) (visibility.AccessAnswer, error) {
	v.f.saw(who)
	routes := v.f.tags[req.Tag]
	if req.Template != "" {
		routes = nil
		ars, _ := v.f.src.AgentRoutes(ctx, req.Span, "", "")
		for _, ar := range ars {
			if ok, _ := path.Match(req.Template, ar.Route); ok && !slices.Contains(routes, ar.Route) {
				routes = append(routes, ar.Route)
			}
		}
	}
	if req.Tag != "" && len(routes) == 0 {
		return visibility.AccessAnswer{}, fmt.Errorf("%w: no route is tagged %q", respapi.ErrBadRequest, req.Tag)
	}
	rows, err := v.f.src.Access(ctx, visibility.AccessQuery{Span: req.Span, Routes: routes, AgentID: req.AgentID, Samples: 3})
	return visibility.AccessAnswer{Request: req, Routes: routes, Rows: rows}, err
}

func (v fakeVis) Agent(ctx context.Context, who audit.Actor, agentID string, span visibility.Span) (visibility.AgentProfile, error) {
	rows, _ := v.Agents(ctx, who, span)
	var p visibility.AgentProfile
	for _, r := range rows {
		if r.AgentID == agentID {
			p.Agent = r
		}
	}
	p.Agent.AgentID = agentID
	ars, err := v.f.src.AgentRoutes(ctx, span, agentID, "")
	for _, ar := range ars {
		p.Routes = append(p.Routes, visibility.AgentRouteRow{AgentRouteUsage: ar, Known: agentID == "billing-bot", Approved: ar.Route == "/v1/customers/{id}"})
	}
	ans, _ := v.f.src.Anomalies(ctx, span, agentID)
	for _, a := range ans {
		p.Timeline = append(p.Timeline, visibility.TimelineEntry{AtMs: a.WindowStartMs, Kind: "anomaly", Summary: a.Summary})
	}
	return p, err
}

// fakeScores gives a day of window scores with one anomalous window.
type fakeScores struct{}

func (fakeScores) Scores(_ context.Context, agentID string, fromMs, toMs int64) ([]anomaly.Score, error) {
	var out []anomaly.Score
	start := day15.Add(8 * time.Hour).UnixMilli()
	for i := range 60 {
		s := anomaly.Score{AgentID: agentID, WindowStartMs: start + int64(i)*60000, WindowEndMs: start + int64(i+1)*60000, Trained: true, Severity: "none",
			Values: make([]float64, features.NumFeatures), Expected: make([]float64, features.NumFeatures)}
		s.Values[features.Calls] = float64(10 + i%3)
		s.Expected[features.Calls] = 10
		s.Values[features.RespBytes] = float64(20000 + 1000*(i%4))
		s.Expected[features.RespBytes] = 21000
		if i == 45 {
			s.Values[features.RespBytes], s.Severity = 9e6, "high"
		}
		out = append(out, s)
	}
	return out, nil
}

// fakeActions writes what it is asked to do to the audit, naming who,
// as the responder's code paths do.
type fakeActions struct{ f *fixture }

func (a fakeActions) Silence(ctx context.Context, who audit.Actor, matchers string, d time.Duration, comment string) (string, error) {
	return "sil-1", a.f.audit.Append(ctx, audit.Record{Actor: who, Action: "silence", Why: comment, Result: audit.ResultOK,
		Detail: "added silence sil-1: " + matchers + " for " + d.String()})
}

func (a fakeActions) FalsePositive(ctx context.Context, who audit.Actor, incident, anomalyID string) error {
	recs, _ := a.f.audit.Query(ctx, audit.Filter{IncidentID: incident})
	if len(recs) == 0 {
		return fmt.Errorf("false positive: no incident %q: %w", incident, respapi.ErrNotFound)
	}
	return a.f.audit.Append(ctx, audit.Record{Actor: who, Action: "false_positive", IncidentID: incident, AnomalyID: anomalyID,
		AgentID: recs[0].AgentID, Result: audit.ResultOK, Detail: "verdict recorded"})
}

func (a fakeActions) Answer(ctx context.Context, who audit.Actor, request string, approved bool) error {
	return a.f.audit.Append(ctx, audit.Record{Actor: who, Action: "approve", StepID: request, IncidentID: "inc-1", AgentID: "billing-bot", Result: audit.ResultOK,
		Detail: fmt.Sprintf("approved=%v by %s", approved, who)})
}

func (a fakeActions) Restore(ctx context.Context, who audit.Actor, incident, why string) error {
	return a.f.audit.Append(ctx, audit.Record{Actor: who, Action: "restore", IncidentID: incident, AgentID: "billing-bot", Why: why, Result: audit.ResultOK})
}

// Secrets of the test tokens, one per scope.
const (
	secretRead  = "read-secret-0123456789abcdef0123456789abcdef"
	secretAct   = "act-secret-0123456789abcdef0123456789abcdef"
	secretAdmin = "admin-secret-0123456789abcdef0123456789abcdef"
	secretGate  = "gate-secret-0123456789abcdef0123456789abcdef"
)

func testTokens() []respapi.Token {
	return []respapi.Token{
		{Name: "auditor", Secret: secretRead, CanReadInventory: true},
		{Name: "analyst", Secret: secretAct, CanReadInventory: true, CanSilence: true},
		{Name: "lead", Secret: secretAdmin, CanReadInventory: true, CanSilence: true, AllowedPlaybooks: []string{"*"}},
		{Name: "gateway", Secret: secretGate, CanReadDenylist: true},
	}
}

func newTestHandler(f *fixture, mod func(*Options)) (*Handler, error) {
	o := Options{Visibility: fakeVis{f}, Records: f, Scores: fakeScores{}, Actions: fakeActions{f}, Audit: f.audit, Tokens: testTokens(),
		Prefix: "/console", Now: func() time.Time { return testNow }, Lookback: 30 * 24 * time.Hour}
	if mod != nil {
		mod(&o)
	}
	return New(o)
}
