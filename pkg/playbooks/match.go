package playbooks

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/attack"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// AgentInfo is what the agent registry says about an agent, given by the
// caller (pkg/playbooks does no lookups). Zero fields are unknown.
type AgentInfo struct {
	Role         string
	Owner        string
	CredentialID string
	Labels       map[string]string
}

// Target is the agent a decision is about.
type Target struct {
	AgentID      string
	CredentialID string
	Role         string
	Owner        string
	// Labels are the registry's labels; shared with the caller's
	// AgentInfo, so do not modify them.
	Labels map[string]string
}

// Decision is one playbook firing for one anomaly (or one manual run):
// the steps to run, in order. It holds no pointers into the Set.
type Decision struct {
	// ID identifies the incident this decision opens: the same anomaly
	// and playbook always give the same ID (see DecisionID), so a replay
	// can be recognised and skipped.
	ID       string
	Playbook string
	// AnomalyID is the anomaly that fired the playbook; "" when Manual.
	AnomalyID string
	Manual    bool
	Target    Target
	// Severity and Kind are the anomaly's ("" when Manual).
	Severity string
	Kind     string
	// Why says which trigger conditions held, for the audit record. It
	// quotes a route from the events: escape it before rendering.
	Why string
	// DryRun is the playbook's dry_run (or the manual request's).
	DryRun bool
	Steps  []Action
}

// Action is one step of a Decision, ready to execute. Its parameter
// pointers are copies, not the Set's.
type Action struct {
	// ID is Decision.ID + "-" + Index: the idempotency key of this step
	// (e.g. one revocation per credential and incident).
	ID    string
	Index int
	Step
	// DryRun is the step's, the playbook's or the request's dry run: the
	// responder records what it would do and makes no outbound call.
	DryRun bool
	// Skip, when not empty, says why the responder must not run this
	// step (it records it as skipped): no credential to revoke, or no
	// single agent to act on.
	Skip string
}

// UndoID is the idempotency key of undoing the action when its TTL ends.
func (a Action) UndoID() string { return a.ID + "-undo" }

// DecisionID returns the deterministic id of the decision of playbook
// for anomalyID: the first 16 bytes of SHA-256 over both, in hex.
func DecisionID(anomalyID, playbook string) string {
	return hash("anomaly", anomalyID, playbook)
}

// manualID is the id of a manual run: a function of the caller's
// idempotency key, the playbook and the agent.
func manualID(key, playbook, agentID string) string {
	return hash("manual", key, playbook, agentID)
}

func hash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Match returns the decisions for anomaly a: one per playbook whose
// trigger matches, in Set order, stopping after the first matching Final
// playbook. Manual-only playbooks never match. The result depends only
// on its arguments, so a replayed anomaly yields the same decisions and
// ids. info is the registry's view of a.AgentID; the anomaly's own role,
// owner and credential win where it has them (they describe the agent as
// it was when it misbehaved, and keep a replay's decision unchanged),
// info fills the rest and is the only source of labels.
func Match(set Set, a anomaly.Anomaly, info AgentInfo) []Decision {
	t := Target{
		AgentID:      a.AgentID,
		CredentialID: cmpOr(a.CredentialID, info.CredentialID),
		Role:         cmpOr(a.Role, info.Role),
		Owner:        cmpOr(a.Owner, info.Owner),
		Labels:       info.Labels,
	}
	var out []Decision
	for i := range set.Playbooks {
		pb := &set.Playbooks[i]
		if pb.ManualOnly || pb.Trigger == nil {
			continue
		}
		why, ok := pb.Trigger.match(&a, &t)
		if !ok {
			continue
		}
		d := decide(pb, DecisionID(a.ID, pb.Name), t, a.Severity, pb.DryRun)
		d.AnomalyID, d.Kind, d.Why = a.ID, a.Kind, why
		out = append(out, d)
		if pb.Final {
			break
		}
	}
	return out
}

// ErrUnknownPlaybook means a manual run named no playbook of the Set;
// answer 404 or list the names.
var ErrUnknownPlaybook = errors.New("unknown playbook")

// Manual is a request to run a playbook by hand (`responder run-playbook
// NAME --agent ID`, the HTTP API, a Slack button).
type Manual struct {
	Playbook string
	AgentID  string
	Agent    AgentInfo
	// Key is the caller's idempotency key for the request (an HTTP
	// Idempotency-Key, a Slack action id, a CLI run id): the same key,
	// playbook and agent give the same decision id, so a retried request
	// runs once.
	Key    string
	DryRun bool
}

// Plan builds the decision for a manual run of any playbook, manual-only
// or not, without checking its trigger: a human chose it. Steps that
// would mention people only above some severity do not mention, as a
// manual run has no severity.
func Plan(set Set, m Manual) (Decision, error) {
	pb, ok := set.Lookup(m.Playbook)
	switch {
	case !ok:
		return Decision{}, fmt.Errorf("%w %.64q; known: %s", ErrUnknownPlaybook, m.Playbook, strings.Join(set.Names(), ", "))
	case m.AgentID == "":
		return Decision{}, errors.New("plan: agent id required")
	case strings.HasPrefix(m.AgentID, "*"):
		return Decision{}, fmt.Errorf("plan: %.64q names no single agent (a global_event or agent_flood id); give a real agent id", m.AgentID)
	case m.Key == "":
		return Decision{}, errors.New("plan: idempotency key required, so that a retried request runs once; use the request id")
	}
	t := Target{AgentID: m.AgentID, CredentialID: m.Agent.CredentialID, Role: m.Agent.Role, Owner: m.Agent.Owner, Labels: m.Agent.Labels}
	d := decide(pb, manualID(m.Key, pb.Name, m.AgentID), t, "", pb.DryRun || m.DryRun)
	d.Manual, d.Why = true, "manual run"
	return d, nil
}

// decide builds the decision of pb for t.
func decide(pb *Playbook, id string, t Target, severity string, dryRun bool) Decision {
	d := Decision{ID: id, Playbook: pb.Name, Target: t, Severity: severity, DryRun: dryRun, Steps: make([]Action, len(pb.Steps))}
	for i, st := range pb.Steps {
		a := Action{ID: id + "-" + strconv.Itoa(i), Index: i, Step: copyStep(st), DryRun: st.DryRun || dryRun}
		k := st.Kind()
		switch {
		case k.ActsOnAgent() && (t.AgentID == "" || strings.HasPrefix(t.AgentID, "*")):
			a.Skip = fmt.Sprintf("%s needs a single agent; %.64q is not one", k, t.AgentID)
		case k == KindRevoke && t.CredentialID == "":
			a.Skip = "no credential id known for the agent (not in the registry, or no credential_id there): nothing to revoke"
		}
		if n := a.Notify; n != nil && n.MentionMinSeverity != "" && severityRank(severity) < severityRank(n.MentionMinSeverity) {
			n.Mention, n.MentionIDs = MentionNone, nil
		}
		d.Steps[i] = a
	}
	return d
}

// copyStep copies the step's parameters, so that a decision can be
// changed (mentions dropped) without touching the Set. Its one-line
// assignments resemble other field-by-field copies (gateway's combined.go)
// only in shape.
func copyStep(s Step) Step {
	s.Notify = clonePtr(s.Notify)
	if s.Notify != nil {
		s.Notify.MentionIDs = slices.Clone(s.Notify.MentionIDs)
	}
	s.Revoke = clonePtr(s.Revoke)
	s.Throttle = clonePtr(s.Throttle)
	s.Quarantine = clonePtr(s.Quarantine)
	s.Snapshot = clonePtr(s.Snapshot)
	s.Webhook = clonePtr(s.Webhook)
	s.Approve = clonePtr(s.Approve)
	if s.Approve != nil {
		s.Approve.Approvers = slices.Clone(s.Approve.Approvers)
	}
	return s
}

// clonePtr returns a pointer to a shallow copy of *p, or nil for nil.
func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// kindMatches reports whether the kind conditions (kinds, exclude_kinds,
// class) admit anomalies of kind k.
func (t *Trigger) kindMatches(k string) bool {
	if len(t.Kinds) > 0 && !slices.Contains(t.Kinds, k) || slices.Contains(t.ExcludeKinds, k) {
		return false
	}
	switch t.Class {
	case ClassRule:
		if slices.Contains(statisticalKinds, k) {
			return false
		}
	case ClassStatistical:
		if !slices.Contains(statisticalKinds, k) {
			return false
		}
	}
	// Only an anomaly about one agent carries a risk.
	if (t.MinRisk > 0 || t.RiskFor > 0) && slices.Contains(aggregateKinds, k) {
		return false
	}
	// Classes admit the kinds that can be classified as one of them.
	return len(t.Classes) == 0 || slices.ContainsFunc(attack.KindClasses(k), func(c attack.Class) bool {
		return slices.Contains(t.Classes, string(c))
	})
}

// minContribution is the contribution a features condition needs.
func (t *Trigger) minContribution() float64 {
	if t.MinContribution > 0 {
		return t.MinContribution
	}
	return DefaultMinContribution
}

// features checks the features condition: the trigger's features found
// in the explanation above their expectation together carry at least the minimum share of the
// window's surprise. Together, because correlated features split a
// window's surprise between them (an exfiltration's response_bytes and
// response_bytes_max carry 0.13 each). The detector's off-hours terms are
// not shares of the window's surprise (they carry none), so one of them
// holds by presence. It returns what held, for the decision's why.
func (t *Trigger) features(a *anomaly.Anomaly) (string, bool) {
	var names []string
	sum := 0.0
	for _, f := range a.Explanation {
		if !slices.Contains(t.Features, f.Name) {
			continue
		}
		if slices.Contains(contributionless, f.Name) {
			return "feature " + f.Name, true
		}
		// A feature below its expectation is no reason for an alert, and
		// a name listed twice (a hostile or broken record) counts once.
		if !(f.Observed > f.Expected) || !(f.Contribution > 0) || slices.Contains(names, f.Name) {
			continue
		}
		names = append(names, f.Name)
		sum += f.Contribution
	}
	if len(names) == 0 || !(sum >= t.minContribution()) {
		return "", false
	}
	return fmt.Sprintf("feature %s (contribution %g)", strings.Join(names, "+"), round3(sum)), true
}

// round3 rounds x to 3 decimals, so that a sum of contributions reads as
// the detector wrote them (0.26, not 0.26000000000000001).
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// match reports whether the trigger holds for a about agent t and, if so,
// which conditions it checked.
func (t *Trigger) match(a *anomaly.Anomaly, tg *Target) (string, bool) {
	var why []string
	if !t.kindMatches(a.Kind) {
		return "", false
	}
	why = append(why, "kind "+a.Kind)
	if len(t.Classes) > 0 {
		c := attack.Classify(*a)
		if !slices.Contains(t.Classes, string(c)) {
			return "", false
		}
		why = append(why, "class "+string(c))
	}
	if t.MinSeverity != "" {
		if severityRank(a.Severity) < severityRank(t.MinSeverity) {
			return "", false
		}
		why = append(why, fmt.Sprintf("severity %s >= %s", a.Severity, t.MinSeverity))
	}
	if t.MinScore > 0 {
		if !(a.Score >= t.MinScore) {
			return "", false
		}
		why = append(why, fmt.Sprintf("score %g >= %g", a.Score, t.MinScore))
	}
	if t.MinRisk > 0 {
		if !(a.Risk >= t.MinRisk) {
			return "", false
		}
		why = append(why, fmt.Sprintf("risk %g >= %g", a.Risk, t.MinRisk))
	}
	if t.RiskFor > 0 {
		held := time.Duration(a.RiskAboveMs()) * time.Millisecond
		if held < t.RiskFor {
			return "", false
		}
		why = append(why, fmt.Sprintf("risk at or above level %g for %s >= %s", a.RiskLevel, fmtDuration(held.Round(time.Minute)), fmtDuration(t.RiskFor)))
	}
	if len(t.Features) > 0 {
		w, ok := t.features(a)
		if !ok {
			return "", false
		}
		why = append(why, w)
	}
	if len(t.Routes) > 0 {
		i := slices.IndexFunc(a.Routes, func(r anomaly.RouteCount) bool {
			n := inventory.NormalizeTemplate(r.Route)
			return slices.ContainsFunc(t.Routes, func(want string) bool { return inventory.NormalizeTemplate(want) == n })
		})
		if i < 0 {
			return "", false
		}
		why = append(why, fmt.Sprintf("route %.128q", a.Routes[i].Route))
	}
	if len(t.Roles) > 0 {
		if !slices.Contains(t.Roles, tg.Role) {
			return "", false
		}
		why = append(why, "role "+tg.Role)
	}
	if len(t.Owners) > 0 {
		if !slices.Contains(t.Owners, tg.Owner) {
			return "", false
		}
		why = append(why, "owner "+tg.Owner)
	}
	if len(t.Labels) > 0 {
		for _, k := range slices.Sorted(maps.Keys(t.Labels)) {
			if got, ok := tg.Labels[k]; !ok || got != t.Labels[k] {
				return "", false
			}
			why = append(why, "label "+k+"="+t.Labels[k])
		}
	}
	return strings.Join(why, ", "), true
}
