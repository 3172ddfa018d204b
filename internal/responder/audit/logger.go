package audit

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Logger is the Store the responder writes through: it completes each
// record (AtMs from its clock when zero, ID = ContentID when empty),
// normalizes it, writes it to the log as an "audit" line at Info, and then
// appends it to the Store. The log line is written even when the Store
// fails, so the log has every record the responder tried to keep. Safe for
// concurrent use if the Store is.
type Logger struct {
	store Store
	log   *slog.Logger
	now   func() time.Time
}

var _ Store = (*Logger)(nil)

// NewLogger returns a Logger in front of store. log gets one line per
// record (nil discards); now is the clock for AtMs (nil means time.Now).
func NewLogger(store Store, log *slog.Logger, now func() time.Time) *Logger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Logger{store: store, log: log.With("component", "audit"), now: now}
}

// Complete returns r as the Logger would store it: AtMs set, normalized,
// with an ID.
func (l *Logger) Complete(r Record) Record {
	if r.AtMs == 0 {
		r.AtMs = l.now().UnixMilli()
	}
	r = r.Normalize()
	if r.ID == "" {
		r.ID = r.ContentID()
	}
	return r
}

// Append implements Store: it completes, logs and stores the records.
func (l *Logger) Append(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	out := make([]Record, len(recs))
	for i, r := range recs {
		out[i] = l.Complete(r)
		l.log.LogAttrs(ctx, slog.LevelInfo, "audit", attrs(out[i])...)
	}
	if err := l.store.Append(ctx, out...); err != nil {
		return fmt.Errorf("store %d audit records: %w", len(out), err)
	}
	return nil
}

// Record appends one record, as Append does: the Logger is the
// visibility service's Recorder, which audits every question.
func (l *Logger) Record(ctx context.Context, r Record) error {
	return l.Append(ctx, r)
}

// Query implements Store by asking the Store.
func (l *Logger) Query(ctx context.Context, f Filter) ([]Record, error) {
	return l.store.Query(ctx, f)
}

// attrs are a record's log attributes; empty strings are left out. The
// log handler quotes the values (JSON or logfmt), so they need no escaping
// here.
func attrs(r Record) []slog.Attr {
	a := []slog.Attr{
		slog.String("audit_id", r.ID),
		slog.Int64("at_ms", r.AtMs),
		slog.String("actor", r.Actor.String()),
		slog.String("actor_kind", string(r.Actor.Kind)),
		slog.String("action", r.Action),
		slog.String("result", string(r.Result)),
	}
	for _, kv := range [...]struct{ k, v string }{
		{"actor_user_id", r.Actor.UserID}, {"playbook", r.Playbook}, {"decision_id", r.DecisionID},
		{"step_id", r.StepID}, {"incident_id", r.IncidentID}, {"anomaly_id", r.AnomalyID},
		{"agent_id", r.AgentID}, {"credential_id", r.CredentialID}, {"why", r.Why}, {"detail", r.Detail},
	} {
		if kv.v != "" {
			a = append(a, slog.String(kv.k, kv.v))
		}
	}
	if r.DryRun {
		a = append(a, slog.Bool("dry_run", true))
	}
	return a
}
