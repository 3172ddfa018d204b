package visbench

import (
	"context"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// timedSource is a visibility.Source that adds up the time spent in each
// of its methods, so the report can say where a slow answer's time went:
// in which read of the store, or (the rest) in the service itself.
type timedSource struct {
	src visibility.Source
	mu  sync.Mutex
	in  map[string]time.Duration
}

var _ visibility.Source = (*timedSource)(nil)

func newTimedSource(src visibility.Source) *timedSource {
	return &timedSource{src: src, in: map[string]time.Duration{}}
}

func (t *timedSource) add(method string, start time.Time) {
	d := time.Since(start)
	t.mu.Lock()
	t.in[method] += d
	t.mu.Unlock()
}

// take returns the times added since the last take and starts again.
func (t *timedSource) take() map[string]time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.in
	t.in = map[string]time.Duration{}
	return m
}

func (t *timedSource) Agents(ctx context.Context, span visibility.Span, agentID string) ([]visibility.AgentUsage, error) {
	defer t.add("Agents", time.Now())
	return t.src.Agents(ctx, span, agentID)
}

func (t *timedSource) AgentRoutes(ctx context.Context, span visibility.Span, agentID, route string) ([]visibility.AgentRouteUsage, error) {
	defer t.add("AgentRoutes", time.Now())
	return t.src.AgentRoutes(ctx, span, agentID, route)
}

func (t *timedSource) Daily(ctx context.Context, span visibility.Span, by visibility.DailyBy, agentID, route string) ([]visibility.DailyCount, error) {
	defer t.add("Daily", time.Now())
	return t.src.Daily(ctx, span, by, agentID, route)
}

func (t *timedSource) Access(ctx context.Context, q visibility.AccessQuery) ([]visibility.AccessRow, error) {
	defer t.add("Access", time.Now())
	return t.src.Access(ctx, q)
}

func (t *timedSource) Events(ctx context.Context, q visibility.EventQuery) ([]event.Event, error) {
	defer t.add("Events", time.Now())
	return t.src.Events(ctx, q)
}

func (t *timedSource) Anomalies(ctx context.Context, span visibility.Span, agentID string) ([]anomaly.Anomaly, error) {
	defer t.add("Anomalies", time.Now())
	return t.src.Anomalies(ctx, span, agentID)
}

func (t *timedSource) Actions(ctx context.Context, span visibility.Span, agentID string) ([]audit.Record, error) {
	defer t.add("Actions", time.Now())
	return t.src.Actions(ctx, span, agentID)
}

func (t *timedSource) Verdicts(ctx context.Context, span visibility.Span) ([]anomaly.Verdict, error) {
	defer t.add("Verdicts", time.Now())
	return t.src.Verdicts(ctx, span)
}
