// Package retry is agentwatch's one rule for retrying: capped exponential
// backoff with jitter (Backoff), and the loop that applies it to a call
// (Policy.Do). Callers keep their own options and decide what is worth
// retrying; logs, metrics and readiness go in Policy.OnRetry.
//
// A caller that schedules its retries itself, such as the outbox, which
// stores each entry's next attempt, uses Backoff.Delay alone.
package retry

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Backoff is capped exponential backoff with jitter. Callers fill Base and
// Max from their own options (and defaults); the zero value waits 0.
type Backoff struct {
	// Base is the wait after the first failure; each further failure
	// doubles it, up to Max.
	Base, Max time.Duration
}

// Delay is the wait after failure n (1-based): Base·2ⁿ⁻¹ capped at Max, of
// which a random half is jitter, so callers failing together spread out.
// The first wait is Base even if Max is smaller. Safe for concurrent use.
func (b Backoff) Delay(n int) time.Duration {
	d := b.Base
	for i := 1; i < n; i++ {
		if d >= b.Max/2 {
			d = b.Max
			break
		}
		d *= 2
	}
	half := max(d, 0) / 2
	return half + rand.N(half+1)
}

// Policy says how Do retries. The zero value retries every error at once,
// forever: set Backoff at least.
type Policy struct {
	Backoff
	// Attempts bounds the calls Do makes; 0 means no bound.
	Attempts int
	// Retryable reports whether an error is worth another call; nil
	// retries every error. Do never retries once ctx has ended.
	Retryable func(error) bool
	// OnRetry, when set, is called before each wait with the number of the
	// failed call (1-based), the wait and its error: for the caller's
	// logs, metrics and readiness.
	OnRetry func(attempt int, wait time.Duration, err error)
}

// Do calls f until it returns nil, returns an error p.Retryable refuses,
// has been called p.Attempts times, or ctx ends, waiting p.Delay between
// calls. It returns the number of calls and f's last error, unchanged;
// except when ctx ends during a wait, when the error wraps both ctx.Err()
// and f's last error and says how many calls were made.
func (p Policy) Do(ctx context.Context, f func(context.Context) error) (attempts int, err error) {
	for attempts = 1; ; attempts++ {
		err = f(ctx)
		if err == nil || ctx.Err() != nil || (p.Retryable != nil && !p.Retryable(err)) ||
			(p.Attempts > 0 && attempts >= p.Attempts) {
			return attempts, err
		}
		wait := p.Delay(attempts)
		if p.OnRetry != nil {
			p.OnRetry(attempts, wait, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return attempts, fmt.Errorf("%w (after %d attempts; last: %w)", ctx.Err(), attempts, err)
		case <-t.C:
		}
	}
}
