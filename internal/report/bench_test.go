package report

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// BenchmarkMonth builds and renders a month of 2,000 agents (20 events a
// day each, 1.2 million events, 3,000 anomalies) on the visibility
// Service over a MemSource: the embedded mode's report, end to end but for
// loading the files.
func BenchmarkMonth(b *testing.B) {
	const agents, perDay = 2000, 20
	from := november.Span.From
	evs := make([]event.Event, 0, agents*perDay*30)
	var anoms []anomaly.Anomaly
	routes := []string{"/v1/invoices", "/v1/customers/{id}", "/v0/customers", "/v1/reports", "/v2/undocumented"}
	for a := range agents {
		id := fmt.Sprintf("agent-%04d", a)
		for d := range 30 {
			for i := range perDay {
				t := from.Add(time.Duration(d)*24*time.Hour + time.Duration(i)*time.Hour)
				st := uint16(200)
				if i%17 == 0 {
					st = 403
				}
				evs = append(evs, event.Event{EventID: fmt.Sprintf("%s-%d-%d", id, d, i), EventTimeMs: t.UnixMilli(), AgentID: id,
					Route: routes[(a+i)%len(routes)], Status: st, RequestBytes: 100, ResponseBytes: 900})
			}
		}
		if a%2 == 0 {
			for k := range 3 {
				start := from.Add(time.Duration(a%30)*24*time.Hour + time.Duration(k)*time.Hour).UnixMilli()
				anoms = append(anoms, anomaly.Anomaly{ID: fmt.Sprintf("%s-%d", id, k), AgentID: id, Kind: anomaly.Behaviour,
					Severity: Severities[k%4], WindowStartMs: start, WindowEndMs: start + 60_000, DetectedMs: start + 65_000})
			}
		}
	}
	src := visibility.NewMemSource(evs, anoms, nil, nil)
	yaml := "agents:\n"
	for a := range agents - 100 {
		yaml += fmt.Sprintf("  - id: agent-%04d\n    owner: team-%d\n    approved_routes: [/v1/invoices, /v1/reports]\n", a, a%10)
	}
	reg, err := inventory.ParseRegistry("agents.yaml", []byte(yaml))
	if err != nil {
		b.Fatal(err)
	}
	inv, err := inventory.ParseRoutes("routes.yaml", []byte("routes:\n  - template: /v1/invoices\n  - template: /v1/customers/{id}\n    tags: [pii]\n  - template: /v0/customers\n    tags: [deprecated]\n  - template: /v1/reports\n"))
	if err != nil {
		b.Fatal(err)
	}
	now := func() time.Time { return november.Span.To.Add(6 * time.Hour) }
	svc := visibility.New(src, func() *inventory.Registry { return reg }, func() *inventory.Inventory { return inv }, &recorder{}, visibility.Config{}, now)
	bld := &Builder{Questions: svc, Source: src, Who: audit.Actor{Kind: audit.ActorCLI, Name: "bench"}, Now: now}
	b.ResetTimer()
	for b.Loop() {
		r, err := bld.Build(context.Background(), november)
		if err != nil {
			b.Fatal(err)
		}
		charts, err := Charts(r)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := HTML(r, charts); err != nil {
			b.Fatal(err)
		}
		if _, err := PDF(r, charts); err != nil {
			b.Fatal(err)
		}
		if r.Numbers.AgentsSeen != agents {
			b.Fatalf("%d agents seen", r.Numbers.AgentsSeen)
		}
	}
}
