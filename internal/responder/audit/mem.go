package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// MemStore is a Store in memory, for tests and for a process that needs
// no history across restarts. Its zero value is empty and ready. Safe for
// concurrent use.
type MemStore struct {
	mu   sync.Mutex
	recs []Record
}

var _ Store = (*MemStore)(nil)

// Append implements Store.
func (s *MemStore) Append(ctx context.Context, recs ...Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("append audit records: %w", err)
	}
	norm := make([]Record, len(recs))
	var errs []error
	for i, r := range recs {
		norm[i] = r.Normalize()
		if err := norm[i].Validate(); err != nil {
			errs = append(errs, fmt.Errorf("audit record %d (id %.40q): %w", i, r.ID, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, norm...)
	return nil
}

// Query implements Store.
func (s *MemStore) Query(ctx context.Context, f Filter) ([]Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("query audit records: %w", err)
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	f = f.Normalize()
	s.mu.Lock()
	var out []Record
	for _, r := range s.recs {
		if f.Match(r) {
			out = append(out, r)
		}
	}
	s.mu.Unlock()
	return finish(out, f.Limit), nil
}

// All returns a copy of every record, in append order.
func (s *MemStore) All() []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.recs)
}
