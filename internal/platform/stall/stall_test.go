package stall

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// clock is a settable clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestCheckSeesAStallBeforeTheNextTick(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	d := New(8*time.Second, c.now)
	for _, step := range []struct {
		advance time.Duration
		tick    bool
		stalled bool
	}{
		{advance: time.Second, tick: true},
		{advance: 8 * time.Second},                        // 8 s since the tick: at the limit, not past it
		{advance: time.Millisecond, stalled: true},        // past it, though no tick ran
		{advance: 0, tick: true, stalled: true},           // a tick after it does not clear it
		{advance: time.Second, tick: true, stalled: true}, // nor does a later one
	} {
		c.t = c.t.Add(step.advance)
		var err error
		if step.tick {
			err = d.observe()
		} else {
			err = d.Check()
		}
		if got := errors.Is(err, ErrStalled); got != step.stalled {
			t.Fatalf("after +%s (tick %v): stalled %v (%v), want %v", step.advance, step.tick, got, err, step.stalled)
		}
	}
}

// TestRunEndsWithTheStall: Run, as a pipeline stage, returns the stall so
// the process stops; a process that keeps running never sees one.
func TestRunEndsWithTheStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := New(2*time.Second, nil)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		time.Sleep(time.Minute)
		if err := d.Check(); err != nil {
			t.Fatalf("a process that kept ticking: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run at cancel: %v", err)
		}

		// A stall: the clock moves past the limit between two ticks.
		c := &clock{t: time.Now()}
		d = New(2*time.Second, c.now)
		c.t = c.t.Add(3 * time.Second)
		if err := d.Run(t.Context()); !errors.Is(err, ErrStalled) {
			t.Fatalf("Run after a 3 s stall: %v, want ErrStalled", err)
		}
	})
}
