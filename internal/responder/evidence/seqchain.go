package evidence

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/kstate"
)

// Sequencer is a log that every responder instance applies in one order:
// the global table (kstate.Table). A put returns once the record was
// applied in this process.
type Sequencer interface {
	// PutRetryAs is kstate.Table.PutRetryAs: the n-th retry of the write
	// goes under retryKey(n).
	PutRetryAs(ctx context.Context, key string, value []byte, retryKey func(n int) string) (int64, error)
}

// Mirror keeps the records the sequencer placed, for reading and
// verification (ClickHouse's evidence_chain). Insert must not check the
// head: records may reach it out of order, or twice.
type Mirror interface {
	Insert(ctx context.Context, rec Record) error
	Records(ctx context.Context, fn func(Record) error) error
}

// SequencedChain is a ChainStore for several responder instances. A store
// without transactions (ClickHouse) cannot stop two writers that read the
// same head from both appending at the next seq, forking the chain. Here a
// record is first put on the sequencer's log, and whether it extends the
// chain is decided by a fold over that log: in log order, a record is
// placed when its Seq and PrevSHA256 continue the last placed record, and
// refused otherwise. Every instance folds the same log in the same order,
// so all agree on the one chain, without a protocol of their own; a
// refused Append fails with ErrChainMoved and Snapshot links the bundle to
// the new head, as it does with one writer. Placed records are then
// inserted into the Mirror, which Records reads.
//
// A crash between the placing and the insert leaves the mirror without
// the record until CatchUp (at start and every minute in Run) inserts the
// placed records the mirror lacks.
type SequencedChain struct {
	mirror Mirror
	log    *slog.Logger

	mu       sync.Mutex
	seq      Sequencer
	head     string
	headSeq  int64
	placed   []Record          // in seq order
	byBundle map[string]Record // placed records by bundle id
	outcomes map[int64]fate    // log offset → what the fold made of it, for Appends waiting on it
	late     map[string]Record // placed, not yet in the mirror
	offsets  []int64           // outcomes' keys in arrival order, to bound it
}

type fate int

const (
	fateRefused fate = iota // does not extend the head
	fatePlaced
	fateTaken // its bundle id was placed before with another manifest
)

// ErrBundlePlaced means the chain already holds the bundle id with another
// manifest: an instance that died placed it, and its copy is on that
// instance's evidence directory. Nothing was stored.
var ErrBundlePlaced = errors.New("the evidence chain already holds this bundle id with another manifest")

// SequencedKeyPrefix is the key prefix of the chain's records on the
// sequencer's log.
const SequencedKeyPrefix = "e/"

// sequencedKey returns the key a write of a record goes under on the
// log: one of its own for every write, however many share a bundle id (a
// bundle linked again after the chain moved; the same id written on
// another host; the same record appended again by Resume after a write
// whose outcome was unknown), and one of its own for every copy of a
// retried write (Append). The fold places records where they are in the
// log, and the topic is compacted: under a shared key, the cleaner would
// keep only the latest record and drop a placed one, and an instance
// restoring after it ran would refuse every record linked to it. The
// fold reads the value only, so the key need not say anything.
func sequencedKey(bundleID string) (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("evidence chain key: %w", err)
	}
	return SequencedKeyPrefix + bundleID + "/" + hex.EncodeToString(b[:]), nil
}

// NewSequencedChain returns a chain whose records go to mirror. Register
// Apply with the table (for keys with SequencedKeyPrefix) before it is
// opened, then Attach the opened table.
func NewSequencedChain(mirror Mirror, log *slog.Logger) *SequencedChain {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SequencedChain{mirror: mirror, log: log, head: ZeroHash,
		byBundle: make(map[string]Record), outcomes: make(map[int64]fate), late: make(map[string]Record)}
}

// Attach sets the log Append puts records on.
func (c *SequencedChain) Attach(s Sequencer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq = s
}

var _ ChainStore = (*SequencedChain)(nil)

// maxOutcomes bounds the remembered outcomes; an Append reads its own
// right after its Put returns, long before this many records follow.
const maxOutcomes = 4096

// Apply folds one record of the log. It is the table's handler for
// SequencedKeyPrefix.
func (c *SequencedChain) Apply(r kstate.Record) {
	if r.Tombstone() {
		return
	}
	var rec Record
	err := json.Unmarshal(r.Value, &rec)
	if err == nil {
		err = rec.validate()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	res := fateRefused
	prior, seen := c.byBundle[rec.BundleID]
	switch {
	case err != nil:
		c.log.Error("evidence chain: a record on the log does not parse; it is not part of the chain", "key", r.Key, "offset", r.Offset, "err", err)
	case seen && prior.ManifestSHA256 == rec.ManifestSHA256:
		res = fatePlaced // the same record again: a retried put
	case seen:
		res = fateTaken
	case rec.Seq == c.headSeq+1 && rec.PrevSHA256 == c.head:
		res = fatePlaced
		c.placed = append(c.placed, rec)
		c.byBundle[rec.BundleID] = rec
		c.head, c.headSeq = rec.ManifestSHA256, rec.Seq
	}
	c.outcomes[r.Offset] = res
	c.offsets = append(c.offsets, r.Offset)
	if len(c.offsets) > maxOutcomes {
		delete(c.outcomes, c.offsets[0])
		c.offsets = c.offsets[1:]
	}
}

// Head implements ChainStore from the fold: the last placed record.
func (c *SequencedChain) Head(context.Context) (string, int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.head, c.headSeq, nil
}

// Append implements ChainStore. A record the fold refuses fails with
// ErrChainMoved. Once placed, the record is in the chain even if the
// mirror's insert fails: that is logged and retried by Run.
func (c *SequencedChain) Append(ctx context.Context, rec Record) error {
	if err := rec.validate(); err != nil {
		return fmt.Errorf("append to evidence chain: %w", err)
	}
	c.mu.Lock()
	s := c.seq
	c.mu.Unlock()
	if s == nil {
		return errors.New("append to evidence chain: no sequencer attached")
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("append bundle %s: %w", rec.BundleID, err)
	}
	key, err := sequencedKey(rec.BundleID)
	if err != nil {
		return fmt.Errorf("append bundle %s: %w", rec.BundleID, err)
	}
	off, err := s.PutRetryAs(ctx, key, b, func(n int) string { return key + "~" + strconv.Itoa(n) })
	if err != nil {
		return fmt.Errorf("append bundle %s at seq %d: %w", rec.BundleID, rec.Seq, err)
	}
	c.mu.Lock()
	res, known := c.outcomes[off]
	head, headSeq := c.head, c.headSeq
	prior := c.byBundle[rec.BundleID]
	c.mu.Unlock()
	switch {
	case !known:
		return fmt.Errorf("append bundle %s at seq %d: its outcome at log offset %d is no longer known", rec.BundleID, rec.Seq, off)
	case res == fateTaken:
		return fmt.Errorf("append bundle %s: placed at seq %d with manifest %s, not %s: %w",
			rec.BundleID, prior.Seq, prior.ManifestSHA256, rec.ManifestSHA256, ErrBundlePlaced)
	case res == fateRefused:
		return fmt.Errorf("append bundle %s at seq %d after %s: head is seq %d %s: %w",
			rec.BundleID, rec.Seq, rec.PrevSHA256, headSeq, head, ErrChainMoved)
	}
	if err := c.mirror.Insert(ctx, rec); err != nil {
		c.mu.Lock()
		c.late[rec.BundleID] = rec
		c.mu.Unlock()
		c.log.Warn("evidence chain: bundle placed in the chain but not yet in its store; retrying", "bundle", rec.BundleID, "seq", rec.Seq, "err", err)
	}
	return nil
}

// placedRecord returns the record the fold placed for bundle id. The mirror may
// not hold it yet: Append inserts it only once its put returned, and a
// put whose answer was lost leaves that to CatchUp.
func (c *SequencedChain) placedRecord(id string) (Record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.byBundle[id]
	return r, ok
}

// Records implements ChainStore from the mirror, which is what was stored
// (verification must see tampering, not the fold's copy).
func (c *SequencedChain) Records(ctx context.Context, fn func(Record) error) error {
	return c.mirror.Records(ctx, fn)
}

// CatchUp inserts into the mirror every placed record it lacks.
func (c *SequencedChain) CatchUp(ctx context.Context) (int, error) {
	have := make(map[string]bool)
	if err := c.mirror.Records(ctx, func(r Record) error {
		have[r.BundleID+"/"+r.ManifestSHA256] = true
		return nil
	}); err != nil {
		return 0, fmt.Errorf("evidence chain catch-up: %w", err)
	}
	c.mu.Lock()
	var missing []Record
	for _, r := range c.placed {
		if !have[r.BundleID+"/"+r.ManifestSHA256] {
			missing = append(missing, r)
		}
	}
	c.mu.Unlock()
	n := 0
	for _, r := range missing {
		if err := c.mirror.Insert(ctx, r); err != nil {
			return n, fmt.Errorf("evidence chain catch-up: %w", err)
		}
		n++
		c.mu.Lock()
		delete(c.late, r.BundleID)
		c.mu.Unlock()
	}
	return n, nil
}

// catchUpInterval is how often Run checks the mirror when nothing is owed.
const catchUpInterval = time.Minute

// Run catches the mirror up at once and then every minute, every five
// seconds while an insert is owed, until ctx ends (then it returns nil).
func (c *SequencedChain) Run(ctx context.Context) error {
	next := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(next):
		}
		n, err := c.CatchUp(ctx)
		if err != nil && ctx.Err() == nil {
			c.log.Warn("evidence chain catch-up failed; retrying", "err", err)
		} else if n > 0 {
			c.log.Info("evidence chain: inserted placed records its store lacked", "records", n)
		}
		next = catchUpInterval
		c.mu.Lock()
		if len(c.late) > 0 {
			next = 5 * time.Second
		}
		c.mu.Unlock()
	}
}
