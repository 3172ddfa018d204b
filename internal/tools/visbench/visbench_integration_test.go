package visbench_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/internal/tools/visbench"
)

// TestIntegrationLoadResumes loads a tiny month in two runs (the first
// stops after a day), checks that the second loads only the rest, that a
// third only reuses the database and measures, and that a day whose load
// did not finish is refused.
func TestIntegrationLoadResumes(t *testing.T) {
	ch := itest.ClickHouseAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	db := "bench_visibility_it_" + itest.RandHex(6)
	itest.DropDatabaseAfter(t, ch, db)
	o := visbench.Options{ClickHouse: ch, Database: db, Agents: 20, Days: 3, RateScale: 0.2, BatchSize: 2000}
	var progress strings.Builder

	o.MaxDays = 1
	r1, err := visbench.Load(ctx, o, nil, &progress)
	if err != nil {
		t.Fatalf("first load: %v\n%s", err, progress.String())
	}
	if r1.Loaded != 1 || r1.Days != 1 || r1.Complete() || r1.Events == 0 || r1.Events != r1.LoadedEvents {
		t.Fatalf("first load %+v", r1)
	}

	o.MaxDays = 0
	r2, err := visbench.Load(ctx, o, nil, &progress)
	if err != nil {
		t.Fatalf("second load: %v\n%s", err, progress.String())
	}
	if r2.Loaded != 2 || r2.Skipped != 1 || !r2.Complete() || r2.Events != r1.Events+r2.LoadedEvents {
		t.Fatalf("second load %+v after %+v", r2, r1)
	}
	if r2.DiskBytes() == 0 || r2.Tables[0].Table != "events" {
		t.Errorf("sizes %+v", r2.Tables)
	}

	// A complete database is reused: nothing loaded, the questions asked.
	rep, err := visbench.Run(ctx, o, visbench.MeasureOptions{Runs: 2}, false, nil, &progress)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	if rep.Load.Loaded != 0 || rep.Load.Events != r2.Events || rep.Measure == nil || len(rep.Measure.Timings) == 0 {
		t.Fatalf("reuse %+v", rep)
	}
	for _, tm := range rep.Measure.Timings {
		if len(tm.Times) != 2 || tm.MaxRows == 0 {
			t.Errorf("%s: %d times, at most %d rows: want 2 runs with answers", tm.Name, len(tm.Times), tm.MaxRows)
		}
	}

	// Forget the last day's record: its events now look like a load cut short.
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: ch})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Exec(ctx, "ALTER TABLE `"+db+"`.bench_loaded DROP PARTITION tuple()"); err != nil {
		t.Fatal(err)
	}
	if _, err := visbench.Load(ctx, o, nil, &progress); err == nil || !strings.Contains(err.Error(), "--fresh") {
		t.Fatalf("load over unrecorded events: %v, want a refusal naming --fresh", err)
	}
	o.Fresh, o.MaxDays = true, 1
	r3, err := visbench.Load(ctx, o, nil, &progress)
	if err != nil || r3.Events != r1.Events || r3.Loaded != 1 {
		t.Fatalf("fresh load: %+v, %v; want the first day again (%d events)", r3, err, r1.Events)
	}
}
