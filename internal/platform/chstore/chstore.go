// Package chstore is agentwatch's thin adapter over ClickHouse, and the only
// one: it owns the schema (embedded, versioned migrations) and every table's
// reads and writes.
//
//   - ingest: batch insert of events, exact counts for tests and operators,
//     retention by dropping day partitions (this file).
//   - detector: state, checkpoints, anomalies, window scores and backfill
//     progress (detector.go).
//   - responder, in the distributed mode where several responders and the
//     detector share one database: the audit log (Audit, an audit.Store),
//     the evidence hash chain (Chain, an evidence.ChainStore), the set of
//     handled anomalies (Seen, an outbox.Seen), the false-positive verdicts
//     the detector polls (Feedback) and an agent's events (Events, an
//     evidence.EventSource); Store.Scores serves the window scores. The
//     revocation ledger is not here: it holds secrets and stays a local 0600
//     file.
//
// The responder's types wrap a *Store opened with OpenMigrated, whose
// migration 0003_responder creates their tables. The caller owns the Store
// and closes it after it is done with the types built on it; the types hold
// nothing else to close.
//
// ClickHouse has no transactions, so the two check-then-insert operations,
// Chain.Append and Seen.MarkHandled, are atomic only among the calls made
// through one value in one process (a mutex serialises them). Across
// processes they rely on the deployment having one writer at a time for a
// given chain or anomaly id; their comments say what happens otherwise.
//
// It speaks the native protocol only: clickhouse-go v2's HTTP transport fails
// against the ClickHouse 18.16 we run (see shared/FACTS.md). Every INSERT
// names its columns, for the same reason. Errors from the server can be
// classified with Retryable. Over TLS (Options.TLS, the server's secure
// native port) every connection of the pool is encrypted; a failed connect
// says whether the password, the certificate or the port was wrong
// (connect.go).
package chstore

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/tlsconf"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// Options configures Open. The zero value connects to the local development
// server started by deploy/clickhouse.sh.
type Options struct {
	// Addr lists native-protocol host:port addresses; default 127.0.0.1:9000.
	Addr []string
	// Database is created if missing; default "agentwatch". It must be a
	// plain identifier ([A-Za-z_][A-Za-z0-9_]*) because DDL cannot bind it.
	Database string
	// Username defaults to "default"; Password may be empty.
	Username, Password string
	// TLS, when enabled, encrypts every connection and checks the
	// server's certificate (tlsconf.Client); the address must then be the
	// secure native port (tcp_port_secure, 9440 by default). The zero
	// value is plaintext.
	TLS config.TLS
	// DialTimeout defaults to 5s.
	DialTimeout time.Duration
	// ReadTimeout bounds each wait for the server; default 2m, enough for a
	// 100k-row insert or a FINAL scan on a busy 2-core machine.
	ReadTimeout time.Duration
}

const (
	defaultAddr        = "127.0.0.1:9000"
	defaultDatabase    = "agentwatch"
	defaultUser        = "default"
	defaultDialTimeout = 5 * time.Second
	defaultReadTimeout = 2 * time.Minute
)

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (o Options) withDefaults() Options {
	if len(o.Addr) == 0 {
		o.Addr = []string{defaultAddr}
	}
	if o.Database == "" {
		o.Database = defaultDatabase
	}
	if o.Username == "" {
		o.Username = defaultUser
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = defaultDialTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = defaultReadTimeout
	}
	return o
}

// Store is a connection pool to one ClickHouse database. It is safe for
// concurrent use. The caller owns it and must Close it.
type Store struct {
	conn driver.Conn
	db   string
	log  *slog.Logger
}

// Open connects to ClickHouse, creates o.Database if it is missing and pings
// it. It does not migrate; call Migrate.
func Open(ctx context.Context, o Options, log *slog.Logger) (*Store, error) {
	o = o.withDefaults()
	if !identRE.MatchString(o.Database) {
		return nil, fmt.Errorf("clickhouse database name %q: must match %s", o.Database, identRE)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "chstore", "database", o.Database)

	tc, err := tlsconf.Client(o.TLS, "clickhouse")
	if err != nil {
		return nil, err
	}
	// The handshake fails when the connection's default database does not
	// exist, so create it over a first connection. That one names no
	// database: a user restricted to its own (allow_databases on 18.16,
	// GRANTs on current servers) may not open "default", and the server's
	// default database is not checked when the client names none.
	boot, err := dial(ctx, o, tc, "")
	if err != nil {
		return nil, err
	}
	err = boot.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(o.Database))
	boot.Close()
	if err != nil {
		// 18.16 refuses a database the user may not use by closing the
		// connection that names it, without a word; this statement is
		// where the refusal can still be told apart.
		if isCode(err, codeDatabaseAccessDenied) {
			return nil, fmt.Errorf("create database %s: %w for user %q: %v; allow it on the server (docs/clickhouse-security.md)", o.Database, ErrDatabaseDenied, o.Username, err)
		}
		return nil, fmt.Errorf("create database %s: %w", o.Database, err)
	}

	conn, err := dial(ctx, o, tc, o.Database)
	if err != nil {
		return nil, err
	}
	s := &Store{conn: conn, db: o.Database, log: log}
	if v, err := conn.ServerVersion(); err == nil {
		log.Info("connected to clickhouse", "addr", strings.Join(o.Addr, ","), "server_version", v.String(),
			"user", o.Username, "tls", tc != nil)
	}
	return s, nil
}

// Ping checks that the server answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return fmt.Errorf("ping clickhouse: %w", err)
	}
	return nil
}

// Close releases the connection pool. The Store must not be used afterwards.
func (s *Store) Close() error {
	return s.conn.Close()
}

// Database returns the name of the database the Store works in.
func (s *Store) Database() string { return s.db }

// eventColumns is the INSERT column list, in the order eventColumnData
// fills the columns. migrations/0001_events.sql defines the same columns.
var eventColumns = []string{
	"event_id", "event_time", "event_time_ms", "ingest_time_ms",
	"agent_id", "identity_source", "unattributed", "credential_id",
	"source_ip", "method", "route", "path", "query_params", "status",
	"request_bytes", "response_bytes", "duration_us", "user_agent",
	"gateway", "upstream", "request_id", "format", "topic", "partition", "offset",
}

// eventColumnData turns rows into one slice per column. Appending whole
// columns costs the driver one type switch per column instead of one per
// value; the insert is CPU-bound on both ends, so that matters.
func eventColumnData(evs []event.Event) []any {
	n := len(evs)
	// One slice per column, and one assignment each below, as in every
	// insert here: alike in shape, each lists its own table's columns, so
	// there is nothing to share.
	var (
		eventID        = make([]string, n)
		eventTime      = make([]time.Time, n)
		eventTimeMs    = make([]int64, n)
		ingestTimeMs   = make([]int64, n)
		agentID        = make([]string, n)
		identitySource = make([]string, n)
		unattributed   = make([]uint8, n)
		credentialID   = make([]string, n)
		sourceIP       = make([]string, n)
		method         = make([]string, n)
		route          = make([]string, n)
		path           = make([]string, n)
		queryParams    = make([][]string, n)
		status         = make([]uint16, n)
		requestBytes   = make([]uint64, n)
		responseBytes  = make([]uint64, n)
		durationUs     = make([]uint64, n)
		userAgent      = make([]string, n)
		gateway        = make([]string, n)
		upstream       = make([]string, n)
		requestID      = make([]string, n)
		format         = make([]string, n)
		topic          = make([]string, n)
		partition      = make([]int32, n)
		offset         = make([]int64, n)
	)
	for i := range evs {
		e := &evs[i]
		eventID[i] = e.EventID
		eventTime[i] = partitionTime(e.EventTimeMs)
		eventTimeMs[i] = e.EventTimeMs
		ingestTimeMs[i] = e.IngestTimeMs
		agentID[i] = e.AgentID
		identitySource[i] = e.IdentitySource
		if e.Unattributed {
			unattributed[i] = 1
		}
		credentialID[i] = e.CredentialID
		sourceIP[i] = e.SourceIP
		method[i] = e.Method
		route[i] = e.Route
		path[i] = e.Path
		queryParams[i] = e.QueryParams
		if queryParams[i] == nil {
			queryParams[i] = []string{}
		}
		status[i] = e.Status
		requestBytes[i] = e.RequestBytes
		responseBytes[i] = e.ResponseBytes
		durationUs[i] = e.DurationUs
		userAgent[i] = e.UserAgent
		gateway[i] = e.Gateway
		upstream[i] = e.Upstream
		requestID[i] = e.RequestID
		format[i] = e.Format
		topic[i] = e.Topic
		partition[i] = e.Partition
		offset[i] = e.Offset
	}
	return []any{
		eventID, eventTime, eventTimeMs, ingestTimeMs, agentID, identitySource,
		unattributed, credentialID, sourceIP, method, route, path, queryParams,
		status, requestBytes, responseBytes, durationUs, userAgent, gateway,
		upstream, requestID, format, topic, partition, offset,
	}
}

// eventSelectList is eventColumns quoted and comma-separated, in the order
// scanEvent reads them.
var eventSelectList = identList(eventColumns)

// scanEvent reads one row of eventSelectList into e, overwriting every
// field.
func scanEvent(rows interface{ Scan(...any) error }, e *event.Event) error {
	var (
		et  time.Time // the partition column, implied by event_time_ms
		una uint8
	)
	*e = event.Event{}
	err := rows.Scan(&e.EventID, &et, &e.EventTimeMs, &e.IngestTimeMs, &e.AgentID, &e.IdentitySource, &una,
		&e.CredentialID, &e.SourceIP, &e.Method, &e.Route, &e.Path, &e.QueryParams, &e.Status, &e.RequestBytes,
		&e.ResponseBytes, &e.DurationUs, &e.UserAgent, &e.Gateway, &e.Upstream, &e.RequestID, &e.Format,
		&e.Topic, &e.Partition, &e.Offset)
	e.Unattributed = una != 0
	return err
}

// partitionTime maps Unix milliseconds to the DateTime that picks a time
// partition (events' event_time, audit's at, responder_handled's
// handled_at, the detector's window_start): whole seconds, UTC. DateTime is
// an unsigned 32-bit second count, so times outside 1970..2106 are clamped
// instead of wrapping into a random partition; the *_ms column keeps the
// exact value.
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

// InsertEvents writes evs as one INSERT (one block). It is all or nothing
// from the caller's point of view: on error the caller retries the whole
// batch, which is safe because equal events collapse (see CountEvents).
// An empty evs is a no-op.
func (s *Store) InsertEvents(ctx context.Context, evs []event.Event) error {
	if len(evs) == 0 {
		return nil
	}
	return s.insertColumns(ctx, "events", eventColumns, eventColumnData(evs), len(evs))
}

// insertColumns runs one column-wise batch INSERT. cols[i] is a slice with
// the values of column names[i], each rows long.
func (s *Store) insertColumns(ctx context.Context, table string, names []string, cols []any, rows int) error {
	if len(names) != len(cols) {
		return fmt.Errorf("insert into %s: %d column names but %d columns", table, len(names), len(cols))
	}
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+quoteIdent(table)+" ("+identList(names)+")")
	if err != nil {
		return fmt.Errorf("prepare insert of %d rows into %s.%s: %w", rows, s.db, table, err)
	}
	defer batch.Close() // after Send it only releases buffers
	for i, col := range cols {
		if err := batch.Column(i).Append(col); err != nil {
			return fmt.Errorf("insert %d rows into %s.%s: append column %s: %w", rows, s.db, table, names[i], err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d rows into %s.%s: %w", rows, s.db, table, err)
	}
	return nil
}

// insertRows runs one row-wise batch INSERT into table naming cols; each
// row holds the values of cols, in order. The responder writes a few rows
// at a time, so row-wise appends cost nothing worth a column-wise path.
func (s *Store) insertRows(ctx context.Context, table string, cols []string, rows ...[]any) error {
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+quoteIdent(table)+" ("+identList(cols)+")")
	if err != nil {
		return fmt.Errorf("prepare insert of %d rows into %s.%s: %w", len(rows), s.db, table, err)
	}
	defer batch.Close() // after Send it only releases buffers
	for i, r := range rows {
		if err := batch.Append(r...); err != nil {
			return fmt.Errorf("insert %d rows into %s.%s: row %d: %w", len(rows), s.db, table, i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert %d rows into %s.%s: %w", len(rows), s.db, table, err)
	}
	return nil
}

// CountEvents counts stored events. With dedup it counts distinct event ids
// (uniqExact, exact and cheaper than FINAL), which is the number of events
// delivered at least once; without it, it counts rows, duplicates included
// until ReplacingMergeTree merges them away.
func (s *Store) CountEvents(ctx context.Context, dedup bool) (uint64, error) {
	q := "SELECT count() FROM events"
	if dedup {
		q = "SELECT uniqExact(event_id) FROM events"
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, q).Scan(&n); err != nil {
		return 0, fmt.Errorf("count events in %s: %w", s.db, err)
	}
	return n, nil
}

// EventIDs maps every stored event id to its number of rows after FINAL
// deduplication. Every count is 1 when delivery was exactly-once in effect;
// a count above 1 means the same id arrived with a different agent or event
// time, i.e. two different events share an id. It reads the whole table:
// meant for tests and audits, not for hot paths.
func (s *Store) EventIDs(ctx context.Context) (map[string]uint64, error) {
	rows, err := s.conn.Query(ctx, "SELECT event_id, count() FROM events FINAL GROUP BY event_id")
	if err != nil {
		return nil, fmt.Errorf("list event ids in %s: %w", s.db, err)
	}
	defer rows.Close()
	ids := make(map[string]uint64)
	for rows.Next() {
		var (
			id string
			n  uint64
		)
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("list event ids in %s: %w", s.db, err)
		}
		ids[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list event ids in %s: %w", s.db, err)
	}
	return ids, nil
}

// DropPartitionsBefore drops every day partition of the events table whose
// UTC day is before day's UTC day, and returns the dropped partitions as
// YYYYMMDD strings, oldest first; then it drops the same days of the
// inventory's summary tables (migration 0005). This is the retention
// mechanism: 18.16 has no TTL. On error, the event partitions dropped so
// far are returned with it.
func (s *Store) DropPartitionsBefore(ctx context.Context, day time.Time) ([]string, error) {
	cutoff := dayNum(day)
	old, err := s.partitionsBefore(ctx, "events", cutoff)
	if err != nil {
		return nil, err
	}
	var dropped []string
	for _, p := range old {
		// The partition key is toYYYYMMDD(...), a UInt32, so its literal is
		// the number itself.
		if err := s.conn.Exec(ctx, "ALTER TABLE events DROP PARTITION "+strconv.FormatUint(p, 10)); err != nil {
			return dropped, fmt.Errorf("drop partition %d of %s.events: %w", p, s.db, err)
		}
		dropped = append(dropped, strconv.FormatUint(p, 10))
		s.log.Info("dropped partition", "table", "events", "partition", p)
	}
	// The summaries go after the events: a run that fails in between
	// leaves summaries of days whose events are gone, which the next run
	// drops, rather than events without their summaries.
	if err := s.dropSummaryPartitionsBefore(ctx, cutoff); err != nil {
		return dropped, err
	}
	return dropped, nil
}

// partitionsBefore lists the active day partitions of table (partitioned
// by toYYYYMMDD) before cutoff, a YYYYMMDD number, oldest first.
func (s *Store) partitionsBefore(ctx context.Context, table string, cutoff uint64) ([]uint64, error) {
	rows, err := s.conn.Query(ctx,
		"SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() AND table = ? AND active", table)
	if err != nil {
		return nil, fmt.Errorf("list partitions of %s.%s: %w", s.db, table, err)
	}
	defer rows.Close()
	var old []uint64
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list partitions of %s.%s: %w", s.db, table, err)
		}
		p, err := strconv.ParseUint(id, 10, 64)
		if err != nil || len(id) != 8 {
			return nil, fmt.Errorf("partition %q of %s.%s is not a YYYYMMDD day; was PARTITION BY changed outside the migrations?", id, s.db, table)
		}
		if p < cutoff {
			old = append(old, p)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list partitions of %s.%s: %w", s.db, table, err)
	}
	slices.Sort(old)
	return old, nil
}

// quoteIdent quotes a ClickHouse identifier with backticks. Callers pass
// identifiers that are checked or constant; the escaping is a second fence.
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
