package chstore

import (
	"context"
	"fmt"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
)

// This file bounds what a detector loads and keeps in detector_state:
// a capped restore, and the removal of agents nobody registered that went
// quiet (fake ids of a flood stay otherwise for ever).
//
// ClickHouse 18.16 has no TTL, and ALTER … DELETE is an asynchronous
// mutation that rewrites every part, too heavy to run per agent. A removal
// is therefore a tombstone first: a row with the same (kind, key), a newer
// updated_ms, partition -1 (no events partition has it) and an empty
// state, which every read treats as absent and
// which merges collapse the old versions into. PurgeTombstones then
// collapses every version (OPTIMIZE … FINAL) and deletes the tombstones
// with one mutation, so the rows really leave the table. Both statements
// exist unchanged on current ClickHouse.

// stateBatch is how many rows one tombstone INSERT carries.
const stateBatch = 20_000

// tombstonePartition marks a tombstone, with an empty state: a saved
// state may be empty, but no state is saved for partition -1.
const tombstonePartition = -1

// liveState is the condition that leaves tombstones out; under FINAL it
// applies to the newest version only, so a removed agent's older
// versions stay hidden too.
const liveState = "NOT (`partition` = -1 AND state = '')"

// LoadPartitionsCapped is LoadPartitions holding at most maxAgents agent
// states: the most recently saved ones (ties by key). Every other live
// agent of topic and partitions is passed by key to rest, so the caller
// knows to fetch it with LoadState when it is seen again. maxAgents < 0
// loads every agent, as LoadPartitions does. Peer and partition states
// are always returned. Safe for concurrent use; rest is called from the
// calling goroutine.
func (s *Store) LoadPartitionsCapped(ctx context.Context, group, topic string, partitions []int32, maxAgents int, rest func(key string)) (map[int32]detstate.Checkpoint, []detstate.State, error) {
	if maxAgents < 0 {
		return s.LoadPartitions(ctx, group, topic, partitions)
	}
	cps := make(map[int32]detstate.Checkpoint, len(partitions))
	if len(partitions) == 0 {
		return cps, nil, nil
	}
	in := int32List(partitions)
	if err := s.loadCheckpoints(ctx, group, topic, in, cps); err != nil {
		return nil, nil, err
	}
	where := "WHERE topic = ? AND `partition` IN (" + in + ") AND " + liveState
	states, err := s.queryStates(ctx, where+" AND kind != ?", topic, detstate.KindAgent)
	if err != nil {
		return nil, nil, fmt.Errorf("load peer states of topic %q from %s: %w", topic, s.db, err)
	}
	loaded := make(map[string]struct{}, maxAgents)
	if maxAgents > 0 {
		agents, err := s.queryStates(ctx, fmt.Sprintf("%s AND kind = ? ORDER BY updated_ms DESC, `key` LIMIT %d", where, maxAgents), topic, detstate.KindAgent)
		if err != nil {
			return nil, nil, fmt.Errorf("load the %d newest agent states of topic %q from %s: %w", maxAgents, topic, s.db, err)
		}
		for _, a := range agents {
			loaded[a.Key] = struct{}{}
		}
		states = append(states, agents...)
	}
	// The keys alone: a million of them is a few tens of megabytes on the
	// wire and none of it is kept but what rest keeps.
	rows, err := s.conn.Query(ctx, "SELECT `key` FROM detector_state FINAL "+where+" AND kind = ?", topic, detstate.KindAgent)
	if err != nil {
		return nil, nil, fmt.Errorf("list agents of topic %q in %s: %w", topic, s.db, err)
	}
	defer rows.Close()
	for rows.Next() {
		var key string
		if err := rows.Scan(&key); err != nil {
			return nil, nil, fmt.Errorf("list agents of topic %q in %s: %w", topic, s.db, err)
		}
		if _, ok := loaded[key]; !ok {
			rest(key)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("list agents of topic %q in %s: %w", topic, s.db, err)
	}
	return cps, states, nil
}

// ExpireAgents removes the agent states of topic and partitions whose
// newest version was saved before beforeMs and for which drop(key) says
// yes, by writing tombstones stamped nowMs (see the file comment); reads
// no longer return them. It returns how many it removed. drop is called
// from the calling goroutine, once per candidate. Safe for concurrent use.
func (s *Store) ExpireAgents(ctx context.Context, topic string, partitions []int32, beforeMs, nowMs int64, drop func(key string) bool) (int, error) {
	if len(partitions) == 0 {
		return 0, nil
	}
	rows, err := s.conn.Query(ctx, "SELECT `key` FROM detector_state FINAL WHERE kind = ? AND topic = ? AND `partition` IN ("+
		int32List(partitions)+") AND updated_ms < ? AND "+liveState, detstate.KindAgent, topic, beforeMs)
	if err != nil {
		return 0, fmt.Errorf("list idle agents of topic %q in %s: %w", topic, s.db, err)
	}
	var tomb []detstate.State
	n := 0
	flush := func() error {
		if len(tomb) == 0 {
			return nil
		}
		if err := s.SaveStates(ctx, tomb); err != nil {
			return fmt.Errorf("write %d agent tombstones: %w", len(tomb), err)
		}
		n += len(tomb)
		tomb = tomb[:0]
		return nil
	}
	for rows.Next() {
		var key string
		if err := rows.Scan(&key); err != nil {
			rows.Close()
			return n, fmt.Errorf("list idle agents of topic %q in %s: %w", topic, s.db, err)
		}
		if !drop(key) {
			continue
		}
		tomb = append(tomb, detstate.State{Topic: topic, Partition: tombstonePartition, Kind: detstate.KindAgent, Key: key, UpdatedMs: nowMs, Blob: []byte{}})
		if len(tomb) >= stateBatch {
			if err := flush(); err != nil {
				rows.Close()
				return n, err
			}
		}
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		return n, fmt.Errorf("list idle agents of topic %q in %s: %w", topic, s.db, err)
	}
	return n, flush()
}

// PurgeTombstones deletes the tombstones of removed agents written before
// it was called, together with every older version of those agents: it
// first merges every part of detector_state (OPTIMIZE … FINAL, which
// leaves one row per key, the tombstone where there is one), then deletes
// the tombstones with one ALTER … DELETE. The deletion is a mutation the
// server runs in the background; reads ignore tombstones meanwhile. A
// version older than a tombstone that is inserted between the two
// statements (a detector that still held the agent) survives, and the
// next ExpireAgents removes it again. The merge rewrites the whole table,
// so call it seldom (the detector does after a pass that removed agents,
// at most once per pass). Safe for concurrent use.
func (s *Store) PurgeTombstones(ctx context.Context) error {
	cutoff := time.Now().UnixMilli()
	if err := s.conn.Exec(ctx, "OPTIMIZE TABLE detector_state FINAL"); err != nil {
		return fmt.Errorf("merge detector_state in %s before purging tombstones: %w", s.db, err)
	}
	if err := s.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE detector_state DELETE WHERE kind = '%s' AND `partition` = %d AND state = '' AND updated_ms < %d",
		detstate.KindAgent, tombstonePartition, cutoff)); err != nil {
		return fmt.Errorf("delete agent tombstones from %s: %w", s.db, err)
	}
	return nil
}

// StateRows counts the rows of detector_state of kind as stored, every
// version and tombstone included (not the live states): what a purge has
// left on disk. Safe for concurrent use.
func (s *Store) StateRows(ctx context.Context, kind string) (uint64, error) {
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM detector_state WHERE kind = ?", kind).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s rows of detector_state in %s: %w", kind, s.db, err)
	}
	return n, nil
}
