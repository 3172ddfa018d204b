package global

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/agentwatch/agentwatch/internal/platform/kstate"
)

// lateTable lets the rules be built (and registered on the Mux the table
// applies through) before the table exists: the table's restore applies
// every record to them before OpenTable returns.
type lateTable struct{ t atomic.Pointer[kstate.Table] }

var errTableNotOpen = errors.New("the global table is not open yet")

func (l *lateTable) Put(ctx context.Context, key string, value []byte) (int64, error) {
	t := l.t.Load()
	if t == nil {
		return 0, errTableNotOpen
	}
	return t.Put(ctx, key, value)
}

func (l *lateTable) PutRetryAs(ctx context.Context, key string, value []byte, retryKey func(n int) string) (int64, error) {
	t := l.t.Load()
	if t == nil {
		return 0, errTableNotOpen
	}
	return t.PutRetryAs(ctx, key, value, retryKey)
}

func (l *lateTable) Delete(ctx context.Context, key string) (int64, error) {
	t := l.t.Load()
	if t == nil {
		return 0, errTableNotOpen
	}
	return t.Delete(ctx, key)
}

// Open builds the rules, registers them on mux (nil: a Mux of their own;
// pass one to carry other prefixes on the same table) and opens the table
// of cfg, whose topic must exist (kstate.Spec(topic, 1)). It returns once
// the table was read to its end: the rules are then every instance's. The
// caller closes the table; the rules need nothing closed.
func Open(ctx context.Context, cfg kstate.Config, o Options, mux *kstate.Mux) (*Rules, *kstate.Table, error) {
	lt := &lateTable{}
	rules, err := NewRules(lt, o)
	if err != nil {
		return nil, nil, err
	}
	if mux == nil {
		mux = kstate.NewMux()
	}
	rules.Register(mux)
	t, err := kstate.OpenTable(ctx, cfg, mux.Apply)
	if err != nil {
		return nil, nil, fmt.Errorf("open the responder's global table: %w", err)
	}
	lt.t.Store(t)
	return rules, t, nil
}
