package visibility

import (
	"context"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// Lifecycle is where an agent stands, from traffic and the registry.
type Lifecycle string

// Lifecycle states.
const (
	// LifecycleNew: first seen within Config.NewDays.
	LifecycleNew Lifecycle = "new"
	// LifecycleActive: registered or not, called within Config.DormantDays.
	LifecycleActive Lifecycle = "active"
	// LifecycleDormant: seen before, no call for Config.DormantDays.
	LifecycleDormant Lifecycle = "dormant"
	// LifecycleNeverSeen: registered, never seen in the lookback.
	LifecycleNeverSeen Lifecycle = "never_seen"
	// LifecycleShadow: seen in traffic, absent from an enabled registry.
	LifecycleShadow Lifecycle = "shadow"
)

// Config bounds the service's questions.
type Config struct {
	// Lookback is how far back "first seen" and lifecycle look (default
	// 90 days), in whole UTC days: from the midnight before now minus
	// Lookback to the end of the current day.
	Lookback time.Duration
	// NewDays, DormantDays and UnusedGrantDays (defaults 7, 30, 30).
	NewDays, DormantDays, UnusedGrantDays int
}

// Asked is one question put to the service, written to the audit trail
// before it is answered.
type Asked struct {
	Who audit.Actor
	// Question is a one-line rendering: "access tag=pii 2026-03-15..2026-03-16".
	Question string
}

// Recorder keeps the audit trail of questions (an audit.Logger).
type Recorder interface {
	Record(ctx context.Context, r audit.Record) error
}

// AgentRow is one agent of the inventory.
type AgentRow struct {
	AgentID    string
	Registered bool
	Owner      string
	Role       string
	Lifecycle  Lifecycle
	// FirstSeenMs and LastSeenMs are over Config.Lookback; 0 when never
	// seen.
	FirstSeenMs, LastSeenMs int64
	// Usage over the asked span.
	AgentUsage
	// ApprovedRoutes is len of the registry's list; -1 when it gives none.
	ApprovedRoutes int
	// UnapprovedRoutes is how many routes it called outside its list.
	UnapprovedRoutes int
}

// RouteRow is one route of the inventory.
type RouteRow struct {
	Route      string
	Tags       []string
	Documented bool // in the route inventory or OpenAPI document
	Deprecated bool // tagged deprecated: a zombie when still called
	Sensitive  bool
	// Callers are the agents that called it in the span, sorted, at most
	// MaxValues; CallerCount says how many.
	Callers     []string
	CallerCount int
	Usage
}

// AgentRouteRow is one agent × route pair with its grant.
type AgentRouteRow struct {
	AgentRouteUsage
	// Approved: the registry approves the route for the agent. Known:
	// the registry has a list for the agent at all.
	Approved, Known bool
}

// FindingKind names a least-privilege or lifecycle finding.
type FindingKind string

// Finding kinds.
const (
	FindingUnusedGrant       FindingKind = "unused_grant"
	FindingNoOwner           FindingKind = "no_owner"
	FindingDormant           FindingKind = "dormant"
	FindingNeverSeen         FindingKind = "never_seen"
	FindingShadow            FindingKind = "shadow_agent"
	FindingReviewDue         FindingKind = "review_due"
	FindingCredentialExpired FindingKind = "credential_expired"
	FindingZombieCalled      FindingKind = "zombie_called"
	FindingUndocumented      FindingKind = "undocumented_route"
	FindingUnapproved        FindingKind = "unapproved_route"
)

// Finding is one thing to fix.
type Finding struct {
	Kind    FindingKind
	AgentID string
	Route   string
	// Detail is one human sentence.
	Detail string
	// Owner is who should act, from the registry; may be empty.
	Owner string
}

// AccessRequest is an access question as a person asks it: routes by
// template (a glob over normalised templates, "*" matching one segment
// and "**" any number) or by tag.
type AccessRequest struct {
	Span     Span
	Template string
	Tag      string
	AgentID  string
	Samples  int
}

// AccessAnswer is the answer with the routes the request resolved to.
type AccessAnswer struct {
	Request AccessRequest
	Routes  []string
	Rows    []AccessRow
}

// TimelineEntry is one thing that happened to an agent.
type TimelineEntry struct {
	AtMs int64
	// Kind is "calls" (one day's traffic), "anomaly", "action" or
	// "verdict".
	Kind    string
	Summary string
	// One of these is set, after Kind.
	Day     *DailyCount      `json:",omitempty"`
	Anomaly *anomaly.Anomaly `json:",omitempty"`
	Action  *audit.Record    `json:",omitempty"`
	Verdict *anomaly.Verdict `json:",omitempty"`
}

// AgentProfile is one agent's page.
type AgentProfile struct {
	Agent    AgentRow
	Registry *inventory.Agent `json:",omitempty"`
	Routes   []AgentRouteRow
	Timeline []TimelineEntry
	Findings []Finding
}

// RouteProfile is one route's page: its callers in the span and per day.
type RouteProfile struct {
	Route   RouteRow
	Callers []AgentRouteRow
	Daily   []DailyCount
}
