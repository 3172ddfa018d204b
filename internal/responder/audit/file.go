package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentwatch/agentwatch/internal/platform/journal"
)

// FileStore is a Store in a JSON-lines file (MarshalLine), for the embedded
// mode and tests. Safe for concurrent use, and across processes on systems
// with flock: it is a shared journal (journal.OpenShared), so appends take
// an exclusive lock on path+".lock", queries a shared one. Each Append
// writes its records with one write and fsyncs before it returns; Appends
// that wait for one another share a write and an fsync.
//
// A crash in the middle of a write leaves a last line without its newline.
// That line was never acknowledged (Append had not returned), so Query
// skips it and the next Append cuts it off before writing.
//
// Query reads the whole file; it is meant for the embedded mode's volumes,
// not for months of a fleet (that is the ClickHouse table).
type FileStore struct {
	j *journal.Journal
}

var _ Store = (*FileStore)(nil)

// OpenFileStore opens the audit file at path, creating it (mode 0600) if
// it does not exist. Its directory must exist. The FileStore holds no open
// file or lock between calls, so there is nothing to close.
func OpenFileStore(path string) (*FileStore, error) {
	j, err := journal.OpenShared(path, journal.Options{Name: "audit file"})
	if err != nil {
		return nil, err
	}
	return &FileStore{j: j}, nil
}

// Path returns the file's path.
func (s *FileStore) Path() string { return s.j.Path() }

// Append implements Store.
func (s *FileStore) Append(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("append to audit file: %w", err)
	}
	lines := make([][]byte, 0, len(recs))
	var errs []error
	for i, r := range recs {
		line, err := MarshalLine(r.Normalize())
		if err != nil {
			errs = append(errs, fmt.Errorf("audit record %d (id %.40q): %w", i, r.ID, err))
			continue
		}
		lines = append(lines, line[:len(line)-1])
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// A failed fsync leaves the records maybe on disk: a retry appends
	// them again, and Query counts equal records once.
	if err := s.j.Append(lines...); err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	return nil
}

// Query implements Store.
func (s *FileStore) Query(ctx context.Context, f Filter) ([]Record, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	f = f.Normalize()
	var out []Record
	err := journal.ReadShared(ctx, s.j.Path(), journal.Options{}, func(line []byte) error {
		r, err := ParseLine(line)
		if err != nil {
			return err
		}
		if f.Match(r) {
			out = append(out, r)
		}
		return nil
	})
	if damaged := (*journal.CorruptError)(nil); errors.As(err, &damaged) {
		return nil, fmt.Errorf("read audit file %s at byte %d: %w; the line is damaged: move it out of the file, the other lines are intact",
			damaged.Path, damaged.Offset, damaged.Err)
	}
	if err != nil {
		return nil, fmt.Errorf("query audit file: %w", err)
	}
	return finish(out, f.Limit), nil
}
