package detstate

import (
	"cmp"
	"context"
	"maps"
	"slices"
)

// Checkpoints returns every stored checkpoint, the newest of each (Group,
// Topic, Partition), ordered by those: the detector reads them at start to
// find other consumer groups writing the same state.
func (s *FileStore) Checkpoints(context.Context) ([]Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	return slices.SortedFunc(maps.Values(s.checkpoints), func(a, b Checkpoint) int {
		return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	}), nil
}
