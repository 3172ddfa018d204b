package global

import (
	"context"
	"errors"
	"sync"
)

// MemTable is an in-memory stand-in for the global table: one log that
// several followers (the "instances" of a test) apply in offset order, as
// kstate.Table does over the topic. Put and Delete apply the record to
// every follower before they return, so the read-your-writes promise of
// the real table holds, and more. It is for tests; it keeps every record.
// Safe for concurrent use. Followers must not call Put from their apply.
type MemTable struct {
	mu        sync.Mutex
	log       []memRecord
	followers []func(key string, value []byte)
	failing   error
}

type memRecord struct {
	key   string
	value []byte
}

// NewMemTable returns an empty table.
func NewMemTable() *MemTable { return &MemTable{} }

// Follow replays the log to apply, then has it apply every later record,
// and returns a Table that writes to this log: one instance's handle.
func (m *MemTable) Follow(apply func(key string, value []byte)) *MemTable {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range m.log {
		apply(r.key, r.value)
	}
	m.followers = append(m.followers, apply)
	return m
}

// Fail makes every later Put and Delete fail with err (nil: succeed again).
func (m *MemTable) Fail(err error) {
	m.mu.Lock()
	m.failing = err
	m.mu.Unlock()
}

// Put implements Table.
func (m *MemTable) Put(ctx context.Context, key string, value []byte) (int64, error) {
	if value == nil {
		return 0, errors.New("memtable: nil value; use Delete")
	}
	return m.write(ctx, key, append([]byte(nil), value...))
}

// PutRetryAs implements Table: a write here never fails after it landed,
// so it is never retried and retryKey is not used.
func (m *MemTable) PutRetryAs(ctx context.Context, key string, value []byte, _ func(n int) string) (int64, error) {
	return m.Put(ctx, key, value)
}

// Delete implements Table: a tombstone.
func (m *MemTable) Delete(ctx context.Context, key string) (int64, error) {
	return m.write(ctx, key, nil)
}

func (m *MemTable) write(ctx context.Context, key string, value []byte) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failing != nil {
		return 0, m.failing
	}
	m.log = append(m.log, memRecord{key: key, value: value})
	for _, f := range m.followers {
		f(key, value)
	}
	return int64(len(m.log) - 1), nil
}

// Len returns the number of records written.
func (m *MemTable) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.log)
}
