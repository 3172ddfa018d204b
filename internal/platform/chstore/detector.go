package chstore

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// This file is the detector's persistence: the tables of
// migrations/0002_detector.sql. Every read deduplicates with FINAL because
// ReplacingMergeTree collapses rows only when parts merge. Conditions on
// columns outside a table's ORDER BY key go in WHERE, which FINAL evaluates
// after collapsing, never in PREWHERE, which it evaluates before (and which
// would resurrect an older version whose newer one does not match).

// Column lists, in the order the *ColumnData functions fill them; the
// migration defines the same columns (TestDetectorColumnsMatchDDL).
var (
	stateColumns      = []string{"topic", "partition", "kind", "key", "updated_ms", "state"}
	checkpointColumns = []string{"group", "topic", "partition", "closed_through_ms", "watermark_ms", "resume_offset", "last_offset", "updated_ms"}
	anomalyColumns    = []string{
		"anomaly_id", "agent_id", "kind", "severity", "summary", "role", "owner", "credential_id",
		"window_start_ms", "window_end_ms", "detected_ms", "window_start", "score", "peer_baseline",
		"partition", "count", "sample_request_ids", "body",
	}
	scoreColumns = []string{
		"agent_id", "window_start_ms", "window_end_ms", "window_start", "partition", "score", "severity",
		"values", "expected", "surprise", "trained", "peer_baseline", "late",
	}
	backfillColumns = []string{"job", "done_through_ms", "updated_ms"}
)

// SaveStates writes states as one INSERT. A state replaces the stored one
// with the same (Kind, Key) when its UpdatedMs is greater or equal (equal:
// the later write wins); an older UpdatedMs loses to what is stored. Within
// states, the last of equal (Kind, Key, UpdatedMs) wins. Blobs are stored
// byte for byte. An empty states is a no-op. Safe for concurrent use.
func (s *Store) SaveStates(ctx context.Context, states []detstate.State) error {
	if len(states) == 0 {
		return nil
	}
	states = newestStates(states)
	n := len(states)
	// One slice per column, as in every insert here (SaveCheckpoints,
	// InsertAnomalies, InsertEvents): alike in shape, each lists its own
	// table's columns, so there is nothing to share.
	var (
		topic     = make([]string, n)
		partition = make([]int32, n)
		kind      = make([]string, n)
		key       = make([]string, n)
		updated   = make([]int64, n)
		blob      = make([][]byte, n)
	)
	for i, st := range states {
		topic[i], partition[i], kind[i], key[i], updated[i], blob[i] = st.Topic, st.Partition, st.Kind, st.Key, st.UpdatedMs, st.Blob
	}
	return s.insertColumns(ctx, "detector_state", stateColumns, []any{topic, partition, kind, key, updated, blob}, n)
}

// newestStates keeps, per (Kind, Key), the state with the greatest
// UpdatedMs, the last one on ties. Rows of one INSERT with equal keys and
// versions would otherwise collapse in an order the server does not promise.
func newestStates(states []detstate.State) []detstate.State {
	type k struct{ kind, key string }
	return newestBy(states, func(st *detstate.State) k { return k{st.Kind, st.Key} },
		func(st *detstate.State) int64 { return st.UpdatedMs })
}

// newestBy keeps, per key(x), the x with the greatest version(x), the last
// one on ties, in the order the keys first appear. It is the rule of both
// newestStates and newestCheckpoints.
func newestBy[T any, K comparable](xs []T, key func(*T) K, version func(*T) int64) []T {
	idx := make(map[K]int, len(xs))
	out := make([]T, 0, len(xs))
	for i := range xs {
		x := &xs[i]
		kk := key(x)
		if j, ok := idx[kk]; ok {
			if version(x) >= version(&out[j]) {
				out[j] = *x
			}
			continue
		}
		idx[kk] = len(out)
		out = append(out, *x)
	}
	return out
}

// SaveCheckpoints writes cps as one INSERT, with the same newest-wins rule
// per (Group, Topic, Partition) as SaveStates. An empty cps is a no-op.
// Safe for concurrent use.
func (s *Store) SaveCheckpoints(ctx context.Context, cps []detstate.Checkpoint) error {
	if len(cps) == 0 {
		return nil
	}
	cps = newestCheckpoints(cps)
	n := len(cps)
	// One slice per column, as in SaveStates: alike in shape, each lists
	// its own table's columns.
	var (
		group     = make([]string, n)
		topic     = make([]string, n)
		partition = make([]int32, n)
		closed    = make([]int64, n)
		watermark = make([]int64, n)
		resume    = make([]int64, n)
		last      = make([]int64, n)
		updated   = make([]int64, n)
	)
	for i, c := range cps {
		group[i], topic[i], partition[i] = c.Group, c.Topic, c.Partition
		closed[i], watermark[i], resume[i], last[i], updated[i] = c.ClosedThroughMs, c.WatermarkMs, c.ResumeOffset, c.LastOffset, c.UpdatedMs
	}
	cols := []any{group, topic, partition, closed, watermark, resume, last, updated}
	return s.insertColumns(ctx, "detector_checkpoints", checkpointColumns, cols, n)
}

func newestCheckpoints(cps []detstate.Checkpoint) []detstate.Checkpoint {
	type k struct {
		group, topic string
		partition    int32
	}
	return newestBy(cps, func(c *detstate.Checkpoint) k { return k{c.Group, c.Topic, c.Partition} },
		func(c *detstate.Checkpoint) int64 { return c.UpdatedMs })
}

// int32List renders partitions as a SQL list. They are integers, so
// formatting them is safe; it also keeps the IN list independent of how
// the driver binds slices.
func int32List(ps []int32) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatInt(int64(p), 10))
	}
	return b.String()
}

// LoadPartitions returns, for group and topic, the newest checkpoint of each
// of partitions (a partition without one is absent from the map) and the
// newest version of every state, agent and peer, whose newest version was
// written for topic and one of partitions. A state whose newest version is
// on another partition is not returned, even if an older version was on one
// of these: its agent has moved. An empty partitions returns nothing.
// Safe for concurrent use.
func (s *Store) LoadPartitions(ctx context.Context, group, topic string, partitions []int32) (map[int32]detstate.Checkpoint, []detstate.State, error) {
	cps := make(map[int32]detstate.Checkpoint, len(partitions))
	if len(partitions) == 0 {
		return cps, nil, nil
	}
	in := int32List(partitions)

	if err := s.loadCheckpoints(ctx, group, topic, in, cps); err != nil {
		return nil, nil, err
	}
	// topic and partition are not key columns: WHERE (after FINAL) keeps
	// only keys whose newest version matches. See the file comment. A
	// removed agent's tombstone (ExpireAgents) is not returned.
	states, err := s.queryStates(ctx, "WHERE topic = ? AND `partition` IN ("+in+") AND "+liveState, topic)
	if err != nil {
		return nil, nil, fmt.Errorf("load states of topic %q from %s: %w", topic, s.db, err)
	}
	return cps, states, nil
}

// loadCheckpoints puts the newest checkpoint of group, topic and each
// partition of the SQL list in into cps.
func (s *Store) loadCheckpoints(ctx context.Context, group, topic, in string, cps map[int32]detstate.Checkpoint) error {
	// All conditions are on the ORDER BY key: every version of a key
	// matches alike, so the result is the newest version.
	rows, err := s.conn.Query(ctx, "SELECT `group`, topic, `partition`, closed_through_ms, watermark_ms, resume_offset, last_offset, updated_ms"+
		" FROM detector_checkpoints FINAL WHERE `group` = ? AND topic = ? AND `partition` IN ("+in+")", group, topic)
	if err != nil {
		return fmt.Errorf("load checkpoints of group %q topic %q from %s: %w", group, topic, s.db, err)
	}
	defer rows.Close()
	for rows.Next() {
		var c detstate.Checkpoint
		if err := rows.Scan(&c.Group, &c.Topic, &c.Partition, &c.ClosedThroughMs, &c.WatermarkMs, &c.ResumeOffset, &c.LastOffset, &c.UpdatedMs); err != nil {
			return fmt.Errorf("load checkpoints of group %q topic %q from %s: %w", group, topic, s.db, err)
		}
		cps[c.Partition] = c
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load checkpoints of group %q topic %q from %s: %w", group, topic, s.db, err)
	}
	return nil
}

// LoadState returns the newest state stored for (kind, key), with ok false
// when there is none or it was removed (ExpireAgents). Safe for concurrent
// use.
func (s *Store) LoadState(ctx context.Context, kind, key string) (detstate.State, bool, error) {
	states, err := s.queryStates(ctx, "WHERE kind = ? AND `key` = ? AND "+liveState, kind, key)
	if err != nil {
		return detstate.State{}, false, fmt.Errorf("load %s state %q from %s: %w", kind, key, s.db, err)
	}
	if len(states) == 0 {
		return detstate.State{}, false, nil
	}
	return states[0], true, nil
}

func (s *Store) queryStates(ctx context.Context, where string, args ...any) ([]detstate.State, error) {
	rows, err := s.conn.Query(ctx, "SELECT topic, `partition`, kind, `key`, updated_ms, state FROM detector_state FINAL "+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []detstate.State
	for rows.Next() {
		var (
			st   detstate.State
			blob string
		)
		if err := rows.Scan(&st.Topic, &st.Partition, &st.Kind, &st.Key, &st.UpdatedMs, &blob); err != nil {
			return nil, err
		}
		// Scanning into *[]byte would alias the driver's buffer; copy.
		st.Blob = []byte(blob)
		out = append(out, st)
	}
	return out, rows.Err()
}

// InsertAnomalies writes as as one INSERT; body is each record's JSON, which
// Anomalies decodes. JSON replaces invalid UTF-8 in strings by U+FFFD, as
// on the anomalies topic, and the filter columns (agent_id…) are taken from
// the JSON too, so they agree with what Anomalies returns. Re-inserting an
// anomaly (same ID) is harmless: reads return it once, the later insert
// winning. A record that cannot be encoded as JSON (a NaN or infinite
// float) fails the whole call before anything is written. An empty as is
// a no-op. Safe for concurrent use.
func (s *Store) InsertAnomalies(ctx context.Context, as []anomaly.Anomaly) error {
	if len(as) == 0 {
		return nil
	}
	n := len(as)
	// One slice per column, as in every insert here: alike in shape,
	// each lists its own table's columns.
	var (
		id          = make([]string, n)
		agentID     = make([]string, n)
		kind        = make([]string, n)
		severity    = make([]string, n)
		summary     = make([]string, n)
		role        = make([]string, n)
		owner       = make([]string, n)
		credential  = make([]string, n)
		startMs     = make([]int64, n)
		endMs       = make([]int64, n)
		detectedMs  = make([]int64, n)
		start       = make([]time.Time, n)
		score       = make([]float64, n)
		peer        = make([]uint8, n)
		partition   = make([]int32, n)
		count       = make([]uint32, n)
		sampleReqID = make([][]string, n)
		body        = make([][]byte, n)
	)
	for i := range as {
		b, err := json.Marshal(&as[i])
		if err != nil {
			return fmt.Errorf("insert %d anomalies into %s: encode anomaly %s of agent %q: %w", n, s.db, as[i].ID, as[i].AgentID, err)
		}
		// The columns are copied from the record as the JSON has it, so
		// they agree with body even where JSON changed a string.
		a := new(anomaly.Anomaly)
		if err := json.Unmarshal(b, a); err != nil {
			return fmt.Errorf("insert %d anomalies into %s: decode anomaly %s of agent %q: %w", n, s.db, as[i].ID, as[i].AgentID, err)
		}
		id[i], agentID[i], kind[i], severity[i], summary[i] = a.ID, a.AgentID, a.Kind, a.Severity, a.Summary
		role[i], owner[i], credential[i] = a.Role, a.Owner, a.CredentialID
		startMs[i], endMs[i], detectedMs[i] = a.WindowStartMs, a.WindowEndMs, a.DetectedMs
		start[i] = partitionTime(a.WindowStartMs)
		score[i] = a.Score
		peer[i] = boolUInt8(a.PeerBaseline)
		partition[i] = a.Partition
		count[i] = clampUInt32(a.Count)
		sampleReqID[i] = a.SampleRequestIDs
		if sampleReqID[i] == nil {
			sampleReqID[i] = []string{}
		}
		body[i] = b
	}
	cols := []any{id, agentID, kind, severity, summary, role, owner, credential, startMs, endMs, detectedMs, start, score, peer, partition, count, sampleReqID, body}
	return s.insertColumns(ctx, "anomalies", anomalyColumns, cols, n)
}

// InsertScores writes ss as one INSERT. A score for an (AgentID,
// WindowStartMs) already stored replaces it (the later insert wins). nil
// Values, Expected and Surprise are stored, and read back, as empty. An
// empty ss is a no-op. Safe for concurrent use.
func (s *Store) InsertScores(ctx context.Context, ss []anomaly.Score) error {
	if len(ss) == 0 {
		return nil
	}
	n := len(ss)
	// One slice per column, as in every insert here: alike in shape,
	// each lists its own table's columns.
	var (
		agentID   = make([]string, n)
		startMs   = make([]int64, n)
		endMs     = make([]int64, n)
		start     = make([]time.Time, n)
		partition = make([]int32, n)
		score     = make([]float64, n)
		severity  = make([]string, n)
		values    = make([][]float64, n)
		expected  = make([][]float64, n)
		surprise  = make([][]float64, n)
		trained   = make([]uint8, n)
		peer      = make([]uint8, n)
		late      = make([]uint32, n)
	)
	for i := range ss {
		c := &ss[i]
		agentID[i], startMs[i], endMs[i], start[i] = c.AgentID, c.WindowStartMs, c.WindowEndMs, partitionTime(c.WindowStartMs)
		partition[i], score[i], severity[i] = c.Partition, c.Score, c.Severity
		values[i], expected[i], surprise[i] = nonNil(c.Values), nonNil(c.Expected), nonNil(c.Surprise)
		trained[i], peer[i], late[i] = boolUInt8(c.Trained), boolUInt8(c.PeerBaseline), clampUInt32(c.Late)
	}
	cols := []any{agentID, startMs, endMs, start, partition, score, severity, values, expected, surprise, trained, peer, late}
	return s.insertColumns(ctx, "window_scores", scoreColumns, cols, n)
}

func nonNil(f []float64) []float64 {
	if f == nil {
		return []float64{}
	}
	return f
}

func boolUInt8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

func clampUInt32(n int) uint32 {
	switch {
	case n < 0:
		return 0
	case int64(n) > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(n)
}

// AnomalyIDs returns the ids of the anomalies stored for agents on
// partitions (Anomaly.Partition) with WindowStartMs >= fromMs: after a
// restart, those need not be published again. An empty partitions returns
// an empty set. Safe for concurrent use.
func (s *Store) AnomalyIDs(ctx context.Context, partitions []int32, fromMs int64) (map[string]struct{}, error) {
	ids := make(map[string]struct{})
	if len(partitions) == 0 {
		return ids, nil
	}
	// DISTINCT is the dedup; no FINAL needed. The window_start condition is
	// implied by the window_start_ms one and lets the server skip months.
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT anomaly_id FROM anomalies WHERE `partition` IN ("+int32List(partitions)+
		") AND window_start_ms >= ? AND window_start >= toDateTime(?)", fromMs, partitionSec(fromMs))
	if err != nil {
		return nil, fmt.Errorf("list anomaly ids in %s: %w", s.db, err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list anomaly ids in %s: %w", s.db, err)
		}
		ids[id] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list anomaly ids in %s: %w", s.db, err)
	}
	return ids, nil
}

// partitionSec is partitionTime as a number of seconds, for binding.
func partitionSec(ms int64) uint32 { return uint32(partitionTime(ms).Unix()) }

// windowWhere selects rows of agentID ("" for all agents) with
// fromMs <= window_start_ms < toMs. Every condition is on the ORDER BY key
// or derived from it, so it is safe under FINAL; the window_start bounds are
// implied by the window_start_ms ones and let the server skip partitions.
func windowWhere(agentID string, fromMs, toMs int64) (string, []any) {
	where := "WHERE window_start_ms >= ? AND window_start_ms < ? AND window_start >= toDateTime(?) AND window_start <= toDateTime(?)"
	args := []any{fromMs, toMs, partitionSec(fromMs), partitionSec(toMs)}
	if agentID != "" {
		where += " AND agent_id = ?"
		args = append(args, agentID)
	}
	return where, args
}

// Anomalies returns the anomalies of agentID ("" for every agent) with
// fromMs <= WindowStartMs < toMs, decoded from their stored JSON, once
// each, ordered by WindowStartMs (then agent, kind, id). Safe for
// concurrent use.
func (s *Store) Anomalies(ctx context.Context, agentID string, fromMs, toMs int64) ([]anomaly.Anomaly, error) {
	if fromMs >= toMs {
		return nil, nil
	}
	where, args := windowWhere(agentID, fromMs, toMs)
	rows, err := s.conn.Query(ctx, "SELECT body FROM anomalies FINAL "+where+" ORDER BY window_start_ms, agent_id, kind, anomaly_id", args...)
	if err != nil {
		return nil, fmt.Errorf("read anomalies from %s: %w", s.db, err)
	}
	defer rows.Close()
	var out []anomaly.Anomaly
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, fmt.Errorf("read anomalies from %s: %w", s.db, err)
		}
		var a anomaly.Anomaly
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			return nil, fmt.Errorf("read anomalies from %s: decode body %.80q: %w", s.db, body, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read anomalies from %s: %w", s.db, err)
	}
	return out, nil
}

// Scores returns the window scores of agentID ("" for every agent) with
// fromMs <= WindowStartMs < toMs, once per window, ordered by WindowStartMs
// then agent. Safe for concurrent use.
func (s *Store) Scores(ctx context.Context, agentID string, fromMs, toMs int64) ([]anomaly.Score, error) {
	if fromMs >= toMs {
		return nil, nil
	}
	where, args := windowWhere(agentID, fromMs, toMs)
	rows, err := s.conn.Query(ctx, "SELECT agent_id, window_start_ms, window_end_ms, `partition`, score, severity, `values`, expected, surprise, trained, peer_baseline, late"+
		" FROM window_scores FINAL "+where+" ORDER BY window_start_ms, agent_id", args...)
	if err != nil {
		return nil, fmt.Errorf("read window scores from %s: %w", s.db, err)
	}
	defer rows.Close()
	var out []anomaly.Score
	for rows.Next() {
		var (
			c             anomaly.Score
			trained, peer uint8
			late          uint32
		)
		if err := rows.Scan(&c.AgentID, &c.WindowStartMs, &c.WindowEndMs, &c.Partition, &c.Score, &c.Severity,
			&c.Values, &c.Expected, &c.Surprise, &trained, &peer, &late); err != nil {
			return nil, fmt.Errorf("read window scores from %s: %w", s.db, err)
		}
		c.Trained, c.PeerBaseline, c.Late = trained != 0, peer != 0, int(late)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read window scores from %s: %w", s.db, err)
	}
	return out, nil
}

// BackfillProgress returns how far job got (see SetBackfillProgress), with
// ok false when it has not recorded any progress. Safe for concurrent use.
func (s *Store) BackfillProgress(ctx context.Context, job string) (doneThroughMs int64, ok bool, err error) {
	rows, err := s.conn.Query(ctx, "SELECT done_through_ms FROM backfill_progress FINAL WHERE job = ?", job)
	if err != nil {
		return 0, false, fmt.Errorf("read backfill progress of %q from %s: %w", job, s.db, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&doneThroughMs); err != nil {
			return 0, false, fmt.Errorf("read backfill progress of %q from %s: %w", job, s.db, err)
		}
		ok = true
	}
	if err := rows.Err(); err != nil {
		return 0, false, fmt.Errorf("read backfill progress of %q from %s: %w", job, s.db, err)
	}
	return doneThroughMs, ok, nil
}

// SetBackfillProgress records that job has folded in every event before
// doneThroughMs. The latest call wins, even if it moves backwards (a job
// restarted from scratch). It stamps the row with the wall clock, so calls
// from different machines are ordered by their clocks. Safe for concurrent
// use.
func (s *Store) SetBackfillProgress(ctx context.Context, job string, doneThroughMs int64) error {
	cols := []any{[]string{job}, []int64{doneThroughMs}, []int64{time.Now().UnixMilli()}}
	return s.insertColumns(ctx, "backfill_progress", backfillColumns, cols, 1)
}

// EventsBetween calls fn for every stored event with fromMs <= EventTimeMs <
// toMs, once per event even if it was inserted more than once, in
// (EventTimeMs, EventID) order. It stops at fn's first error and returns it
// unwrapped. The server sorts the whole range before the first event
// arrives, so a backfill should walk long spans in slices (an hour or a day
// at a time) rather than ask for everything at once. Events passed to fn
// are fresh values fn may keep. Safe for concurrent use.
func (s *Store) EventsBetween(ctx context.Context, fromMs, toMs int64, fn func(*event.Event) error) error {
	if fromMs >= toMs {
		return nil
	}
	// Cancelling stops the server when fn gives up early; rows.Close alone
	// would read the rest of the result.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Both conditions are on the ORDER BY key or derived from it, so they
	// are safe under FINAL; event_time lets the server skip day partitions.
	rows, err := s.conn.Query(ctx, "SELECT "+eventSelectList+" FROM events FINAL"+
		" WHERE event_time_ms >= ? AND event_time_ms < ? AND event_time >= toDateTime(?) AND event_time <= toDateTime(?)"+
		" ORDER BY event_time_ms, event_id", fromMs, toMs, partitionSec(fromMs), partitionSec(toMs))
	if err != nil {
		return fmt.Errorf("read events [%d, %d) from %s: %w", fromMs, toMs, s.db, err)
	}
	defer rows.Close()
	for rows.Next() {
		e := new(event.Event)
		if err := scanEvent(rows, e); err != nil {
			return fmt.Errorf("read events [%d, %d) from %s: %w", fromMs, toMs, s.db, err)
		}
		if err := fn(e); err != nil {
			cancel()
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read events [%d, %d) from %s: %w", fromMs, toMs, s.db, err)
	}
	return nil
}

// EventTimeRange returns the smallest and largest stored event time and the
// number of stored rows. n counts rows, not distinct events: duplicates not
// yet merged away are included, so use it for progress estimates, not
// exact counts (CountEvents(ctx, true) is exact). With no events, all three
// are 0. Safe for concurrent use.
func (s *Store) EventTimeRange(ctx context.Context) (minMs, maxMs int64, n uint64, err error) {
	if err := s.conn.QueryRow(ctx, "SELECT min(event_time_ms), max(event_time_ms), count() FROM events").Scan(&minMs, &maxMs, &n); err != nil {
		return 0, 0, 0, fmt.Errorf("read event time range of %s: %w", s.db, err)
	}
	if n == 0 {
		return 0, 0, 0, nil
	}
	return minMs, maxMs, n, nil
}
