package ingest_test

import (
	"context"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/ingest"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
)

// TestIntegrationIngestClickHouseTLS runs the ingest service, configured
// through its AGENTWATCH_CLICKHOUSE_* variables, against ClickHouse's secure
// native port as the password-protected user that may use only its own
// database, and checks every line's fate against the ledger as
// TestIntegrationIngestMixedFormats100k does, on fewer lines. The store is
// read back over the plain port as the default user: what went in over TLS
// is what is there. A wrong password stops the service at start.
func TestIntegrationIngestClickHouseTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	sc := itest.ClickHouseSecure(t)
	s := newSetup(t, ctx, "chtls", 3, 1)
	// newSetup's cleanup drops s.db, read when it runs: the secure one.
	s.db = sc.Database
	maps.Copy(s.settings, sc.Settings())
	if err := s.rawDB.Exec(ctx, "DROP DATABASE IF EXISTS `"+s.db+"`"); err != nil {
		t.Fatalf("drop what an earlier run left in %s: %v", s.db, err)
	}
	if cfg := s.config(t); !cfg.ClickHouse.TLS.Enabled || cfg.ClickHouse.Username != sc.Username {
		t.Fatalf("the service would not use TLS as %s: %+v", sc.Username, cfg.ClickHouse.TLS)
	}

	// A wrong password stops the service at start, at once, saying so.
	bad := s.config(t)
	bad.ClickHouse.Password += "x"
	start := time.Now()
	if _, err := ingest.NewService(ctx, bad, testLogger(t), prometheus.NewRegistry()); !errors.Is(err, chstore.ErrAuth) ||
		!strings.Contains(err.Error(), `authentication failed for user "`+sc.Username+`"`) {
		t.Fatalf("NewService with a wrong password: %v; want chstore.ErrAuth naming the user", err)
	}
	if took := time.Since(start); took >= bad.ClickHouse.DialTimeout {
		t.Errorf("a refused login took %s, not less than the %s dial timeout", took, bad.ClickHouse.DialTimeout)
	}

	const n = 20_000
	c := newCorpus(t, 7, 0.05, nil, n)
	if err := publish(ctx, newRawWriter(t, s.kc, s.raw[0]), c, n, 2000, 0); err != nil {
		t.Fatal(err)
	}
	good, _ := c.summary()
	svc, took := ingestAll(t, ctx, s, n)
	c.checkDeadline()
	st := svc.Ingester.Stats()
	t.Logf("ingested %d records over TLS in %s: %d events, %d dead-lettered, %d batches",
		st.Records, took.Round(time.Millisecond), st.Events, st.DeadLettered, st.Batches)
	if st.Records != n || st.Committed != n || st.Events != uint64(good) || st.DeadLettered != uint64(c.bad) {
		t.Errorf("stats %+v; want %d records, %d events, %d dead-lettered", st, n, good, c.bad)
	}
	coords := rawCoords(t, ctx, s, c)
	if rows := checkStore(t, ctx, s, c, coords); rows != uint64(good) {
		t.Errorf("store has %d rows before dedup, want %d", rows, good)
	}
	checkDeadLetters(t, ctx, s, c, coords, false)
}
