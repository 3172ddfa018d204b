package console

import (
	"context"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// overviewTTL is how long an overview is kept: the overview reads the
// month's inventory and the 90-day findings of the whole fleet, which on
// a large fleet takes most of a second, and people reload it often. The
// page says when its numbers were computed.
const overviewTTL = 60 * time.Second

// maxCached caps the kept overviews.
const maxCached = 1000

// overviewCache keeps overviews for overviewTTL, one per key: the
// signed-in scope when the console has an audit trail (a view served from
// a copy another person's view computed is recorded there under the
// viewer's name), each person otherwise. An action taken through the
// console empties it. Safe for concurrent use.
type overviewCache struct {
	mu    sync.Mutex
	m     map[string]*cachedOverview
	clock func() time.Time // the wall clock: the expiry is real time
}

type cachedOverview struct {
	// mu is held while the overview is computed, so concurrent views wait
	// for one computation rather than each starting one.
	mu   sync.Mutex
	at   time.Time   // clock time of the computation; zero: not computed
	by   audit.Actor // whose view computed it
	data overviewData
}

func newOverviewCache(clock func() time.Time) *overviewCache {
	return &overviewCache{m: map[string]*cachedOverview{}, clock: clock}
}

// get returns key's overview and whose view computed it, computing it
// with compute (as who) when none is kept or it is older than
// overviewTTL. A kept copy is only returned when served(by) agrees (it
// records the view); otherwise it is computed again. A failed computation
// is not kept.
func (c *overviewCache) get(ctx context.Context, key string, who audit.Actor, served func(by audit.Actor, d overviewData) bool,
	compute func(context.Context) (overviewData, error)) (overviewData, error) {
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
	if !e.at.IsZero() && c.clock().Sub(e.at) < overviewTTL && (e.by == who || served(e.by, e.data)) {
		return e.data, nil
	}
	d, err := compute(ctx)
	if err != nil {
		return d, err
	}
	e.data, e.at, e.by = d, c.clock(), who
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
