package chstore

import (
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/internal/platform/config"
)

// newStore opens a fresh, migrated database the way the services do
// (OpenMigrated) and drops it at cleanup.
func newStore(t *testing.T) *Store {
	t.Helper()
	o := testOptions(t, testDatabase(t))
	st, err := OpenMigrated(t.Context(), config.ClickHouse{
		Addr: o.Addr, Database: o.Database, Username: o.Username, Password: o.Password, TLS: o.TLS,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dropAtCleanup(t, st)
	return st
}

// openSecond opens another Store on st's database, as a second process
// would.
func openSecond(t *testing.T, st *Store) *Store {
	t.Helper()
	other, err := Open(t.Context(), testOptions(t, st.Database()), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	return other
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
		"leases": "name String, owner String, taken_s Int64, expires_s Int64",
		"inventory_agent_route_daily": "day Date, agent_id String, route String, calls AggregateFunction(count), " +
			"request_bytes AggregateFunction(sum, UInt64), response_bytes AggregateFunction(sum, UInt64), " +
			"s2xx AggregateFunction(sum, UInt64), s3xx AggregateFunction(sum, UInt64), s4xx AggregateFunction(sum, UInt64), " +
			"s5xx AggregateFunction(sum, UInt64), s401 AggregateFunction(sum, UInt64), s403 AggregateFunction(sum, UInt64), " +
			"first_ms AggregateFunction(min, Int64), last_ms AggregateFunction(max, Int64)",
		"inventory_agent_attr_daily": "day Date, agent_id String, kind UInt8, value String, calls UInt64",
	}
	for table, cols := range want {
		rows, err := st.conn.Query(t.Context(), "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ?", table)
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
