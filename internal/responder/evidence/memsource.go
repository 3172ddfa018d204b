package evidence

import (
	"cmp"
	"context"
	"slices"
	"sync"

	"github.com/agentwatch/agentwatch/pkg/event"
)

// MemSource is an EventSource over events held in memory, for tests and
// small demos. It is safe for concurrent use.
type MemSource struct {
	mu     sync.RWMutex
	events []event.Event // by event time, then insertion
}

var _ EventSource = (*MemSource)(nil)

// Add stores copies of evs.
func (s *MemSource) Add(evs ...event.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Copy on write: a concurrent Events keeps reading the old slice.
	next := make([]event.Event, len(s.events), len(s.events)+len(evs))
	copy(next, s.events)
	for _, e := range evs {
		e.QueryParams = slices.Clone(e.QueryParams)
		next = append(next, e)
	}
	slices.SortStableFunc(next, func(a, b event.Event) int { return cmp.Compare(a.EventTimeMs, b.EventTimeMs) })
	s.events = next
}

// Events implements EventSource. fn gets a copy it may keep.
func (s *MemSource) Events(ctx context.Context, agentID string, fromMs, toMs int64, fn func(*event.Event) error) error {
	s.mu.RLock()
	evs := s.events
	s.mu.RUnlock()
	i, _ := slices.BinarySearchFunc(evs, fromMs, func(e event.Event, t int64) int { return cmp.Compare(e.EventTimeMs, t) })
	for ; i < len(evs) && evs[i].EventTimeMs < toMs; i++ {
		if evs[i].AgentID != agentID {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		e := evs[i]
		e.QueryParams = slices.Clone(e.QueryParams)
		if err := fn(&e); err != nil {
			return err
		}
	}
	return nil
}
