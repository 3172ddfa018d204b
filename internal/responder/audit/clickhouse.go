package audit

import (
	_ "embed" // for ClickHouseDDL
	"math"
	"time"
)

// ClickHouseDDL creates the ClickHouse audit table (CREATE TABLE IF NOT
// EXISTS audit …): ReplacingMergeTree, monthly partitions on a DateTime,
// ordered by (agent_id, at, id), valid on ClickHouse 18.16. Its comment
// gives the query `responder audit` runs. chstore is to take it as a
// migration; this package holds no ClickHouse client code.
//
//go:embed clickhouse.sql
var ClickHouseDDL string

// Columns are the audit table's columns, in the order of
// Record.ColumnValues, for an INSERT that names its columns.
func Columns() []string {
	return []string{
		"id", "at", "at_ms", "actor_kind", "actor_name", "actor_user_id", "actor_token_name",
		"action", "playbook", "decision_id", "step_id", "incident_id", "anomaly_id",
		"agent_id", "credential_id", "dry_run", "why", "result", "detail",
	}
}

// ColumnValues returns r's values for the audit table, in Columns order:
// strings as they are (normalize r first), at as a UTC time.Time (seconds,
// clamped to DateTime's 1970..2106), dry_run as a uint8.
func (r Record) ColumnValues() []any {
	dry := uint8(0)
	if r.DryRun {
		dry = 1
	}
	return []any{
		r.ID, AtTime(r.AtMs), r.AtMs, string(r.Actor.Kind), r.Actor.Name, r.Actor.UserID, r.Actor.TokenName,
		r.Action, r.Playbook, r.DecisionID, r.StepID, r.IncidentID, r.AnomalyID,
		r.AgentID, r.CredentialID, dry, r.Why, string(r.Result), r.Detail,
	}
}

// AtTime maps Unix milliseconds to the table's at column: whole seconds,
// UTC, clamped to what a DateTime holds (an unsigned 32-bit second count)
// instead of wrapping into a random partition. at_ms keeps the exact value.
func AtTime(ms int64) time.Time {
	sec := ms / 1000
	switch {
	case ms < 0:
		sec = 0
	case sec > math.MaxUint32:
		sec = math.MaxUint32
	}
	return time.Unix(sec, 0).UTC()
}
