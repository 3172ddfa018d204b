// Package visibility answers the questions a security team and its
// auditors ask of the traffic agentwatch has seen: which agents exist and
// what each uses (the inventory), who called which routes between two
// times (access), one agent's profile and timeline, one route's callers,
// and the least-privilege and lifecycle findings. The CLI, the HTTP API,
// the web console and the reports all ask through a Service, so they give
// the same answers.
//
// The traffic comes from a Source: ClickHouse's summary tables (fed by
// materialized views from the events table) in the distributed mode, the
// embedded event files in the embedded mode. What agentwatch is told about
// the fleet (the agent registry and the route inventory) is joined in Go.
package visibility

import (
	"context"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// Span is the half-open time range [From, To), in UTC.
type Span struct {
	From, To time.Time
}

// StatusMix counts calls by their HTTP status.
type StatusMix struct {
	S2xx, S3xx, S4xx, S5xx uint64
	// S401 and S403 are also counted in S4xx: the denials a permission
	// report reads.
	S401, S403 uint64
}

// Usage is traffic summed over a span.
type Usage struct {
	Calls         uint64
	RequestBytes  uint64
	ResponseBytes uint64
	Status        StatusMix
	// FirstMs and LastMs are the first and last event times in the span,
	// Unix milliseconds; 0 when Calls is 0.
	FirstMs, LastMs int64
}

// AgentUsage is one agent's traffic over a span.
type AgentUsage struct {
	AgentID string
	Usage
	// ActiveDays is how many UTC days of the span hold a call.
	ActiveDays int
	// Routes is how many distinct routes the agent called.
	Routes int
	// SourceIPs, Credentials and Gateways are the distinct values seen,
	// sorted, at most MaxValues each; the *Count fields say how many in
	// all.
	SourceIPs, Credentials, Gateways             []string
	SourceIPCount, CredentialCount, GatewayCount int
}

// MaxValues caps the distinct source addresses, credentials and gateways
// listed per agent.
const MaxValues = 20

// AgentRouteUsage is one agent's traffic on one route over a span. Route
// is the normalised template the ingest wrote (events.route); "" for
// events without one.
type AgentRouteUsage struct {
	AgentID, Route string
	Usage
}

// DailyCount is one UTC day's traffic of one key (an agent id or a route,
// as asked).
type DailyCount struct {
	Day time.Time
	Key string
	Usage
}

// DailyBy says what DailyCount.Key holds.
type DailyBy int

// DailyBy values.
const (
	ByAgent DailyBy = iota
	ByRoute
)

// AccessQuery asks who called any of Routes (normalised templates) within
// Span. Empty Routes means every route; AgentID, when set, narrows to one
// agent.
type AccessQuery struct {
	Span    Span
	Routes  []string
	AgentID string
	// Samples caps the request ids returned per row (default 5).
	Samples int
}

// AccessRow is one agent's calls to the asked routes.
type AccessRow struct {
	AgentID string
	Usage
	// Routes are the asked routes this agent called, sorted.
	Routes []string
	// SampleRequestIDs are request ids of some of these calls, to look up
	// at the gateway.
	SampleRequestIDs []string
}

// EventQuery selects events for a drill-down: newest first, at most
// Limit (default 100, at most 10,000).
type EventQuery struct {
	Span    Span
	AgentID string
	Routes  []string
	Limit   int
}

// Source is where the traffic and the responder's records come from. Each
// method reads one span; implementations answer from summaries where they
// have them. Every method is safe for concurrent use.
type Source interface {
	// Agents sums each agent's traffic over span. agentID, when not "",
	// narrows to one agent, so a profile does not read the whole fleet.
	Agents(ctx context.Context, span Span, agentID string) ([]AgentUsage, error)
	// AgentRoutes sums traffic per agent and route over span. agentID
	// and route, when not "", narrow to one agent or one route.
	AgentRoutes(ctx context.Context, span Span, agentID, route string) ([]AgentRouteUsage, error)
	// Daily gives traffic per UTC day and per agent or per route (by)
	// over span. agentID and route, when not "", narrow to one agent or
	// one route: ByAgent with a route gives a route's callers over time.
	Daily(ctx context.Context, span Span, by DailyBy, agentID, route string) ([]DailyCount, error)
	// Access answers an access question from the events themselves, so
	// its counts are exact and its samples real.
	Access(ctx context.Context, q AccessQuery) ([]AccessRow, error)
	// Events returns the events q selects, newest first (of equal times,
	// the greater EventID first).
	Events(ctx context.Context, q EventQuery) ([]event.Event, error)
	// Anomalies returns the anomalies whose window starts within span, of
	// agentID or of every agent when "", ordered by window start, agent,
	// kind and ID.
	Anomalies(ctx context.Context, span Span, agentID string) ([]anomaly.Anomaly, error)
	// Actions returns the responder's audit records within span, of
	// agentID or of every agent when "", ordered by time then ID, without
	// the questions asked (audit.ActionAsk): those are the trail of who
	// looked, not of what was done, and can outnumber the actions by far.
	Actions(ctx context.Context, span Span, agentID string) ([]audit.Record, error)
	// Verdicts returns the analysts' verdicts given within span, ordered
	// by time then ID.
	Verdicts(ctx context.Context, span Span) ([]anomaly.Verdict, error)
}
