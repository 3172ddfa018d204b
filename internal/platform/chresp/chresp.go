// Package chresp keeps the responder's state in ClickHouse, for the
// distributed mode where several responders and the detector share one
// database: the audit log (Audit, an audit.Store), the evidence hash chain
// (Chain, an evidence.ChainStore), the set of handled anomalies (Seen, an
// outbox.Seen), the false-positive verdicts the detector polls (Feedback),
// and read access to what ingest and the detector wrote: an agent's events
// (Events, an evidence.EventSource) and its window scores (ScoreReader).
// The revocation ledger is not here: it holds secrets and stays a local
// 0600 file.
//
// Every type wraps a *chstore.Store opened with chstore.OpenMigrated, whose
// migration 0003_responder creates the tables (see
// internal/platform/chstore/migrations/0003_responder.sql). The caller owns the
// Store and closes it after it is done with the types built on it; the
// types hold nothing else to close.
//
// ClickHouse has no transactions, so the two check-then-insert operations,
// Chain.Append and Seen.MarkHandled, are atomic only among the calls made
// through one value in one process (a mutex serialises them). Across
// processes they rely on the deployment having one writer at a time for a
// given chain or anomaly id; their comments say what happens otherwise.
//
// Like chstore, it speaks the native protocol and every INSERT names its
// columns (ClickHouse 18.16, see shared/FACTS.md). Errors from the server
// can be classified with chstore.Retryable.
package chresp

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
)

// db is what every type here holds: the Store's connection pool and its
// database's name, for error messages.
type db struct {
	conn driver.Conn
	name string
}

func dbOf(st *chstore.Store) db { return db{conn: st.Conn(), name: st.Database()} }

// insertRows runs one row-wise batch INSERT into table naming cols; each
// row holds the values of cols, in order. The responder writes a few rows
// at a time, so row-wise appends cost nothing worth a column-wise path.
func (d db) insertRows(ctx context.Context, table string, cols []string, rows ...[]any) error {
	batch, err := d.conn.PrepareBatch(ctx, "INSERT INTO "+quoteIdent(table)+" ("+identList(cols)+")")
	if err != nil {
		return fmt.Errorf("prepare insert of %d rows into %s.%s: %w", len(rows), d.name, table, err)
	}
	defer batch.Close() // after Send it only releases buffers
	for i, r := range rows {
		if err := batch.Append(r...); err != nil {
			return fmt.Errorf("insert %d rows into %s.%s: row %d: %w", len(rows), d.name, table, i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d rows into %s.%s: %w", len(rows), d.name, table, err)
	}
	return nil
}

// quoteIdent quotes a ClickHouse identifier with backticks. Every
// identifier here is a constant; the escaping is a second fence.
func quoteIdent(s string) string {
	return "`" + strings.NewReplacer(`\`, `\\`, "`", "\\`").Replace(s) + "`"
}

// identList quotes names and joins them with commas, for SELECT and
// INSERT column lists.
func identList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quoteIdent(n)
	}
	return strings.Join(q, ", ")
}

// partitionTime maps Unix milliseconds to the DateTime that picks a time
// partition: whole seconds, UTC, clamped to 1970..2106 (DateTime is an
// unsigned 32-bit second count) instead of wrapping. chstore and
// audit.AtTime use the same rule.
func partitionTime(ms int64) time.Time {
	sec := ms / 1000
	switch {
	case ms < 0:
		sec = 0
	case sec > math.MaxUint32:
		sec = math.MaxUint32
	}
	return time.Unix(sec, 0).UTC()
}

// partitionSec is partitionTime as a second count, for binding to
// toDateTime(?).
func partitionSec(ms int64) uint32 { return uint32(partitionTime(ms).Unix()) }
