package revoke

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Table is the part of the replicated global table (kstate.Table) that the
// distributed mode's ledger, budget claims and kill switch write to. Put
// and Delete return once the record is applied in this process too (read
// your writes). Implementations are safe for concurrent use.
type Table interface {
	Put(ctx context.Context, key string, value []byte) (int64, error)
	// PutRetryAs is Put, except that the n-th retry of the write (after
	// a retryable failure, which may come after the first try landed)
	// writes the record under retryKey(n) (kstate.Table.PutRetryAs says
	// why).
	PutRetryAs(ctx context.Context, key string, value []byte, retryKey func(n int) string) (int64, error)
	Delete(ctx context.Context, key string) (int64, error)
}

// Key prefixes of the global table that this package owns.
const (
	// ClaimPrefix: budget claims "b/<id>" and their refunds "b/<id>/r".
	ClaimPrefix = "b/"
	// LedgerPrefix: revocation records "l/<hash of the Key>".
	LedgerPrefix = "l/"
	// SwitchKey: the kill switch.
	SwitchKey = "k/switch"
)

const refundSuffix = "/r"

// copySep separates a claim's or refund's key from the number of the
// retry that wrote it: "b/<id>~2" is the second retry's copy of
// "b/<id>". Claim ids are hex, so the separator is never part of one.
const copySep = "~"

// retryKeys returns the keys of the retries of key's write.
func retryKeys(key string) func(n int) string {
	return func(n int) string { return key + copySep + strconv.Itoa(n) }
}

// copyOf returns the id a key names without its retry number, and
// whether it was a retry's copy.
func copyOf(id string) (string, bool) {
	i := strings.LastIndex(id, copySep)
	if i < 0 {
		return id, false
	}
	if _, err := strconv.ParseUint(id[i+len(copySep):], 10, 32); err != nil {
		return id, false
	}
	return id[:i], true
}

// Claims is the revocation budget of the distributed mode: every automatic
// revocation of any instance writes a claim to the global table, and the
// outcome of each claim is a fold over the table in offset order, which
// every instance computes alike without talking to the others.
//
// The fold: a claim's effective time is its own time, or the latest
// effective time before it in the table if that is later (a claimer whose
// clock is behind counts at the latest claim's time, so effective times
// never go back). A claim wins iff fewer than Limit winning claims have an
// effective time within Interval before its own. A refund (a revocation
// the gateway reported already done, or one that could not be recorded)
// takes its claim out of the window for the claims after it. Because
// effective times only grow, the winners of any Interval-long span of
// effective time are at most Limit, whatever the clocks did. A clock ahead
// of the others by d shortens the window by up to d in real time: keep
// the instances' clocks in sync.
//
// Claims are written under a fresh id and never rewritten. A write
// retried after a lost answer writes its copy under a key of its own
// ("<id>~1", …) and the fold counts an id once, so the topic's compaction
// never drops a claim or moves one to a later place in the log, and the
// fold replays identically after a restart: re-counting at start is the
// fold over the table. Sweep deletes the claims that can no longer change
// a verdict, so the topic and every instance's restore do not grow with
// every revocation for the life of the deployment. Safe for concurrent
// use.
type Claims struct {
	t        Table
	limit    int
	interval time.Duration
	now      func() time.Time

	mu   sync.Mutex
	last time.Time // latest effective time folded
	wins []win     // winning claims within interval of last, oldest first
	// seen holds the claims (and refunds) folded within two intervals of
	// last, with their effective times: a produce retried after a lost
	// answer can leave a record twice (under another key, see Claim),
	// and the second must not count.
	seen map[string]time.Time
	// seenOrder lists seen's entries as they were set, which is in time
	// order (effective times only grow along the log), so the expired
	// ones are dropped from its front instead of by a scan of seen at
	// every claim.
	seenOrder []seenRec
	waiting   map[string]chan bool
	folded    int64

	// hist holds the claim and refund records folded and not yet deleted,
	// in log order, for Sweep; inHist maps their keys to whether a
	// tombstone for them was applied since.
	hist   []histRec
	inHist map[string]bool
	// sweepWorkers is sweepWorkers but in tests, which sweep with one
	// to write tombstones in an order a seed decides.
	sweepWorkers int
	// decided, if set, learns every verdict, by the key of the record
	// that carried the claim (tests).
	decided func(key string, won bool)
}

// histRec is a folded claim or refund: at is the claim's effective time,
// or the latest effective time when the refund was folded. Both only grow
// along the log. An empty key marks a place the record has left (written
// again later).
type histRec struct {
	key string
	// id is the claim's id ("<id>/r" for a refund), the same for every
	// copy of the record.
	id    string
	at    time.Time
	claim bool
}

type seenRec struct {
	id string
	at time.Time
}

type win struct {
	id string
	at time.Time
}

// claimValue is a claim's record.
type claimValue struct {
	At time.Time `json:"at"`
	// By names the instance, for an operator reading the topic.
	By string `json:"by,omitempty"`
}

// NewClaims returns the budget of limit automatic revocations per interval
// over table t. Feed it every record of the table whose key starts with
// ClaimPrefix through Apply, in offset order, before the first Claim.
func NewClaims(t Table, limit int, interval time.Duration, now func() time.Time) (*Claims, error) {
	if _, err := NewBudget(limit, interval, now); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Claims{t: t, limit: limit, interval: interval, now: now, waiting: make(map[string]chan bool), seen: make(map[string]time.Time),
		inHist: make(map[string]bool), sweepWorkers: sweepWorkers}, nil
}

// see marks id folded at at, which is at least every earlier mark's time.
func (c *Claims) see(id string, at time.Time) {
	c.seen[id] = at
	c.seenOrder = append(c.seenOrder, seenRec{id: id, at: at})
}

// forgetSeenBefore drops the claims and refunds folded before cut.
func (c *Claims) forgetSeenBefore(cut time.Time) {
	i := 0
	for ; i < len(c.seenOrder) && c.seenOrder[i].at.Before(cut); i++ {
		if r := c.seenOrder[i]; c.seen[r.id].Equal(r.at) {
			delete(c.seen, r.id)
		}
	}
	// Resliced, not copied: append moves the rest to a new array when
	// it grows, which frees the dropped front.
	c.seenOrder = c.seenOrder[i:]
}

// Limit returns the automatic revocations allowed per interval.
func (c *Claims) Limit() int { return c.limit }

// Interval returns the budget's sliding window.
func (c *Claims) Interval() time.Duration { return c.interval }

// Apply folds one record of the table (key with ClaimPrefix; value nil is
// a tombstone, which changes no verdict: Sweep deletes only claims the
// fold no longer looks at). It must be called in offset order, from one
// goroutine.
func (c *Claims) Apply(key string, value []byte) {
	id, ok := strings.CutPrefix(key, ClaimPrefix)
	if !ok {
		return
	}
	id, retried := copyOf(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if value == nil {
		c.forgetLocked(key)
		return
	}
	if _, dup := c.seen[id]; dup {
		if retried {
			c.remember(histRec{key: key, id: id, at: c.last})
		} else {
			c.moveLocked(key, id)
		}
		return
	}
	c.folded++
	if claim, ok := strings.CutSuffix(id, refundSuffix); ok {
		c.see(id, c.last)
		c.remember(histRec{key: key, id: id, at: c.last})
		for i, w := range c.wins {
			if w.id == claim {
				c.wins = append(c.wins[:i], c.wins[i+1:]...)
				break
			}
		}
		return
	}
	var v claimValue
	if err := json.Unmarshal(value, &v); err != nil || v.At.IsZero() {
		// Unreadable: it counts at the latest claim's time (and wins if
		// there is room), so a damaged record never makes room in the
		// budget. Every instance reads the same bytes, so they agree.
		v.At = c.last
	}
	at := v.At
	if at.Before(c.last) {
		at = c.last
	}
	c.last = at
	c.see(id, at)
	c.forgetSeenBefore(at.Add(-2 * c.interval))
	cut := at.Add(-c.interval)
	i := 0
	for i < len(c.wins) && !c.wins[i].at.After(cut) {
		i++
	}
	c.wins = c.wins[i:]
	won := len(c.wins) < c.limit
	if won {
		c.wins = append(c.wins, win{id: id, at: at})
	}
	c.remember(histRec{key: key, id: id, at: at, claim: true})
	if c.decided != nil {
		c.decided(key, won)
	}
	if ch, ok := c.waiting[id]; ok {
		ch <- won
		delete(c.waiting, id)
	}
}

// Claim writes a claim and returns whether it won, and its id for Refund.
// An error means the claim's outcome is unknown; the caller treats it as
// lost (no revocation), which may leave a unit of the budget spent.
func (c *Claims) Claim(ctx context.Context, by string) (id string, won bool, err error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", false, fmt.Errorf("budget claim id: %w", err)
	}
	id = hex.EncodeToString(b[:])
	key := ClaimPrefix + id
	val, err := json.Marshal(claimValue{At: c.now().UTC(), By: by})
	if err != nil {
		return "", false, fmt.Errorf("encode budget claim: %w", err)
	}
	ch := make(chan bool, 1)
	c.mu.Lock()
	c.waiting[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, id)
		c.mu.Unlock()
	}()
	if _, err := c.t.PutRetryAs(ctx, key, val, retryKeys(key)); err != nil {
		return "", false, fmt.Errorf("write budget claim: %w", err)
	}
	select {
	case won = <-ch:
		return id, won, nil
	default:
		// Put returns after the record was applied here, so the outcome
		// is in ch; an empty ch means the table broke that promise.
		return "", false, errors.New("budget claim: written but not applied; the global table is not being followed")
	}
}

// Refund gives the unit of claim id back (a revocation found already done,
// or one whose start could not be recorded). A failed refund leaves the
// unit spent, which errs on the safe side.
func (c *Claims) Refund(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	val, _ := json.Marshal(claimValue{At: c.now().UTC()})
	key := ClaimPrefix + id + refundSuffix
	if _, err := c.t.PutRetryAs(ctx, key, val, retryKeys(key)); err != nil {
		return fmt.Errorf("refund budget claim %s: %w", id, err)
	}
	return nil
}

// Remaining returns how many automatic revocations the window still
// allows now, by this process's clock.
func (c *Claims) Remaining() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := c.now()
	if at.Before(c.last) {
		at = c.last
	}
	n := 0
	for _, w := range c.wins {
		if w.at.After(at.Add(-c.interval)) {
			n++
		}
	}
	return max(0, c.limit-n)
}

// Winners returns the ids of the winning claims still in the window of the
// latest claim, oldest first (tests and diagnostics).
func (c *Claims) Winners() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.wins))
	for i, w := range c.wins {
		out[i] = w.id
	}
	return out
}
