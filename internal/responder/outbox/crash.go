package outbox

import (
	"context"
	"fmt"
)

// RunOnceThenCrash is for tests of handlers and of the responder: it does
// what a Worker does with the entry of key up to and including calling h
// (it marks the entry in flight, durably, and calls h, Recovered if the
// entry was already in flight), then stops as a SIGKILL right after h
// returned would: nothing more is recorded. It returns what h returned.
//
// The store is left with the entry in flight. Close a FileStore and open
// the file again to see what a restarted responder sees: its Worker hands
// the entry to the handler again with Recovered set, and the handler must
// find the action done and not repeat it. The entry must be open (pending
// or in flight); its due time is not checked.
func RunOnceThenCrash(ctx context.Context, s Store, key string, h Handler) ([]byte, error) {
	e, found, err := s.Get(ctx, key)
	switch {
	case err != nil:
		return nil, fmt.Errorf("run %q once: %w", key, err)
	case !found:
		return nil, fmt.Errorf("run %q once: %w", key, ErrNotFound)
	case !e.State.Open():
		return nil, fmt.Errorf("run %q once: it is %s; only open entries run", key, e.State)
	}
	e, err = claim(ctx, s, e)
	if err != nil {
		return nil, fmt.Errorf("run %q once: mark in flight: %w", key, err)
	}
	return h(ctx, e)
}
