// Package report builds the periodic visibility and compliance report: the
// numbers a security team reports every month or week (inventory
// completeness, ownership, zombie APIs, access-policy coverage, permission
// violations, anomalies, the false-positive rate, time to detect and to
// contain, revocations, agents to review), each with its definition, and
// renders it as a self-contained HTML page and a PDF document with charts.
// Record adds a report's hashes to the evidence chain, Post sends it to
// Slack, and Scheduler runs it on a schedule inside a service.
//
// The numbers come from a Questions (the visibility service's answers
// about the inventory and the findings) and a visibility.Source (the daily
// traffic, anomalies, the responder's actions and analysts' verdicts), so
// the report says what the CLI, the API and the console say.
package report

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// Questions is what a report asks the visibility service (a
// *visibility.Service satisfies it).
type Questions interface {
	Agents(ctx context.Context, who audit.Actor, span visibility.Span) ([]visibility.AgentRow, error)
	Routes(ctx context.Context, who audit.Actor, span visibility.Span) ([]visibility.RouteRow, error)
	AgentRoutes(ctx context.Context, who audit.Actor, span visibility.Span, agentID string) ([]visibility.AgentRouteRow, error)
	Findings(ctx context.Context, who audit.Actor) ([]visibility.Finding, error)
}

// Builder builds reports. Its fields are read only; it is safe for
// concurrent use if Questions and Source are.
type Builder struct {
	Questions Questions
	Source    visibility.Source
	// Who is the actor the questions are asked (and audited) as.
	Who audit.Actor
	// Now stamps the report; time.Now when nil.
	Now func() time.Time
	// Progress, when set, is told each step as it starts ("agents",
	// "routes", …): the CLI prints it on stderr.
	Progress func(step string)
}

// Severities are the anomaly severities a report counts, lowest first;
// anything else counts as "other".
var Severities = []string{"low", "medium", "high", "critical", "other"}

// Containment actions: an anomaly is contained when one of them ended
// "ok" (carried out, not a dry run) for it.
var containActions = []string{"revoke", "quarantine"}

// Metric is one number of the report with what it means.
type Metric struct {
	// Key names the metric for machines ("inventory.agents_registered").
	Key string `json:"key"`
	// Label is the short human name.
	Label string `json:"label"`
	// Value is the number as shown ("87.5%", "12", "4m 10s", "n/a").
	Value string `json:"value"`
	// Detail qualifies the value: the fraction ("7 of 8 agents"), the
	// trend.
	Detail string `json:"detail,omitempty"`
	// Definition says how the number is computed.
	Definition string `json:"definition"`
}

// Section is a titled group of metrics.
type Section struct {
	Title   string   `json:"title"`
	Metrics []Metric `json:"metrics"`
}

// Day is one UTC day of the report's charts.
type Day struct {
	Day time.Time `json:"day"`
	// Anomalies counts the anomalies whose window starts on the day, by
	// severity (indexed like Severities).
	Anomalies []int `json:"anomalies"`
	// ZombieCalls is calls to zombie routes (deprecated and still
	// called) on the day.
	ZombieCalls uint64 `json:"zombie_calls"`
	// Denials is calls answered 401 or 403 on the day.
	Denials uint64 `json:"denials"`
}

// KindCount is how many anomalies of one kind, by severity.
type KindCount struct {
	Kind       string `json:"kind"`
	BySeverity []int  `json:"by_severity"` // indexed like Severities
	Total      int    `json:"total"`
}

// ZombieRoute is a deprecated route still called in the period.
type ZombieRoute struct {
	Route       string   `json:"route"`
	Calls       uint64   `json:"calls"`
	CallerCount int      `json:"caller_count"`
	Callers     []string `json:"callers"`
}

// Violation is an agent calling a route its registry entry does not
// approve.
type Violation struct {
	AgentID string `json:"agent_id"`
	Route   string `json:"route"`
	Calls   uint64 `json:"calls"`
	Denied  uint64 `json:"denied"` // of Calls, answered 401 or 403
}

// Review is one agent to review with the findings that say why.
type Review struct {
	AgentID  string   `json:"agent_id"`
	Owner    string   `json:"owner,omitempty"`
	Kinds    []string `json:"kinds"`
	Findings []string `json:"findings"`
}

// Numbers are the report's raw values, for tests and JSON readers.
type Numbers struct {
	AgentsSeen, AgentsRegistered, AgentsOwned, AgentsWithApproved int
	RoutesSeen, RoutesDocumented                                  int
	Zombies, ZombieCallers, PrevZombies                           int
	ZombieCalls, PrevZombieCalls                                  uint64
	UnapprovedPairs                                               int
	UnapprovedCalls, Denials, Denied401, Denied403                uint64
	Anomalies, Judged, FalsePositives                             int
	Detected, Contained                                           int
	DetectP50Ms, DetectP90Ms, ContainP50Ms, ContainP90Ms          int64
	Revocations, RevocationsDryRun, Restores                      int
	AgentsToReview                                                int
}

// Report is one period's report.
type Report struct {
	Period      Period `json:"period"`
	Previous    Period `json:"previous"`
	GeneratedMs int64  `json:"generated_ms"`
	Sections    []Section
	Numbers     Numbers
	Days        []Day
	ByKind      []KindCount
	Zombies     []ZombieRoute
	Violations  []Violation
	Review      []Review
}

// Caps on the tables, so a fleet's worst month still gives a readable
// report; the metrics count everything.
const (
	MaxZombies    = 50
	MaxViolations = 100
	MaxReview     = 100
)

func (b *Builder) step(s string) {
	if b.Progress != nil {
		b.Progress(s)
	}
}

// Build computes the report of period p.
func (b *Builder) Build(ctx context.Context, p Period) (*Report, error) {
	now := time.Now
	if b.Now != nil {
		now = b.Now
	}
	r := &Report{Period: p, Previous: p.Previous(), GeneratedMs: now().UnixMilli()}
	n := &r.Numbers
	span := p.Span

	b.step("agents")
	agents, err := b.Questions.Agents(ctx, b.Who, span)
	if err != nil {
		return nil, fmt.Errorf("report %s: agents: %w", p.Name, err)
	}
	unapproved := false
	for _, a := range agents {
		if a.Calls == 0 {
			continue
		}
		n.AgentsSeen++
		if a.Registered {
			n.AgentsRegistered++
		}
		if a.Owner != "" {
			n.AgentsOwned++
		}
		if a.ApprovedRoutes > 0 {
			n.AgentsWithApproved++
		}
		if a.UnapprovedRoutes > 0 {
			unapproved = true
		}
	}

	b.step("routes")
	routes, err := b.Questions.Routes(ctx, b.Who, span)
	if err != nil {
		return nil, fmt.Errorf("report %s: routes: %w", p.Name, err)
	}
	zombie := map[string]bool{}
	for _, rt := range routes {
		if rt.Calls == 0 {
			continue
		}
		n.RoutesSeen++
		if rt.Documented {
			n.RoutesDocumented++
		}
		if rt.Deprecated {
			zombie[rt.Route] = true
			n.Zombies++
			n.ZombieCalls += rt.Calls
			r.Zombies = append(r.Zombies, ZombieRoute{Route: rt.Route, Calls: rt.Calls, CallerCount: rt.CallerCount, Callers: rt.Callers})
		}
	}
	slices.SortFunc(r.Zombies, func(a, b ZombieRoute) int {
		return cmp.Or(cmp.Compare(b.Calls, a.Calls), cmp.Compare(a.Route, b.Route))
	})
	r.Zombies = r.Zombies[:min(len(r.Zombies), MaxZombies)]

	b.step("previous period's routes")
	prev, err := b.Questions.Routes(ctx, b.Who, r.Previous.Span)
	if err != nil {
		return nil, fmt.Errorf("report %s: routes of %s: %w", p.Name, r.Previous.Name, err)
	}
	for _, rt := range prev {
		if rt.Calls > 0 && rt.Deprecated {
			n.PrevZombies++
			n.PrevZombieCalls += rt.Calls
		}
	}

	b.step("unapproved routes")
	if unapproved {
		rows, err := b.Questions.AgentRoutes(ctx, b.Who, span, "")
		if err != nil {
			return nil, fmt.Errorf("report %s: agent routes: %w", p.Name, err)
		}
		for _, ar := range rows {
			if !ar.Known || ar.Approved || ar.Calls == 0 {
				continue
			}
			n.UnapprovedPairs++
			n.UnapprovedCalls += ar.Calls
			r.Violations = append(r.Violations, Violation{AgentID: ar.AgentID, Route: ar.Route, Calls: ar.Calls, Denied: ar.Status.S401 + ar.Status.S403})
		}
	}
	slices.SortFunc(r.Violations, func(a, b Violation) int {
		return cmp.Or(cmp.Compare(b.Calls, a.Calls), cmp.Compare(a.AgentID, b.AgentID), cmp.Compare(a.Route, b.Route))
	})
	r.Violations = r.Violations[:min(len(r.Violations), MaxViolations)]

	b.step("daily traffic")
	days := dayIndex(span)
	r.Days = make([]Day, len(days))
	for i := range r.Days {
		r.Days[i] = Day{Day: span.From.AddDate(0, 0, i), Anomalies: make([]int, len(Severities))}
	}
	daily, err := b.Source.Daily(ctx, span, visibility.ByRoute, "", "")
	if err != nil {
		return nil, fmt.Errorf("report %s: daily traffic: %w", p.Name, err)
	}
	for _, d := range daily {
		i, ok := days[d.Day.UTC().Format(time.DateOnly)]
		if !ok {
			continue
		}
		r.Days[i].Denials += d.Status.S401 + d.Status.S403
		n.Denied401 += d.Status.S401
		n.Denied403 += d.Status.S403
		if zombie[d.Key] {
			r.Days[i].ZombieCalls += d.Calls
		}
	}
	n.Denials = n.Denied401 + n.Denied403
	n.ZombieCallers = zombieCallers(routes)

	b.step("anomalies")
	anoms, err := b.Source.Anomalies(ctx, span, "")
	if err != nil {
		return nil, fmt.Errorf("report %s: anomalies: %w", p.Name, err)
	}
	b.step("actions")
	// Actions and verdicts are read to the end of the next period too:
	// an anomaly of the last day is often judged or contained after the
	// period ends, and the report is written after it ends.
	late := visibility.Span{From: span.From, To: span.To.Add(span.To.Sub(span.From))}
	acts, err := b.Source.Actions(ctx, late, "")
	if err != nil {
		return nil, fmt.Errorf("report %s: actions: %w", p.Name, err)
	}
	b.step("verdicts")
	verdicts, err := b.Source.Verdicts(ctx, late)
	if err != nil {
		return nil, fmt.Errorf("report %s: verdicts: %w", p.Name, err)
	}
	r.countAnomalies(anoms, acts, verdicts, days)
	r.countActions(acts)

	b.step("findings")
	findings, err := b.Questions.Findings(ctx, b.Who)
	if err != nil {
		return nil, fmt.Errorf("report %s: findings: %w", p.Name, err)
	}
	r.Review = review(findings)
	n.AgentsToReview = len(r.Review)
	r.Review = r.Review[:min(len(r.Review), MaxReview)]

	r.Sections = sections(n, r.Period, r.Previous)
	return r, nil
}

// zombieCallers counts the distinct callers of zombie routes as far as
// the routes list them (each lists at most visibility.MaxValues; beyond
// that the largest CallerCount is a lower bound).
func zombieCallers(routes []visibility.RouteRow) int {
	seen := map[string]bool{}
	floor := 0
	for _, rt := range routes {
		if rt.Calls == 0 || !rt.Deprecated {
			continue
		}
		for _, c := range rt.Callers {
			seen[c] = true
		}
		floor = max(floor, rt.CallerCount)
	}
	return max(len(seen), floor)
}

// dayIndex maps each UTC day of span ("2006-01-02") to its index.
func dayIndex(span visibility.Span) map[string]int {
	out := map[string]int{}
	for i, d := 0, span.From; d.Before(span.To); i, d = i+1, d.AddDate(0, 0, 1) {
		out[d.Format(time.DateOnly)] = i
	}
	return out
}

func severityIndex(s string) int {
	if i := slices.Index(Severities, s); i >= 0 {
		return i
	}
	return len(Severities) - 1
}

// countAnomalies fills the anomaly numbers: by kind and severity, per day,
// the false-positive rate and the times to detect and to contain.
func (r *Report) countAnomalies(anoms []anomaly.Anomaly, acts []audit.Record, verdicts []anomaly.Verdict, days map[string]int) {
	n := &r.Numbers
	fp := map[string]bool{}
	judged := map[string]bool{}
	for _, v := range verdicts {
		judged[v.AnomalyID] = true
		if v.Verdict == anomaly.VerdictFalsePositive {
			fp[v.AnomalyID] = true
		}
	}
	contained := map[string]int64{} // anomaly id → first containment
	for _, a := range acts {
		if a.AnomalyID == "" || a.Result != audit.ResultOK || a.DryRun {
			continue
		}
		if a.Actor.Kind != audit.ActorAutomatic && a.Action != audit.ActionAuditQuery {
			judged[a.AnomalyID] = true
		}
		if slices.Contains(containActions, a.Action) {
			if t, ok := contained[a.AnomalyID]; !ok || a.AtMs < t {
				contained[a.AnomalyID] = a.AtMs
			}
		}
	}
	byKind := map[string]*KindCount{}
	var detect, contain []int64
	seen := map[string]bool{}
	for _, a := range anoms {
		if a.ID != "" {
			if seen[a.ID] {
				continue
			}
			seen[a.ID] = true
		}
		n.Anomalies++
		si := severityIndex(a.Severity)
		k := byKind[a.Kind]
		if k == nil {
			k = &KindCount{Kind: a.Kind, BySeverity: make([]int, len(Severities))}
			byKind[a.Kind] = k
		}
		k.BySeverity[si]++
		k.Total++
		if i, ok := days[time.UnixMilli(a.WindowStartMs).UTC().Format(time.DateOnly)]; ok {
			r.Days[i].Anomalies[si]++
		}
		if judged[a.ID] {
			n.Judged++
			if fp[a.ID] {
				n.FalsePositives++
			}
		}
		if a.DetectedMs > 0 && a.WindowEndMs > 0 && a.DetectedMs >= a.WindowEndMs {
			detect = append(detect, a.DetectedMs-a.WindowEndMs)
		}
		if t, ok := contained[a.ID]; ok && a.DetectedMs > 0 && t >= a.DetectedMs {
			contain = append(contain, t-a.DetectedMs)
		}
	}
	for _, k := range byKind {
		r.ByKind = append(r.ByKind, *k)
	}
	slices.SortFunc(r.ByKind, func(a, b KindCount) int { return cmp.Or(cmp.Compare(b.Total, a.Total), cmp.Compare(a.Kind, b.Kind)) })
	n.Detected, n.Contained = len(detect), len(contain)
	n.DetectP50Ms, n.DetectP90Ms = quantile(detect, 0.5), quantile(detect, 0.9)
	n.ContainP50Ms, n.ContainP90Ms = quantile(contain, 0.5), quantile(contain, 0.9)
}

// countActions counts the revocations and restores carried out in the
// period (the actions were read past its end for containment).
func (r *Report) countActions(acts []audit.Record) {
	from, to := r.Period.Span.From.UnixMilli(), r.Period.Span.To.UnixMilli()
	for _, a := range acts {
		if a.AtMs < from || a.AtMs >= to {
			continue
		}
		switch {
		case a.Action == "revoke" && a.Result == audit.ResultDryRun:
			r.Numbers.RevocationsDryRun++
		case a.Action == "revoke" && a.Result == audit.ResultOK && !a.DryRun:
			r.Numbers.Revocations++
		case a.Action == "restore" && a.Result == audit.ResultOK && !a.DryRun:
			r.Numbers.Restores++
		}
	}
}

// quantile is the nearest-rank q-quantile of xs (sorted in place), 0 when
// empty.
func quantile(xs []int64, q float64) int64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

// reviewKinds are the findings that put an agent on the review list.
var reviewKinds = []visibility.FindingKind{
	visibility.FindingShadow, visibility.FindingNoOwner, visibility.FindingDormant, visibility.FindingNeverSeen,
	visibility.FindingReviewDue, visibility.FindingCredentialExpired, visibility.FindingUnapproved,
	visibility.FindingUnusedGrant, visibility.FindingZombieCalled,
}

// review groups the agent findings by agent: most kinds first.
func review(fs []visibility.Finding) []Review {
	by := map[string]*Review{}
	for _, f := range fs {
		if f.AgentID == "" || !slices.Contains(reviewKinds, f.Kind) {
			continue
		}
		rv := by[f.AgentID]
		if rv == nil {
			rv = &Review{AgentID: f.AgentID}
			by[f.AgentID] = rv
		}
		rv.Owner = cmp.Or(rv.Owner, f.Owner)
		if !slices.Contains(rv.Kinds, string(f.Kind)) {
			rv.Kinds = append(rv.Kinds, string(f.Kind))
		}
		rv.Findings = append(rv.Findings, f.Detail)
	}
	out := make([]Review, 0, len(by))
	for _, rv := range by {
		sort.Strings(rv.Kinds)
		sort.Strings(rv.Findings)
		out = append(out, *rv)
	}
	slices.SortFunc(out, func(a, b Review) int {
		return cmp.Or(cmp.Compare(len(b.Kinds), len(a.Kinds)), cmp.Compare(a.AgentID, b.AgentID))
	})
	return out
}
