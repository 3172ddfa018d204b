// Package stall notices that this process stopped running for a while (a
// SIGSTOP, a paused VM, a machine swapping), so that a member of a Kafka
// consumer group can tell it may have been dropped from the group while it
// stood still and its partitions given to another member.
//
// Kafka fences nothing outside its own logs: a member that resumes after
// the group moved on still holds its in-memory state and its running
// handlers, and would act on agents another instance now owns (a second
// revocation, a second Slack post) and write stale state after the new
// owner restored it. kafka-go tells the member only at its next heartbeat
// answer, and the handlers resume before that. The Detector closes that
// gap from the inside: the process compares the monotonic clock with its
// own last tick, so the first check after a resume sees the stall, before
// any heartbeat is sent.
package stall

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrStalled is returned once the process stood still longer than the
// Detector's Limit. It never clears: the process must stop without acting
// or writing more, and start again as a new member.
var ErrStalled = errors.New("this process stood still longer than a consumer-group member may")

// Detector ticks on its own goroutine (Run) and reports, at each Check,
// whether the process stood still longer than Limit since the last tick.
// It is safe for concurrent use.
type Detector struct {
	limit, tick time.Duration
	now         func() time.Time

	mu      sync.Mutex
	last    time.Time // has a monotonic reading: Sub ignores wall-clock jumps
	stalled error
}

// New returns a Detector that reports a stall longer than limit; it ticks
// every limit/20 (at least every 10 ms). now is the clock (nil: time.Now,
// whose readings carry the monotonic clock).
func New(limit time.Duration, now func() time.Time) *Detector {
	if now == nil {
		now = time.Now
	}
	return &Detector{limit: limit, tick: max(limit/20, 10*time.Millisecond), now: now, last: now()}
}

// Limit is the longest stall the Detector tolerates.
func (d *Detector) Limit() time.Duration { return d.limit }

// Run ticks until ctx ends (nil) or a stall is seen (an error wrapping
// ErrStalled): as a pipeline stage, its error stops the process.
func (d *Detector) Run(ctx context.Context) error {
	t := time.NewTicker(d.tick)
	defer t.Stop()
	for {
		if err := d.observe(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Check returns an error wrapping ErrStalled when the process stood still
// longer than the limit since the last tick, now or before. Call it right
// before an action and before a state write.
func (d *Detector) Check() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.checkLocked(d.now())
}

// observe is Check that also records the tick.
func (d *Detector) observe() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if err := d.checkLocked(now); err != nil {
		return err
	}
	d.last = now
	return nil
}

func (d *Detector) checkLocked(now time.Time) error {
	if d.stalled != nil {
		return d.stalled
	}
	if gap := now.Sub(d.last); gap > d.limit {
		d.stalled = fmt.Errorf("%w: it did not run for %s (the limit is %s); another member may hold its partitions by now, so it acts and writes nothing more and must be restarted",
			ErrStalled, gap.Round(time.Millisecond), d.limit)
	}
	return d.stalled
}
