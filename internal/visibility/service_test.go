package visibility

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// The fixture: a registry, a route inventory and a month of traffic, with
// a hostile agent id and a hostile route.
var (
	now     = time.Date(2026, 3, 20, 12, 0, 0, 0, time.UTC)
	hostile = "evil\x1b[31m<script>alert(1)</script>\n\"><img onerror=x>"
	badPath = "/x/<img src=x onerror=alert(1)>\x1b]0;title\x07"
)

const registryYAML = `
agents:
  - id: cs-1
    owner: cx@example.com
    role: customer_service
    credential_id: key-1
    approved_routes: ['/customers/{customerId}', '/customers/{id}/orders', /tickets]
    review_by: 2026-03-01
    credential_issued: 2025-12-01
    credential_max_age_days: 90
  - id: cs-2
    role: customer_service
    approved_routes: ['/customers/{id}']
  - id: ghost
    owner: ops@example.com
    review_by: 2026-12-31
    credential_expires: 2027-01-01
  - id: new-1
    owner: data@example.com
`

const routesYAML = `
routes:
  - template: /customers/{id}
    tags: [pii]
  - template: /customers/{id}/orders
    tags: [pii]
  - template: /customers/{id}/export
    tags: [sensitive, pii]
  - template: /tickets
  - template: /v1/legacy
    tags: [deprecated]
  - template: /docs-only
`

func at(s string) int64 {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

func ev(n int, agent, route, when string, status uint16) event.Event {
	return event.Event{EventID: fmt.Sprintf("e%03d", n), AgentID: agent, Route: route, EventTimeMs: at(when), Status: status,
		RequestBytes: 100, ResponseBytes: 1000, RequestID: fmt.Sprintf("req-%03d", n), SourceIP: "10.0.0.1", CredentialID: "key-" + agent, Gateway: "gw1"}
}

func fixtureEvents() []event.Event {
	return []event.Event{
		ev(1, "cs-1", "/customers/{id}", "2026-02-01T09:00:00Z", 200),
		ev(2, "cs-1", "/customers/{id}", "2026-03-15T10:00:00Z", 200),
		ev(3, "cs-1", "/customers/{id}", "2026-03-15T10:05:00Z", 200),
		ev(4, "cs-1", "/customers/{id}/orders", "2026-03-15T10:10:00Z", 403),
		ev(5, "cs-1", "/v1/legacy", "2026-03-15T11:00:00Z", 200),
		ev(6, "cs-1", "/admin/undoc", "2026-03-16T08:00:00Z", 200),
		ev(7, "cs-2", "/customers/{id}", "2026-01-10T08:00:00Z", 200),
		ev(8, "new-1", "/tickets", "2026-03-18T08:00:00Z", 200),
		ev(9, hostile, "/customers/{id}/export", "2026-03-15T12:00:00Z", 200),
		ev(10, "new-1", badPath, "2026-03-19T08:00:00Z", 404),
		ev(3, "cs-1", "/customers/{id}", "2026-03-15T10:05:00Z", 200), // a retried insert: counts once
	}
}

type fixture struct {
	svc *Service
	rec *audit.MemStore
	src *MemSource
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	reg, err := inventory.ParseRegistry("agents.yaml", []byte(registryYAML))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.ParseRoutes("routes.yaml", []byte(routesYAML))
	if err != nil {
		t.Fatal(err)
	}
	anoms := []anomaly.Anomaly{{ID: "an-1", AgentID: "cs-1", Kind: "exfiltration", Severity: "high", Score: 7.5,
		WindowStartMs: at("2026-03-15T11:00:00Z"), WindowEndMs: at("2026-03-15T11:05:00Z"), Summary: "bytes out 20x"}}
	recs := []audit.Record{{ID: "r1", AtMs: at("2026-03-15T11:06:00Z"), Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: "revoke",
		AgentID: "cs-1", Result: audit.ResultOK, Why: "exfiltration high"},
		{ID: "r2", AtMs: at("2026-03-15T11:07:00Z"), Actor: analyst, Action: audit.ActionAsk, AgentID: "cs-1", Result: audit.ResultOK, Detail: "agent id=\"cs-1\""}}
	verdicts := []anomaly.Verdict{
		{ID: "v1", AnomalyID: "an-1", AgentID: "cs-1", Kind: "exfiltration", Verdict: anomaly.VerdictFalsePositive, Author: "U1", AtMs: at("2026-03-15T13:00:00Z")},
		{ID: "v2", AnomalyID: "an-9", AgentID: "cs-2", Kind: "volume", Verdict: anomaly.VerdictFalsePositive, Author: "U1", AtMs: at("2026-03-15T13:00:00Z")},
	}
	src := NewMemSource(fixtureEvents(), anoms, recs, verdicts)
	rec := &audit.MemStore{}
	svc := New(src, func() *inventory.Registry { return reg }, func() *inventory.Inventory { return inv }, audit.NewLogger(rec, nil, nil),
		Config{}, func() time.Time { return now })
	return fixture{svc: svc, rec: rec, src: src}
}

var (
	analyst = audit.Actor{Kind: audit.ActorCLI, Name: "alice"}
	march15 = Span{From: time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 3, 16, 0, 0, 0, 0, time.UTC)}
	month   = Span{From: time.Date(2026, 2, 20, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 3, 21, 0, 0, 0, 0, time.UTC)}
)

// lastAsk returns the last audit record and checks it is a question.
func lastAsk(t *testing.T, f fixture) audit.Record {
	t.Helper()
	all := f.rec.All()
	if len(all) == 0 {
		t.Fatal("no audit record written")
	}
	r := all[len(all)-1]
	if r.Action != audit.ActionAsk || r.Actor != analyst || r.AtMs != now.UnixMilli() {
		t.Fatalf("audit record %+v; want an ask by %v at now", r, analyst)
	}
	if strings.ContainsAny(r.Detail, "\n\r\x1b") {
		t.Fatalf("question %q is not one inert line", r.Detail)
	}
	return r
}

func TestAgents(t *testing.T) {
	f := newFixture(t)
	rows, err := f.svc.Agents(context.Background(), analyst, march15)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		registered     bool
		owner          string
		lc             Lifecycle
		first, last    string
		calls          uint64
		approved       int
		unapproved     int
		routesInSpan   int
		s4xx, s403     uint64
		credentialSeen bool
	}
	wants := map[string]want{
		"cs-1":  {true, "cx@example.com", LifecycleActive, "2026-02-01T09:00:00Z", "2026-03-16T08:00:00Z", 4, 3, 1, 3, 1, 1, true},
		"cs-2":  {true, "", LifecycleDormant, "2026-01-10T08:00:00Z", "2026-01-10T08:00:00Z", 0, 1, 0, 0, 0, 0, false},
		"ghost": {true, "ops@example.com", LifecycleNeverSeen, "", "", 0, -1, 0, 0, 0, 0, false},
		"new-1": {true, "data@example.com", LifecycleNew, "2026-03-18T08:00:00Z", "2026-03-19T08:00:00Z", 0, -1, 0, 0, 0, 0, false},
		hostile: {false, "", LifecycleShadow, "2026-03-15T12:00:00Z", "2026-03-15T12:00:00Z", 1, -1, 0, 1, 0, 0, true},
	}
	if len(rows) != len(wants) {
		t.Fatalf("got %d rows; want %d: %+v", len(rows), len(wants), rows)
	}
	if !slices.IsSortedFunc(rows, func(a, b AgentRow) int { return strings.Compare(a.AgentID, b.AgentID) }) {
		t.Error("rows not sorted by agent id")
	}
	ms := func(s string) int64 {
		if s == "" {
			return 0
		}
		return at(s)
	}
	for _, r := range rows {
		w, ok := wants[r.AgentID]
		if !ok {
			t.Errorf("unexpected agent %q", r.AgentID)
			continue
		}
		if r.Registered != w.registered || r.Owner != w.owner || r.Lifecycle != w.lc || r.FirstSeenMs != ms(w.first) || r.LastSeenMs != ms(w.last) ||
			r.Calls != w.calls || r.ApprovedRoutes != w.approved || r.UnapprovedRoutes != w.unapproved || r.Routes != w.routesInSpan ||
			r.Status.S4xx != w.s4xx || r.Status.S403 != w.s403 || (r.CredentialCount > 0) != w.credentialSeen {
			t.Errorf("row %q = %+v; want %+v", r.AgentID, r, w)
		}
	}
	if b, err := json.Marshal(rows); err != nil || bytes.Contains(b, []byte("null")) {
		t.Errorf("agents JSON %s, %v: want no null", b, err)
	}
	if i := slices.IndexFunc(rows, func(r AgentRow) bool { return r.AgentID == "cs-1" }); rows[i].ActiveDays != 1 {
		t.Errorf("cs-1 active on %d days of March 15th", rows[i].ActiveDays)
	}
	month, err := f.svc.Agents(context.Background(), analyst, Span{From: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), To: now})
	if err != nil {
		t.Fatal(err)
	}
	if i := slices.IndexFunc(month, func(r AgentRow) bool { return r.AgentID == "cs-1" }); month[i].ActiveDays != 3 {
		t.Errorf("cs-1 active on %d days since January; want 3 (Feb 1, Mar 15, Mar 16)", month[i].ActiveDays)
	}
	if q := lastAsk(t, f); q.Detail != "inventory agents span=2026-01-01..2026-03-20T12:00:00Z" || q.Result != audit.ResultOK {
		t.Errorf("question %q (%s)", q.Detail, q.Result)
	}
}

func TestAgentsSpanBeyondLookback(t *testing.T) {
	f := newFixture(t)
	f.svc.cfg.Lookback = 30 * day // cs-2's only call (2026-01-10) is before the lookback
	rows, err := f.svc.Agents(context.Background(), analyst, Span{From: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), To: now})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(rows, func(r AgentRow) bool { return r.AgentID == "cs-2" })
	if i < 0 || rows[i].LastSeenMs != at("2026-01-10T08:00:00Z") || rows[i].Lifecycle != LifecycleDormant || rows[i].Calls != 1 {
		t.Fatalf("cs-2 = %+v; want seen on 2026-01-10 (from the span), dormant", rows[i])
	}
}

func TestRoutes(t *testing.T) {
	f := newFixture(t)
	rows, err := f.svc.Routes(context.Background(), analyst, month)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]RouteRow{}
	var order []string
	for _, r := range rows {
		got[r.Route] = r
		order = append(order, r.Route)
	}
	want := []string{"/admin/undoc", "/customers/{id}", "/customers/{id}/export", "/customers/{id}/orders", "/docs-only", "/tickets", "/v1/legacy", badPath}
	slices.Sort(want)
	if !slices.Equal(order, want) {
		t.Fatalf("routes %q; want %q", order, want)
	}
	check := func(route string, documented, deprecated, sensitive bool, calls uint64, callers ...string) {
		t.Helper()
		r := got[route]
		if r.Documented != documented || r.Deprecated != deprecated || r.Sensitive != sensitive || r.Calls != calls ||
			!slices.Equal(r.Callers, callers) || r.CallerCount != len(callers) {
			t.Errorf("route %q = %+v", route, r)
		}
	}
	check("/customers/{id}", true, false, false, 2, "cs-1") // 2026-02-01 is before the span
	check("/customers/{id}/export", true, false, true, 1, hostile)
	check("/v1/legacy", true, true, false, 1, "cs-1")
	check("/admin/undoc", false, false, false, 1, "cs-1")
	check("/docs-only", true, false, false, 0)
	check(badPath, false, false, false, 1, "new-1")
	if tags := got["/customers/{id}/export"].Tags; !slices.Equal(tags, []string{"pii", "sensitive"}) {
		t.Errorf("tags %q", tags)
	}
	if b, err := json.Marshal(rows); err != nil || bytes.Contains(b, []byte("null")) {
		t.Errorf("routes JSON %s, %v: want no null", b, err)
	}
	if q := lastAsk(t, f); q.Detail != "inventory routes span=2026-02-20..2026-03-21" {
		t.Errorf("question %q", q.Detail)
	}
}

func TestAgentRoutes(t *testing.T) {
	f := newFixture(t)
	rows, err := f.svc.AgentRoutes(context.Background(), analyst, month, "cs-1")
	if err != nil {
		t.Fatal(err)
	}
	type pair struct {
		route           string
		calls           uint64
		approved, known bool
	}
	var got []pair
	for _, r := range rows {
		if r.AgentID != "cs-1" {
			t.Errorf("row of %q", r.AgentID)
		}
		got = append(got, pair{r.Route, r.Calls, r.Approved, r.Known})
	}
	want := []pair{
		{"/admin/undoc", 1, false, true},
		{"/customers/{id}", 2, true, true}, // 2026-02-01 is before the span
		{"/customers/{id}/orders", 1, true, true},
		{"/tickets", 0, true, true}, // approved, unused
		{"/v1/legacy", 1, false, true},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	all, err := f.svc.AgentRoutes(context.Background(), analyst, march15, "")
	if err != nil {
		t.Fatal(err)
	}
	var shadow []AgentRouteRow
	for _, r := range all {
		if r.AgentID == hostile {
			shadow = append(shadow, r)
		}
	}
	if len(shadow) != 1 || shadow[0].Known || shadow[0].Approved || shadow[0].Calls != 1 {
		t.Errorf("shadow agent's rows %+v; want one, not known", shadow)
	}
	if q := lastAsk(t, f); q.Detail != "inventory agent-routes span=2026-03-15..2026-03-16" {
		t.Errorf("question %q", q.Detail)
	}
}

func TestFindings(t *testing.T) {
	f := newFixture(t)
	fs, err := f.svc.Findings(context.Background(), analyst)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, x := range fs {
		got = append(got, fmt.Sprintf("%s %q %q %q", x.Kind, x.AgentID, x.Route, x.Owner))
		if x.Detail == "" {
			t.Errorf("finding %+v without detail", x)
		}
	}
	want := []string{
		fmt.Sprintf("shadow_agent %q \"\" \"\"", hostile),
		`unapproved_route "cs-1" "/admin/undoc" "cx@example.com"`,
		`unapproved_route "cs-1" "/v1/legacy" "cx@example.com"`,
		`zombie_called "cs-1" "/v1/legacy" "cx@example.com"`,
		`credential_expired "cs-1" "" "cx@example.com"`,
		`no_owner "cs-2" "" ""`,
		`review_due "cs-1" "" "cx@example.com"`,
		`undocumented_route "" "/admin/undoc" ""`,
		fmt.Sprintf("undocumented_route \"\" %q \"\"", badPath),
		`unused_grant "cs-1" "/tickets" "cx@example.com"`,
		`unused_grant "cs-2" "/customers/{id}" ""`,
		`dormant "cs-2" "" ""`,
		`never_seen "ghost" "" "ops@example.com"`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("findings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, x := range fs {
		if x.Kind == FindingCredentialExpired && !strings.Contains(x.Detail, "key-1") || x.Kind == FindingCredentialExpired && !strings.Contains(x.Detail, "2026-03-01") {
			t.Errorf("credential finding %q: want the credential and its deadline", x.Detail)
		}
	}
	if q := lastAsk(t, f); q.Detail != "findings" {
		t.Errorf("question %q", q.Detail)
	}
}

func TestFindingsWithoutRegistryOrInventory(t *testing.T) {
	f := newFixture(t)
	f.svc.reg, f.svc.inv = nil, func() *inventory.Inventory { return nil }
	fs, err := f.svc.Findings(context.Background(), analyst)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range fs {
		if x.Kind != FindingDormant {
			t.Errorf("finding %+v without a registry or inventory; want only dormant ones", x)
		}
	}
	if len(fs) != 1 || fs[0].AgentID != "cs-2" {
		t.Errorf("findings %+v; want cs-2 dormant", fs)
	}
}

func TestAccess(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name     string
		req      AccessRequest
		routes   []string
		agents   []string
		calls    []uint64
		samples0 []string
	}{
		{name: "tag pii on March 15th", req: AccessRequest{Span: march15, Tag: "pii"},
			routes: []string{"/customers/{id}", "/customers/{id}/export", "/customers/{id}/orders"},
			agents: []string{"cs-1", hostile}, calls: []uint64{3, 1}, samples0: []string{"req-002", "req-003", "req-004"}},
		{name: "tag sensitive", req: AccessRequest{Span: march15, Tag: "sensitive"},
			routes: []string{"/customers/{id}/export"}, agents: []string{hostile}, calls: []uint64{1}, samples0: []string{"req-009"}},
		{name: "glob one segment", req: AccessRequest{Span: march15, Template: "/customers/*/orders"},
			routes: []string{"/customers/{id}/orders"}, agents: []string{"cs-1"}, calls: []uint64{1}, samples0: []string{"req-004"}},
		{name: "glob any", req: AccessRequest{Span: month, Template: "/customers/**"},
			routes: []string{"/customers/{id}", "/customers/{id}/export", "/customers/{id}/orders"},
			agents: []string{"cs-1", hostile}, calls: []uint64{3, 1}, samples0: []string{"req-002", "req-003", "req-004"}},
		{name: "template spelled as in OpenAPI", req: AccessRequest{Span: march15, Template: "/customers/{customerId}"},
			routes: []string{"/customers/{id}"}, agents: []string{"cs-1"}, calls: []uint64{2}, samples0: []string{"req-002", "req-003"}},
		{name: "tag and template", req: AccessRequest{Span: march15, Tag: "sensitive", Template: "/customers/*"},
			routes: []string{}, agents: nil},
		{name: "one agent, one sample", req: AccessRequest{Span: march15, Tag: "pii", AgentID: "cs-1", Samples: 1},
			routes: []string{"/customers/{id}", "/customers/{id}/export", "/customers/{id}/orders"},
			agents: []string{"cs-1"}, calls: []uint64{3}, samples0: []string{"req-002"}},
		{name: "unknown tag selects nothing, not everything", req: AccessRequest{Span: march15, Tag: "nope"}, routes: []string{}},
		{name: "hostile route by glob", req: AccessRequest{Span: month, Template: "/x/*"},
			routes: []string{badPath}, agents: []string{"new-1"}, calls: []uint64{1}, samples0: []string{"req-010"}},
		{name: "every route", req: AccessRequest{Span: march15, AgentID: hostile},
			routes: []string{}, agents: []string{hostile}, calls: []uint64{1}, samples0: []string{"req-009"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ans, err := f.svc.Access(context.Background(), analyst, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ans.Routes, tc.routes) {
				t.Errorf("routes %q; want %q", ans.Routes, tc.routes)
			}
			var agents []string
			var calls []uint64
			for _, r := range ans.Rows {
				agents, calls = append(agents, r.AgentID), append(calls, r.Calls)
			}
			if !slices.Equal(agents, tc.agents) || !slices.Equal(calls, tc.calls) {
				t.Fatalf("rows %+v; want agents %q calls %v", ans.Rows, tc.agents, tc.calls)
			}
			if len(ans.Rows) > 0 && !slices.Equal(ans.Rows[0].SampleRequestIDs, tc.samples0) {
				t.Errorf("samples %q; want %q", ans.Rows[0].SampleRequestIDs, tc.samples0)
			}
			if ans.Rows == nil || ans.Routes == nil {
				t.Error("nil slices in the answer (JSON null)")
			}
			q := lastAsk(t, f)
			if !strings.HasPrefix(q.Detail, "access ") || q.AgentID != tc.req.AgentID {
				t.Errorf("question %q agent %q", q.Detail, q.AgentID)
			}
		})
	}
	if q := lastAsk(t, f); !strings.Contains(q.Detail, `agent="evil\x1b[31m<script>`) {
		t.Errorf("question %q: want the agent id quoted on one line", q.Detail)
	}
}

func TestAccessStatusAndBytes(t *testing.T) {
	f := newFixture(t)
	ans, err := f.svc.Access(context.Background(), analyst, AccessRequest{Span: march15, Tag: "pii", AgentID: "cs-1"})
	if err != nil {
		t.Fatal(err)
	}
	r := ans.Rows[0]
	if r.Status.S2xx != 2 || r.Status.S403 != 1 || r.Status.S4xx != 1 || r.ResponseBytes != 3000 || r.RequestBytes != 300 ||
		r.FirstMs != at("2026-03-15T10:00:00Z") || r.LastMs != at("2026-03-15T10:10:00Z") ||
		!slices.Equal(r.Routes, []string{"/customers/{id}", "/customers/{id}/orders"}) {
		t.Fatalf("row %+v", r)
	}
}

func TestMatchGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, route string
		want           bool
	}{
		{"/customers/{id}", "/customers/{id}", true},
		{"/customers/{customerId}", "/customers/{id}", true},
		{"/customers/{id}/", "/customers/{id}", true},
		{"/customers/*", "/customers/{id}", true},
		{"/customers/*", "/customers/search", true},
		{"/customers/*", "/customers", false},
		{"/customers/*", "/customers/{id}/orders", false},
		{"/customers/**", "/customers", true},
		{"/customers/**", "/customers/{id}/orders/{id}", true},
		{"/**/export", "/customers/{id}/export", true},
		{"/**/export", "/export", true},
		{"/**/export", "/customers/{id}/exports", false},
		{"/**", "/anything/at/all", true},
		{"/*/*/orders", "/customers/{id}/orders", true},
		{"/**/*/**/orders/**", "/a/b/orders", true},
		{"/**/*/**/orders/**", "/orders", false},
		{"/", "/", true},
		{"/", "/a", false},
		{"/customers", "/Customers", false},
	} {
		if got := MatchGlob(tc.pattern, tc.route); got != tc.want {
			t.Errorf("MatchGlob(%q, %q) = %v; want %v", tc.pattern, tc.route, got, tc.want)
		}
	}
}

func TestAgentProfile(t *testing.T) {
	f := newFixture(t)
	p, err := f.svc.Agent(context.Background(), analyst, "cs-1", march15)
	if err != nil {
		t.Fatal(err)
	}
	if p.Registry == nil || p.Registry.Owner != "cx@example.com" || p.Agent.Lifecycle != LifecycleActive || p.Agent.Calls != 4 ||
		p.Agent.FirstSeenMs != at("2026-02-01T09:00:00Z") || p.Agent.LastSeenMs != at("2026-03-16T08:00:00Z") || p.Agent.UnapprovedRoutes != 1 {
		t.Fatalf("profile %+v", p.Agent)
	}
	var routes []string
	for _, r := range p.Routes {
		routes = append(routes, fmt.Sprintf("%s %d %v", r.Route, r.Calls, r.Approved))
	}
	if want := []string{"/customers/{id} 2 true", "/customers/{id}/orders 1 true", "/tickets 0 true", "/v1/legacy 1 false"}; !slices.Equal(routes, want) {
		t.Errorf("routes %q; want %q", routes, want)
	}
	var kinds []string
	for i, e := range p.Timeline {
		kinds = append(kinds, e.Kind)
		if i > 0 && e.AtMs < p.Timeline[i-1].AtMs {
			t.Error("timeline not in time order")
		}
		if e.Summary == "" {
			t.Errorf("entry %+v without summary", e)
		}
	}
	if want := []string{TimelineCalls, TimelineAnomaly, TimelineAction, TimelineVerdict}; !slices.Equal(kinds, want) {
		t.Errorf("timeline kinds %q; want %q", kinds, want)
	}
	if d := p.Timeline[0].Day; d == nil || d.Calls != 4 || d.Key != "cs-1" {
		t.Errorf("calls entry %+v", p.Timeline[0].Day)
	}
	if p.Timeline[1].Anomaly == nil || p.Timeline[1].Anomaly.ID != "an-1" || p.Timeline[2].Action == nil || p.Timeline[3].Verdict == nil || p.Timeline[3].Verdict.ID != "v1" {
		t.Errorf("timeline %+v", p.Timeline)
	}
	var fk []FindingKind
	for _, x := range p.Findings {
		fk = append(fk, x.Kind)
		if x.AgentID != "cs-1" {
			t.Errorf("finding of %q in cs-1's profile", x.AgentID)
		}
	}
	if want := []FindingKind{FindingUnapproved, FindingUnapproved, FindingZombieCalled, FindingCredentialExpired, FindingReviewDue, FindingUnusedGrant}; !slices.Equal(fk, want) {
		t.Errorf("findings %q; want %q", fk, want)
	}
	if q := lastAsk(t, f); q.Detail != `agent id="cs-1" span=2026-03-15..2026-03-16` || q.AgentID != "cs-1" {
		t.Errorf("question %q agent %q", q.Detail, q.AgentID)
	}
}

func TestAgentProfileHostileAndNeverSeen(t *testing.T) {
	f := newFixture(t)
	p, err := f.svc.Agent(context.Background(), analyst, hostile, march15)
	if err != nil {
		t.Fatal(err)
	}
	if p.Registry != nil || p.Agent.Lifecycle != LifecycleShadow || len(p.Findings) != 1 || p.Findings[0].Kind != FindingShadow {
		t.Errorf("hostile profile %+v", p)
	}
	p, err = f.svc.Agent(context.Background(), analyst, "ghost", march15)
	if err != nil {
		t.Fatal(err)
	}
	if p.Agent.Lifecycle != LifecycleNeverSeen || len(p.Timeline) != 0 || p.Timeline == nil {
		t.Errorf("ghost profile %+v", p)
	}
	_, err = f.svc.Agent(context.Background(), analyst, "nobody", march15)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown agent: %v; want ErrNotFound", err)
	}
	if q := lastAsk(t, f); q.Result != audit.ResultOK {
		t.Errorf("a question about an unknown agent is still a question: %+v", q)
	}
}

func TestRouteProfile(t *testing.T) {
	f := newFixture(t)
	p, err := f.svc.Route(context.Background(), analyst, "/customers/{id}", month)
	if err != nil {
		t.Fatal(err)
	}
	if p.Route.Calls != 2 || !p.Route.Documented || p.Route.CallerCount != 1 || len(p.Callers) != 1 || !p.Callers[0].Approved {
		t.Fatalf("profile %+v", p)
	}
	var days []string
	for _, d := range p.Daily {
		days = append(days, fmt.Sprintf("%s %s %d", d.Day.Format(time.DateOnly), d.Key, d.Calls))
	}
	if want := []string{"2026-03-15 cs-1 2"}; !slices.Equal(days, want) {
		t.Errorf("daily %q; want %q", days, want)
	}
	p, err = f.svc.Route(context.Background(), analyst, "/docs-only", month)
	if err != nil || p.Route.Calls != 0 || !p.Route.Documented || p.Daily == nil {
		t.Errorf("documented route never called: %+v, %v", p, err)
	}
	p, err = f.svc.Route(context.Background(), analyst, badPath, month)
	if err != nil || p.Route.Calls != 1 || p.Route.Documented || p.Callers[0].AgentID != "new-1" {
		t.Errorf("hostile route: %+v, %v", p, err)
	}
	if q := lastAsk(t, f); strings.Contains(q.Detail, "\x1b") || !strings.Contains(q.Detail, `\x1b]0;title\a`) {
		t.Errorf("question %q: want the route quoted", q.Detail)
	}
	if _, err := f.svc.Route(context.Background(), analyst, "/nowhere", month); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown route: %v; want ErrNotFound", err)
	}
}

func TestEvents(t *testing.T) {
	f := newFixture(t)
	evs, err := f.svc.Events(context.Background(), analyst, EventQuery{Span: march15, AgentID: "cs-1", Routes: []string{"/customers/{id}"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].EventID != "e003" || evs[1].EventID != "e002" {
		t.Fatalf("events %+v; want e003, e002 (newest first)", evs)
	}
	if q := lastAsk(t, f); q.Detail != `events agent="cs-1" routes="/customers/{id}" span=2026-03-15..2026-03-16 limit=100` {
		t.Errorf("question %q", q.Detail)
	}
	evs, err = f.svc.Events(context.Background(), analyst, EventQuery{Span: month, Limit: 2})
	if err != nil || len(evs) != 2 {
		t.Fatalf("limit 2: %d events, %v", len(evs), err)
	}
}

func TestInvalidQuestions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	backwards := Span{From: march15.To, To: march15.From}
	for _, tc := range []struct {
		name string
		ask  func() error
		want string
	}{
		{"no span", func() error { _, err := f.svc.Agents(ctx, analyst, Span{}); return err }, "give both from and to"},
		{"backwards", func() error { _, err := f.svc.Routes(ctx, analyst, backwards); return err }, "is not after from"},
		{"too long", func() error {
			_, err := f.svc.AgentRoutes(ctx, analyst, Span{From: now.Add(-500 * day), To: now}, "")
			return err
		}, "longer than 400 days"},
		{"bad tag", func() error {
			_, err := f.svc.Access(ctx, analyst, AccessRequest{Span: march15, Tag: "p ii"})
			return err
		}, `tag: "p ii"`},
		{"bad template", func() error {
			_, err := f.svc.Access(ctx, analyst, AccessRequest{Span: march15, Template: "customers"})
			return err
		}, "must start with '/'"},
		{"template with query", func() error {
			_, err := f.svc.Access(ctx, analyst, AccessRequest{Span: march15, Template: "/a?b=1"})
			return err
		}, "query or fragment"},
		{"samples", func() error {
			_, err := f.svc.Access(ctx, analyst, AccessRequest{Span: march15, Tag: "pii", Samples: 1000})
			return err
		}, "samples: 1000"},
		{"no agent", func() error { _, err := f.svc.Agent(ctx, analyst, "", march15); return err }, "agent: required"},
		{"no route", func() error { _, err := f.svc.Route(ctx, analyst, "", march15); return err }, "route: required"},
		{"limit", func() error { _, err := f.svc.Events(ctx, analyst, EventQuery{Span: march15, Limit: -1}); return err }, "limit: -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(f.rec.All())
			err := tc.ask()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want ErrInvalid with %q", err, tc.want)
			}
			if len(f.rec.All()) != n+1 {
				t.Fatal("an invalid question was not audited")
			}
			if q := lastAsk(t, f); q.Result != audit.ResultRefused || !strings.Contains(q.Detail, tc.want) {
				t.Errorf("audit %+v; want refused with the reason", q)
			}
		})
	}
}

// failingRecorder fails every write.
type failingRecorder struct{}

func (failingRecorder) Record(context.Context, audit.Record) error { return errors.New("disk full") }

// countingSource counts the calls that reach it.
type countingSource struct {
	Source
	n int
}

func (c *countingSource) Agents(ctx context.Context, sp Span, agentID string) ([]AgentUsage, error) {
	c.n++
	return c.Source.Agents(ctx, sp, agentID)
}

func (c *countingSource) AgentRoutes(ctx context.Context, sp Span, a, r string) ([]AgentRouteUsage, error) {
	c.n++
	return c.Source.AgentRoutes(ctx, sp, a, r)
}

func (c *countingSource) Access(ctx context.Context, q AccessQuery) ([]AccessRow, error) {
	c.n++
	return c.Source.Access(ctx, q)
}

func (c *countingSource) Events(ctx context.Context, q EventQuery) ([]event.Event, error) {
	c.n++
	return c.Source.Events(ctx, q)
}

func TestAuditFailureRefuses(t *testing.T) {
	f := newFixture(t)
	src := &countingSource{Source: f.src}
	for name, rec := range map[string]Recorder{"failing": failingRecorder{}, "none": nil} {
		svc := New(src, f.svc.reg, f.svc.inv, rec, Config{}, f.svc.now)
		ctx := context.Background()
		errs := []error{}
		_, err := svc.Agents(ctx, analyst, march15)
		errs = append(errs, err)
		_, err = svc.Findings(ctx, analyst)
		errs = append(errs, err)
		_, err = svc.Access(ctx, analyst, AccessRequest{Span: march15, Tag: "pii"})
		errs = append(errs, err)
		_, err = svc.Events(ctx, analyst, EventQuery{Span: march15})
		errs = append(errs, err)
		_, err = svc.Agent(ctx, analyst, "cs-1", march15)
		errs = append(errs, err)
		_, err = svc.Route(ctx, analyst, "/tickets", march15)
		errs = append(errs, err)
		_, err = svc.AgentRoutes(ctx, analyst, march15, "")
		errs = append(errs, err)
		_, err = svc.Routes(ctx, analyst, march15)
		errs = append(errs, err)
		for i, err := range errs {
			if !errors.Is(err, ErrNotAudited) {
				t.Errorf("%s recorder, question %d: %v; want ErrNotAudited", name, i, err)
			}
		}
		if src.n != 0 {
			t.Errorf("%s recorder: the source was read %d times for unaudited questions", name, src.n)
		}
	}
}

func TestConfig(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.Lookback != 90*day || c.NewDays != 7 || c.DormantDays != 30 || c.UnusedGrantDays != 30 || c.Validate() != nil {
		t.Fatalf("defaults %+v: %v", c, c.Validate())
	}
	err := Config{Lookback: 10 * day, NewDays: 11, DormantDays: -1, UnusedGrantDays: 5}.Validate()
	for _, w := range []string{"new_days: 11; want 1 to the lookback's 10 days", "dormant_days: -1"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate: %v; want %q", err, w)
		}
	}
	if err := (Config{Lookback: time.Hour, NewDays: 1, DormantDays: 1, UnusedGrantDays: 1}).Validate(); err == nil {
		t.Error("a lookback under a day validated")
	}
}

func TestParseSpan(t *testing.T) {
	ok := func(from, to, wantFrom, wantTo string) {
		t.Helper()
		sp, err := ParseSpan(from, to, now, 24*time.Hour)
		if err != nil {
			t.Fatalf("ParseSpan(%q, %q): %v", from, to, err)
		}
		if !sp.From.Equal(time.UnixMilli(at(wantFrom))) || !sp.To.Equal(time.UnixMilli(at(wantTo))) {
			t.Fatalf("ParseSpan(%q, %q) = %v; want %s..%s", from, to, sp, wantFrom, wantTo)
		}
	}
	bad := func(from, to, want string) {
		t.Helper()
		_, err := ParseSpan(from, to, now, 24*time.Hour)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Fatalf("ParseSpan(%q, %q) error %v; want ErrInvalid with %q", from, to, err, want)
		}
	}
	ok("2026-03-15", "2026-03-15", "2026-03-15T00:00:00Z", "2026-03-16T00:00:00Z")
	ok("2026-03-15", "2026-03-16", "2026-03-15T00:00:00Z", "2026-03-17T00:00:00Z")
	ok("2026-03-15T10:00:00Z", "2026-03-15T12:30:00+01:00", "2026-03-15T10:00:00Z", "2026-03-15T11:30:00Z")
	ok("", "", "2026-03-19T12:00:00Z", "2026-03-21T00:00:00Z") // to now, as the end of today
	ok("", "2026-03-15", "2026-03-15T00:00:00Z", "2026-03-16T00:00:00Z")
	ok("2026-03-01", "", "2026-03-01T00:00:00Z", "2026-03-21T00:00:00Z")
	bad("yesterday", "", `from: "yesterday" is neither RFC 3339 nor YYYY-MM-DD`)
	bad("", "tomorrow", `to: "tomorrow"`)
	bad("2026-03-16", "2026-03-15", "is not after from")
}

func TestMetrics(t *testing.T) {
	f := newFixture(t)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	f.svc.SetMetrics(m)
	ctx := context.Background()
	if _, err := f.svc.Access(ctx, analyst, AccessRequest{Span: march15, Tag: "pii"}); err != nil {
		t.Fatal(err)
	}
	_, _ = f.svc.Access(ctx, analyst, AccessRequest{Span: march15, Tag: "p ii"})
	_, _ = f.svc.Agent(ctx, analyst, "nobody", march15)
	for _, c := range []struct {
		q, result string
		want      float64
	}{{"access", "ok", 1}, {"access", "invalid", 1}, {"agent", "not_found", 1}, {"agent", "ok", 0}} {
		if got := testutil.ToFloat64(m.Questions.WithLabelValues(c.q, c.result)); got != c.want {
			t.Errorf("questions{%s,%s} = %v; want %v", c.q, c.result, got, c.want)
		}
	}
	if n := testutil.CollectAndCount(m.Duration); n != 2 {
		t.Errorf("%d duration series; want 2 (access, agent)", n)
	}
}

// spanSource records the spans and agent filters the service asks its
// source with.
type spanSource struct {
	Source
	mu     sync.Mutex // the profile reads its source concurrently
	agents []string   // the agentID of each Agents call
	spans  []Span     // every span of Agents and AgentRoutes
}

func (s *spanSource) Agents(ctx context.Context, sp Span, agentID string) ([]AgentUsage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.agents = append(s.agents, agentID)
	s.spans = append(s.spans, sp)
	return s.Source.Agents(ctx, sp, agentID)
}

func (s *spanSource) AgentRoutes(ctx context.Context, sp Span, a, r string) ([]AgentRouteUsage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spans = append(s.spans, sp)
	return s.Source.AgentRoutes(ctx, sp, a, r)
}

// The spans the service makes itself are whole UTC days ending at the end
// of today, so the summaries answer them alone; a profile reads one
// agent, not the fleet; and the answers are those over spans ending now.
func TestServiceSpansWholeDays(t *testing.T) {
	f := newFixture(t)
	src := &spanSource{Source: f.src}
	svc := New(src, f.svc.reg, f.svc.inv, audit.NewLogger(&audit.MemStore{}, nil, nil), Config{}, f.svc.now)
	ctx := context.Background()
	got, err := svc.Findings(ctx, analyst)
	if err != nil {
		t.Fatal(err)
	}
	want, err := f.svc.Findings(ctx, analyst)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("findings differ through the recording source: %v", err)
	}
	if len(src.spans) == 0 {
		t.Fatal("findings read no span")
	}
	for _, sp := range src.spans {
		if !sp.From.Equal(sp.From.Truncate(day)) || !sp.To.Equal(now.UTC().Truncate(day).Add(day)) {
			t.Errorf("findings read %v; want whole days ending at the end of %s", sp, now.Format(time.DateOnly))
		}
	}
	src.agents, src.spans = nil, nil
	if _, err := svc.Agent(ctx, analyst, "cs-1", march15); err != nil {
		t.Fatal(err)
	}
	if len(src.agents) == 0 || slices.ContainsFunc(src.agents, func(a string) bool { return a != "cs-1" }) {
		t.Errorf("the profile of cs-1 read Agents for %q; want only cs-1", src.agents)
	}
}

func TestMemAgentsFilter(t *testing.T) {
	src := newFixture(t).src
	sp := Span{From: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), To: now}
	all, err := src.Agents(context.Background(), sp, "")
	if err != nil || len(all) < 2 {
		t.Fatalf("Agents(\"\") = %d rows, %v; want several", len(all), err)
	}
	for _, a := range all {
		one, err := src.Agents(context.Background(), sp, a.AgentID)
		if err != nil || len(one) != 1 || !reflect.DeepEqual(one[0], a) {
			t.Errorf("Agents(%q) = %+v, %v; want its row of Agents(\"\")", a.AgentID, one, err)
		}
	}
	if none, err := src.Agents(context.Background(), sp, "nobody"); err != nil || len(none) != 0 {
		t.Errorf("Agents(nobody) = %+v, %v; want none", none, err)
	}
}
