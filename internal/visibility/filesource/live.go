package filesource

import (
	"context"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// Live is a visibility.Source on a data directory that a running
// process keeps writing (the embedded responder beside the demo): it
// loads the directory on the first question and again on a question
// asked when its copy is older than MaxAge. Safe for concurrent use; one
// load at a time.
type Live struct {
	o      Options
	maxAge time.Duration
	now    func() time.Time

	mu  sync.Mutex
	src *visibility.MemSource
	at  time.Time
}

var _ visibility.Source = (*Live)(nil)

// DefaultMaxAge is how stale a Live copy may get.
const DefaultMaxAge = 30 * time.Second

// NewLive returns a Live source on o (Progress is ignored); maxAge 0
// means DefaultMaxAge, now nil means time.Now.
func NewLive(o Options, maxAge time.Duration, now func() time.Time) *Live {
	o.Progress = nil
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if now == nil {
		now = time.Now
	}
	return &Live{o: o, maxAge: maxAge, now: now}
}

func (l *Live) current(ctx context.Context) (*visibility.MemSource, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.src != nil && l.now().Sub(l.at) < l.maxAge {
		return l.src, nil
	}
	src, _, err := Load(ctx, l.o)
	if err != nil {
		return nil, err
	}
	l.src, l.at = src, l.now()
	return src, nil
}

// Agents implements visibility.Source.
func (l *Live) Agents(ctx context.Context, span visibility.Span, agentID string) ([]visibility.AgentUsage, error) {
	s, err := l.current(ctx)
	if err != nil {
		return nil, err
	}
	return s.Agents(ctx, span, agentID)
}

// AgentRoutes implements visibility.Source.
func (l *Live) AgentRoutes(ctx context.Context, span visibility.Span, agentID, route string) ([]visibility.AgentRouteUsage, error) {
	s, err := l.current(ctx)
	if err != nil {
		return nil, err
	}
	return s.AgentRoutes(ctx, span, agentID, route)
}

// Daily implements visibility.Source.
func (l *Live) Daily(ctx context.Context, span visibility.Span, by visibility.DailyBy, agentID, route string) ([]visibility.DailyCount, error) {
	s, err := l.current(ctx)
	if err != nil {
		return nil, err
	}
	return s.Daily(ctx, span, by, agentID, route)
}

// Access implements visibility.Source.
func (l *Live) Access(ctx context.Context, q visibility.AccessQuery) ([]visibility.AccessRow, error) {
	s, err := l.current(ctx)
	if err != nil {
		return nil, err
	}
	return s.Access(ctx, q)
}

// Events implements visibility.Source.
func (l *Live) Events(ctx context.Context, q visibility.EventQuery) ([]event.Event, error) {
	s, err := l.current(ctx)
	if err != nil {
		return nil, err
	}
	return s.Events(ctx, q)
}

// Anomalies implements visibility.Source.
func (l *Live) Anomalies(ctx context.Context, span visibility.Span, agentID string) ([]anomaly.Anomaly, error) {
	s, err := l.current(ctx)
	if err != nil {
		return nil, err
	}
	return s.Anomalies(ctx, span, agentID)
}

// Actions implements visibility.Source.
func (l *Live) Actions(ctx context.Context, span visibility.Span, agentID string) ([]audit.Record, error) {
	s, err := l.current(ctx)
	if err != nil {
		return nil, err
	}
	return s.Actions(ctx, span, agentID)
}

// Verdicts implements visibility.Source.
func (l *Live) Verdicts(ctx context.Context, span visibility.Span) ([]anomaly.Verdict, error) {
	s, err := l.current(ctx)
	if err != nil {
		return nil, err
	}
	return s.Verdicts(ctx, span)
}
