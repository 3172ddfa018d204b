package outbox

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/partstate"
)

// PartPrefix is the changelog key prefix of outbox entries. An entry is
// two records: its state under PartPrefix + Entry.Key, written at every
// change, without the payload; and its payload under PartPrefix +
// payloadMark + Entry.Key, written once, in the same request as the
// entry's first state. The payload is most of an entry's bytes and never
// changes, so writing it at each of an entry's three or more changes was
// most of what the changelog carried. State records written before the
// split hold the payload themselves, and are still read.
const PartPrefix = "o/"

// payloadMark starts the key (after PartPrefix) of a payload record. Entry
// keys cannot start with it (checkNew).
const payloadMark = "\x00"

// PartRecordKeys returns the changelog record keys of the entry of key: its
// state and its payload.
func PartRecordKeys(key string) (state, payload string) {
	return PartPrefix + key, PartPrefix + payloadMark + key
}

// PartOptions tune a PartStore. The zero value gives the defaults.
type PartOptions struct {
	// DoneRetention is how long done and failed entries are kept after
	// their last update; Compact then writes their tombstones, so the
	// changelog keeps only what is live. Default 14 days, as the file's.
	DoneRetention time.Duration
	Log           *slog.Logger
	// Now replaces the clock (tests).
	Now func() time.Time
}

// PartStore is the distributed mode's Store: the entries of the anomaly
// partitions this process owns, in memory, with every change (Enqueue,
// Update, a tombstone from Compact) appended to the entry's partition of
// the changelog before the call returns. The entries of a partition are
// loaded by partstate.Owner when the partition is assigned (it is a
// partstate.Part) and dropped when it is revoked, once the Worker finished
// the entries of the partition it was running; in between, List leaves
// them out and claiming one fails with partstate.ErrNotOwned, so the
// Worker starts none.
//
// Entries must be enqueued with InPartition; one without it is refused.
// Changes to different keys are written concurrently (the changelog
// batches them), changes to one key in order. Safe for concurrent use; it
// does not own the changelog.
type PartStore struct {
	cl      partstate.Changelog
	opts    PartOptions
	changes chan struct{}
	seed    maphash.Seed
	keyMu   [64]sync.Mutex // one key's writes in order

	mu      sync.Mutex
	cond    *sync.Cond // signalled when a claimed entry finishes
	seq     int64
	entries map[string]Entry
	// byState indexes entries by state, so that the Worker's frequent
	// List of the open entries costs what is open, not what is kept; it
	// holds what List sorts and filters by, so that List looks up only
	// the entries it returns.
	byState map[State]map[string]stateRef
	// open keeps the open entries in Seq order for the Worker (scanOpen).
	open  openIndex
	parts map[int32]*partState
	// inline are the entries restored from a state record that holds the
	// payload itself (written before the payload had its own record):
	// their next state record is written with a payload record, or the
	// payload would be lost from the changelog.
	inline map[string]bool
}

// stateRef is what byState keeps of an entry.
type stateRef struct {
	seq  int64
	part int32
}

// partState is what the store knows of one partition it holds.
type partState struct {
	// active: restored and owned; entries may be claimed.
	active bool
	// loading holds the entries restored so far, before Activate, and
	// loadingPayload their payload records.
	loading        map[string]Entry
	loadingPayload map[string][]byte
	// running are the keys claimed (in flight) since the partition was
	// activated and not yet recorded otherwise: the Worker runs them.
	running map[string]bool
}

var (
	_ Store          = (*PartStore)(nil)
	_ Notifier       = (*PartStore)(nil)
	_ partstate.Part = (*PartStore)(nil)
)

// NewPartStore returns a store of no partition over cl.
func NewPartStore(cl partstate.Changelog, opts PartOptions) *PartStore {
	if opts.DoneRetention <= 0 {
		opts.DoneRetention = 14 * 24 * time.Hour
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &PartStore{cl: cl, opts: opts, changes: make(chan struct{}, 1), seed: maphash.MakeSeed(),
		entries: map[string]Entry{}, byState: map[State]map[string]stateRef{}, parts: map[int32]*partState{}, inline: map[string]bool{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// Prefix implements partstate.Part.
func (s *PartStore) Prefix() string { return PartPrefix }

// Load implements partstate.Part.
func (s *PartStore) Load(p int32, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.parts[p]
	if ps == nil {
		ps = &partState{loading: map[string]Entry{}, loadingPayload: map[string][]byte{}, running: map[string]bool{}}
		s.parts[p] = ps
	}
	if ps.active {
		return fmt.Errorf("partition %d is already live", p)
	}
	if k, ok := strings.CutPrefix(key, payloadMark); ok {
		if len(value) == 0 {
			delete(ps.loadingPayload, k)
		} else {
			ps.loadingPayload[k] = bytes.Clone(value)
		}
		return nil
	}
	if len(value) == 0 {
		delete(ps.loading, key)
		return nil
	}
	e, err := DecodePartEntry(key, value, nil)
	if err != nil {
		return err
	}
	e.Partition = p
	ps.loading[key] = e
	return nil
}

// DecodePartEntry decodes the entry of key from its latest changelog
// records (PartRecordKeys): its state, and its payload record if it has
// one (nil: the payload is in the state record, or the entry has none).
// The Partition is left for the caller to set.
func DecodePartEntry(key string, state, payload []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(state, &e); err != nil {
		return Entry{}, fmt.Errorf("decode outbox entry: %w", err)
	}
	if e.Key != key {
		return Entry{}, fmt.Errorf("outbox entry under key %q names key %q", key, clip(e.Key, 80))
	}
	if len(payload) > 0 {
		e.Payload = payload
	}
	if err := e.validate(); err != nil {
		return Entry{}, fmt.Errorf("outbox entry %q: %w", clip(key, 80), err)
	}
	return e, nil
}

// Activate implements partstate.Part.
func (s *PartStore) Activate(p int32) {
	s.mu.Lock()
	ps := s.parts[p]
	if ps == nil {
		ps = &partState{running: map[string]bool{}}
		s.parts[p] = ps
	}
	for k, e := range ps.loading {
		if pl, ok := ps.loadingPayload[k]; ok {
			e.Payload = pl
		} else if len(e.Payload) > 0 {
			s.inline[k] = true
		}
		if _, ok := s.entries[e.Key]; ok {
			s.setLocked(e)
		} else {
			// Merged with the open entries already held by one sort
			// below, not inserted one at a time.
			s.setIndexLocked(e)
			s.open.addUnsorted(&e)
		}
		s.seq = max(s.seq, e.Seq)
	}
	s.open.sort()
	ps.loading, ps.loadingPayload, ps.active = nil, nil, true
	s.mu.Unlock()
	s.notify() // restored entries may be due
}

// Revoke implements partstate.Part: claims of p's entries fail from now
// on, and once the entries of p the Worker runs are recorded (or ctx
// ended) p's entries are dropped. An entry still running then is left in
// flight in the changelog: its new owner runs it again, Recovered.
func (s *PartStore) Revoke(ctx context.Context, p int32) error {
	s.mu.Lock()
	ps := s.parts[p]
	if ps == nil {
		s.mu.Unlock()
		return nil
	}
	ps.active = false
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.cond.Broadcast()
		s.mu.Unlock()
	})
	defer stop()
	for len(ps.running) > 0 && ctx.Err() == nil {
		s.cond.Wait()
	}
	left := len(ps.running)
	for k, e := range s.entries {
		if e.Partition == p {
			s.dropLocked(k)
		}
	}
	delete(s.parts, p)
	s.mu.Unlock()
	if left > 0 {
		s.opts.Log.Warn("outbox entries still running when their partition was handed over; the new owner runs them again as recovered",
			"partition", p, "entries", left)
		return fmt.Errorf("%d outbox entries of partition %d still running: %w", left, p, ctx.Err())
	}
	return nil
}

// Release is the Worker saying it stopped running key without recording
// an outcome (it is stopping): the entry stays in flight, for the next run
// or owner to run again as Recovered, and a hand-over no longer waits for
// it.
func (s *PartStore) Release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.entries[key]; ok {
		if ps := s.parts[e.Partition]; ps != nil && ps.running[key] {
			delete(ps.running, key)
			s.cond.Broadcast()
		}
	}
}

// setLocked stores e in the map and the indexes.
func (s *PartStore) setLocked(e Entry) {
	if old, ok := s.entries[e.Key]; ok {
		s.open.set(&old, &e)
	} else {
		s.open.set(nil, &e)
	}
	s.setIndexLocked(e)
}

// setIndexLocked stores e in the map and the state index, leaving open
// to the caller.
func (s *PartStore) setIndexLocked(e Entry) {
	if old, ok := s.entries[e.Key]; ok {
		delete(s.byState[old.State], e.Key)
	}
	s.entries[e.Key] = e
	idx := s.byState[e.State]
	if idx == nil {
		idx = map[string]stateRef{}
		s.byState[e.State] = idx
	}
	idx[e.Key] = stateRef{seq: e.Seq, part: e.Partition}
}

// dropLocked removes the entry of key.
func (s *PartStore) dropLocked(key string) {
	if old, ok := s.entries[key]; ok {
		s.open.drop(&old)
		delete(s.byState[old.State], key)
		delete(s.entries, key)
	}
	delete(s.inline, key)
}

// Changes implements Notifier.
func (s *PartStore) Changes() <-chan struct{} { return s.changes }

func (s *PartStore) notify() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

func (s *PartStore) lockKey(key string) func() {
	m := &s.keyMu[maphash.String(s.seed, key)%uint64(len(s.keyMu))]
	m.Lock()
	return m.Unlock
}

// write appends e's state to the changelog, and its payload too when
// withPayload (the entry's first record). A nil e writes the tombstones of
// both.
func (s *PartStore) write(ctx context.Context, p int32, key string, e *Entry, withPayload bool) error {
	stateKey, payloadKey := PartRecordKeys(key)
	recs := make([]partstate.Record, 0, 2)
	switch {
	case e == nil:
		recs = append(recs, partstate.Record{Key: stateKey}, partstate.Record{Key: payloadKey})
	default:
		st := *e
		st.Payload = nil
		b, err := json.Marshal(&st)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		// The payload goes first: both are one batch of one request,
		// so a restore never sees the state without it.
		if withPayload && len(e.Payload) > 0 {
			recs = append(recs, partstate.Record{Key: payloadKey, Value: e.Payload})
		}
		recs = append(recs, partstate.Record{Key: stateKey, Value: b})
	}
	if err := s.cl.Append(ctx, p, recs...); err != nil {
		return fmt.Errorf("write to the state changelog partition %d: %w", p, err)
	}
	return nil
}

// Enqueue implements Store. The entry's partition (InPartition) must be
// one this process holds.
func (s *PartStore) Enqueue(ctx context.Context, key, kind string, payload []byte, opts ...EnqueueOption) (Entry, bool, error) {
	if err := checkNew(key, kind, payload); err != nil {
		return Entry{}, false, fmt.Errorf("enqueue %q: %w", clip(key, 80), err)
	}
	now := s.opts.Now().UTC()
	e := Entry{Partition: -1, NextAttempt: now}
	for _, o := range opts {
		o(&e)
	}
	if e.Partition < 0 {
		return Entry{}, false, fmt.Errorf("enqueue %q: no partition: the distributed outbox needs outbox.InPartition", clip(key, 80))
	}
	defer s.lockKey(key)()
	s.mu.Lock()
	if cur, ok := s.entries[key]; ok {
		s.mu.Unlock()
		return cur, false, nil
	}
	// A partition being handed over still takes entries: a running
	// handler may queue follow-ups, which its new owner restores.
	if s.parts[e.Partition] == nil || s.parts[e.Partition].loading != nil {
		s.mu.Unlock()
		return Entry{}, false, fmt.Errorf("enqueue %q in partition %d: %w", clip(key, 80), e.Partition, partstate.ErrNotOwned)
	}
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	e = Entry{Key: key, Kind: kind, OrderKey: e.OrderKey, Partition: e.Partition, Seq: seq, Payload: bytes.Clone(payload), State: StatePending,
		NextAttempt: e.NextAttempt.UTC(), Created: now, Updated: now}
	if e.NextAttempt.IsZero() {
		e.NextAttempt = now
	}
	if err := e.validate(); err != nil {
		return Entry{}, false, fmt.Errorf("enqueue %q: %w", clip(key, 80), err)
	}
	if err := s.write(ctx, e.Partition, key, &e, true); err != nil {
		return Entry{}, false, fmt.Errorf("enqueue %q: %w", clip(key, 80), err)
	}
	s.mu.Lock()
	held := s.parts[e.Partition] != nil
	if held {
		s.setLocked(e)
	}
	s.mu.Unlock()
	if !held {
		// Revoked while writing: the record is in the changelog, for the
		// new owner; this process forgets it.
		return e, true, nil
	}
	s.notify()
	return e, true, nil
}

// Get implements Store.
func (s *PartStore) Get(ctx context.Context, key string) (Entry, bool, error) {
	if err := ctx.Err(); err != nil {
		return Entry{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[key]
	return e, ok, nil
}

// List implements Store. It lists the entries of the active partitions
// only: those of a partition being handed over are no longer the Worker's.
func (s *PartStore) List(ctx context.Context, states ...State) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	// Sorting (seq, key) pairs, not whole entries, keeps a long backlog
	// cheap to list.
	type ref struct {
		seq int64
		key string
	}
	var refs []ref
	active := map[int32]bool{}
	for p, ps := range s.parts {
		active[p] = ps.active
	}
	if len(states) == 0 {
		for k, e := range s.entries {
			if active[e.Partition] {
				refs = append(refs, ref{e.Seq, k})
			}
		}
	} else {
		for _, st := range slices.Compact(slices.Sorted(slices.Values(states))) {
			for k, r := range s.byState[st] {
				if active[r.part] {
					refs = append(refs, ref{r.seq, k})
				}
			}
		}
	}
	slices.SortFunc(refs, func(a, b ref) int { return cmp.Or(cmp.Compare(a.seq, b.seq), cmp.Compare(a.key, b.key)) })
	out := make([]Entry, len(refs))
	for i, r := range refs {
		out[i] = s.entries[r.key]
	}
	s.mu.Unlock()
	return out, nil
}

// scanOpen implements openScanner: v sees the open entries of the active
// partitions, as List would list them.
func (s *PartStore) scanOpen(ctx context.Context, v openVisitor) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var active func(int32) bool // nil: all are, the usual case
	for _, ps := range s.parts {
		if !ps.active {
			active = func(p int32) bool { ps := s.parts[p]; return ps != nil && ps.active }
			break
		}
	}
	return s.open.scan(v, active, func(key string) Entry { return s.entries[key] }), nil
}

// Update implements Store. Marking an entry in flight (the Worker's
// claim) fails with partstate.ErrNotOwned unless its partition is active;
// other changes to the entries of a partition being handed over are
// written, so the Worker can record the outcome of what it was running.
func (s *PartStore) Update(ctx context.Context, e Entry) (Entry, error) {
	defer s.lockKey(e.Key)()
	s.mu.Lock()
	cur, ok := s.entries[e.Key]
	if !ok {
		held := s.parts[e.Partition] != nil
		s.mu.Unlock()
		if !held {
			// Dropped with its partition (a hand-over that timed out
			// while it ran): the outcome is the next owner's to find,
			// as a step left in flight.
			return Entry{}, fmt.Errorf("update %q in partition %d: %w", clip(e.Key, 80), e.Partition, partstate.ErrNotOwned)
		}
		return Entry{}, fmt.Errorf("update %q: %w", clip(e.Key, 80), ErrNotFound)
	}
	ps := s.parts[cur.Partition]
	claim := e.State == StateInFlight
	if ps == nil || (claim && !ps.active) {
		s.mu.Unlock()
		return Entry{}, fmt.Errorf("update %q in partition %d: %w", clip(e.Key, 80), cur.Partition, partstate.ErrNotOwned)
	}
	inline := s.inline[e.Key]
	if claim {
		// Counted as running before it is written, so a Revoke that
		// starts meanwhile waits for it instead of dropping it under
		// the Worker's feet.
		ps.running[cur.Key] = true
	}
	s.mu.Unlock()
	cur.State, cur.Attempts, cur.Failures, cur.RetryAfterWaits = e.State, e.Attempts, e.Failures, e.RetryAfterWaits
	cur.NextAttempt, cur.LastError, cur.Result = e.NextAttempt.UTC(), e.LastError, bytes.Clone(e.Result)
	cur.Updated = s.opts.Now().UTC()
	err := cur.validate()
	if err == nil {
		err = s.write(ctx, cur.Partition, cur.Key, &cur, inline)
	}
	if err != nil {
		if claim {
			s.mu.Lock()
			delete(ps.running, cur.Key)
			s.cond.Broadcast()
			s.mu.Unlock()
		}
		return Entry{}, fmt.Errorf("update %q: %w", clip(e.Key, 80), err)
	}
	s.mu.Lock()
	if s.parts[cur.Partition] == ps {
		if inline {
			delete(s.inline, cur.Key)
		}
		s.setLocked(cur)
		if cur.State == StateInFlight {
			ps.running[cur.Key] = true
		} else if ps.running[cur.Key] {
			delete(ps.running, cur.Key)
			s.cond.Broadcast()
		}
	}
	s.mu.Unlock()
	if cur.State == StatePending {
		s.notify()
	}
	return cur, nil
}

// Hasten brings the pending entry of key forward to at, if it is due
// later, and reports whether it did. It is a hint, not a change: nothing
// is written, so after a restart or a hand-over the entry is due at its
// stored NextAttempt again. An entry in flight, closed or of a partition
// not active is left as it is.
func (s *PartStore) Hasten(key string, at time.Time) bool {
	s.mu.Lock()
	cur, ok := s.entries[key]
	ps := s.parts[cur.Partition]
	if !ok || cur.State != StatePending || !cur.NextAttempt.After(at) || ps == nil || !ps.active {
		s.mu.Unlock()
		return false
	}
	// A claim being written meanwhile stores its own copy once written,
	// in flight: the hint then no longer matters.
	cur.NextAttempt = at.UTC()
	s.setLocked(cur)
	s.mu.Unlock()
	s.notify()
	return true
}

// Compact writes the tombstones of the done and failed entries of the
// active partitions whose last update is older than DoneRetention, and
// forgets them: the changelog's compaction then drops them, and Enqueue of
// their key creates a new entry. It returns how many it dropped.
func (s *PartStore) Compact(ctx context.Context) (int, error) {
	cutoff := s.opts.Now().Add(-s.opts.DoneRetention)
	s.mu.Lock()
	var old []Entry
	for _, e := range s.entries {
		if ps := s.parts[e.Partition]; ps != nil && ps.active && (e.State == StateDone || e.State == StateFailed) && e.Updated.Before(cutoff) {
			old = append(old, e)
		}
	}
	s.mu.Unlock()
	n := 0
	var errs []error
	for _, e := range old {
		if err := s.tombstone(ctx, e); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

func (s *PartStore) tombstone(ctx context.Context, e Entry) error {
	defer s.lockKey(e.Key)()
	s.mu.Lock()
	cur, ok := s.entries[e.Key]
	s.mu.Unlock()
	if !ok || cur.Updated != e.Updated {
		return nil // changed or gone meanwhile
	}
	if err := s.write(ctx, e.Partition, e.Key, nil, false); err != nil {
		return fmt.Errorf("drop done outbox entry %q: %w", clip(e.Key, 80), err)
	}
	s.mu.Lock()
	s.dropLocked(e.Key)
	s.mu.Unlock()
	return nil
}
