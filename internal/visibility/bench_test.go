package visibility

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// benchService is a fleet of 2,000 agents over 30 days (300,000 events,
// 5 a day each) on a MemSource, with a registry and a route inventory:
// the Service's own cost on the embedded mode's source.
func benchService(b *testing.B) *Service {
	b.Helper()
	const agents, days, perDay = 2000, 30, 5
	routes := []string{"/customers/{id}", "/customers/{id}/orders", "/tickets", "/reports/{id}", "/v1/legacy"}
	var reg, inv strings.Builder
	reg.WriteString("agents:\n")
	for a := 0; a < agents; a += 2 { // half registered
		fmt.Fprintf(&reg, "  - {id: agent-%04d, owner: team-%d, approved_routes: ['/customers/{id}', /tickets]}\n", a, a%10)
	}
	inv.WriteString("routes:\n  - {template: '/customers/{id}', tags: [pii]}\n  - {template: '/customers/{id}/orders', tags: [pii]}\n  - {template: /tickets}\n  - {template: /v1/legacy, tags: [deprecated]}\n")
	r, err := inventory.ParseRegistry("r.yaml", []byte(reg.String()))
	if err != nil {
		b.Fatal(err)
	}
	i, err := inventory.ParseRoutes("i.yaml", []byte(inv.String()))
	if err != nil {
		b.Fatal(err)
	}
	end := now.Truncate(day)
	evs := make([]event.Event, 0, agents*days*perDay)
	for d := 0; d < days; d++ {
		for a := 0; a < agents; a++ {
			for k := 0; k < perDay; k++ {
				n := len(evs)
				evs = append(evs, event.Event{EventID: fmt.Sprint(n), AgentID: fmt.Sprintf("agent-%04d", a), Route: routes[(a+k)%len(routes)],
					EventTimeMs: end.Add(-time.Duration(d+1)*day + time.Duration(a*7+k*3600)*time.Second).UnixMilli(), Status: 200, RequestID: fmt.Sprint("r", n)})
			}
		}
	}
	return New(NewMemSource(evs, nil, nil, nil), func() *inventory.Registry { return r }, func() *inventory.Inventory { return i },
		audit.NewLogger(&audit.MemStore{}, nil, nil), Config{}, func() time.Time { return now })
}

func BenchmarkService(b *testing.B) {
	s := benchService(b)
	ctx := context.Background()
	who := audit.Actor{Kind: audit.ActorCLI, Name: "bench"}
	oneDay := DaySpan(now.Add(-2 * day))
	month := Span{From: now.Add(-30 * day), To: now}
	b.Run("access-one-day-one-tag", func(b *testing.B) {
		for b.Loop() {
			if a, err := s.Access(ctx, who, AccessRequest{Span: oneDay, Tag: "pii"}); err != nil || len(a.Rows) == 0 {
				b.Fatal(err, len(a.Rows))
			}
		}
	})
	b.Run("agent-profile-month", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Agent(ctx, who, "agent-0042", month); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("findings", func(b *testing.B) {
		for b.Loop() {
			if fs, err := s.Findings(ctx, who); err != nil || len(fs) == 0 {
				b.Fatal(err)
			}
		}
	})
	b.Run("agents-month", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Agents(ctx, who, month); err != nil {
				b.Fatal(err)
			}
		}
	})
}
