package visibility

import (
	"cmp"
	"context"
	"slices"
	"sort"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// MemSource answers from records held in memory: the embedded mode loads
// its files into one, and tests build one. It is the reference for what
// every Source returns: the ClickHouse source is tested against it on the
// same events. Events with a repeated EventID count once, as they do in
// ClickHouse after a retried insert merges.
type MemSource struct {
	events    []event.Event // sorted by time, one per EventID
	anomalies []anomaly.Anomaly
	records   []audit.Record
	verdicts  []anomaly.Verdict
}

// NewMemSource holds copies of the slices' elements. It is safe for
// concurrent reads.
func NewMemSource(events []event.Event, anomalies []anomaly.Anomaly, records []audit.Record, verdicts []anomaly.Verdict) *MemSource {
	seen := make(map[string]struct{}, len(events))
	s := &MemSource{events: make([]event.Event, 0, len(events))}
	for _, e := range events {
		if e.EventID != "" {
			if _, dup := seen[e.EventID]; dup {
				continue
			}
			seen[e.EventID] = struct{}{}
		}
		s.events = append(s.events, e)
	}
	// Ties are ordered by EventID, as ClickHouse orders them, so the
	// earliest samples and the newest events are the same in every Source.
	slices.SortStableFunc(s.events, func(a, b event.Event) int {
		if c := cmp.Compare(a.EventTimeMs, b.EventTimeMs); c != 0 {
			return c
		}
		return cmp.Compare(a.EventID, b.EventID)
	})
	s.anomalies = slices.Clone(anomalies)
	s.records = slices.Clone(records)
	s.verdicts = slices.Clone(verdicts)
	return s
}

func (sp Span) containsMs(ms int64) bool {
	return ms >= sp.From.UnixMilli() && ms < sp.To.UnixMilli()
}

// add counts one event.
func (u *Usage) add(e *event.Event) {
	u.Calls++
	u.RequestBytes += e.RequestBytes
	u.ResponseBytes += e.ResponseBytes
	switch {
	case e.Status >= 200 && e.Status < 300:
		u.Status.S2xx++
	case e.Status >= 300 && e.Status < 400:
		u.Status.S3xx++
	case e.Status >= 400 && e.Status < 500:
		u.Status.S4xx++
	case e.Status >= 500 && e.Status < 600:
		u.Status.S5xx++
	}
	switch e.Status {
	case 401:
		u.Status.S401++
	case 403:
		u.Status.S403++
	}
	if u.FirstMs == 0 || e.EventTimeMs < u.FirstMs {
		u.FirstMs = e.EventTimeMs
	}
	if e.EventTimeMs > u.LastMs {
		u.LastMs = e.EventTimeMs
	}
}

// each calls fn for every event within span, in time order.
func (s *MemSource) each(span Span, fn func(e *event.Event)) {
	from := span.From.UnixMilli()
	i := sort.Search(len(s.events), func(i int) bool { return s.events[i].EventTimeMs >= from })
	for ; i < len(s.events) && span.containsMs(s.events[i].EventTimeMs); i++ {
		fn(&s.events[i])
	}
}

func dayOf(ms int64) time.Time {
	return time.UnixMilli(ms).UTC().Truncate(24 * time.Hour)
}

// Agents implements Source.
func (s *MemSource) Agents(_ context.Context, span Span, agentID string) ([]AgentUsage, error) {
	type acc struct {
		u               AgentUsage
		days            map[int64]struct{} // UTC day numbers
		routes          map[string]struct{}
		ips, creds, gws map[string]struct{}
	}
	by := map[string]*acc{}
	s.each(span, func(e *event.Event) {
		if agentID != "" && e.AgentID != agentID {
			return
		}
		a := by[e.AgentID]
		if a == nil {
			a = &acc{u: AgentUsage{AgentID: e.AgentID}, days: map[int64]struct{}{}, routes: map[string]struct{}{},
				ips: map[string]struct{}{}, creds: map[string]struct{}{}, gws: map[string]struct{}{}}
			by[e.AgentID] = a
		}
		a.u.add(e)
		a.days[floorDiv(e.EventTimeMs, 24*time.Hour.Milliseconds())] = struct{}{}
		a.routes[e.Route] = struct{}{}
		addNonEmpty(a.ips, e.SourceIP)
		addNonEmpty(a.creds, e.CredentialID)
		addNonEmpty(a.gws, e.Gateway)
	})
	out := make([]AgentUsage, 0, len(by))
	for _, a := range by {
		a.u.ActiveDays, a.u.Routes = len(a.days), len(a.routes)
		a.u.SourceIPs, a.u.SourceIPCount = capped(a.ips)
		a.u.Credentials, a.u.CredentialCount = capped(a.creds)
		a.u.Gateways, a.u.GatewayCount = capped(a.gws)
		out = append(out, a.u)
	}
	slices.SortFunc(out, func(a, b AgentUsage) int { return cmp.Compare(a.AgentID, b.AgentID) })
	return out, nil
}

// floorDiv is a / b rounded down (b > 0), so events before 1970 fall
// on their own day too.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}

func addNonEmpty(m map[string]struct{}, v string) {
	if v != "" {
		m[v] = struct{}{}
	}
}

func capped(m map[string]struct{}) ([]string, int) {
	vs := make([]string, 0, len(m))
	for v := range m {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	if len(vs) > MaxValues {
		vs = vs[:MaxValues]
	}
	return vs, len(m)
}

// AgentRoutes implements Source.
func (s *MemSource) AgentRoutes(_ context.Context, span Span, agentID, route string) ([]AgentRouteUsage, error) {
	type key struct{ agent, route string }
	by := map[key]*AgentRouteUsage{}
	s.each(span, func(e *event.Event) {
		if agentID != "" && e.AgentID != agentID || route != "" && e.Route != route {
			return
		}
		k := key{e.AgentID, e.Route}
		r := by[k]
		if r == nil {
			r = &AgentRouteUsage{AgentID: e.AgentID, Route: e.Route}
			by[k] = r
		}
		r.add(e)
	})
	out := make([]AgentRouteUsage, 0, len(by))
	for _, r := range by {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b AgentRouteUsage) int {
		if c := cmp.Compare(a.AgentID, b.AgentID); c != 0 {
			return c
		}
		return cmp.Compare(a.Route, b.Route)
	})
	return out, nil
}

// Daily implements Source.
func (s *MemSource) Daily(_ context.Context, span Span, by DailyBy, agentID, route string) ([]DailyCount, error) {
	type key struct {
		day int64
		key string
	}
	m := map[key]*DailyCount{}
	s.each(span, func(e *event.Event) {
		if agentID != "" && e.AgentID != agentID || route != "" && e.Route != route {
			return
		}
		k := key{day: dayOf(e.EventTimeMs).Unix(), key: e.AgentID}
		if by == ByRoute {
			k.key = e.Route
		}
		d := m[k]
		if d == nil {
			d = &DailyCount{Day: time.Unix(k.day, 0).UTC(), Key: k.key}
			m[k] = d
		}
		d.add(e)
	})
	out := make([]DailyCount, 0, len(m))
	for _, d := range m {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b DailyCount) int {
		if c := a.Day.Compare(b.Day); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	return out, nil
}

// DefaultSamples is how many request ids an AccessRow carries when the
// query does not say.
const DefaultSamples = 5

// Access implements Source. Samples are the earliest request ids.
func (s *MemSource) Access(_ context.Context, q AccessQuery) ([]AccessRow, error) {
	if q.Samples <= 0 {
		q.Samples = DefaultSamples
	}
	want := make(map[string]struct{}, len(q.Routes))
	for _, r := range q.Routes {
		want[r] = struct{}{}
	}
	type acc struct {
		row    AccessRow
		routes map[string]struct{}
	}
	by := map[string]*acc{}
	s.each(q.Span, func(e *event.Event) {
		if q.AgentID != "" && e.AgentID != q.AgentID {
			return
		}
		if len(want) > 0 {
			if _, ok := want[e.Route]; !ok {
				return
			}
		}
		a := by[e.AgentID]
		if a == nil {
			a = &acc{row: AccessRow{AgentID: e.AgentID}, routes: map[string]struct{}{}}
			by[e.AgentID] = a
		}
		a.row.add(e)
		a.routes[e.Route] = struct{}{}
		if e.RequestID != "" && len(a.row.SampleRequestIDs) < q.Samples {
			a.row.SampleRequestIDs = append(a.row.SampleRequestIDs, e.RequestID)
		}
	})
	out := make([]AccessRow, 0, len(by))
	for _, a := range by {
		for r := range a.routes {
			a.row.Routes = append(a.row.Routes, r)
		}
		slices.Sort(a.row.Routes)
		out = append(out, a.row)
	}
	slices.SortFunc(out, func(a, b AccessRow) int { return cmp.Compare(a.AgentID, b.AgentID) })
	return out, nil
}

// Limits of EventQuery.Limit.
const (
	DefaultEventLimit = 100
	MaxEventLimit     = 10000
)

// EventLimit returns q.Limit bounded as Source.Events reads it.
func (q EventQuery) EventLimit() int {
	switch {
	case q.Limit <= 0:
		return DefaultEventLimit
	case q.Limit > MaxEventLimit:
		return MaxEventLimit
	}
	return q.Limit
}

// Events implements Source.
func (s *MemSource) Events(_ context.Context, q EventQuery) ([]event.Event, error) {
	want := make(map[string]struct{}, len(q.Routes))
	for _, r := range q.Routes {
		want[r] = struct{}{}
	}
	var out []event.Event
	s.each(q.Span, func(e *event.Event) {
		if q.AgentID != "" && e.AgentID != q.AgentID {
			return
		}
		if len(want) > 0 {
			if _, ok := want[e.Route]; !ok {
				return
			}
		}
		out = append(out, *e)
	})
	slices.Reverse(out)
	if n := q.EventLimit(); len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// Anomalies implements Source.
func (s *MemSource) Anomalies(_ context.Context, span Span, agentID string) ([]anomaly.Anomaly, error) {
	var out []anomaly.Anomaly
	for _, a := range s.anomalies {
		if (agentID == "" || a.AgentID == agentID) && span.containsMs(a.WindowStartMs) {
			out = append(out, a)
		}
	}
	slices.SortStableFunc(out, func(a, b anomaly.Anomaly) int {
		return cmp.Or(cmp.Compare(a.WindowStartMs, b.WindowStartMs), cmp.Compare(a.AgentID, b.AgentID),
			cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Actions implements Source.
func (s *MemSource) Actions(_ context.Context, span Span, agentID string) ([]audit.Record, error) {
	var out []audit.Record
	for _, r := range s.records {
		if (agentID == "" || r.AgentID == agentID) && span.containsMs(r.AtMs) && r.Action != audit.ActionAsk {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b audit.Record) int { return cmp.Or(cmp.Compare(a.AtMs, b.AtMs), cmp.Compare(a.ID, b.ID)) })
	return out, nil
}

// Verdicts implements Source.
func (s *MemSource) Verdicts(_ context.Context, span Span) ([]anomaly.Verdict, error) {
	var out []anomaly.Verdict
	for _, v := range s.verdicts {
		if span.containsMs(v.AtMs) {
			out = append(out, v)
		}
	}
	slices.SortStableFunc(out, func(a, b anomaly.Verdict) int { return cmp.Or(cmp.Compare(a.AtMs, b.AtMs), cmp.Compare(a.ID, b.ID)) })
	return out, nil
}

var _ Source = (*MemSource)(nil)
