package chstore

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// Events is an evidence.EventSource over the events table that ingest
// writes (migration 0001, Store.InsertEvents). Safe for concurrent use; it
// does not own the Store. Like Audit, it is a thin view of the Store for
// one consumer's interface; the two look alike on purpose.
type Events struct {
	st *Store
}

var _ evidence.EventSource = (*Events)(nil)

// NewEvents returns the event source of st's database.
func NewEvents(st *Store) *Events { return &Events{st: st} }

// eventsBlockRows is the max_block_size of Events' query. The driver holds
// up to four blocks at once (two queued, one being decoded, one being
// read), so with the server's default of 65536 rows streaming a long
// window held about 120 MiB at ~450 B an event; 4096-row blocks bound it
// near 8 MiB at the same rate (TestIntegrationEventsMeasure).
const eventsBlockRows = 4096

// Events implements evidence.EventSource: it calls fn for each event of
// agentID with fromMs <= EventTimeMs < toMs, once per event even if ingest
// inserted it more than once (FINAL), in (EventTimeMs, EventID) order. The
// rows stream from the server a block at a time, so memory does not grow
// with the window. The conditions are a range of the table's key
// (agent_id, event_time_ms, event_id) and so safe under FINAL; the
// event_time bounds let the server skip day partitions. The event passed
// to fn is reused for the next row: fn copies what it keeps. fn's error
// stops the query and is returned unchanged.
func (s *Events) Events(ctx context.Context, agentID string, fromMs, toMs int64, fn func(*event.Event) error) error {
	if fromMs >= toMs {
		return nil
	}
	// Cancelling stops the server when fn gives up early; rows.Close alone
	// would read the rest of the result.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_block_size": eventsBlockRows}))
	rows, err := s.st.conn.Query(ctx, "SELECT "+eventSelectList+" FROM events FINAL"+
		" WHERE agent_id = ? AND event_time_ms >= ? AND event_time_ms < ?"+
		" AND event_time >= toDateTime(?) AND event_time <= toDateTime(?)"+
		" ORDER BY event_time_ms, event_id", agentID, fromMs, toMs, partitionSec(fromMs), partitionSec(toMs))
	if err != nil {
		return fmt.Errorf("read events of agent %.80q [%d, %d) from %s: %w", agentID, fromMs, toMs, s.st.db, err)
	}
	defer rows.Close()
	var e event.Event
	for rows.Next() {
		if err := scanEvent(rows, &e); err != nil {
			return fmt.Errorf("read events of agent %.80q [%d, %d) from %s: %w", agentID, fromMs, toMs, s.st.db, err)
		}
		if err := fn(&e); err != nil {
			cancel()
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read events of agent %.80q [%d, %d) from %s: %w", agentID, fromMs, toMs, s.st.db, err)
	}
	return nil
}
