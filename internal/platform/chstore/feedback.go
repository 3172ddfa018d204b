package chstore

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// Feedback is the false-positive loop's table of verdicts
// (feedback_verdicts, migration 0003): the responder Puts a human's
// verdict, the detector polls Since. Safe for concurrent use; a Put that
// returned nil is durable. It does not own the Store.
type Feedback struct {
	st *Store
}

// NewFeedback returns the verdict table of st's database, which must be
// migrated (OpenMigrated).
func NewFeedback(st *Store) *Feedback { return &Feedback{st: st} }

// feedbackColumns is the INSERT column list, in the order Put fills it and
// Since scans it.
var feedbackColumns = []string{
	"verdict_id", "anomaly_id", "agent_id", "kind", "window_start_ms", "window_end_ms",
	"values", "verdict", "author", "at_ms",
}

var feedbackSelectList = identList(feedbackColumns)

// Put stores v. Putting the same verdict again (a retried click, same ID)
// is harmless: Since returns each ID once. v needs an ID, an AnomalyID, an
// AgentID, a Verdict, a positive AtMs and finite Values; nil Values are
// stored as empty and read back as nil.
func (f *Feedback) Put(ctx context.Context, v anomaly.Verdict) error {
	if err := validVerdict(v); err != nil {
		return fmt.Errorf("put verdict %.80q: %w", v.ID, err)
	}
	values := v.Values
	if values == nil {
		values = []float64{}
	}
	row := []any{v.ID, v.AnomalyID, v.AgentID, v.Kind, v.WindowStartMs, v.WindowEndMs, values, v.Verdict, v.Author, v.AtMs}
	if err := f.st.insertRows(ctx, "feedback_verdicts", feedbackColumns, row); err != nil {
		return fmt.Errorf("put verdict %.80q on anomaly %.80q: %w", v.ID, v.AnomalyID, err)
	}
	return nil
}

func validVerdict(v anomaly.Verdict) error {
	var errs []error
	if v.ID == "" {
		errs = append(errs, errors.New("verdict_id: required"))
	}
	if v.AnomalyID == "" {
		errs = append(errs, errors.New("anomaly_id: required"))
	}
	if v.AgentID == "" {
		errs = append(errs, errors.New("agent_id: required"))
	}
	if v.Verdict == "" {
		errs = append(errs, fmt.Errorf("verdict: required (%s)", anomaly.VerdictFalsePositive))
	}
	if v.AtMs <= 0 {
		errs = append(errs, fmt.Errorf("at_ms: must be positive, got %d", v.AtMs))
	}
	for i, x := range v.Values {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			errs = append(errs, fmt.Errorf("values[%d]: must be finite, got %g", i, x))
			break
		}
	}
	return errors.Join(errs...)
}

// Since returns the verdicts with AtMs >= sinceMs, ordered by AtMs then
// ID, each ID once. A verdict stored more than once counts at its earliest
// AtMs: if that is before sinceMs the verdict is not returned even when a
// later copy is, so a poller that asks from the last AtMs it saw sees
// every verdict, and each ID at one time only. The bound is inclusive: a
// poller passing its last AtMs again gets that millisecond's verdicts
// again and skips the IDs it applied.
func (f *Feedback) Since(ctx context.Context, sinceMs int64) ([]anomaly.Verdict, error) {
	// The subquery finds which of the ids seen since sinceMs also have an
	// earlier copy; verdict_id leads the key, so its IN is an index
	// lookup. LIMIT 1 BY after ORDER BY at_ms keeps each id's earliest
	// copy among the rest.
	rows, err := f.st.conn.Query(ctx, "SELECT "+feedbackSelectList+" FROM feedback_verdicts"+
		" WHERE at_ms >= ? AND verdict_id NOT IN (SELECT verdict_id FROM feedback_verdicts"+
		" WHERE at_ms < ? AND verdict_id IN (SELECT verdict_id FROM feedback_verdicts WHERE at_ms >= ?))"+
		" ORDER BY at_ms, verdict_id LIMIT 1 BY verdict_id", sinceMs, sinceMs, sinceMs)
	if err != nil {
		return nil, fmt.Errorf("read verdicts since %d from %s: %w", sinceMs, f.st.db, err)
	}
	defer rows.Close()
	var out []anomaly.Verdict
	for rows.Next() {
		var v anomaly.Verdict
		if err := rows.Scan(&v.ID, &v.AnomalyID, &v.AgentID, &v.Kind, &v.WindowStartMs, &v.WindowEndMs,
			&v.Values, &v.Verdict, &v.Author, &v.AtMs); err != nil {
			return nil, fmt.Errorf("read verdicts since %d from %s: %w", sinceMs, f.st.db, err)
		}
		if len(v.Values) == 0 {
			v.Values = nil
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read verdicts since %d from %s: %w", sinceMs, f.st.db, err)
	}
	return out, nil
}
