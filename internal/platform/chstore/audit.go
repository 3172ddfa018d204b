package chstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// Audit is an audit.Store in the audit table (created by migration 0003,
// whose comment explains its key and engine). Safe for concurrent use; an Append that returned nil
// is durable. It does not own the Store. Like Events, it is a thin view of
// the Store for one consumer's interface; the two look alike on purpose.
type Audit struct {
	st *Store
}

var _ audit.Store = (*Audit)(nil)

// NewAudit returns the audit log in st's database, which must be migrated
// (OpenMigrated).
func NewAudit(st *Store) *Audit { return &Audit{st: st} }

// auditColumns are the audit table's columns (migration 0003), in the
// order auditRow fills them and scanAudit reads them.
var auditColumns = []string{
	"id", "at", "at_ms", "actor_kind", "actor_name", "actor_user_id", "actor_token_name",
	"action", "playbook", "decision_id", "step_id", "incident_id", "anomaly_id",
	"agent_id", "credential_id", "dry_run", "why", "result", "detail",
}

var auditSelectList = identList(auditColumns)

// auditRow returns r's values for the audit table, in auditColumns order:
// strings as they are (normalize r first), at as partitionTime(AtMs),
// dry_run as a uint8.
func auditRow(r audit.Record) []any {
	return []any{
		r.ID, partitionTime(r.AtMs), r.AtMs, string(r.Actor.Kind), r.Actor.Name, r.Actor.UserID, r.Actor.TokenName,
		r.Action, r.Playbook, r.DecisionID, r.StepID, r.IncidentID, r.AnomalyID,
		r.AgentID, r.CredentialID, boolUInt8(r.DryRun), r.Why, string(r.Result), r.Detail,
	}
}

// Append implements audit.Store: it normalizes the records, refuses the
// whole call if any is invalid, and writes them as one INSERT. A retried
// Append writes the records again; reads count each (ID, AtMs) once, and
// ReplacingMergeTree removes the copies when parts merge. An empty recs is
// a no-op.
func (a *Audit) Append(ctx context.Context, recs ...audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	rows := make([][]any, len(recs))
	var errs []error
	for i, r := range recs {
		r = r.Normalize()
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("audit record %d (id %.40q): %w", i, r.ID, err))
		}
		rows[i] = auditRow(r)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := a.st.insertRows(ctx, "audit", auditColumns, rows...); err != nil {
		return fmt.Errorf("append audit records: %w", err)
	}
	return nil
}

// Query implements audit.Store. The agent and time bounds are a range of
// the table's key (agent_id, at, id), and the at bounds, implied by the
// at_ms ones, let the server skip months. Copies of a record (equal ID and
// AtMs) not yet merged away are collapsed by LIMIT 1 BY; which copy is
// returned is unspecified, and they are equal unless two different records
// were given the same ID and time.
func (a *Audit) Query(ctx context.Context, f audit.Filter) ([]audit.Record, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	f = f.Normalize()
	where := "at_ms >= ? AND at >= toDateTime(?)"
	args := []any{f.FromMs, partitionSec(f.FromMs)}
	if f.ToMs != 0 {
		where += " AND at_ms < ? AND at <= toDateTime(?)"
		args = append(args, f.ToMs, partitionSec(f.ToMs))
	}
	if f.AgentID != "" {
		where += " AND agent_id = ?"
		args = append(args, f.AgentID)
	}
	if f.IncidentID != "" {
		where += " AND incident_id = ?"
		args = append(args, f.IncidentID)
	}
	if f.Action != "" {
		where += " AND action = ?"
		args = append(args, f.Action)
	}
	if f.NotAction != "" {
		where += " AND action != ?"
		args = append(args, f.NotAction)
	}
	q := "SELECT " + auditSelectList + " FROM audit WHERE " + where +
		" ORDER BY at_ms, id LIMIT 1 BY at_ms, id LIMIT " + strconv.Itoa(f.Limit)
	rows, err := a.st.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("query audit records in %s: %w", a.st.db, err)
	}
	defer rows.Close()
	var out []audit.Record
	for rows.Next() {
		r, err := scanAudit(rows)
		if err != nil {
			return nil, fmt.Errorf("query audit records in %s: %w", a.st.db, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query audit records in %s: %w", a.st.db, err)
	}
	return out, nil
}

// scanAudit reads one row of auditSelectList.
func scanAudit(rows interface{ Scan(...any) error }) (audit.Record, error) {
	var (
		r                 audit.Record
		at                time.Time // the partition column, implied by at_ms
		actorKind, result string
		dry               uint8
	)
	err := rows.Scan(&r.ID, &at, &r.AtMs, &actorKind, &r.Actor.Name, &r.Actor.UserID, &r.Actor.TokenName,
		&r.Action, &r.Playbook, &r.DecisionID, &r.StepID, &r.IncidentID, &r.AnomalyID,
		&r.AgentID, &r.CredentialID, &dry, &r.Why, &result, &r.Detail)
	r.Actor.Kind, r.Result, r.DryRun = audit.ActorKind(actorKind), audit.Result(result), dry != 0
	return r, err
}
