package console

import (
	"context"
	"sync"
	"time"
)

// overviewTTL is how long a person's overview is kept: the overview reads
// the month's inventory and the 90-day findings of the whole fleet, which
// on a large fleet takes seconds, and people reload it often. The page
// says when its numbers were computed.
const overviewTTL = 60 * time.Second

// maxCached caps the kept overviews (one per signed-in person and scope).
const maxCached = 1000

// overviewCache keeps each signed-in person's overview for overviewTTL.
// Keyed by person, not shared: every person's first view asks the
// questions under their own name, so the audit trail says who saw what.
// An action taken through the console empties it. Safe for concurrent
// use.
type overviewCache struct {
	mu    sync.Mutex
	m     map[string]*cachedOverview
	clock func() time.Time // the wall clock: the expiry is real time
}

type cachedOverview struct {
	// mu is held while the overview is computed, so concurrent views of
	// one person wait for one computation rather than each starting one.
	mu   sync.Mutex
	at   time.Time // clock time of the computation; zero: not computed
	data overviewData
}

func newOverviewCache(clock func() time.Time) *overviewCache {
	return &overviewCache{m: map[string]*cachedOverview{}, clock: clock}
}

// get returns key's overview, computing it with compute when none is kept
// or it is older than overviewTTL. A failed computation is not kept.
func (c *overviewCache) get(ctx context.Context, key string, compute func(context.Context) (overviewData, error)) (overviewData, error) {
	c.mu.Lock()
	e := c.m[key]
	if e == nil {
		if len(c.m) >= maxCached {
			c.evictLocked()
		}
		e = &cachedOverview{}
		c.m[key] = e
	}
	c.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.at.IsZero() && c.clock().Sub(e.at) < overviewTTL {
		return e.data, nil
	}
	d, err := compute(ctx)
	if err != nil {
		return d, err
	}
	e.data, e.at = d, c.clock()
	return d, nil
}

// evictLocked drops the expired entries, or all of them when none has
// expired.
func (c *overviewCache) evictLocked() {
	now := c.clock()
	for k, e := range c.m {
		if e.mu.TryLock() {
			if e.at.IsZero() || now.Sub(e.at) >= overviewTTL {
				delete(c.m, k)
			}
			e.mu.Unlock()
		}
	}
	if len(c.m) >= maxCached {
		clear(c.m)
	}
}

// clear forgets every kept overview: after an action, the next view shows
// its effect.
func (c *overviewCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}
