package report

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

type recorder struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (r *recorder) Record(_ context.Context, rec audit.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}

// TestBuildOnTheService builds the fixture's report on the real
// visibility.Service, with the registry and route inventory the fake
// holds written as files, and checks it agrees with the fake on every
// number the service answers: the report reads the service as the fake
// models it.
func TestBuildOnTheService(t *testing.T) {
	fake, src := fixture()
	reg, err := inventory.ParseRegistry("agents.yaml", []byte(`agents:
  - id: billing-bot
    owner: payments-team
    approved_routes: [/v1/invoices]
  - id: report-bot
`))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.ParseRoutes("routes.yaml", []byte(`routes:
  - template: /v1/invoices
  - template: /v1/reports
  - template: /v0/customers
    tags: [deprecated]
`))
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	now := func() time.Time { return time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC) }
	svc := visibility.New(src, func() *inventory.Registry { return reg }, func() *inventory.Inventory { return inv }, rec, visibility.Config{}, now)
	who := audit.Actor{Kind: audit.ActorCLI, Name: "test"}
	onSvc, err := (&Builder{Questions: svc, Source: src, Who: who, Now: now}).Build(context.Background(), november)
	if err != nil {
		t.Fatal(err)
	}
	onFake, err := (&Builder{Questions: fake, Source: src, Who: who, Now: now}).Build(context.Background(), november)
	if err != nil {
		t.Fatal(err)
	}
	a, b := onSvc.Numbers, onFake.Numbers
	// Findings differ by design: the fake's are hand-written.
	a.AgentsToReview, b.AgentsToReview = 0, 0
	if !reflect.DeepEqual(a, b) {
		t.Errorf("on the service %+v\n on the fake   %+v", a, b)
	}
	if !reflect.DeepEqual(onSvc.Violations, onFake.Violations) || !reflect.DeepEqual(onSvc.Days, onFake.Days) {
		t.Errorf("tables differ:\n%+v\n%+v", onSvc.Violations, onFake.Violations)
	}
	// The shadow agent is on the service's review list too.
	found := false
	for _, r := range onSvc.Review {
		found = found || r.AgentID == evilAgent
	}
	if !found {
		t.Errorf("review list %+v lacks the shadow agent", onSvc.Review)
	}
	// Every question was audited, as the report's actor.
	if len(rec.recs) < 4 {
		t.Fatalf("%d questions audited", len(rec.recs))
	}
	for _, r := range rec.recs {
		if r.Actor != who {
			t.Errorf("audited as %+v", r.Actor)
		}
	}
}
