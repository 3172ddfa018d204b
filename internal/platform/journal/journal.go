// Package journal is the durable append-only file behind the responder's
// and detector's stores: one record per line (the stores write JSON),
// replayed in order at open, appended with group commit (one write and one
// fsync for every Append waiting at the time), and compacted by an atomic
// replace. The stores keep their state in memory and their own meaning of
// a record; the journal owns the file, its lock and its crash safety.
//
// Open gives one process the file until Close (the stores that replay
// their state); Records reads it while it is open. OpenShared lets several
// processes append to one file, taking the lock per write; ReadShared
// reads it beside them (the audit trail), and Follow keeps a process's
// state up to date with what the others append (the revocation ledger).
//
// On-disk format: records separated by '\n', nothing else, so the JSON-lines
// files the stores wrote before the journal existed open unchanged. A
// record never contains '\n'. Blank lines are skipped.
package journal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/agentwatch/agentwatch/internal/platform/atomicfile"
	"github.com/agentwatch/agentwatch/internal/platform/flock"
)

// ErrClosed is returned, wrapped, by Append and Compact after Close, or
// after a failure stopped the journal (see Closed). Reopen the journal to
// go on: the open replays what is durable.
var ErrClosed = errors.New("journal closed")

// CorruptError is the error (wrapped by Open, bare from Read and
// ReadShared) for a complete line that the replay function refused, unless
// it is the last one and Options.CutBadLastLine is set. The file is damaged
// there; Options.DamagedFix, or the caller, says what to do about it.
type CorruptError struct {
	Path   string
	Line   int   // 1-based, counting blank lines
	Offset int64 // of the line's first byte
	Err    error
}

func (e *CorruptError) Error() string { return fmt.Sprintf("%s line %d: %v", e.Path, e.Line, e.Err) }

func (e *CorruptError) Unwrap() error { return e.Err }

// Options tune a Journal. The zero value gives the defaults.
type Options struct {
	// Name says what the file holds ("outbox"), in errors and logs;
	// default "journal".
	Name string
	// InUse, if set, is wrapped into the error of an Open that finds the
	// lock held, beside flock.ErrLocked: the store's own sentinel.
	InUse error
	// DamagedFix ends the error of Open for a damaged line: what the
	// operator should do, which depends on what the records mean.
	DamagedFix string
	// StoppedFix ends the error of a failure that stopped the journal;
	// default "reopen it".
	StoppedFix string
	// CutBadLastLine treats a last complete line that the replay function
	// refuses like a line without its newline: cut off, counted and logged.
	// By default it is a CorruptError, like one in the middle: a line that
	// ends in its newline was written whole, and since each Append is one
	// write the newline is the last byte to land, so damage before it is
	// not a torn write. Set it for files written by code that did not keep
	// that rule.
	CutBadLastLine bool
	// CreateDir creates the file's missing directories with mode 0700. By
	// default a missing directory is an error.
	CreateDir bool
	// Perm is the mode of the file Open or OpenShared creates and of the
	// file Compact writes; 0 means 0600. Stores whose files others read
	// (the evidence chain, the detector's results) set 0644.
	Perm fs.FileMode
	// Log receives the torn-tail and compaction reports; nil discards them.
	Log *slog.Logger
	// Sync makes a write durable; nil means (*os.File).Sync. Tests set it
	// to count or fail fsyncs.
	Sync func(*os.File) error
}

// Stats are a journal's counters since Open.
type Stats struct {
	// Replayed is the records handed to the replay function and kept.
	Replayed int
	// TornLines and TornBytes are what the open cut off the end of the file.
	TornLines int
	TornBytes int64
	// Appends is the Append calls that wrote, Records their records;
	// Syncs the fsyncs that made them durable (fewer than Appends when
	// group commit batched them).
	Appends, Records, Syncs int64
	// Compactions is the successful Compact calls.
	Compactions int64
}

// Journal is one open journal file. Only one Journal, in any process, has a
// path open at a time: Open holds an exclusive flock on path+".lock" until
// Close (or until a failure stops the journal). A journal from OpenShared
// instead takes the lock for each write. A Journal is safe for concurrent
// use; the caller owns it and must Close it.
type Journal struct {
	path   string
	opts   Options
	log    *slog.Logger
	unlock func()
	shared bool // OpenShared: no f, no unlock; lock, open and repair per write

	mu   sync.Mutex
	cond *sync.Cond // signalled when a flush ends or the journal closes

	f     *os.File // opened O_APPEND; replaced by Compact; nil when shared
	size  int64    // bytes of complete lines; unknown when shared
	lines int      // non-blank lines; when shared, only those appended here
	// next collects the records of Appends that wait for the running flush;
	// one of them writes it when that flush ends.
	next     *batch
	flushing bool // a leader is writing outside mu; f must not change
	closed   bool
	stopErr  error // why a failure stopped the journal
	stats    Stats

	// followMu serialises Follow, which reads on from followOff, the end
	// of the last line it passed, on line followLine+1.
	followMu   sync.Mutex
	followOff  int64
	followLine int
}

// batch is the records of one group commit and its outcome.
type batch struct {
	buf   []byte
	calls int
	recs  int
	done  bool
	err   error
}

// Open opens the journal at path, creating it (Options.Perm) if missing, and
// calls replay with each record in file order; the record's bytes are only
// valid during the call. replay returning an error refuses the record:
// Open fails with an error wrapping a *CorruptError (naming Options.Name
// and ending with Options.DamagedFix), unless the record is the last one
// and Options.CutBadLastLine is set. A last line without its newline (a write cut
// short by a crash, never acknowledged) is cut off the file, counted in
// Stats and logged; it is never a failure. A nil replay skips the records.
//
// An Open that fails for any reason has released the lock and the file.
// When another process holds the lock the error wraps flock.ErrLocked.
func Open(path string, opts Options, replay func(rec []byte) error) (*Journal, error) {
	if replay == nil {
		replay = func([]byte) error { return nil }
	}
	j, err := newJournal(path, opts, false)
	if err != nil {
		return nil, err
	}
	unlock, err := flock.Lock(path+".lock", true, false)
	if errors.Is(err, flock.ErrLocked) {
		err = fmt.Errorf("open %s %s: %w; another process has it open: stop that process or use another path", j.opts.Name, path, err)
		if opts.InUse != nil {
			err = fmt.Errorf("%w: %w", opts.InUse, err)
		}
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("open %s %s: %w; create its directory or use another path", j.opts.Name, path, err)
	}
	// No Compact of path can run now, so temporaries are a crash's leftovers.
	atomicfile.RemoveStaleTemps(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, opts.perm())
	if err != nil {
		unlock()
		return nil, fmt.Errorf("open %s %s: %w", j.opts.Name, path, err)
	}
	good, complete, err := j.replay(f, replay)
	var damaged *CorruptError
	switch {
	case errors.As(err, &damaged) && opts.DamagedFix != "":
		err = fmt.Errorf("%s %w; the file is damaged: %s", j.opts.Name, err, opts.DamagedFix)
	case errors.As(err, &damaged):
		err = fmt.Errorf("%s %w; the file is damaged", j.opts.Name, err)
	case err != nil:
		err = fmt.Errorf("read %s %s: %w", j.opts.Name, path, err)
	default:
		err = j.cutTail(f, good, complete)
	}
	if err != nil {
		f.Close()
		unlock()
		return nil, err
	}
	atomicfile.SyncDir(filepath.Dir(path)) // the create, if there was one
	j.f, j.unlock = f, unlock
	return j, nil
}

// OpenShared opens the journal at path, creating it (Options.Perm) if missing,
// for appending beside other processes that do the same: the audit trail,
// written by the responder and by a command run by hand. It holds no file
// or lock between writes: each group commit takes the exclusive lock on
// path+".lock" (waiting for it), cuts a torn tail a crash left, appends and
// fsyncs. There is no replay and no Compact; read the file with
// ReadShared, or follow it with Follow. A failed fsync does not stop a
// shared journal: the records may be on disk or not, and the caller
// decides (a retry may store them twice).
func OpenShared(path string, opts Options) (*Journal, error) {
	j, err := newJournal(path, opts, true)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, j.opts.perm())
	if err != nil {
		return nil, fmt.Errorf("open %s %s: %w; create its directory or use another path", j.opts.Name, path, err)
	}
	f.Close()
	atomicfile.SyncDir(filepath.Dir(path))
	return j, nil
}

// newJournal applies opts' defaults and creates the directory if asked.
func newJournal(path string, opts Options, shared bool) (*Journal, error) {
	if opts.Name == "" {
		opts.Name = "journal"
	}
	if opts.StoppedFix == "" {
		opts.StoppedFix = "reopen it"
	}
	j := &Journal{path: path, opts: opts, log: opts.Log, shared: shared}
	if j.log == nil {
		j.log = slog.New(slog.DiscardHandler)
	}
	j.cond = sync.NewCond(&j.mu)
	if opts.CreateDir {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("create the directory of %s: %w", path, err)
		}
	}
	return j, nil
}

// replay reads f from the start and calls fn on each record. It returns
// the length of the prefix to keep and the end of the last complete line.
func (j *Journal) replay(f *os.File, fn func([]byte) error) (good, complete int64, err error) {
	err = scan(f, func(rec []byte, n int, last bool, start, end int64) error {
		complete = end
		if rec == nil { // blank line
			good = end
			return nil
		}
		if err := fn(rec); err != nil {
			if last && j.opts.CutBadLastLine {
				j.stats.TornLines++
				j.log.Warn("cutting undecodable last line", "path", j.path, "line", n, "err", err)
				return nil
			}
			return &CorruptError{Path: j.path, Line: n, Offset: start, Err: err}
		}
		good, j.lines = end, j.lines+1
		j.stats.Replayed++
		return nil
	})
	j.size = good
	return good, complete, err
}

// scan calls fn for each complete line of r: its record without the
// newline (nil for a blank line), its 1-based number, whether it is the
// last complete line, and the offsets of its start and just after it. A
// last line without its newline is not passed.
func scan(r io.Reader, fn func(rec []byte, n int, last bool, start, end int64) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var off int64
	cur, err := br.ReadBytes('\n')
	for n := 1; err == nil; n++ {
		// Read one line ahead to know whether cur is the last complete one.
		next, nerr := br.ReadBytes('\n')
		if nerr != nil && !errors.Is(nerr, io.EOF) {
			return fmt.Errorf("read: %w", nerr)
		}
		off += int64(len(cur))
		rec := cur[:len(cur)-1]
		if len(bytes.TrimSpace(rec)) == 0 {
			rec = nil
		}
		if ferr := fn(rec, n, nerr != nil, off-int64(len(cur)), off); ferr != nil {
			return ferr
		}
		cur, err = next, nerr
	}
	if !errors.Is(err, io.EOF) {
		return fmt.Errorf("read: %w", err)
	}
	return nil
}

// cutTail truncates f to good, counting and logging what it cuts; bytes
// after complete are a line without its newline.
func (j *Journal) cutTail(f *os.File, good, complete int64) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("open %s: %w", j.path, err)
	}
	if fi.Size() == good {
		return nil
	}
	cut := fi.Size() - good
	if err := f.Truncate(good); err != nil {
		return fmt.Errorf("cut the torn last line of %s (%d bytes): %w", j.path, cut, err)
	}
	if err := j.sync(f); err != nil {
		return fmt.Errorf("cut the torn last line of %s: sync: %w", j.path, err)
	}
	if fi.Size() > complete {
		j.stats.TornLines++
	}
	j.stats.TornBytes = cut
	j.log.Warn("cut torn last line", "path", j.path, "bytes", cut)
	return nil
}

// Read calls fn with each record of the journal file at path, like Open's
// replay, without taking the lock or changing the file: for a reader beside
// the process that has the journal open. A last line without its newline is
// skipped; a refused line is a *CorruptError, unless it is the last and
// opts.CutBadLastLine is set. A missing file has no records.
func Read(path string, opts Options, fn func(rec []byte) error) error {
	return read(context.Background(), path, opts, false, fn)
}

// ReadShared is Read under a shared lock on path+".lock", which it waits
// for: it sees no Append of an OpenShared journal half done. It checks ctx
// between records. It must not be called where this process has the
// journal open with Open, whose exclusive lock it would wait for forever.
func ReadShared(ctx context.Context, path string, opts Options, fn func(rec []byte) error) error {
	return read(ctx, path, opts, true, fn)
}

func read(ctx context.Context, path string, opts Options, lock bool, fn func(rec []byte) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if lock {
		unlock, err := flock.Lock(path+".lock", false, true)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		defer unlock()
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	_, _, err = readRecords(ctx, f, path, opts, 0, 0, fn)
	return err
}

// readRecords calls fn with each record of r, which holds path from byte
// off on, where line+1 is the next line's number. It returns the end of
// the last line it passed, and that line's number: where to go on from.
// A refused line is a *CorruptError (skipped instead if it is the last and
// opts.CutBadLastLine is set: the end stays before it); a last line
// without its newline is not passed.
func readRecords(ctx context.Context, r io.Reader, path string, opts Options, off int64, line int,
	fn func(rec []byte) error,
) (end int64, endLine int, err error) {
	end, endLine = off, line
	var ce *CorruptError
	err = scan(r, func(rec []byte, n int, last bool, start, stop int64) error {
		if n%4096 == 1 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if rec != nil {
			if err := fn(rec); err != nil {
				if last && opts.CutBadLastLine {
					return nil
				}
				ce = &CorruptError{Path: path, Line: line + n, Offset: off + start, Err: err}
				return ce
			}
		}
		end, endLine = off+stop, line+n
		return nil
	})
	switch {
	case err == nil:
		return end, endLine, nil
	case ce != nil:
		return end, endLine, ce
	default:
		return end, endLine, fmt.Errorf("read %s: %w", path, err)
	}
}

// Records calls fn with each record of the open journal in file order,
// beside Appends: it reads the file as it was when Records began (a
// Compact meanwhile does not change what it reads), up to the end of the
// last Append that had returned, and checks ctx between records. A refused
// record is a *CorruptError, as for Read. The whole file is re-read on
// each call, so it sees what was changed under the journal; a file cut
// shorter than the journal wrote it is an error. It is not for a journal
// from OpenShared: see Follow and ReadShared.
func (j *Journal) Records(ctx context.Context, fn func(rec []byte) error) error {
	if j.shared {
		return fmt.Errorf("read %s: a journal opened with OpenShared has no Records; use Follow or ReadShared", j.path)
	}
	j.mu.Lock()
	if j.closed {
		defer j.mu.Unlock()
		return fmt.Errorf("read %w", j.closedErr())
	}
	// Under mu the path names j.f's file: Compact replaces it holding mu.
	f, err := os.Open(j.path)
	size := j.size
	j.mu.Unlock()
	if err != nil {
		return fmt.Errorf("read %s: %w", j.path, err)
	}
	defer f.Close()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("read %s: %w", j.path, err)
	}
	end, line, err := readRecords(ctx, io.LimitReader(f, size), j.path, j.opts, 0, 0, fn)
	if err == nil && end < size {
		err = fmt.Errorf("%s line %d: cut short (the file shrank while open)", j.path, line+1)
	}
	return err
}

// Follow calls fn with each record appended to the file since the last
// Follow of this journal (from the start of the file at the first), under
// the file's shared lock, so that it sees no Append half done. It is for a
// journal from OpenShared whose process keeps state built from every
// writer's records: it follows the file in its order, its own Appends
// included. A refused record is a *CorruptError, and the next Follow
// starts at it again. Follows of one journal run one at a time.
func (j *Journal) Follow(ctx context.Context, fn func(rec []byte) error) error {
	if !j.shared {
		return fmt.Errorf("follow %s: only a journal opened with OpenShared can be followed; use Records", j.path)
	}
	j.mu.Lock()
	closed := j.closed
	j.mu.Unlock()
	if closed {
		return fmt.Errorf("follow %s: %w", j.path, ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("follow %s: %w", j.path, err)
	}
	j.followMu.Lock()
	defer j.followMu.Unlock()
	unlock, err := flock.Lock(j.path+".lock", false, true)
	if err != nil {
		return fmt.Errorf("follow %s: %w", j.path, err)
	}
	defer unlock()
	f, err := os.Open(j.path)
	if err != nil {
		return fmt.Errorf("follow %s: %w", j.path, err)
	}
	defer f.Close()
	if _, err := f.Seek(j.followOff, io.SeekStart); err != nil {
		return fmt.Errorf("follow %s: %w", j.path, err)
	}
	j.followOff, j.followLine, err = readRecords(ctx, f, j.path, j.opts, j.followOff, j.followLine, fn)
	return err
}

// Path returns the journal's path.
func (j *Journal) Path() string { return j.path }

// Lines returns the non-blank lines in the file: the records replayed,
// appended and compacted into it. Stores compare it with their live state
// to decide when to compact.
func (j *Journal) Lines() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.lines
}

// Stats returns the journal's counters.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stats
}

// Closed reports whether the journal is closed, by Close or by a failure
// that left the file's end unknown; Append and Compact then fail with
// ErrClosed.
func (j *Journal) Closed() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.closed
}

func (o Options) perm() fs.FileMode {
	if o.Perm == 0 {
		return 0o600
	}
	return o.Perm
}

func (j *Journal) sync(f *os.File) error {
	if j.opts.Sync != nil {
		return j.opts.Sync(f)
	}
	return f.Sync()
}

// checkRecord refuses what cannot be one line.
func checkRecord(rec []byte) error {
	switch {
	case len(bytes.TrimSpace(rec)) == 0:
		return errors.New("empty record")
	case bytes.IndexByte(rec, '\n') >= 0:
		return errors.New("record contains a newline")
	}
	return nil
}

// closedErr says why the journal cannot be written. The caller holds mu.
func (j *Journal) closedErr() error {
	if j.stopErr != nil {
		return fmt.Errorf("%s: %w after an earlier failure (%v); %s", j.path, ErrClosed, j.stopErr, j.opts.StoppedFix)
	}
	return fmt.Errorf("%s: %w", j.path, ErrClosed)
}

// Append writes recs, in order and next to each other, and returns once
// they are durable (written and fsynced), or with an error. Appends that
// arrive while another is being written wait and are then written together
// with one write and one fsync (group commit); each returns only when its
// own records are durable. Records of one Append land in the file in
// order, and Appends in the order they took the journal's mutex.
//
// A failed write is cut off the file again, so its error means "not
// stored". A failed fsync (or a failed cut) stops the journal: the records
// may be on disk or not, and only a reopen can tell. Each record must be
// non-blank and hold no '\n'.
func (j *Journal) Append(recs ...[]byte) error {
	if len(recs) == 0 {
		return nil
	}
	n := len(recs)
	for _, r := range recs {
		n += len(r)
		if err := checkRecord(r); err != nil {
			return fmt.Errorf("append to %s: %w", j.path, err)
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return fmt.Errorf("append to %w", j.closedErr())
	}
	b := j.next
	if b == nil {
		b = &batch{}
		j.next = b
	}
	b.buf = slices.Grow(b.buf, n)
	for _, r := range recs {
		b.buf = append(append(b.buf, r...), '\n')
	}
	b.calls++
	b.recs += len(recs)
	for !b.done {
		switch {
		case j.closed:
			// Close or a failure came first: b was never written.
			b.done, b.err = true, fmt.Errorf("append to %w", j.closedErr())
		case !j.flushing && j.next == b:
			j.flush(b)
		default:
			j.cond.Wait()
		}
	}
	return b.err
}

// flush writes b as the leader: the caller holds mu and b is j.next. It
// releases mu while it writes, so the next batch can gather.
func (j *Journal) flush(b *batch) {
	j.next, j.flushing = nil, true
	f, size := j.f, j.size
	j.mu.Unlock()
	var err error
	stop := false
	if j.shared {
		err = j.writeShared(b)
	} else {
		stop, err = j.write(f, size, b)
	}
	j.mu.Lock()
	j.flushing = false
	b.done, b.err = true, err
	switch {
	case stop:
		j.stop(err)
	case err == nil:
		j.size += int64(len(b.buf))
		j.lines += b.recs
		j.stats.Appends += int64(b.calls)
		j.stats.Records += int64(b.recs)
		j.stats.Syncs++
	}
	j.cond.Broadcast()
}

// write appends b to f, whose complete lines end at size, and syncs. A
// failed write is cut off; stop says the file's end is no longer known.
func (j *Journal) write(f *os.File, size int64, b *batch) (stop bool, err error) {
	if _, err := f.Write(b.buf); err != nil {
		if terr := f.Truncate(size); terr != nil {
			return true, fmt.Errorf("append %d records to %s: %w (and cutting the partial write off failed: %v); the %s stopped: %s",
				b.recs, j.path, err, terr, j.opts.Name, j.opts.StoppedFix)
		}
		return false, fmt.Errorf("append %d records to %s: %w", b.recs, j.path, err)
	}
	if err := j.sync(f); err != nil {
		return true, fmt.Errorf("sync %s: %w; the %s stopped: %s", j.path, err, j.opts.Name, j.opts.StoppedFix)
	}
	return false, nil
}

// writeShared appends b under the file's exclusive lock, after cutting off
// a torn tail another writer's crash left.
func (j *Journal) writeShared(b *batch) error {
	unlock, err := flock.Lock(j.path+".lock", true, true)
	if err != nil {
		return fmt.Errorf("append to %s: %w", j.path, err)
	}
	defer unlock()
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("append to %s: %w", j.path, err)
	}
	defer f.Close()
	size, err := cutAfterLastNewline(f)
	if err != nil {
		return fmt.Errorf("append to %s: %w", j.path, err)
	}
	if _, err := f.Write(b.buf); err != nil {
		_ = f.Truncate(size) // leave no part of a batch reported as failed
		return fmt.Errorf("append %d records to %s: %w", b.recs, j.path, err)
	}
	if err := j.sync(f); err != nil {
		return fmt.Errorf("sync %s: %w", j.path, err)
	}
	return nil
}

// cutAfterLastNewline truncates f after its last newline, dropping the
// remains of a write cut short by a crash, and returns the new size. It
// reads the file backwards from its end, so it costs one block when the
// tail is whole. The caller holds the exclusive lock.
func cutAfterLastNewline(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
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

// stop closes the journal after a failure; the caller holds mu.
func (j *Journal) stop(why error) {
	if j.closed {
		return
	}
	j.closed, j.stopErr = true, why
	j.release()
	j.cond.Broadcast()
}

// release closes the file and drops the lock, if the journal holds them;
// the caller holds mu.
func (j *Journal) release() error {
	if j.shared {
		return nil
	}
	err := j.f.Close()
	j.unlock()
	return err
}

// Compact replaces the file with recs, atomically (a crash leaves the old
// file or the new one: see atomicfile.WriteFile), under the lock the
// journal holds, and goes on appending after them. Appends made while it
// runs land after recs. A failure to write the new file leaves the old one
// and the journal as they were; a failure to reopen the new one stops the
// journal. Each record must be non-blank and hold no '\n'.
func (j *Journal) Compact(recs [][]byte) error {
	n := 0
	for _, r := range recs {
		n += len(r) + 1
		if err := checkRecord(r); err != nil {
			return fmt.Errorf("compact %s: %w", j.path, err)
		}
	}
	buf := make([]byte, 0, n)
	for _, r := range recs {
		buf = append(append(buf, r...), '\n')
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.flushing && !j.closed {
		j.cond.Wait()
	}
	if j.closed {
		return fmt.Errorf("compact %w", j.closedErr())
	}
	if j.shared {
		return fmt.Errorf("compact %s: a journal opened with OpenShared cannot be compacted", j.path)
	}
	if err := atomicfile.WriteFile(j.path, buf, j.opts.perm()); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	// The file was replaced: from here on, failing to reopen it stops the
	// journal, as its end is no longer ours.
	f, err := os.OpenFile(j.path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		err = fmt.Errorf("reopen %s after compaction: %w; the %s stopped: %s", j.path, err, j.opts.Name, j.opts.StoppedFix)
		j.stop(err)
		return err
	}
	j.f.Close()
	before := j.lines
	j.f, j.size, j.lines = f, int64(len(buf)), len(recs)
	j.stats.Compactions++
	j.log.Debug("journal compacted", "path", j.path, "lines_before", before, "lines_after", j.lines)
	return nil
}

// Close waits for the write in progress, then releases the file and its
// lock. Appends still waiting fail with ErrClosed. Close after Close, or
// after a failure stopped the journal, returns nil.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.flushing && !j.closed {
		j.cond.Wait()
	}
	if j.closed {
		return nil
	}
	j.closed = true
	err := j.release()
	j.cond.Broadcast()
	if err != nil {
		return fmt.Errorf("close %s: %w", j.path, err)
	}
	return nil
}
