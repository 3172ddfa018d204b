package revoke

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Budget limits automatic revocations to Limit in any sliding Interval,
// across every Guard that shares it (share one per process, so the limit
// is on the blast radius, not per adapter). Safe for concurrent use.
type Budget struct {
	limit    int
	interval time.Duration
	now      func() time.Time

	mu    sync.Mutex
	spent []time.Time // start times within the window, oldest first
}

// NewBudget returns a budget of limit automatic revocations per interval.
// A limit of 0 sends every automatic revocation to approval. now is the
// clock; nil means time.Now.
func NewBudget(limit int, interval time.Duration, now func() time.Time) (*Budget, error) {
	var errs []error
	if limit < 0 {
		errs = append(errs, fmt.Errorf("budget limit: %d; want 0 or more (0 sends every automatic revocation to approval)", limit))
	}
	if interval <= 0 {
		errs = append(errs, fmt.Errorf("budget interval: %s; want a positive duration such as 1h", interval))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Budget{limit: limit, interval: interval, now: now}, nil
}

// expire drops spending older than the window. b.mu is held.
func (b *Budget) expire(now time.Time) {
	cut := now.Add(-b.interval)
	i := 0
	for i < len(b.spent) && !b.spent[i].After(cut) {
		i++
	}
	b.spent = b.spent[i:]
}

// spend takes one unit if any is left and returns the time it was taken
// at, for refund.
func (b *Budget) spend() (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.expire(now)
	if len(b.spent) >= b.limit {
		return time.Time{}, false
	}
	b.spent = append(b.spent, now)
	return now, true
}

// refund gives back the unit spent at t (a revocation that turned out to
// be needless).
func (b *Budget) refund(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i := slices.IndexFunc(b.spent, func(x time.Time) bool { return x.Equal(t) }); i >= 0 {
		b.spent = slices.Delete(b.spent, i, i+1)
	}
}

// Limit returns the automatic revocations allowed per interval.
func (b *Budget) Limit() int { return b.limit }

// Remaining returns how many automatic revocations the window still allows.
func (b *Budget) Remaining() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expire(b.now())
	return max(0, b.limit-len(b.spent))
}

// Seed counts revocations started at times (from before a restart)
// against the budget. Call it at start with BudgetSource.AutomaticSince.
func (b *Budget) Seed(times ...time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.spent = append(b.spent, times...)
	slices.SortFunc(b.spent, func(x, y time.Time) int { return x.Compare(y) })
	b.expire(b.now())
}

// SeedFrom seeds the budget from a ledger's records of the last interval.
func (b *Budget) SeedFrom(ctx context.Context, src BudgetSource) error {
	times, err := src.AutomaticSince(ctx, b.now().Add(-b.interval))
	if err != nil {
		return fmt.Errorf("seed revocation budget: %w", err)
	}
	b.Seed(times...)
	return nil
}

// A KillSwitch, engaged, stops every automatic revocation (they become
// approval requests) and every manual one not forced. Implementations are
// safe for concurrent use.
type KillSwitch interface {
	Engaged() bool
}

// Switch is a KillSwitch set in process (from config, a Slack command or
// an API call). The zero value is disengaged. Safe for concurrent use.
type Switch struct{ on atomic.Bool }

// Set engages (true) or disengages the switch.
func (s *Switch) Set(on bool) { s.on.Store(on) }

// Engaged implements KillSwitch.
func (s *Switch) Engaged() bool { return s.on.Load() }

// FileSwitch is a KillSwitch engaged while the file at its path exists,
// so an operator stops revocations with `touch`. It fails closed: an error
// other than "does not exist" counts as engaged.
type FileSwitch string

// Engaged implements KillSwitch.
func (p FileSwitch) Engaged() bool {
	if p == "" {
		return false
	}
	_, err := os.Stat(string(p))
	return !errors.Is(err, fs.ErrNotExist)
}

// AnySwitch is engaged when any of its switches is.
type AnySwitch []KillSwitch

// Engaged implements KillSwitch.
func (a AnySwitch) Engaged() bool {
	for _, s := range a {
		if s != nil && s.Engaged() {
			return true
		}
	}
	return false
}
