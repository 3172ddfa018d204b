package silence

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/agentwatch/agentwatch/internal/platform/journal"
	"github.com/agentwatch/agentwatch/internal/platform/pipeline"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// Options tune a Store. The zero value gives the defaults.
type Options struct {
	// Retention is how long a silence is kept after it ended (Ended):
	// List(true) shows it, and AddWithKey of its key returns it, until
	// then. Default 120h, Alertmanager's default.
	Retention time.Duration
	// MaxDuration is the longest a silence added now may last, from
	// StartsAt to EndsAt. Default 30 days: in a security product a
	// forgotten silence is a blind spot, so long ones must be renewed on
	// purpose.
	MaxDuration time.Duration
	// CompactMinLines is the smallest file, in lines, that is compacted
	// for superseded lines alone; default 1024. Silences past their
	// retention are dropped whatever the size.
	CompactMinLines int
	// MaintenanceInterval is how often Run drops silences past their
	// retention and refreshes the active gauge; default 15 minutes.
	MaintenanceInterval time.Duration
	// Now is the Store's clock (CreatedAt, Add's checks, List, retention);
	// nil means time.Now. Match takes its time as an argument.
	Now func() time.Time
	// Log receives lifecycle reports (open, add, expire, compaction); nil
	// discards them.
	Log *slog.Logger
	// Metrics, if set, receives the active gauge and suppressed counter.
	Metrics *Metrics
}

// withDefaults fills in the zero options one by one, each with its own
// default; outbox.FileOptions.withDefaults looks the same but sets other
// fields.
func (o Options) withDefaults() Options {
	if o.Retention <= 0 {
		o.Retention = 120 * time.Hour
	}
	if o.MaxDuration <= 0 {
		o.MaxDuration = 30 * 24 * time.Hour
	}
	if o.CompactMinLines <= 0 {
		o.CompactMinLines = 1024
	}
	if o.MaintenanceInterval <= 0 {
		o.MaintenanceInterval = 15 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Store holds the silences in memory and in a JSON-lines file (a
// journal.Journal). Every change
// appends a line holding the silence's whole state (the last line of an id
// wins) and fsyncs it before returning. A last line torn by a crash is cut
// off when the file is opened. The file is rewritten, by an atomic rename,
// to drop silences past their retention and superseded lines.
//
// One process at a time may open a file: Open holds an exclusive flock on
// path+".lock" until Close, and fails with ErrInUse if another process holds
// it. The file is created with mode 0600. A Store is safe for concurrent
// use; Match and List take a read lock only. The caller owns the Store and
// must Close it.
type Store struct {
	path string
	opts Options

	// t, when set, is the global table the silences live in (OpenTable);
	// j is nil then.
	t      Table
	closed bool

	mu       sync.RWMutex
	j        *journal.Journal
	silences map[string]*entry
	// compactAt is the line count at which compaction is next tried after
	// one failed.
	compactAt int
}

// entry is a stored silence and its compiled matchers.
type entry struct {
	sil Silence
	ms  []compiled
}

var _ pipeline.Stage = (*Store)(nil)

// Open opens the silence file at path, creating it (mode 0600) if missing;
// its directory must exist. A last line without its newline (a write cut
// short by a crash) is cut off. A complete line that does not parse is an
// error naming the line. Silences past their retention are dropped.
func Open(path string, opts Options) (*Store, error) {
	s := &Store{path: path, opts: opts.withDefaults(), silences: make(map[string]*entry)}
	j, err := journal.Open(path, journal.Options{
		Name: "silences", Log: s.opts.Log, InUse: ErrInUse, StoppedFix: "restart the responder",
		DamagedFix: "fix or delete that line (a silence's last line wins), " +
			"or move the file aside to start empty, which forgets every silence",
	}, func(rec []byte) error {
		sil, ms, err := parseLine(rec)
		if err != nil {
			return err
		}
		s.silences[sil.ID] = &entry{sil: sil, ms: ms}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.j = j
	now := s.opts.Now()
	if s.gcDue(now) || s.shouldCompact() {
		if err := s.compactLocked(now); err != nil {
			if s.j.Closed() {
				return nil, err
			}
			s.opts.Log.Warn("silence compaction failed", "path", path, "err", err)
		}
	}
	n := s.countActive(now)
	s.opts.Metrics.active(n)
	s.opts.Log.Info("silences loaded", "path", path, "silences", len(s.silences), "active", n)
	return s, nil
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Add validates sil and stores it under a new random id, and returns it as
// stored. Before validation the Store sets CreatedAt to now, a zero or past
// StartsAt to now, and an empty Reason to ReasonManual. sil must have no ID
// and not be expired; EndsAt must be after now and at most
// Options.MaxDuration after StartsAt. A refused silence is an ErrInvalid
// error saying every problem.
func (s *Store) Add(ctx context.Context, sil Silence) (Silence, error) {
	id, err := randomID()
	if err != nil {
		return Silence{}, fmt.Errorf("add silence: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return Silence{}, err
	}
	return s.addLocked(ctx, sil, id)
}

// AddWithKey is Add with an idempotency key: the silence's id is derived
// from key, and while a silence of that key is kept (until Retention after
// it ended) AddWithKey returns it, unchanged and unvalidated against sil,
// with false. Otherwise it adds sil and returns true. A button handler
// passes the click's dedup key or its outbox entry's key, so a retried
// snooze makes one silence. key is 1 to MaxKeyLen bytes.
func (s *Store) AddWithKey(ctx context.Context, key string, sil Silence) (Silence, bool, error) {
	if key == "" || len(key) > MaxKeyLen {
		return Silence{}, false, fmt.Errorf("%w silence key: want 1 to %d bytes, got %d", ErrInvalid, MaxKeyLen, len(key))
	}
	id := keyID(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return Silence{}, false, err
	}
	if e, ok := s.silences[id]; ok {
		return clone(e.sil), false, nil
	}
	out, err := s.addLocked(ctx, sil, id)
	return out, err == nil, err
}

// addLocked applies Add's policy to sil, stores it under id and returns it.
func (s *Store) addLocked(ctx context.Context, sil Silence, id string) (Silence, error) {
	now := s.opts.Now().UTC()
	var errs []error
	if sil.ID != "" {
		errs = append(errs, errors.New("id: set by the store; to change a silence, expire it and add a new one"))
	}
	if !sil.ExpiredAt.IsZero() || sil.ExpiredBy != "" {
		errs = append(errs, errors.New("expired_at, expired_by: a new silence is not expired"))
	}
	sil = normalize(sil)
	sil.ID, sil.CreatedAt, sil.ExpiredAt, sil.ExpiredBy = id, now, time.Time{}, ""
	sil.Matchers = slices.Clone(sil.Matchers)
	if sil.StartsAt.IsZero() || sil.StartsAt.Before(now) {
		sil.StartsAt = now
	}
	switch {
	case sil.EndsAt.IsZero():
		errs = append(errs, errors.New("ends_at: required"))
	case !sil.EndsAt.After(now):
		errs = append(errs, fmt.Errorf("ends_at %s: in the past", sil.EndsAt.Format(time.RFC3339)))
	case sil.EndsAt.Sub(sil.StartsAt) > s.opts.MaxDuration:
		errs = append(errs, fmt.Errorf("ends_at %s: lasts %s, longer than the maximum %s; shorten it, and renew it when it ends",
			sil.EndsAt.Format(time.RFC3339), sil.EndsAt.Sub(sil.StartsAt).Round(time.Second), s.opts.MaxDuration))
	}
	ms, err := sil.check()
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Silence{}, fmt.Errorf("%w silence: %w", ErrInvalid, err)
	}
	if err := s.storeLocked(ctx, sil, ms); err != nil {
		return Silence{}, fmt.Errorf("add silence %s: %w", id, err)
	}
	s.opts.Log.Info("silence added", "silence_id", id, "created_by", sil.CreatedBy, "reason", sil.Reason,
		"matchers", FormatMatchers(sil.Matchers), "starts_at", sil.StartsAt, "ends_at", sil.EndsAt)
	s.opts.Metrics.active(s.countActive(now))
	s.maybeCompact(now)
	return clone(sil), nil
}

// Expire ends the silence id early: it stops matching as soon as Expire
// returns, and at and by are recorded as ExpiredAt and ExpiredBy (a zero at
// means now). Expiring a silence that has already ended returns it
// unchanged, so a retried expiry is harmless. A missing id is ErrNotFound.
func (s *Store) Expire(ctx context.Context, id, by string, at time.Time) (Silence, error) {
	if by == "" || len(by) > MaxAuthorLen || !utf8.ValidString(by) {
		return Silence{}, fmt.Errorf("%w expiry of silence %.40q: by: want 1 to %d bytes of UTF-8", ErrInvalid, id, MaxAuthorLen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return Silence{}, err
	}
	e, ok := s.silences[id]
	if !ok {
		return Silence{}, fmt.Errorf("expire silence %.40q: %w", id, ErrNotFound)
	}
	now := s.opts.Now().UTC()
	if at.IsZero() {
		at = now
	}
	if e.sil.State(at) == StateExpired {
		return clone(e.sil), nil
	}
	sil := e.sil
	sil.ExpiredAt, sil.ExpiredBy = at.UTC(), by
	if err := s.storeLocked(ctx, sil, e.ms); err != nil {
		return Silence{}, fmt.Errorf("expire silence %s: %w", id, err)
	}
	s.opts.Log.Info("silence expired", "silence_id", id, "expired_by", by, "expired_at", sil.ExpiredAt)
	s.opts.Metrics.active(s.countActive(now))
	s.maybeCompact(now)
	return clone(sil), nil
}

// Get returns the silence id, if it is kept. Lock, look up, copy out: the
// shape of every such read (respond's incidents too), not shared code.
func (s *Store) Get(id string) (Silence, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.silences[id]
	if !ok {
		return Silence{}, false
	}
	return clone(e.sil), true
}

// List returns the pending and active silences, and with includeExpired
// also the expired ones still kept, oldest first (by CreatedAt, then ID).
// The Store's clock decides what has expired. After Close it returns nil.
func (s *Store) List(includeExpired bool) []Silence {
	now := s.opts.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.isClosed() {
		return nil
	}
	var out []Silence
	for _, e := range s.silences {
		if includeExpired || e.sil.State(now) != StateExpired {
			out = append(out, clone(e.sil))
		}
	}
	sortSilences(out)
	return out
}

// Match returns the silences active at now whose matchers all match labels
// (a missing label is ""), oldest first. Empty means nothing mutes labels.
// It refreshes the active gauge. After Close it returns nil.
func (s *Store) Match(labels map[string]string, now time.Time) []Silence {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.isClosed() {
		return nil
	}
	var out []Silence
	active := 0
	for _, e := range s.silences {
		if e.sil.State(now) != StateActive {
			continue
		}
		active++
		if matchAll(e.ms, labels) {
			out = append(out, clone(e.sil))
		}
	}
	s.opts.Metrics.active(active)
	sortSilences(out)
	return out
}

// Mutes is Match on a's Labels. When it returns any silence, it counts one
// suppressed anomaly under the Reason of the first (oldest): the caller
// then posts no alert for a.
func (s *Store) Mutes(a anomaly.Anomaly, now time.Time) []Silence {
	out := s.Match(Labels(a), now)
	if len(out) > 0 {
		s.opts.Metrics.suppressed(out[0].Reason)
	}
	return out
}

func matchAll(ms []compiled, labels map[string]string) bool {
	for _, m := range ms {
		if !m.matches(labels) {
			return false
		}
	}
	return len(ms) > 0
}

// Compact rewrites the file with the last line of each silence kept, and
// drops the silences that ended more than Options.Retention ago. Open, Run
// and the changes that leave the file mostly superseded lines call it; a
// caller need not.
func (s *Store) Compact(ctx context.Context) error {
	if s.t != nil {
		return s.maintainTable()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.compactLocked(s.opts.Now())
}

// Run implements pipeline.Stage: every Options.MaintenanceInterval it drops
// silences past their retention and refreshes the active gauge. A failed
// compaction is logged and tried again at the next tick. It returns nil
// when ctx is done, and ErrClosed if the store was closed or stopped.
func (s *Store) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.MaintenanceInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := s.maintain(); err != nil {
			return err
		}
	}
}

func (s *Store) maintain() error {
	if s.t != nil {
		return s.maintainTable()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.j.Closed() {
		return fmt.Errorf("silence maintenance: %w", ErrClosed)
	}
	now := s.opts.Now()
	if s.gcDue(now) {
		if err := s.compactLocked(now); err != nil {
			if s.j.Closed() {
				return err
			}
			s.opts.Log.Warn("silence compaction failed", "path", s.path, "err", err)
		}
	}
	s.opts.Metrics.active(s.countActive(now))
	return nil
}

// Close releases the file and its lock. Writes after Close fail with
// ErrClosed; reads return nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t != nil {
		s.closed = true
		return nil
	}
	return s.j.Close()
}

// check returns why the store cannot be written now. It and appendLocked
// have the shape of outbox.FileStore's, each over its own journal and line
// type.
func (s *Store) check(ctx context.Context) error {
	if s.isClosed() {
		return ErrClosed
	}
	return ctx.Err()
}

// appendLocked writes sil's line and fsyncs it. A failed write is cut off
// again, so the error means "not stored"; a failed fsync closes the store,
// because the line may be on disk or not and only a reopen can tell.
func (s *Store) appendLocked(sil Silence) error {
	b, err := appendLine(nil, sil)
	if err != nil {
		return err
	}
	return s.j.Append(b[:len(b)-1])
}

func (s *Store) countActive(now time.Time) int {
	n := 0
	for _, e := range s.silences {
		if e.sil.State(now) == StateActive {
			n++
		}
	}
	return n
}

// gcDue reports whether a silence is past its retention at now.
func (s *Store) gcDue(now time.Time) bool {
	cut := now.Add(-s.opts.Retention)
	for _, e := range s.silences {
		if e.sil.Ended().Before(cut) {
			return true
		}
	}
	return false
}

func (s *Store) shouldCompact() bool {
	if s.t != nil {
		return false // the topic's compaction does it
	}
	lines := s.j.Lines()
	return lines >= s.opts.CompactMinLines && lines >= 2*len(s.silences) && lines >= s.compactAt
}

// maybeCompact compacts after a change when it pays. A failure leaves the
// file as it was (the change stands) and is tried again after
// CompactMinLines more lines.
func (s *Store) maybeCompact(now time.Time) {
	if !s.shouldCompact() {
		return
	}
	if err := s.compactLocked(now); err != nil {
		s.compactAt = s.j.Lines() + s.opts.CompactMinLines
		s.opts.Log.Warn("silence compaction failed", "path", s.path, "lines", s.j.Lines(), "err", err)
	}
}

// compactLocked replaces the file with the kept silences (journal.Compact),
// so a crash leaves the old file or the new one.
func (s *Store) compactLocked(now time.Time) error {
	cut := now.Add(-s.opts.Retention)
	keep := make([]Silence, 0, len(s.silences))
	var drop []string
	for id, e := range s.silences {
		if e.sil.Ended().Before(cut) {
			drop = append(drop, id)
			continue
		}
		keep = append(keep, e.sil)
	}
	sortSilences(keep)
	recs := make([][]byte, 0, len(keep))
	for _, sil := range keep {
		b, err := appendLine(nil, sil)
		if err != nil {
			return fmt.Errorf("compact silences %s: %w", s.path, err)
		}
		recs = append(recs, b[:len(b)-1])
	}
	before := s.j.Lines()
	if err := s.j.Compact(recs); err != nil {
		return fmt.Errorf("compact silences: %w", err)
	}
	s.compactAt = 0
	for _, id := range drop {
		delete(s.silences, id)
	}
	s.opts.Log.Info("silences compacted", "path", s.path, "lines_before", before, "lines_after", s.j.Lines(), "dropped_silences", len(drop))
	return nil
}

// normalize puts times in UTC without a monotonic reading, and an empty
// reason as ReasonManual.
func normalize(s Silence) Silence {
	s.StartsAt, s.EndsAt, s.CreatedAt = s.StartsAt.UTC(), s.EndsAt.UTC(), s.CreatedAt.UTC()
	if !s.ExpiredAt.IsZero() {
		s.ExpiredAt = s.ExpiredAt.UTC()
	}
	if s.Reason == "" {
		s.Reason = ReasonManual
	}
	return s
}

func clone(s Silence) Silence {
	s.Matchers = slices.Clone(s.Matchers)
	return s
}

func sortSilences(ss []Silence) {
	slices.SortFunc(ss, func(a, b Silence) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
}

// randomID returns 16 random bytes in hex.
func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random silence id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// keyID derives a silence id from an AddWithKey key: the first 16 bytes of
// SHA-256 over a fixed label and the key, in hex.
func keyID(key string) string {
	sum := sha256.Sum256([]byte("agentwatch/silence key v1\x00" + key))
	return hex.EncodeToString(sum[:16])
}
