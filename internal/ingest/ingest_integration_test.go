package ingest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/tools/sim"
)

// TestIntegrationIngestMixedFormats100k runs the ingest service in-process
// against the real Kafka and ClickHouse on 100,000 simulator lines of every
// format with 5% garbage of every kind, and checks each line's fate against
// the simulator's ground truth: good lines become exactly one stored event
// and one published event, bad lines one dead letter with the right reason
// and source coordinates.
func TestIntegrationIngestMixedFormats100k(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	s := newSetup(t, ctx, "mixed", 6, 1)

	const n = 100_000
	c := newCorpus(t, 42, 0.05, nil, n)
	w := newRawWriter(t, s.kc, s.raw[0])
	start := time.Now()
	if err := publish(ctx, w, c, n, 2000, 0); err != nil {
		t.Fatal(err)
	}
	good, byKind := c.summary()
	t.Logf("published %d lines (%d good, bad by kind %v) in %s", n, good, byKind, time.Since(start).Round(time.Millisecond))
	for _, k := range sim.GarbageKinds {
		if byKind[k] == 0 {
			t.Fatalf("the corpus has no %s line; every kind must be exercised", k)
		}
	}

	svc, took := ingestAll(t, ctx, s, n)
	c.checkDeadline()
	st := svc.Ingester.Stats()
	t.Logf("ingested %d records in %s (%.0f/s): %d events, %d dead-lettered, %d batches; by reason %v",
		st.Records, took.Round(time.Millisecond), float64(st.Records)/took.Seconds(), st.Events, st.DeadLettered, st.Batches, st.ByReason)

	// The running totals must match the ledger exactly: no rebalance, no
	// retry, so nothing was read twice.
	if st.Records != n || st.Committed != n || st.Events != uint64(good) || st.DeadLettered != uint64(c.bad) {
		t.Errorf("stats %+v; want %d records, %d events, %d dead-lettered", st, n, good, c.bad)
	}
	wantReasons := map[string]uint64{}
	for _, e := range c.lines {
		if !e.good {
			wantReasons[e.reason]++
		}
	}
	for r, k := range wantReasons {
		if st.ByReason[r] != k {
			t.Errorf("reason %s: %d dead-lettered, want %d", r, st.ByReason[r], k)
		}
	}

	start = time.Now()
	coords := rawCoords(t, ctx, s, c)
	rows := checkStore(t, ctx, s, c, coords)
	if rows != uint64(good) {
		t.Errorf("store has %d rows before dedup, want %d: something was inserted twice", rows, good)
	}
	checkDeadLetters(t, ctx, s, c, coords, false)
	checkEventsTopic(t, ctx, s, c, coords, false)
	t.Logf("checked store, dead letters and events topic in %s", time.Since(start).Round(time.Millisecond))
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("test deadline exceeded")
	}
}
