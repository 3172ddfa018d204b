package chstore

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// visDay0 is the first UTC day of the visibility tests' events.
var visDay0 = time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)

// visibilityEvents are three days of traffic of three agents and an
// unattributed caller: statuses across the classes, empty source
// addresses, credentials, gateways, routes and request ids, and events of
// one agent in the same millisecond.
func visibilityEvents() []event.Event {
	agents := []string{"agent-a", "agent-b", "agent-c", ""}
	routes := []string{"/customers/{id}", "/orders", "/health", ""}
	statuses := []uint16{200, 201, 302, 401, 403, 404, 500, 503, 200}
	var evs []event.Event
	for i := range 90 {
		day := i % 3
		agent := agents[(i/3)%len(agents)]
		ms := visDay0.AddDate(0, 0, day).UnixMilli() + int64((i*37)%1440)*60*1000 + int64(i%5)
		if i%11 == 0 && i > 0 {
			ms = evs[len(evs)-1].EventTimeMs // a tie within the millisecond
			agent = evs[len(evs)-1].AgentID
		}
		e := event.Event{
			EventID:       fmt.Sprintf("events/0/%d", i),
			EventTimeMs:   ms,
			IngestTimeMs:  ms + 500,
			AgentID:       agent,
			Method:        "GET",
			Route:         routes[i%len(routes)],
			Path:          "/p/" + fmt.Sprint(i),
			Status:        statuses[i%len(statuses)],
			RequestBytes:  uint64(100 + i),
			ResponseBytes: uint64(1000 * (i % 7)),
			DurationUs:    uint64(i * 10),
			Topic:         "events",
			Offset:        int64(i),
		}
		if i%4 != 0 {
			e.SourceIP = fmt.Sprintf("10.0.%d.%d", day, i%3)
		}
		if i%5 != 0 {
			e.CredentialID = fmt.Sprintf("key-%d", i%2)
		}
		if i%3 != 1 {
			e.Gateway = "gw-" + fmt.Sprint(i%2)
		}
		if i%6 != 0 {
			e.RequestID = fmt.Sprintf("req-%03d", i)
		}
		if i%8 == 0 {
			e.QueryParams = []string{"q"}
		}
		if agent == "" {
			e.Unattributed, e.IdentitySource = true, "none"
		} else {
			e.IdentitySource = "header"
		}
		evs = append(evs, e)
	}
	return evs
}

// visibilityRecords are anomalies, audit records and verdicts in the
// events' days.
func visibilityRecords() ([]anomaly.Anomaly, []audit.Record, []anomaly.Verdict) {
	var (
		as []anomaly.Anomaly
		rs []audit.Record
		vs []anomaly.Verdict
	)
	for i := range 6 {
		agent := []string{"agent-a", "agent-b"}[i%2]
		start := visDay0.Add(time.Duration(i) * 9 * time.Hour).UnixMilli()
		as = append(as, anomaly.Anomaly{
			V: 1, ID: fmt.Sprintf("an-%d", i), AgentID: agent, Kind: []string{"volume", "new_route"}[i%2],
			WindowStartMs: start, WindowEndMs: start + 60000, DetectedMs: start + 61000, Score: 4.5,
			Severity: "high", Summary: "s", SampleRequestIDs: []string{"req-1"},
		})
		r := audit.Record{
			AtMs: start + 120000, Actor: audit.Actor{Kind: audit.ActorCLI, Name: "ana"}, Action: "revoke",
			AgentID: agent, AnomalyID: fmt.Sprintf("an-%d", i), Result: audit.ResultOK,
		}.Normalize()
		r.ID = r.ContentID()
		rs = append(rs, r)
		// A question about the agent: on the trail, never among its actions.
		q := audit.Record{AtMs: start + 150000, Actor: audit.Actor{Kind: audit.ActorCLI, Name: "auditor"}, Action: audit.ActionAsk,
			AgentID: agent, Result: audit.ResultOK, Detail: "agent " + agent}.Normalize()
		q.ID = q.ContentID()
		rs = append(rs, q)
		vs = append(vs, anomaly.Verdict{
			ID: fmt.Sprintf("v-%d", i), AnomalyID: fmt.Sprintf("an-%d", i), AgentID: agent, Kind: "volume",
			WindowStartMs: start, WindowEndMs: start + 60000, Verdict: anomaly.VerdictFalsePositive,
			Author: "ana", AtMs: start + 180000, Values: []float64{1, 2},
		})
	}
	return as, rs, vs
}

// TestIntegrationVisibilityMatchesMem inserts the same events through the
// ingest's store path (InsertEvents, a batch retried after it succeeded)
// and compares every answer of the ClickHouse Source with MemSource's on
// those events: exactly, for Access and Events at once; for the
// summaries, counting the retried batch twice until RebuildInventory, and
// exactly after it, over whole days and partial ones.
func TestIntegrationVisibilityMatchesMem(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	evs := visibilityEvents()
	as, rs, vs := visibilityRecords()

	retried := evs[10:25]
	for _, batch := range [][]event.Event{evs[:40], evs[40:], retried} {
		if err := st.InsertEvents(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.InsertAnomalies(ctx, as); err != nil {
		t.Fatal(err)
	}
	if err := NewAudit(st).Append(ctx, rs...); err != nil {
		t.Fatal(err)
	}
	fb := NewFeedback(st)
	for _, v := range vs {
		if err := fb.Put(ctx, v); err != nil {
			t.Fatal(err)
		}
	}

	ch := NewVisibility(st)
	exact := visibility.NewMemSource(evs, as, rs, vs)
	// What the views hold before a rebuild: the retried batch twice.
	twice := append([]event.Event(nil), evs...)
	for _, e := range retried {
		e.EventID += "/retried"
		twice = append(twice, e)
	}
	doubled := visibility.NewMemSource(twice, as, rs, vs)

	day := func(d int) time.Time { return visDay0.AddDate(0, 0, d) }
	whole := []visibility.Span{
		{From: day(0), To: day(3)},
		{From: day(1), To: day(2)},
		{From: day(-5), To: day(10)},
		{From: day(5), To: day(6)},
	}
	partial := []visibility.Span{
		{From: day(0).Add(5 * time.Hour), To: day(2).Add(7 * time.Hour)},
		{From: day(1).Add(time.Hour), To: day(1).Add(20 * time.Hour)},
		{From: day(0).Add(-time.Hour), To: day(1).Add(time.Millisecond)},
		{From: day(1), To: day(1)},
		{From: day(2), To: day(1)},
	}

	// The data must exercise what is compared: traffic in the spans, and
	// a retried batch the views count twice.
	ea, _ := exact.Agents(ctx, whole[0], "")
	da, _ := doubled.Agents(ctx, whole[0], "")
	if len(ea) != 4 || reflect.DeepEqual(ea, da) {
		t.Fatalf("test data: %d agents, doubled equal to exact: %v", len(ea), reflect.DeepEqual(ea, da))
	}

	// Before the rebuild: the exact reads, and the summaries over whole
	// days with the retried batch counted twice.
	compareExact(t, "before rebuild", ch, exact, append(whole, partial...))
	compareSummaries(t, "before rebuild, views", ch, doubled, whole)

	got, err := st.RebuildInventory(ctx, day(0), day(2))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"20260314", "20260315", "20260316"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("RebuildInventory rebuilt %v, want %v", got, want)
	}
	compareExact(t, "after rebuild", ch, exact, append(whole, partial...))
	compareSummaries(t, "after rebuild", ch, exact, append(whole, partial...))

	// The newest rows are all copies of a retried batch: Events asks the
	// server for more rows until it has as many distinct events as asked.
	x, y := evs[0], evs[1]
	x.EventID, x.EventTimeMs, x.AgentID = "late/x", day(7).UnixMilli()+10, "agent-a"
	y.EventID, y.EventTimeMs, y.AgentID = "late/y", day(7).UnixMilli()+20, "agent-a"
	for range 3 {
		if err := st.InsertEvents(ctx, []event.Event{x, y}); err != nil {
			t.Fatal(err)
		}
	}
	late := visibility.NewMemSource([]event.Event{x, y, x, y}, nil, nil, nil)
	for limit := range 4 {
		q := visibility.EventQuery{Span: visibility.Span{From: day(7), To: day(8)}, AgentID: "agent-a", Limit: limit}
		same(t, fmt.Sprintf("Events over copies, limit %d", limit), call(ch.Events(ctx, q)), call(late.Events(ctx, q)))
	}
}

// compareSummaries compares the summary reads of ch and mem over spans.
func compareSummaries(t *testing.T, stage string, ch, mem visibility.Source, spans []visibility.Span) {
	t.Helper()
	ctx := t.Context()
	for _, sp := range spans {
		name := fmt.Sprintf("%s: [%s, %s)", stage, sp.From.Format(time.RFC3339), sp.To.Format(time.RFC3339))
		for _, agent := range []string{"", "agent-a", "agent-b", "nobody"} {
			same(t, fmt.Sprintf("%s Agents(%q)", name, agent), call(ch.Agents(ctx, sp, agent)), call(mem.Agents(ctx, sp, agent)))
		}
		for _, f := range [][2]string{{"", ""}, {"agent-a", ""}, {"", "/orders"}, {"agent-b", "/health"}, {"", ""}, {"nobody", ""}} {
			same(t, fmt.Sprintf("%s AgentRoutes(%q, %q)", name, f[0], f[1]),
				call(ch.AgentRoutes(ctx, sp, f[0], f[1])), call(mem.AgentRoutes(ctx, sp, f[0], f[1])))
			for _, by := range []visibility.DailyBy{visibility.ByAgent, visibility.ByRoute} {
				same(t, fmt.Sprintf("%s Daily(%d, %q, %q)", name, by, f[0], f[1]),
					call(ch.Daily(ctx, sp, by, f[0], f[1])), call(mem.Daily(ctx, sp, by, f[0], f[1])))
			}
		}
	}
}

// compareExact compares the reads of ch and mem that never use the
// summaries.
func compareExact(t *testing.T, stage string, ch, mem visibility.Source, spans []visibility.Span) {
	t.Helper()
	ctx := t.Context()
	for _, sp := range spans {
		name := fmt.Sprintf("%s: [%s, %s)", stage, sp.From.Format(time.RFC3339), sp.To.Format(time.RFC3339))
		for _, q := range []visibility.AccessQuery{
			{Span: sp},
			{Span: sp, Routes: []string{"/customers/{id}", "/orders"}},
			{Span: sp, Routes: []string{""}, Samples: 2},
			{Span: sp, AgentID: "agent-c", Routes: []string{"/health", "/nowhere"}},
		} {
			same(t, fmt.Sprintf("%s Access(%+v)", name, q), call(ch.Access(ctx, q)), call(mem.Access(ctx, q)))
		}
		for _, q := range []visibility.EventQuery{
			{Span: sp},
			{Span: sp, Limit: 5},
			{Span: sp, AgentID: "agent-a", Routes: []string{"/orders", ""}},
			{Span: sp, AgentID: "", Routes: []string{"/health"}, Limit: 3},
		} {
			same(t, fmt.Sprintf("%s Events(%+v)", name, q), call(ch.Events(ctx, q)), call(mem.Events(ctx, q)))
		}
		for _, agent := range []string{"", "agent-b", "nobody"} {
			same(t, fmt.Sprintf("%s Anomalies(%q)", name, agent), call(ch.Anomalies(ctx, sp, agent)), call(mem.Anomalies(ctx, sp, agent)))
			same(t, fmt.Sprintf("%s Actions(%q)", name, agent), call(ch.Actions(ctx, sp, agent)), call(mem.Actions(ctx, sp, agent)))
		}
		same(t, name+" Verdicts", call(ch.Verdicts(ctx, sp)), call(mem.Verdicts(ctx, sp)))
	}
}

type result struct {
	v   any
	err error
}

func call[T any](v T, err error) result { return result{v, err} }

// same fails the test unless got and want are deeply equal (nil and empty
// slices told apart), showing the first lines where their JSON differs.
func same(t *testing.T, what string, got, want result) {
	t.Helper()
	if got.err != nil || want.err != nil {
		t.Errorf("%s: errors: clickhouse %v, mem %v", what, got.err, want.err)
		return
	}
	if reflect.DeepEqual(got.v, want.v) {
		return
	}
	g, _ := json.MarshalIndent(got.v, "", " ")
	w, _ := json.MarshalIndent(want.v, "", " ")
	gl, wl := strings.Split(string(g), "\n"), strings.Split(string(w), "\n")
	var diff []string
	for i := 0; i < max(len(gl), len(wl)) && len(diff) < 12; i++ {
		var a, b string
		if i < len(gl) {
			a = gl[i]
		}
		if i < len(wl) {
			b = wl[i]
		}
		if a != b {
			diff = append(diff, fmt.Sprintf("line %d: clickhouse %s | mem %s", i+1, strings.TrimSpace(a), strings.TrimSpace(b)))
		}
	}
	if len(diff) == 0 {
		diff = append(diff, fmt.Sprintf("same JSON, different Go values (nil versus empty?): clickhouse %#v, mem %#v", got.v, want.v))
	}
	t.Errorf("%s: clickhouse and mem differ:\n%s", what, strings.Join(diff, "\n"))
}

// TestIntegrationInventoryRetention: the migration applies twice, and
// retention drops the summaries' days with the events'.
func TestIntegrationInventoryRetention(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// Statements of 0005 run again, as a racing process would run them.
	for _, m := range mustMigrations(t) {
		if m.name != "inventory" {
			continue
		}
		for _, s := range m.stmts {
			if err := st.execDDL(ctx, s); err != nil {
				t.Fatalf("0005 statement again: %v", err)
			}
		}
	}
	evs := visibilityEvents()
	if err := st.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	var kept uint64
	for _, e := range evs {
		if e.EventTimeMs >= visDay0.AddDate(0, 0, 2).UnixMilli() {
			kept++
		}
	}
	dropped, err := st.DropPartitionsBefore(ctx, visDay0.AddDate(0, 0, 2))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"20260314", "20260315"}; !reflect.DeepEqual(dropped, want) {
		t.Fatalf("dropped %v, want %v", dropped, want)
	}
	for _, table := range append([]string{"events"}, inventoryTables...) {
		var parts []string
		rows, err := st.conn.Query(ctx, "SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() AND table = ? AND active ORDER BY partition_id", table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var p string
			if err := rows.Scan(&p); err != nil {
				t.Fatal(err)
			}
			parts = append(parts, p)
		}
		rows.Close()
		if want := []string{"20260316"}; !reflect.DeepEqual(parts, want) {
			t.Errorf("%s partitions after retention: %v, want %v", table, parts, want)
		}
	}
	// The views are still there and feed the summaries.
	agents, err := NewVisibility(st).Agents(ctx, visibility.Span{From: visDay0, To: visDay0.AddDate(0, 0, 3)}, "")
	if err != nil {
		t.Fatal(err)
	}
	var calls uint64
	for _, a := range agents {
		calls += a.Calls
	}
	if calls != kept || kept == 0 {
		t.Errorf("calls on the day kept: %d, want %d", calls, kept)
	}
}

func mustMigrations(t *testing.T) []migration {
	t.Helper()
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// TestIntegrationInventoryViewsDropCreate: without the views, inserts do
// not reach the summaries; created again, they do.
func TestIntegrationInventoryViewsDropCreate(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	evs := visibilityEvents()
	if err := st.DropInventoryViews(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.DropInventoryViews(ctx); err != nil {
		t.Fatalf("dropping the views twice: %v", err)
	}
	if err := st.InsertEvents(ctx, evs[:30]); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateInventoryViews(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertEvents(ctx, evs[30:]); err != nil {
		t.Fatal(err)
	}
	var rows uint64
	if err := st.conn.QueryRow(ctx, "SELECT countMerge(calls) FROM "+inventoryRouteTable).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 60 {
		t.Errorf("summarised calls: %d, want 60 (the events inserted while the views existed)", rows)
	}
	ctx2, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := st.RebuildInventory(ctx2, visDay0, visDay0.AddDate(0, 0, 2)); err != nil {
		t.Fatal(err)
	}
	if err := st.conn.QueryRow(ctx, "SELECT countMerge(calls) FROM "+inventoryRouteTable).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 90 {
		t.Errorf("summarised calls after the rebuild: %d, want 90", rows)
	}
}
