package silence

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Table is the part of the replicated global table (kstate.Table) a Store
// of the distributed mode writes to. Put and Delete return once the record
// is applied in this process too (read your writes). Safe for concurrent
// use.
type Table interface {
	Put(ctx context.Context, key string, value []byte) (int64, error)
	Delete(ctx context.Context, key string) (int64, error)
}

// TablePrefix starts the key of every silence in the global table: the
// key is TablePrefix + the silence's id, the value its file line.
const TablePrefix = "s/"

// OpenTable returns a Store whose silences live in the global table t
// instead of a file: the distributed mode, where every instance holds the
// same silences. Add, AddWithKey and Expire write the table and return
// once the record is applied here; a record written by another instance
// (its API, a Slack snooze it handled) reaches this Store through Apply,
// which the table calls for every record with TablePrefix, in offset
// order. Silences past their retention are deleted from the table by Run
// (any instance may; a second delete changes nothing). The caller owns
// the Store; Close stops its writes, not the table.
func OpenTable(t Table, opts Options) *Store {
	s := &Store{t: t, opts: opts.withDefaults(), silences: make(map[string]*entry)}
	return s
}

// Apply takes one record of the global table whose key starts with
// TablePrefix: a silence's whole state, or a tombstone (nil value) that
// forgets it. A record that does not parse is an error and changes
// nothing: a silence this version cannot read must not mute anything.
func (s *Store) Apply(key string, value []byte) error {
	id, ok := strings.CutPrefix(key, TablePrefix)
	if !ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if value == nil {
		delete(s.silences, id)
		s.opts.Metrics.active(s.countActive(s.opts.Now()))
		return nil
	}
	sil, ms, err := parseLine(value)
	if err != nil {
		return fmt.Errorf("silence record %s: %w", key, err)
	}
	if sil.ID != id {
		return fmt.Errorf("silence record %s: holds silence %.40q", key, sil.ID)
	}
	s.silences[id] = &entry{sil: sil, ms: ms}
	s.opts.Metrics.active(s.countActive(s.opts.Now()))
	return nil
}

// storeLocked makes sil (with its compiled matchers ms) the silence's
// state: a fsynced line of the file, or a record of the table. s.mu is
// held; in the table mode it is released around the write, because the
// table applies the record (Apply, which takes s.mu) before Put returns.
func (s *Store) storeLocked(ctx context.Context, sil Silence, ms []compiled) error {
	if s.t == nil {
		if err := s.appendLocked(sil); err != nil {
			return err
		}
		s.silences[sil.ID] = &entry{sil: sil, ms: ms}
		return nil
	}
	b, err := appendLine(nil, sil)
	if err != nil {
		return err
	}
	s.mu.Unlock()
	_, err = s.t.Put(ctx, TablePrefix+sil.ID, b[:len(b)-1])
	s.mu.Lock()
	return err
}

// isClosed reports whether the Store was closed (or its file stopped).
func (s *Store) isClosed() bool {
	if s.t != nil {
		return s.closed
	}
	return s.j.Closed()
}

// maintainTable deletes the silences past their retention from the table.
func (s *Store) maintainTable() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("silence maintenance: %w", ErrClosed)
	}
	now := s.opts.Now()
	cut := now.Add(-s.opts.Retention)
	var drop []string
	for id, e := range s.silences {
		if e.sil.Ended().Before(cut) {
			drop = append(drop, id)
		}
	}
	s.opts.Metrics.active(s.countActive(now))
	s.mu.Unlock()
	var errs []error
	for _, id := range drop {
		if _, err := s.t.Delete(context.Background(), TablePrefix+id); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		// The table is unreachable for now; the next tick tries again.
		s.opts.Log.Warn("deleting silences past their retention failed", "err", err)
	}
	return nil
}
