package console

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// The overview reads the month's inventory and the 90-day findings of the
// whole fleet, which on a large fleet takes most of a second, and people
// reload it often: it is kept, and while the handler's Run is running it
// is kept computed in the background, so a view does not wait for it.
// The page says when its numbers were computed.
const (
	// overviewTTL is how long a copy is served as it is.
	overviewTTL = 60 * time.Second
	// refreshAfter is the age at which Run computes the copy again, before
	// it reaches overviewTTL, as long as someone viewed it within keepWarm.
	refreshAfter = 45 * time.Second
	// keepWarm bounds the background work (and its audit records) to
	// consoles people are looking at.
	keepWarm = 15 * time.Minute
	// refreshTick is how often Run looks.
	refreshTick = 5 * time.Second
	// refreshBackoff is how long Run waits after a failed computation;
	// meanwhile views compute it themselves.
	refreshBackoff = time.Minute
	// refreshTimeout bounds one background computation, so that a hung
	// query does not leave every view on an old copy.
	refreshTimeout = 30 * time.Second
)

// maxCached caps the kept overviews.
const maxCached = 1000

// overviewCache keeps overviews, one per key: one for everyone when the
// console has an audit trail (a view served from a copy someone else's
// view, or the background refresh, computed is recorded there under the
// viewer's name), one per person otherwise. An action taken through the
// console makes every copy old: Run computes a new one at once, and
// without Run the next view does. Safe for concurrent use.
type overviewCache struct {
	mu  sync.Mutex
	m   map[string]*cachedOverview
	gen uint64 // bumped by every action: a copy of an older generation is out of date
	// clock is the wall clock: the ages are real time.
	clock func() time.Time
	// running: Run keeps the copies computed, so a view of an old copy
	// is served it (marked as updating) while Run computes a newer one,
	// instead of waiting.
	running atomic.Bool
	kick    chan struct{}
	tick    time.Duration
}

type cachedOverview struct {
	// computing is held while the overview is computed, so concurrent
	// views wait for one computation rather than each starting one.
	computing sync.Mutex
	// mu guards the fields below; it is never held while computing.
	mu     sync.Mutex
	at     time.Time   // clock time of the computation; zero: not computed
	gen    uint64      // the cache's generation when the computation began
	by     audit.Actor // who computed it: a person's view, or automatic
	data   overviewData
	viewed time.Time // the last view
	failed time.Time // Run's last failed computation
}

func newOverviewCache(clock func() time.Time) *overviewCache {
	return &overviewCache{m: map[string]*cachedOverview{}, clock: clock, kick: make(chan struct{}, 1), tick: refreshTick}
}

// entry returns key's entry, made when missing.
func (c *overviewCache) entry(key string) (*cachedOverview, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[key]
	if e == nil {
		if len(c.m) >= maxCached {
			c.evictLocked()
		}
		e = &cachedOverview{}
		c.m[key] = e
	}
	return e, c.gen
}

// get returns key's overview and whether it is old: older than
// overviewTTL or from before an action, served while Run computes a newer
// one. A kept copy is only returned when served(by) agrees (it records
// the view); otherwise, when none is kept, and when it is old and Run is
// not running or failed to compute it since, it is computed with compute,
// as who. A failed computation is not kept.
func (c *overviewCache) get(ctx context.Context, key string, who audit.Actor, served func(by audit.Actor, d overviewData) bool,
	compute func(context.Context) (overviewData, error)) (_ overviewData, old bool, _ error) {
	e, gen := c.entry(key)
	now := c.clock()
	e.mu.Lock()
	e.viewed = now
	at, egen, by, d := e.at, e.gen, e.by, e.data
	failing := e.failed.After(at)
	e.mu.Unlock()
	if !at.IsZero() {
		fresh := egen == gen && now.Sub(at) < overviewTTL
		if fresh || c.running.Load() && !failing {
			if !fresh {
				c.wake()
			}
			if by == who || served(by, d) {
				return d, !fresh, nil
			}
		}
	}
	e.computing.Lock()
	defer e.computing.Unlock()
	// Another view, or Run, may have computed it while this one waited.
	e.mu.Lock()
	at, egen, by, d = e.at, e.gen, e.by, e.data
	e.mu.Unlock()
	gen = c.generation()
	if !at.IsZero() && egen == gen && c.clock().Sub(at) < overviewTTL && (by == who || served(by, d)) {
		return d, false, nil
	}
	d, err := compute(ctx)
	if err != nil {
		return d, false, err
	}
	c.keep(e, d, gen, who)
	return d, false, nil
}

// refresh computes key's overview with compute, as who, when it is due:
// when none is kept and warm (the first look, so the first view finds
// one) or someone viewed it within keepWarm, when an
// action made it out of date, or when it is refreshAfter old and was
// viewed within keepWarm; never within refreshBackoff of a failure
// (views compute it meanwhile). It reports whether it computed.
func (c *overviewCache) refresh(ctx context.Context, key string, who audit.Actor, warm bool,
	compute func(context.Context) (overviewData, error)) (bool, error) {
	e, gen := c.entry(key)
	due := func() bool {
		now := c.clock()
		e.mu.Lock()
		defer e.mu.Unlock()
		switch {
		case now.Sub(e.failed) < refreshBackoff:
			return false
		case e.at.IsZero():
			return warm || now.Sub(e.viewed) < keepWarm
		case e.gen != gen:
			return true
		default:
			return now.Sub(e.at) >= refreshAfter && now.Sub(e.viewed) < keepWarm
		}
	}
	if !due() {
		return false, nil
	}
	e.computing.Lock()
	defer e.computing.Unlock()
	gen = c.generation()
	if !due() { // a view computed it meanwhile
		return false, nil
	}
	cctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	d, err := compute(cctx)
	cancel()
	if err != nil {
		e.mu.Lock()
		e.failed = c.clock()
		e.mu.Unlock()
		return true, err
	}
	c.keep(e, d, gen, who)
	return true, nil
}

// keep stores d, computed as who from generation gen, in e.
func (c *overviewCache) keep(e *cachedOverview, d overviewData, gen uint64, who audit.Actor) {
	e.mu.Lock()
	e.data, e.at, e.gen, e.by = d, c.clock(), gen, who
	e.mu.Unlock()
}

func (c *overviewCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// wake makes Run look now rather than at its next tick.
func (c *overviewCache) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// evictLocked drops the entries not viewed within overviewTTL, or all of
// them when every one was.
func (c *overviewCache) evictLocked() {
	now := c.clock()
	for k, e := range c.m {
		e.mu.Lock()
		if now.Sub(e.viewed) >= overviewTTL {
			delete(c.m, k)
		}
		e.mu.Unlock()
	}
	if len(c.m) >= maxCached {
		clear(c.m)
	}
}

// clear marks every kept overview out of date: after an action, the next
// view shows its effect.
func (c *overviewCache) clear() {
	c.mu.Lock()
	c.gen++
	c.mu.Unlock()
	c.wake()
}
