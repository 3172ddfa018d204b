package ingest_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentwatch/agentwatch/internal/ingest"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// Two ingest replicas' retention schedulers race on one database holding
// old and new day partitions: the old are dropped, the new kept, nothing
// fails, and the lease leaves the work to one of them.
func TestIntegrationRetentionSchedulersRace(t *testing.T) {
	addr := clickhouseAddr(t)
	ctx := t.Context()
	db := "retention_it_" + randHex(4)
	open := func() *chstore.Store {
		st, err := chstore.OpenMigrated(ctx, config.ClickHouse{Addr: addr, Database: db, Username: "default", DialTimeout: 5 * time.Second}, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a, b := open(), open()
	root := openClickHouse(t, addr, "default")
	t.Cleanup(func() { _ = root.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) })

	now := time.Now().UTC()
	today := now.Truncate(24 * time.Hour)
	const days = 3
	var evs []event.Event
	var old, kept []string
	for i, d := range []int{-40, -10, -4, -3, -2, 0} {
		day := today.AddDate(0, 0, d)
		evs = append(evs, event.Event{EventID: "e" + strconv.Itoa(i), AgentID: "a", EventTimeMs: day.Add(time.Hour).UnixMilli(), Offset: int64(i)})
		if day.Before(ingest.RetentionCutoff(now, days)) {
			old = append(old, day.Format("20060102"))
		} else {
			kept = append(kept, day.Format("20060102"))
		}
	}
	if len(old) != 3 || len(kept) != 3 {
		t.Fatalf("test data: old %v kept %v", old, kept)
	}
	if err := a.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}

	sched := func(st *chstore.Store, owner string) (*ingest.Retention, *ingest.RetentionMetrics) {
		m := ingest.NewRetentionMetrics(prometheus.NewRegistry())
		return &ingest.Retention{Store: st, Days: days, Interval: time.Hour, Owner: owner, Log: testLogger(t), Metrics: m}, m
	}
	ra, ma := sched(a, "replica-a")
	rb, mb := sched(b, "replica-b")

	type outcome struct {
		result  string
		dropped []string
		err     error
	}
	var wg sync.WaitGroup
	res := make([]outcome, 2)
	start := make(chan struct{})
	for i, r := range []*ingest.Retention{ra, rb} {
		wg.Go(func() {
			<-start
			res[i].result, res[i].dropped, res[i].err = r.RunOnce(ctx)
		})
	}
	close(start)
	wg.Wait()
	var all []string
	oks := 0
	for i, o := range res {
		if o.err != nil {
			t.Fatalf("replica %d: %v", i, o.err)
		}
		if o.result == ingest.RetentionOK {
			oks++
		}
		all = append(all, o.dropped...)
	}
	if oks != 1 {
		t.Fatalf("%d replicas held the lease in the race; want exactly 1: %+v", oks, res)
	}
	slices.Sort(all)
	all = slices.Compact(all)
	if !slices.Equal(all, old) {
		t.Fatalf("dropped %v; want %v", all, old)
	}
	left := partitions(t, a)
	if !slices.Equal(left, kept) {
		t.Fatalf("partitions left %v; want %v", left, kept)
	}
	// The next round: the holder renews, the other stands by.
	oks = 0
	for _, r := range []*ingest.Retention{ra, rb} {
		result, dropped, err := r.RunOnce(ctx)
		if err != nil || len(dropped) != 0 {
			t.Fatalf("second round: %s, %v, %v", result, dropped, err)
		}
		if result == ingest.RetentionOK {
			oks++
		}
	}
	if oks != 1 {
		t.Fatalf("second round: %d replicas held the lease; want exactly 1", oks)
	}
	if n := testutil.ToFloat64(ma.Runs.WithLabelValues(ingest.RetentionError)) + testutil.ToFloat64(mb.Runs.WithLabelValues(ingest.RetentionError)); n != 0 {
		t.Fatalf("%v failed runs", n)
	}
	if n := testutil.ToFloat64(ma.Dropped) + testutil.ToFloat64(mb.Dropped); n < float64(len(old)) {
		t.Fatalf("partitions dropped metric %v; want at least %d", n, len(old))
	}

	// Safe when several race anyway: two drops at once, without a lease.
	if err := a.InsertEvents(ctx, []event.Event{{EventID: "late", AgentID: "a", EventTimeMs: today.AddDate(0, 0, -20).UnixMilli()}}); err != nil {
		t.Fatal(err)
	}
	errs := make([]error, 2)
	for i, st := range []*chstore.Store{a, b} {
		wg.Go(func() { _, errs[i] = st.DropPartitionsBefore(ctx, ingest.RetentionCutoff(now, days)) })
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("concurrent drops: %v, %v", errs[0], errs[1])
	}
	if left := partitions(t, a); !slices.Equal(left, kept) {
		t.Fatalf("partitions left after concurrent drops %v; want %v", left, kept)
	}
}

// partitions lists the events table's active day partitions.
func partitions(t *testing.T, st *chstore.Store) []string {
	t.Helper()
	c := openClickHouse(t, clickhouseAddr(t), st.Database())
	rows, err := c.Query(t.Context(), "SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() AND table = 'events' AND active ORDER BY partition_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}
