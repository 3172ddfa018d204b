package outbox

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/journal"
)

// FileOptions tune a FileStore. The zero value gives the defaults.
type FileOptions struct {
	// DoneRetention is how long done and failed entries are kept after
	// their last update; compaction drops older ones, and Enqueue of their
	// key then creates a new entry. Default 14 days: keep it longer than
	// the anomalies topic's retention. Parked and open entries are never
	// dropped.
	DoneRetention time.Duration
	// SeenRetention is how long a handled anomaly id is kept; default 14
	// days, with the same advice.
	SeenRetention time.Duration
	// CompactMinLines is the smallest file, in lines, that is compacted;
	// default 1024. A file is compacted when it has at least that many
	// lines and at least twice as many as it would after compaction.
	CompactMinLines int
	// Log receives compaction reports; nil discards them.
	Log *slog.Logger
}

// withDefaults fills in the zero options one by one, each with its own
// default; silence.Options.withDefaults looks the same but sets other fields.
func (o FileOptions) withDefaults() FileOptions {
	if o.DoneRetention <= 0 {
		o.DoneRetention = 14 * 24 * time.Hour
	}
	if o.SeenRetention <= 0 {
		o.SeenRetention = 14 * 24 * time.Hour
	}
	if o.CompactMinLines <= 0 {
		o.CompactMinLines = 1024
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// FileStore is a Store and a Seen in one JSON-lines file (a journal.Journal),
// for embedded mode and tests. Every change appends a line holding the
// entry's whole state (the last line of a key wins) and fsyncs it before
// returning. A last line torn by a crash is cut off when the file is opened.
// The file is compacted, by an atomic rename, when superseded lines
// dominate; compaction also drops old done entries and handled ids
// (FileOptions).
//
// Writes to different keys overlap: the store's lock is not held across
// the fsync, so concurrent Enqueues, Updates and MarkHandleds share one
// write and one fsync (the journal's group commit). Writes to one key (or
// one handled id) still happen one after the other, in the order they
// took the lock, and readers (Get, List, Handled) see a change only once
// it is durable.
//
// One process at a time may open a file: OpenFile holds an exclusive flock
// on path+".lock" until Close, and fails with ErrInUse if another process
// holds it. The file is created with mode 0600. A FileStore is safe for
// concurrent use; the caller owns it and must Close it.
type FileStore struct {
	path    string
	opts    FileOptions
	changes chan struct{}

	mu      sync.Mutex
	cond    *sync.Cond // on mu: a write finished or a compaction ended
	j       *journal.Journal
	seq     int64
	entries map[string]Entry
	byState map[State]map[string]struct{}
	// open keeps the open entries in Seq order for the Worker (scanOpen).
	open openIndex
	seen map[string]time.Time
	// compactAt is the line count at which compaction is next tried after
	// one failed.
	compactAt int
	// writing holds the keys ("e/"+entry key, "s/"+handled id) whose
	// line is being made durable outside mu; writes counts them.
	writing map[string]bool
	writes  int
	// compactWanted holds new writes back until those under way are
	// durable and in memory, so that compaction, which rewrites the file
	// from memory, loses none of them.
	compactWanted bool
}

var (
	_ Store    = (*FileStore)(nil)
	_ Seen     = (*FileStore)(nil)
	_ Notifier = (*FileStore)(nil)
)

// OpenFile opens the outbox file at path, creating it if missing, and reads
// it. A last line without its newline (a write cut short by a crash) is cut
// off. A complete line that does not parse is an error naming the line.
func OpenFile(path string, opts FileOptions) (*FileStore, error) {
	s := &FileStore{
		path:    path,
		opts:    opts.withDefaults(),
		changes: make(chan struct{}, 1),
		entries: make(map[string]Entry),
		byState: make(map[State]map[string]struct{}),
		seen:    make(map[string]time.Time),
		writing: make(map[string]bool),
	}
	s.cond = sync.NewCond(&s.mu)
	j, err := journal.Open(path, journal.Options{
		Name: "outbox", Log: s.opts.Log, InUse: ErrInUse, StoppedFix: "restart the responder",
		DamagedFix: "fix or delete that line (an entry's last line wins), " +
			"or move the file aside to start empty, which forgets its pending actions",
	}, func(rec []byte) error {
		l, err := parseLine(rec)
		if err != nil {
			return err
		}
		s.apply(l)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.j = j
	if s.shouldCompact() {
		if err := s.compactLocked(); err != nil {
			if s.j.Closed() {
				return nil, err
			}
			s.opts.Log.Warn("outbox compaction failed", "path", path, "err", err)
		}
	}
	return s, nil
}

// apply puts a parsed line into memory.
func (s *FileStore) apply(l line) {
	if l.Entry != nil {
		s.set(*l.Entry)
		s.seq = max(s.seq, l.Entry.Seq)
		return
	}
	s.seen[l.Seen.ID] = l.Seen.At
}

// set stores e in the maps and the state index.
func (s *FileStore) set(e Entry) {
	if old, ok := s.entries[e.Key]; ok {
		s.open.set(&old, &e)
		delete(s.byState[old.State], e.Key)
	} else {
		s.open.set(nil, &e)
	}
	s.entries[e.Key] = e
	idx := s.byState[e.State]
	if idx == nil {
		idx = make(map[string]struct{})
		s.byState[e.State] = idx
	}
	idx[e.Key] = struct{}{}
}

// drop removes the entry of key from memory.
func (s *FileStore) drop(key string) {
	if old, ok := s.entries[key]; ok {
		s.open.drop(&old)
		delete(s.byState[old.State], key)
		delete(s.entries, key)
	}
}

// check returns why the store cannot be used now. It and appendLocked have
// the shape of silence.Store's, each over its own journal and line type.
func (s *FileStore) check(ctx context.Context) error {
	if s.j.Closed() {
		return ErrClosed
	}
	return ctx.Err()
}

// waitKey waits, under mu, until no write of key is under way and no
// compaction is waiting, then checks the store can be used.
func (s *FileStore) waitKey(ctx context.Context, key string) error {
	for {
		if err := s.check(ctx); err != nil {
			return err
		}
		if !s.writing[key] && !s.compactWanted {
			return nil
		}
		s.cond.Wait()
	}
}

// appendLocked writes l and fsyncs it; the caller holds mu, which is let go
// while the line is made durable, so that writes of other keys join the same
// fsync (the caller has waited for key with waitKey). A failed write is cut
// off again, so the error means "not stored"; a failed fsync closes the
// store, because the line may be on disk or not and only a reopen can tell.
func (s *FileStore) appendLocked(key string, l line) error {
	b, err := appendLine(nil, l)
	if err != nil {
		return err
	}
	s.writing[key] = true
	s.writes++
	s.mu.Unlock()
	err = s.j.Append(b[:len(b)-1])
	s.mu.Lock()
	delete(s.writing, key)
	s.writes--
	s.cond.Broadcast()
	if err != nil {
		// A successful caller applies its line, then compacts if wanted;
		// a failed one must not leave a wanted compaction holding every
		// write back.
		s.maybeCompact()
	}
	return err
}

func entryKey(key string) string { return "e/" + key }
func seenKey(id string) string   { return "s/" + id }

// notify tells the Worker about new work without blocking.
func (s *FileStore) notify() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Changes implements Notifier.
func (s *FileStore) Changes() <-chan struct{} { return s.changes }

// Enqueue implements Store.
func (s *FileStore) Enqueue(ctx context.Context, key, kind string, payload []byte, opts ...EnqueueOption) (Entry, bool, error) {
	if err := checkNew(key, kind, payload); err != nil {
		return Entry{}, false, fmt.Errorf("enqueue %q: %w", clip(key, 80), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.waitKey(ctx, entryKey(key)); err != nil {
		return Entry{}, false, err
	}
	if e, ok := s.entries[key]; ok {
		return e, false, nil
	}
	now := time.Now().UTC()
	e := Entry{
		Key: key, Kind: kind, Seq: s.seq + 1, Payload: bytes.Clone(payload), State: StatePending,
		NextAttempt: now, Created: now, Updated: now,
	}
	for _, o := range opts {
		o(&e)
	}
	// Options may only set their own fields.
	e.Key, e.Kind, e.Seq, e.State, e.Created, e.Updated = key, kind, s.seq+1, StatePending, now, now
	e.Attempts, e.Failures, e.RetryAfterWaits, e.LastError, e.Result, e.Recovered = 0, 0, 0, "", nil, false
	if e.NextAttempt.IsZero() {
		e.NextAttempt = now
	}
	e.NextAttempt = e.NextAttempt.UTC()
	if err := e.validate(); err != nil {
		return Entry{}, false, fmt.Errorf("enqueue %q: %w", clip(key, 80), err)
	}
	// The seq is taken now, as other keys' writes may be under way when
	// this one is; a failed write leaves a gap, which orders nothing wrong.
	s.seq = e.Seq
	if err := s.appendLocked(entryKey(key), line{Entry: &e}); err != nil {
		return Entry{}, false, fmt.Errorf("enqueue %q: %w", clip(key, 80), err)
	}
	s.set(e)
	s.notify()
	s.maybeCompact()
	return e, true, nil
}

// Get implements Store.
func (s *FileStore) Get(ctx context.Context, key string) (Entry, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return Entry{}, false, err
	}
	e, ok := s.entries[key]
	return e, ok, nil
}

// List implements Store.
func (s *FileStore) List(ctx context.Context, states ...State) ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	// The Worker lists the open entries at every wake-up, so under a
	// backlog this runs often on thousands of entries: sorting small
	// (seq, key) pairs, not whole entries, keeps it cheap.
	type seqKey struct {
		seq int64
		key string
	}
	var order []seqKey
	if len(states) == 0 {
		order = make([]seqKey, 0, len(s.entries))
		for k, e := range s.entries {
			order = append(order, seqKey{e.Seq, k})
		}
	} else {
		for _, st := range slices.Compact(slices.Sorted(slices.Values(states))) {
			for k := range s.byState[st] {
				order = append(order, seqKey{s.entries[k].Seq, k})
			}
		}
	}
	slices.SortFunc(order, func(a, b seqKey) int { return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.key, b.key)) })
	out := make([]Entry, len(order))
	for i, o := range order {
		out[i] = s.entries[o.key]
	}
	return out, nil
}

// scanOpen implements openScanner: v sees the open entries, as List
// would list them.
func (s *FileStore) scanOpen(ctx context.Context, v openVisitor) ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s.open.scan(v, nil, func(key string) Entry { return s.entries[key] }), nil
}

// Update implements Store.
func (s *FileStore) Update(ctx context.Context, e Entry) (Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.waitKey(ctx, entryKey(e.Key)); err != nil {
		return Entry{}, err
	}
	cur, ok := s.entries[e.Key]
	if !ok {
		return Entry{}, fmt.Errorf("update %q: %w", clip(e.Key, 80), ErrNotFound)
	}
	cur.State, cur.Attempts, cur.Failures, cur.RetryAfterWaits = e.State, e.Attempts, e.Failures, e.RetryAfterWaits
	cur.NextAttempt, cur.LastError, cur.Result = e.NextAttempt.UTC(), e.LastError, bytes.Clone(e.Result)
	cur.Updated = time.Now().UTC()
	if err := cur.validate(); err != nil {
		return Entry{}, fmt.Errorf("update %q: %w", clip(e.Key, 80), err)
	}
	if err := s.appendLocked(entryKey(cur.Key), line{Entry: &cur}); err != nil {
		return Entry{}, fmt.Errorf("update %q: %w", clip(e.Key, 80), err)
	}
	s.set(cur)
	if cur.State == StatePending {
		s.notify()
	}
	s.maybeCompact()
	return cur, nil
}

// Hasten brings the pending entry of key forward to at, if it is due
// later, and reports whether it did. It is a hint, not a change: nothing
// is written, so after a restart the entry is due at its stored
// NextAttempt again (unless a compaction, which writes what memory holds,
// kept it).
func (s *FileStore) Hasten(key string, at time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.entries[key]
	if !ok || cur.State != StatePending || !cur.NextAttempt.After(at) || s.j.Closed() {
		return false
	}
	// A write of the key under way stores its own copy once durable.
	cur.NextAttempt = at.UTC()
	s.set(cur)
	s.notify()
	return true
}

// MarkHandled implements Seen.
func (s *FileStore) MarkHandled(ctx context.Context, id string) (bool, error) {
	if id == "" || len(id) > MaxKeyLen {
		return false, fmt.Errorf("mark handled: id: want 1 to %d bytes, got %d", MaxKeyLen, len(id))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.waitKey(ctx, seenKey(id)); err != nil {
		return false, err
	}
	if _, ok := s.seen[id]; ok {
		return false, nil
	}
	sl := seenLine{ID: id, At: time.Now().UTC()}
	if err := s.appendLocked(seenKey(id), line{Seen: &sl}); err != nil {
		return false, fmt.Errorf("mark %q handled: %w", clip(id, 80), err)
	}
	s.seen[id] = sl.At
	s.maybeCompact()
	return true, nil
}

// Handled implements Seen.
func (s *FileStore) Handled(ctx context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return false, err
	}
	_, ok := s.seen[id]
	return ok, nil
}

// Compact rewrites the file with only the last line of each entry, without
// the done and failed entries and handled ids past their retention. The
// Worker does not need to call it: a change that leaves the file mostly
// superseded lines compacts it.
func (s *FileStore) Compact(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	s.compactWanted = true
	defer func() { s.compactWanted = false; s.cond.Broadcast() }()
	for s.writes > 0 {
		s.cond.Wait()
	}
	return s.compactLocked()
}

// Close releases the file and its lock. Calls after Close fail with
// ErrClosed.
func (s *FileStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.j.Close()
}

func (s *FileStore) shouldCompact() bool {
	live, lines := len(s.entries)+len(s.seen), s.j.Lines()
	return lines >= s.opts.CompactMinLines && lines >= 2*live && lines >= s.compactAt
}

// maybeCompact compacts after a change when it pays. A failure leaves the
// file as it was (the change stands) and is tried again after
// CompactMinLines more lines. While other writes are under way it only
// holds new ones back; the last of those under way compacts.
func (s *FileStore) maybeCompact() {
	if !s.compactWanted && !s.shouldCompact() {
		return
	}
	if s.writes > 0 {
		s.compactWanted = true
		return
	}
	if s.compactWanted {
		s.compactWanted = false
		s.cond.Broadcast()
		if !s.shouldCompact() {
			return
		}
	}
	if err := s.compactLocked(); err != nil {
		s.compactAt = s.j.Lines() + s.opts.CompactMinLines
		s.opts.Log.Warn("outbox compaction failed", "path", s.path, "lines", s.j.Lines(), "err", err)
	}
}

// compactLocked replaces the file with the live lines (journal.Compact), so
// a crash leaves the old file or the new one.
func (s *FileStore) compactLocked() error {
	now := time.Now()
	doneCut, seenCut := now.Add(-s.opts.DoneRetention), now.Add(-s.opts.SeenRetention)
	keep := make([]Entry, 0, len(s.entries))
	var dropEntries []string
	for k, e := range s.entries {
		if (e.State == StateDone || e.State == StateFailed) && e.Updated.Before(doneCut) {
			dropEntries = append(dropEntries, k)
			continue
		}
		keep = append(keep, e)
	}
	slices.SortFunc(keep, func(a, b Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	type idAt struct {
		id string
		at time.Time
	}
	seen := make([]idAt, 0, len(s.seen))
	var dropSeen []string
	for id, at := range s.seen {
		if at.Before(seenCut) {
			dropSeen = append(dropSeen, id)
			continue
		}
		seen = append(seen, idAt{id, at})
	}
	slices.SortFunc(seen, func(a, b idAt) int {
		return cmp.Or(a.at.Compare(b.at), cmp.Compare(a.id, b.id))
	})

	recs := make([][]byte, 0, len(keep)+len(seen))
	add := func(l line) error {
		b, err := appendLine(nil, l)
		recs = append(recs, b[:len(b)-1])
		return err
	}
	for i := range keep {
		if err := add(line{Entry: &keep[i]}); err != nil {
			return fmt.Errorf("compact outbox %s: %w", s.path, err)
		}
	}
	for _, sa := range seen {
		if err := add(line{Seen: &seenLine{ID: sa.id, At: sa.at}}); err != nil {
			return fmt.Errorf("compact outbox %s: %w", s.path, err)
		}
	}
	before := s.j.Lines()
	if err := s.j.Compact(recs); err != nil {
		return fmt.Errorf("compact outbox: %w", err)
	}
	s.compactAt = 0
	for _, k := range dropEntries {
		s.drop(k)
	}
	for _, id := range dropSeen {
		delete(s.seen, id)
	}
	s.opts.Log.Info("outbox compacted", "path", s.path, "lines_before", before, "lines_after", s.j.Lines(),
		"dropped_entries", len(dropEntries), "dropped_handled_ids", len(dropSeen))
	return nil
}
