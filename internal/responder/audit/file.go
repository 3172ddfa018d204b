package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/agentwatch/agentwatch/internal/platform/atomicfile"
	"github.com/agentwatch/agentwatch/internal/platform/flock"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// FileStore is a Store in a JSON-lines file (MarshalLine), for the embedded
// mode and tests. Safe for concurrent use, and across processes on systems
// with flock: appends take an exclusive lock on path+".lock", queries a
// shared one. Each Append writes its records with one write and fsyncs
// before it returns.
//
// A crash in the middle of a write leaves a last line without its newline.
// That line was never acknowledged (Append had not returned), so Query
// skips it and the next Append cuts it off before writing.
//
// Query reads the whole file; it is meant for the embedded mode's volumes,
// not for months of a fleet (that is the ClickHouse table).
type FileStore struct {
	path string
	mu   sync.RWMutex
}

var _ Store = (*FileStore)(nil)

// OpenFileStore opens the audit file at path, creating it (mode 0600) if
// it does not exist. Its directory must exist. The FileStore holds no open
// file, so there is nothing to close.
func OpenFileStore(path string) (*FileStore, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open audit file: %w; create its directory or set another path", err)
	}
	f.Close()
	atomicfile.SyncDir(filepath.Dir(path))
	return &FileStore{path: path}, nil
}

// Path returns the file's path.
func (s *FileStore) Path() string { return s.path }

// Append implements Store.
func (s *FileStore) Append(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("append to audit file: %w", err)
	}
	var buf []byte
	var errs []error
	for i, r := range recs {
		line, err := MarshalLine(r.Normalize())
		if err != nil {
			errs = append(errs, fmt.Errorf("audit record %d (id %.40q): %w", i, r.ID, err))
			continue
		}
		buf = append(buf, line...)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := flock.Lock(s.path+".lock", true, true)
	if err != nil {
		return fmt.Errorf("append to audit file: %w", err)
	}
	defer unlock()
	f, err := os.OpenFile(s.path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("append to audit file: %w", err)
	}
	defer f.Close()
	size, err := cutTornTail(f)
	if err != nil {
		return fmt.Errorf("append to audit file %s: %w", s.path, err)
	}
	if _, err := f.Write(buf); err != nil {
		_ = f.Truncate(size) // leave no part of a batch we report as failed
		return fmt.Errorf("append %d records to audit file %s: %w", len(recs), s.path, err)
	}
	if err := f.Sync(); err != nil {
		// The records may be on disk: a retry appends them again, and
		// Query counts equal records once.
		return fmt.Errorf("sync audit file %s: %w", s.path, err)
	}
	return nil
}

// cutTornTail truncates f after its last newline, dropping the remains of
// a write cut short by a crash, and returns the new size. The caller holds
// the exclusive lock.
func cutTornTail(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if size == 0 {
		return 0, nil
	}
	buf := make([]byte, 4096)
	end := size
	for end > 0 {
		n := min(int64(len(buf)), end)
		chunk := buf[:n]
		if _, err := f.ReadAt(chunk, end-n); err != nil {
			return 0, fmt.Errorf("read tail: %w", err)
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	if end == size {
		return size, nil
	}
	if err := f.Truncate(end); err != nil {
		return 0, fmt.Errorf("cut partial last line (%d bytes): %w", size-end, err)
	}
	return end, nil
}

// Query implements Store.
func (s *FileStore) Query(ctx context.Context, f Filter) ([]Record, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	f = f.Normalize()

	s.mu.RLock()
	defer s.mu.RUnlock()
	unlock, err := flock.Lock(s.path+".lock", false, true)
	if err != nil {
		return nil, fmt.Errorf("query audit file: %w", err)
	}
	defer unlock()
	file, err := os.Open(s.path)
	if err != nil {
		return nil, fmt.Errorf("query audit file: %w", err)
	}
	defer file.Close()

	var out []Record
	rd := bufio.NewReaderSize(file, 64<<10)
	var off int64
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("query audit file: %w", err)
			}
		}
		line, err := rd.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			break // a last line without its newline is a torn write: skip it
		}
		if err != nil {
			return nil, fmt.Errorf("read audit file %s: %w", s.path, err)
		}
		at := off
		off += int64(len(line))
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		r, err := ParseLine(line)
		if err != nil {
			return nil, fmt.Errorf("read audit file %s at byte %d: %w; the line is damaged: move it out of the file, the other lines are intact", s.path, at, err)
		}
		if f.Match(r) {
			out = append(out, r)
		}
	}
	return finish(out, f.Limit), nil
}
