package chstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/outbox"
)

// Seen is an outbox.Seen in the responder_handled table (migration 0003).
// Safe for concurrent use; a MarkHandled that returned nil is durable. It
// does not own the Store.
//
// MarkHandled checks and then inserts. Calls through one Seen are
// serialised, so within a process exactly one MarkHandled of an id
// reports first. Across processes that holds when one responder handles a
// given id at a time, which the deployment ensures: anomalies are keyed
// by agent, so one consumer of the group owns an agent's partition. During
// a rebalance two responders may briefly handle the same id and both see
// first: the same as a redelivery that arrives before MarkHandled, which
// the outbox flow already tolerates (actions enqueued under deterministic
// keys, handlers that look before acting again).
type Seen struct {
	st  *Store
	now func() time.Time

	mu sync.Mutex // serialises MarkHandled's check and insert
}

var _ outbox.Seen = (*Seen)(nil)

// NewSeen returns the handled-anomaly set in st's database, which must be
// migrated (OpenMigrated).
func NewSeen(st *Store) *Seen { return &Seen{st: st, now: time.Now} }

var seenColumns = []string{"anomaly_id", "handled_ms", "handled_at"}

// MarkHandled implements outbox.Seen. id must be 1 to outbox.MaxKeyLen
// bytes, as for outbox.FileStore.
func (s *Seen) MarkHandled(ctx context.Context, id string) (bool, error) {
	if err := validKey(id); err != nil {
		return false, fmt.Errorf("mark handled: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	done, err := s.Handled(ctx, id)
	if err != nil || done {
		return false, err
	}
	ms := s.now().UnixMilli()
	if err := s.st.insertRows(ctx, "responder_handled", seenColumns, []any{id, ms, partitionTime(ms)}); err != nil {
		return false, fmt.Errorf("mark %.80q handled: %w", id, err)
	}
	return true, nil
}

// Handled implements outbox.Seen.
func (s *Seen) Handled(ctx context.Context, id string) (bool, error) {
	var n uint64
	if err := s.st.conn.QueryRow(ctx, "SELECT count() FROM responder_handled WHERE anomaly_id = ?", id).Scan(&n); err != nil {
		return false, fmt.Errorf("look up handled anomaly %.80q in %s: %w", id, s.st.db, err)
	}
	return n > 0, nil
}

func validKey(id string) error {
	if id == "" || len(id) > outbox.MaxKeyLen {
		return fmt.Errorf("id: want 1 to %d bytes, got %d", outbox.MaxKeyLen, len(id))
	}
	return nil
}

// maxLookup bounds the ids of one HandledMany query (its text grows with
// them).
const maxLookup = 1000

// HandledMany reports which of ids were marked handled: one query for a
// batch of anomalies instead of one each. The responder's consumer calls it
// for what one fetch brought.
func (s *Seen) HandledMany(ctx context.Context, ids []string) (map[string]bool, error) {
	out := make(map[string]bool, len(ids))
	for lo := 0; lo < len(ids); lo += maxLookup {
		chunk := ids[lo:min(lo+maxLookup, len(ids))]
		var b strings.Builder
		b.WriteString("SELECT DISTINCT anomaly_id FROM responder_handled WHERE anomaly_id IN (")
		for i, id := range chunk {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(quoteString(id))
		}
		b.WriteByte(')')
		rows, err := s.st.conn.Query(ctx, b.String())
		if err != nil {
			return nil, fmt.Errorf("look up %d handled anomalies in %s: %w", len(chunk), s.st.db, err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, fmt.Errorf("look up handled anomalies: %w", err)
			}
			out[id] = true
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("look up handled anomalies: %w", err)
		}
	}
	return out, nil
}

// InsertHandled marks ids handled in one insert, without MarkHandled's
// check: for a caller that has just looked them up (HandledMany) and is
// the only one handling them (the consumer owning their partition).
func (s *Seen) InsertHandled(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	ms := s.now().UnixMilli()
	rows := make([][]any, 0, len(ids))
	for _, id := range ids {
		if err := validKey(id); err != nil {
			return fmt.Errorf("insert handled: %w", err)
		}
		rows = append(rows, []any{id, ms, partitionTime(ms)})
	}
	if err := s.st.insertRows(ctx, "responder_handled", seenColumns, rows...); err != nil {
		return fmt.Errorf("mark %d anomalies handled: %w", len(ids), err)
	}
	return nil
}

// quoteString is a ClickHouse string literal.
func quoteString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
}
