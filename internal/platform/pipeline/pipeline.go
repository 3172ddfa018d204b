// Package pipeline runs a service's long-lived stages together: the first
// stage to fail cancels the others, so a dead listener or a broken sink stops
// the whole process and its supervisor restarts it.
package pipeline

import (
	"context"

	"golang.org/x/sync/errgroup"
)

// A Stage is one long-running step of a service. Run blocks until ctx is
// done (then it returns nil) or the stage cannot go on (then it says why).
type Stage interface {
	Run(ctx context.Context) error
}

// StageFunc adapts a function to a Stage.
type StageFunc func(ctx context.Context) error

// Run implements Stage.
func (f StageFunc) Run(ctx context.Context) error { return f(ctx) }

// Run starts every stage and waits for all of them. The first failure
// cancels the others' context and is the error returned.
func Run(ctx context.Context, stages ...Stage) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, s := range stages {
		g.Go(func() error { return s.Run(ctx) })
	}
	return g.Wait()
}
