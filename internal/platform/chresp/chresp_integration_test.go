package chresp

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
)

// testAddr returns TEST_CLICKHOUSE_ADDR (comma-separated host:port, native
// protocol), failing when REQUIRE_INTEGRATION says the service must be there.
func testAddr(t *testing.T) []string {
	t.Helper()
	v := os.Getenv("TEST_CLICKHOUSE_ADDR")
	if v == "" {
		if os.Getenv("REQUIRE_INTEGRATION") != "" {
			t.Fatal("TEST_CLICKHOUSE_ADDR not set but REQUIRE_INTEGRATION is: ClickHouse did not start (deploy/clickhouse.sh up)")
		}
		t.Skip("TEST_CLICKHOUSE_ADDR not set; run deploy/clickhouse.sh up and TEST_CLICKHOUSE_ADDR=127.0.0.1:9000")
	}
	return strings.Split(v, ",")
}

// testDatabase names a database no other test (or run, or person) uses.
func testDatabase(t *testing.T) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, t.Name())
	return fmt.Sprintf("chresp_it_%.40s_%x", name, b)
}

// newStore opens a fresh, migrated database the way the services do
// (chstore.OpenMigrated) and drops it at cleanup.
func newStore(t *testing.T) *chstore.Store {
	t.Helper()
	addr := testAddr(t)
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := chstore.OpenMigrated(t.Context(), config.ClickHouse{Addr: addr, Database: testDatabase(t)}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := st.Conn().Exec(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(st.Database())); err != nil {
			t.Errorf("drop test database %s: %v", st.Database(), err)
		}
		st.Close()
	})
	return st
}

// openSecond opens another Store on st's database, as a second process
// would.
func openSecond(t *testing.T, st *chstore.Store) *chstore.Store {
	t.Helper()
	other, err := chstore.Open(t.Context(), chstore.Options{Addr: testAddr(t), Database: st.Database()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	return other
}

func exec(t *testing.T, st *chstore.Store, q string) {
	t.Helper()
	if err := st.Conn().Exec(t.Context(), q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// stopMerges keeps every INSERT into table its own part, so reads see
// unmerged copies and must collapse them themselves.
func stopMerges(t *testing.T, st *chstore.Store, table string) {
	exec(t, st, "SYSTEM STOP MERGES "+quoteIdent(st.Database())+"."+quoteIdent(table))
}

// mergeNow lets table merge and forces it into one part per partition.
func mergeNow(t *testing.T, st *chstore.Store, table string) {
	exec(t, st, "SYSTEM START MERGES "+quoteIdent(st.Database())+"."+quoteIdent(table))
	exec(t, st, "OPTIMIZE TABLE "+quoteIdent(table)+" FINAL")
}

func rowCount(t *testing.T, st *chstore.Store, table string) uint64 {
	t.Helper()
	var n uint64
	if err := st.Conn().QueryRow(t.Context(), "SELECT count() FROM "+quoteIdent(table)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIntegrationSchema checks the live tables' column types: what the
// inserts append must be what the server has.
func TestIntegrationSchema(t *testing.T) {
	st := newStore(t)
	want := map[string]string{
		"audit": "id String, at DateTime, at_ms Int64, actor_kind String, actor_name String, actor_user_id String, actor_token_name String, " +
			"action String, playbook String, decision_id String, step_id String, incident_id String, anomaly_id String, agent_id String, " +
			"credential_id String, dry_run UInt8, why String, result String, detail String",
		"evidence_chain": "seq Int64, bundle_id String, agent_id String, anomaly_id String, incident_id String, path String, " +
			"manifest_sha256 String, prev_sha256 String, created_ms Int64, appended_ms Int64",
		"responder_handled": "anomaly_id String, handled_ms Int64, handled_at DateTime",
		"feedback_verdicts": "verdict_id String, anomaly_id String, agent_id String, kind String, window_start_ms Int64, window_end_ms Int64, " +
			"values Array(Float64), verdict String, author String, at_ms Int64",
	}
	for table, cols := range want {
		rows, err := st.Conn().Query(t.Context(), "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ?", table)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var name, typ string
			if err := rows.Scan(&name, &typ); err != nil {
				t.Fatal(err)
			}
			got = append(got, name+" "+typ)
		}
		rows.Close()
		if g := strings.Join(got, ", "); g != cols {
			t.Errorf("%s columns:\n got %s\nwant %s", table, g, cols)
		}
	}
	applied, err := st.AppliedMigrations(t.Context())
	if err != nil || len(applied) < 3 || applied[2].Name != "responder" {
		t.Fatalf("applied migrations %+v, %v; want 0003_responder", applied, err)
	}
}
