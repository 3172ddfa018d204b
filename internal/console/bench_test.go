package console

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// BenchmarkPages measures the server time of the console's pages over the
// real visibility service on an in-memory source (the embedded mode):
// 2,000 agents, 200,000 events over the fixture's day.
//
//	go test ./internal/console -run '^$' -bench Pages -benchtime 20x
func BenchmarkPages(b *testing.B) {
	var evs []event.Event
	routes := []string{"/v1/customers/{id}", "/v1/invoices", "/v1/reports", "/v1/tickets", "/v1/orders/{id}"}
	for i := range 200_000 {
		agent := fmt.Sprintf("agent-%04d", i%2000)
		evs = append(evs, event.Event{EventID: fmt.Sprint(i), AgentID: agent, Route: routes[i%len(routes)],
			EventTimeMs: day15.Add(time.Duration(i%86400) * time.Second).UnixMilli(), Status: 200, ResponseBytes: 1000, RequestID: fmt.Sprint("r", i)})
	}
	f := newFixture()
	f.src = visibility.NewMemSource(evs, nil, nil, nil)
	inv, err := inventory.ParseRoutes("routes.yaml", []byte(testRoutes))
	if err != nil {
		b.Fatal(err)
	}
	svc := visibility.New(f.src, inventory.EmptyRegistry, func() *inventory.Inventory { return inv }, audit.NewLogger(&audit.MemStore{}, nil, nil),
		visibility.Config{}, func() time.Time { return testNow })
	h, err := newTestHandler(f, func(o *Options) { o.Visibility = svc })
	if err != nil {
		b.Fatal(err)
	}
	s := h.sessions.open(audit.Actor{Kind: audit.ActorAPI, Name: "bench"}, scopeRead, "token")
	for _, p := range []string{"/console/", "/console/agents", "/console/agent?id=agent-0042", "/console/inventory",
		"/console/access?from=2026-03-15T00%3A00&to=2026-03-16T00%3A00&tag=pii"} {
		b.Run(p, func(b *testing.B) {
			for b.Loop() {
				h.overview.clear() // the overview computed, not a reload's kept copy
				r := httptest.NewRequest("GET", p, nil)
				r.AddCookie(&http.Cookie{Name: sessionCookie, Value: s.id})
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d", p, w.Code)
				}
			}
		})
	}
}
