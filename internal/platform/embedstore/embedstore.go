// Package embedstore is the embedded default's event store: canonical events
// appended as JSON lines to one file per UTC day under a directory, with the
// same contract as the ClickHouse store (a retried insert leaves no
// duplicate, by event_id) and the same retention by dropping whole days.
//
// It is meant for one process on one machine — the demo and small trials.
// The set of stored event ids is kept in memory, so it suits millions of
// events, not billions; ClickHouse is the way past that.
package embedstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
)

const filePrefix, fileSuffix = "events-", ".jsonl"

// Store appends events to day files. Safe for concurrent use.
type Store struct {
	dir string

	mu    sync.Mutex
	ids   map[string]struct{}
	files map[string]*os.File
	buf   []byte
}

// Open opens (creating) dir and loads the ids of the events already there.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("embedstore: create %s: %w", dir, err)
	}
	s := &Store{dir: dir, ids: make(map[string]struct{}), files: make(map[string]*os.File)}
	days, err := s.Days()
	if err != nil {
		return nil, err
	}
	for _, day := range days {
		err := s.scan(day, func(e *event.Event) bool {
			s.ids[e.EventID] = struct{}{}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Dir returns the directory the store writes to.
func (s *Store) Dir() string { return s.dir }

// InsertEvents appends the events not stored yet and syncs the files, so a
// nil return means they are on disk.
func (s *Store) InsertEvents(ctx context.Context, evs []event.Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	byDay := make(map[string][]byte)
	var added []string
	for i := range evs {
		e := &evs[i]
		if _, dup := s.ids[e.EventID]; dup {
			continue
		}
		day := time.UnixMilli(e.EventTimeMs).UTC().Format("20060102")
		b := byDay[day]
		b = event.AppendJSON(b, e)
		byDay[day] = append(b, '\n')
		added = append(added, e.EventID)
	}
	for day, b := range byDay {
		f, err := s.file(day)
		if err != nil {
			return err
		}
		if _, err := f.Write(b); err != nil {
			return fmt.Errorf("embedstore: append to %s: %w", f.Name(), err)
		}
		if err := f.Sync(); err != nil {
			return fmt.Errorf("embedstore: sync %s: %w", f.Name(), err)
		}
	}
	for _, id := range added {
		s.ids[id] = struct{}{}
	}
	return nil
}

func (s *Store) file(day string) (*os.File, error) {
	if f, ok := s.files[day]; ok {
		return f, nil
	}
	f, err := os.OpenFile(filepath.Join(s.dir, filePrefix+day+fileSuffix), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("embedstore: open day file: %w", err)
	}
	s.files[day] = f
	return f, nil
}

// Count returns the number of distinct events stored.
func (s *Store) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids)
}

// Days lists the stored days (YYYYMMDD), oldest first.
func (s *Store) Days() ([]string, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("embedstore: list %s: %w", s.dir, err)
	}
	var days []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, filePrefix) && strings.HasSuffix(n, fileSuffix) {
			days = append(days, strings.TrimSuffix(strings.TrimPrefix(n, filePrefix), fileSuffix))
		}
	}
	sort.Strings(days)
	return days, nil
}

// Events calls fn for each stored event of agentID (every agent when "")
// with event time in [from, to), in storage order, until fn returns false.
func (s *Store) Events(agentID string, from, to time.Time, fn func(*event.Event) bool) error {
	days, err := s.Days()
	if err != nil {
		return err
	}
	lo, hi := from.UTC().Format("20060102"), to.UTC().Format("20060102")
	for _, day := range days {
		if day < lo || day > hi {
			continue
		}
		stop := false
		err := s.scan(day, func(e *event.Event) bool {
			if (agentID == "" || e.AgentID == agentID) && e.EventTimeMs >= from.UnixMilli() && e.EventTimeMs < to.UnixMilli() {
				if !fn(e) {
					stop = true
					return false
				}
			}
			return true
		})
		if err != nil || stop {
			return err
		}
	}
	return nil
}

func (s *Store) scan(day string, fn func(*event.Event) bool) error {
	name := filepath.Join(s.dir, filePrefix+day+fileSuffix)
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("embedstore: open %s: %w", name, err)
	}
	defer f.Close()
	var dec event.Decoder
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	line := 0
	for sc.Scan() {
		line++
		e, err := dec.Decode(sc.Bytes())
		if err != nil {
			// A torn last line after a crash is expected; anything else is not.
			return fmt.Errorf("embedstore: %s line %d: %w", name, line, err)
		}
		if !fn(&e) {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("embedstore: read %s: %w", name, err)
	}
	return nil
}

// DropDaysBefore removes the day files older than day and returns them.
func (s *Store) DropDaysBefore(day time.Time) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	days, err := s.Days()
	if err != nil {
		return nil, err
	}
	cut := day.UTC().Format("20060102")
	var dropped []string
	for _, d := range days {
		if d >= cut {
			continue
		}
		if f, ok := s.files[d]; ok {
			_ = f.Close()
			delete(s.files, d)
		}
		if err := os.Remove(filepath.Join(s.dir, filePrefix+d+fileSuffix)); err != nil {
			return dropped, fmt.Errorf("embedstore: drop day %s: %w", d, err)
		}
		dropped = append(dropped, d)
	}
	// Ids of dropped days stay in memory until restart: a replay of events
	// that old is rejected by the ingest window anyway.
	return dropped, nil
}

// Close closes the day files.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, f := range s.files {
		errs = append(errs, f.Close())
	}
	s.files = map[string]*os.File{}
	return errors.Join(errs...)
}
