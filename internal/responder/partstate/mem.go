package partstate

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"
)

// MemChangelog is a Changelog in memory, for tests: one log per partition,
// never compacted, so a test sees every record written. Safe for
// concurrent use.
type MemChangelog struct {
	mu   sync.Mutex
	logs [][]Record
	// Fail, when set, is returned by Append (a broker outage).
	Fail       error
	failRecord func(Record) error
}

// FailRecords makes Append ask fn about each record it gets (nil: stop
// asking); an error fails the Append, which then writes none of them. fn
// runs under the changelog's lock, so it may block every Append.
func (m *MemChangelog) FailRecords(fn func(Record) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failRecord = fn
}

var _ Changelog = (*MemChangelog)(nil)

// NewMemChangelog returns an empty changelog of n partitions.
func NewMemChangelog(n int) *MemChangelog { return &MemChangelog{logs: make([][]Record, n)} }

// Partitions implements Changelog.
func (m *MemChangelog) Partitions() int { return len(m.logs) }

// Restore implements Changelog.
func (m *MemChangelog) Restore(ctx context.Context, p int32, fn func(Record) error) error {
	m.mu.Lock()
	if p < 0 || int(p) >= len(m.logs) {
		m.mu.Unlock()
		return fmt.Errorf("no partition %d", p)
	}
	recs := append([]Record(nil), m.logs[p]...)
	m.mu.Unlock()
	for _, r := range recs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// Append implements Changelog.
func (m *MemChangelog) Append(ctx context.Context, p int32, recs ...Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return m.Fail
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if p < 0 || int(p) >= len(m.logs) {
		return fmt.Errorf("no partition %d", p)
	}
	if m.failRecord != nil {
		for _, r := range recs {
			if err := m.failRecord(r); err != nil {
				return err
			}
		}
	}
	for _, r := range recs {
		r.Partition, r.Offset, r.Time = p, int64(len(m.logs[p])), time.Now()
		if r.Value != nil {
			r.Value = bytes.Clone(r.Value)
		}
		m.logs[p] = append(m.logs[p], r)
	}
	return nil
}

// Records returns partition p's records in order.
func (m *MemChangelog) Records(p int32) []Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Record(nil), m.logs[p]...)
}

// Live returns partition p's compacted view: the last value of every key
// whose last record is not a tombstone.
func (m *MemChangelog) Live(p int32) map[string][]byte {
	out := map[string][]byte{}
	for _, r := range m.Records(p) {
		if r.Tombstone() {
			delete(out, r.Key)
			continue
		}
		out[r.Key] = r.Value
	}
	return out
}
