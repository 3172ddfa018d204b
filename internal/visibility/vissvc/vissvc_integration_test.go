package vissvc

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// TestIntegrationOpenDistributed: in the distributed mode the questions
// read ClickHouse's summaries and the question is audited to its audit
// table.
func TestIntegrationOpenDistributed(t *testing.T) {
	addr := itest.ClickHouseAddr(t)
	ctx := t.Context()
	db := "vissvc_it_" + itest.RandHex(4)
	itest.DropDatabaseAfter(t, addr, db)

	cfg, err := config.LoadEnv("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Embedded.DataDir = t.TempDir()
	cfg.Kafka.Brokers = []string{"127.0.0.1:1"} // the mode; never dialled
	cfg.ClickHouse.Addr = addr
	cfg.ClickHouse.Database = db

	// Events go in through the product's insert, as ingest writes them.
	st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, nil)
	if err != nil {
		t.Fatal(err)
	}
	day := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
	var evs []event.Event
	for i := range 6 {
		agent := "billing-bot"
		if i%3 == 0 {
			agent = "hr-bot"
		}
		evs = append(evs, event.Event{EventID: fmt.Sprintf("e%d", i), AgentID: agent, Route: "/customers/{id}",
			EventTimeMs: day.Add(time.Duration(i) * time.Hour).UnixMilli(), Status: 200, ResponseBytes: 100, RequestID: fmt.Sprintf("r%d", i)})
	}
	if err := st.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	st.Close()

	now := day.Add(48 * time.Hour)
	svc, closeFn, err := Open(ctx, cfg, nil, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	who := audit.Actor{Kind: audit.ActorCLI, Name: "auditor"}
	ans, err := svc.Access(ctx, who, visibility.AccessRequest{
		Span: visibility.Span{From: day, To: day.Add(24 * time.Hour)}, Template: "/customers/*"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, r := range ans.Rows {
		got[r.AgentID] = r.Calls
	}
	if len(got) != 2 || got["billing-bot"] != 4 || got["hr-bot"] != 2 {
		t.Fatalf("access rows %+v; want billing-bot 4 calls, hr-bot 2", ans.Rows)
	}
	rows, err := svc.Agents(ctx, who, visibility.Span{From: day, To: day.Add(24 * time.Hour)})
	if err != nil || len(rows) != 2 {
		t.Fatalf("agents %+v, %v; want 2 from the summaries", rows, err)
	}

	st, err = chstore.OpenMigrated(ctx, cfg.ClickHouse, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	recs, err := chstore.NewAudit(st).Query(context.Background(), audit.Filter{Action: audit.ActionAsk})
	if err != nil || len(recs) != 2 || recs[0].Actor != who {
		t.Fatalf("audit %+v, %v; want the two questions asked by %v", recs, err, who)
	}
}
