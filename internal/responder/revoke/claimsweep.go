package revoke

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Why Sweep deletes what it deletes.
//
// Deleting claims by age alone would not be safe. A claim's verdict
// depends on the winners within Interval before it, and whether those won
// depended on the winners before them, and so on: with a limit of 1 and
// an interval of 10 minutes, claims at minutes 0, 9, 18, 27 … win, lose,
// win, lose; take the claim at 0 away and every verdict after it flips.
// An instance that restores from a topic where old claims are gone (or,
// while compaction is under way, only some of them) would then fold a
// different budget than the instances that followed the whole log, and
// the budget would no longer be one budget.
//
// What is safe is to cut where the chain is broken: a pause of at least
// Interval between two consecutive claims' effective times. The claim
// after the pause has no earlier claim in its window, so its verdict, and
// every verdict after it, depends only on claims from the pause on. Sweep
// deletes every claim (and refund) folded before the latest such pause,
// provided the pause began more than two intervals before the latest
// claim folded here, and that no copy of a record (a retry's, see Claim)
// is on each side of it. For any instance that folds what is left, with
// any subset of the deleted records still there (compaction drops them
// segment by segment) and with or without the tombstones:
//
//   - effective times of the kept claims are the same: an effective time
//     above a claim's own comes from an earlier claim's own time, which is
//     then at least as late and so is kept too;
//   - the window of a kept claim holds no deleted claim (the pause), so
//     its verdict is the same;
//   - the latest claim is kept, so a later claim from a clock that is
//     behind still counts at the same effective time everywhere;
//   - whether a kept copy of a record counts (the fold counts an id once
//     while it remembers it, two intervals) is the same: its earlier
//     copies, and the records their effective times depend on, are kept
//     too. Without that rule, an instance that still saw a deleted copy
//     but not the deleted first one would remember the id from a later
//     time than the others, and ignore a copy they count;
//   - a retry's copy of a deleted record arriving later counts the same
//     way as without the sweep: the fold forgets ids two intervals behind
//     the latest claim (seen), and the deleted ones are further back
//     than that;
//   - a refund of a deleted claim changes nothing, with or without its
//     claim: the claim is outside every later window.
//
// Clock skew needs no margin here: effective times come from the log, not
// from the sweeper's clock, and never go back. Instances that followed
// the whole log apply the tombstones without changing anything (Apply
// ignores them for the fold), so one instance sweeping, several, or the
// same one twice all leave every verdict as it was. The cost of the rule:
// while automatic revocations keep coming with no interval-long pause
// between them, nothing is deleted; the next pause lets the sweep take
// everything before it.

// sweepWorkers is how many tombstones Sweep writes at once: the table
// group-commits concurrent writes into one produce.
const sweepWorkers = 16

// remember adds a folded record to hist. c.mu is held.
func (c *Claims) remember(r histRec) {
	if _, ok := c.inHist[r.key]; ok {
		// The same record again, past the fold's memory of ids (a write
		// retried very late): compaction keeps only this copy, so the
		// earlier one is no longer the key's place in the log.
		for i := range c.hist {
			if c.hist[i].key == r.key {
				c.hist[i].key = ""
			}
		}
	}
	c.inHist[r.key] = false
	c.hist = append(c.hist, r)
}

// moveLocked notes that key was written again under the same key while
// the fold still knows it (this package writes a retry's copy under a key
// of its own, but the topic may hold such a copy from elsewhere): the
// fold ignores the copy, but compaction keeps the later copy, not the
// first, so the key may be deleted only once its latest place in the log
// is before the cut. The first place still counts as a claim in finding
// pauses. c.mu is held.
func (c *Claims) moveLocked(key, id string) {
	if dead, ok := c.inHist[key]; !ok || dead {
		return
	}
	for i := range c.hist {
		if c.hist[i].key == key {
			c.hist[i].key = ""
		}
	}
	c.hist = append(c.hist, histRec{key: key, id: id, at: c.last})
}

// forgetLocked marks key deleted and drops the deleted records at the
// front of hist (Sweep deletes from the front). c.mu is held.
func (c *Claims) forgetLocked(key string) {
	if _, ok := c.inHist[key]; !ok {
		return
	}
	c.inHist[key] = true
	i := 0
	for ; i < len(c.hist); i++ {
		k := c.hist[i].key
		if k != "" && !c.inHist[k] {
			break
		}
		if k != "" {
			delete(c.inHist, k)
		}
	}
	c.hist = c.hist[i:]
}

// Sweepable returns the keys of the claim and refund records that Sweep
// would delete now, oldest first.
func (c *Claims) Sweepable() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	limit := c.last.Add(-2 * c.interval)
	var cuts []int // hist[:cut] may go, for each cut
	prev := -1
	for i, r := range c.hist {
		if !r.claim {
			continue
		}
		if prev >= 0 {
			p := c.hist[prev].at
			if !r.at.Before(p.Add(c.interval)) && p.Before(limit) {
				cuts = append(cuts, i)
			}
		}
		prev = i
	}
	// The latest cut with no copies of one record on both sides (see
	// the comment above).
	firstAt := make(map[string]int, len(c.hist))
	for i, r := range c.hist {
		if _, ok := firstAt[r.id]; !ok {
			firstAt[r.id] = i
		}
	}
	end := 0
	first := len(c.hist) // the earliest place of any copy of what hist[j:] holds
	j := len(c.hist)
	for k := len(cuts) - 1; k >= 0; k-- {
		for ; j > cuts[k]; j-- {
			first = min(first, firstAt[c.hist[j-1].id])
		}
		if first >= cuts[k] {
			end = cuts[k]
			break
		}
	}
	var keys []string
	for _, r := range c.hist[:end] {
		if r.key != "" && !c.inHist[r.key] {
			keys = append(keys, r.key)
		}
	}
	return keys
}

// Sweep writes tombstones for the claims and refunds that can no longer
// change any verdict (see the comment above) and returns how many it
// wrote. Any instance may sweep at any time: deleting twice changes
// nothing. A failed delete is left for the next sweep.
func (c *Claims) Sweep(ctx context.Context) (int, error) {
	keys := c.Sweepable()
	if len(keys) == 0 {
		return 0, nil
	}
	var (
		mu   sync.Mutex
		n    int
		errs []error
		wg   sync.WaitGroup
	)
	next := make(chan string)
	for range min(c.sweepWorkers, len(keys)) {
		wg.Go(func() {
			for k := range next {
				_, err := c.t.Delete(ctx, k)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("delete budget claim record %s: %w", k, err))
				} else {
					n++
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, k := range keys {
		select {
		case next <- k:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if len(errs) > 3 {
		errs = append(errs[:3], fmt.Errorf("and %d more", len(errs)-3))
	}
	if err := ctx.Err(); err != nil && len(keys) > n+len(errs) {
		errs = append(errs, err)
	}
	return n, errors.Join(errs...)
}

// Kept returns how many claim and refund records this instance holds for
// sweeping: those folded and not deleted (tests and diagnostics).
func (c *Claims) Kept() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.hist {
		if r.key != "" && !c.inHist[r.key] {
			n++
		}
	}
	return n
}
