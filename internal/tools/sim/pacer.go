package sim

import (
	"context"
	"time"
)

// Pacer maps simulated time onto wall time at a speed-up factor, for
// feeding a live demo. It is a plain value, safe for concurrent use.
//
// Because the ingest rejects events more than 10 minutes in the future, a
// simulation that runs faster than real time must not overtake the wall
// clock: set NotAfterWall and start the simulation in the past (say a day
// ago at Speed 1000); it replays the past fast, then follows the wall clock.
type Pacer struct {
	// SimStart is the simulated time that is due at WallStart.
	SimStart  time.Time
	WallStart time.Time
	// Speed is simulated seconds per wall second; <= 0 means 1.
	Speed float64
	// NotAfterWall holds simulated time back so it never runs ahead of the
	// wall clock.
	NotAfterWall bool
}

func (p Pacer) speed() float64 {
	if p.Speed <= 0 {
		return 1
	}
	return p.Speed
}

// WallTime returns when, on the wall clock, simulated time sim is due.
func (p Pacer) WallTime(sim time.Time) time.Time {
	w := p.WallStart.Add(time.Duration(float64(sim.Sub(p.SimStart)) / p.speed()))
	if p.NotAfterWall && sim.After(w) {
		return sim
	}
	return w
}

// SimTime returns the simulated time that is due at wall time wall.
func (p Pacer) SimTime(wall time.Time) time.Time {
	s := p.SimStart.Add(time.Duration(float64(wall.Sub(p.WallStart)) * p.speed()))
	if p.NotAfterWall && s.After(wall) && !p.SimStart.After(wall) {
		return wall
	}
	return s
}

// Wait blocks until simulated time sim is due. It returns ctx's error if
// ctx ends first, nil otherwise (at once when sim is already due).
func (p Pacer) Wait(ctx context.Context, sim time.Time) error {
	d := time.Until(p.WallTime(sim))
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
