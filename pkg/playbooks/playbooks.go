// Package playbooks decides how the responder answers an anomaly: which
// playbooks fire and the ordered, typed steps each one asks for (notify,
// revoke, throttle, quarantine, snapshot, webhook, approve). It only
// decides; internal/ acts. It is pure: no I/O, no clock, no globals, so
// the same anomaly and the same set always give the same decisions with
// the same ids, and a replay can be deduplicated.
//
// A Set comes from YAML or JSON (Parse, schema in docs/playbooks.md) or is
// built in code and checked with Validate. Match turns an anomaly into
// Decisions; Plan builds the Decision for a manual run.
package playbooks

import (
	"slices"
	"time"
)

// Set is an ordered list of playbooks. Order matters: Match evaluates the
// playbooks in this order and stops after a matching Final one. A Set
// returned by Parse or Merge is valid and must not be modified; it is then
// safe for concurrent use.
type Set struct {
	Playbooks []Playbook `yaml:"playbooks"`
}

// Playbook is a trigger and the ordered steps to run when it matches.
type Playbook struct {
	// Name identifies the playbook in decisions, audit records, metrics
	// (a label value) and `responder run-playbook NAME`: lowercase letters,
	// digits, '-' and '_', at most 64 bytes, unique in a Set.
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// ManualOnly playbooks never match an anomaly: they run only by hand
	// (Plan). They have no Trigger.
	ManualOnly bool `yaml:"manual_only"`
	// Trigger says which anomalies fire the playbook. Required unless
	// ManualOnly; an empty Trigger matches every anomaly.
	Trigger *Trigger `yaml:"trigger"`
	// Final stops Match at this playbook when it matches: the later
	// playbooks of the Set are not considered for the anomaly.
	Final bool `yaml:"final"`
	// DryRun makes every step of the playbook a dry run.
	DryRun bool `yaml:"dry_run"`
	// Steps run in order; an approve step gates the steps after it.
	Steps []Step `yaml:"steps"`

	// File is where the playbook was read from, for error messages; Parse
	// sets it.
	File string `yaml:"-"`
	src  source
}

// source is where a parsed playbook came from: its index in the file and
// the line of each field path, so that Validate can name the line.
type source struct {
	index int
	lines map[string]int
}

// Trigger selects anomalies. Every condition given must hold (AND); a list
// holds when any of its items does (OR); an absent or empty condition
// always holds. See docs/playbooks.md for how each is compared. Its
// commented field list resembles anomaly.Anomaly's only in shape.
type Trigger struct {
	// Kinds are anomaly kinds (anomaly.Kinds()); empty means any kind.
	Kinds []string `yaml:"kinds"`
	// ExcludeKinds are kinds that never match, whatever else holds.
	ExcludeKinds []string `yaml:"exclude_kinds"`
	// Class is ClassRule (a rule hit: every kind but behaviour, drift and
	// global_event), ClassStatistical (those three) or "" (either).
	Class string `yaml:"class"`
	// MinSeverity is low, medium, high or critical; "" means any.
	MinSeverity string `yaml:"min_severity"`
	// MinScore is the least anomaly score; 0 means any.
	MinScore float64 `yaml:"min_score"`
	// Classes are attack classes (attack.Classes()): the trigger holds
	// when attack.Classify names one of them for the anomaly. Empty means
	// any class. Not to be confused with Class (rule or statistical).
	Classes []string `yaml:"classes"`
	// Features match when those of them in the anomaly's explanation
	// together carry at least MinContribution of the window's surprise;
	// 0 means DefaultMinContribution. The detector's off_hours and
	// calls_this_hour terms carry no contribution and match by presence.
	Features        []string `yaml:"features"`
	MinContribution float64  `yaml:"min_contribution"`
	// Routes match when any of the anomaly's routes is one of them
	// (templates compare normalised, as in the route inventory).
	Routes []string `yaml:"routes"`
	// Roles and Owners match the agent's role and owner exactly.
	Roles  []string `yaml:"roles"`
	Owners []string `yaml:"owners"`
	// Labels match when the agent has every one of these labels with
	// exactly this value (labels come from the agent registry).
	Labels map[string]string `yaml:"labels"`
	// MinRisk is the least risk of the agent after the anomaly
	// (anomaly.Anomaly.Risk); 0 means any. Anomalies that carry no risk
	// (grouped kinds, detectors with the risk off) have risk 0.
	MinRisk float64 `yaml:"min_risk"`
	// RiskFor holds when the agent's risk stays at or above the detector's
	// risk level (the anomaly's RiskLevel) for at least this long in the
	// episode the anomaly is in, counting the time the risk has already
	// been there and the time its decay alone keeps it there
	// (anomaly.Anomaly.RiskAboveMs); 0 means no such condition.
	RiskFor time.Duration `yaml:"risk_for"`
}

// DefaultMinContribution is the least share of the window's surprise a
// feature must carry for a features condition to hold when the trigger
// sets none: a fifth, as attack.MinShare. A feature that explains 0.5% of
// a window is a bystander, and matching it sent 401 storms and id
// enumerations to the exfiltration playbook through response_bytes_max.
const DefaultMinContribution = 0.2

// Trigger classes.
const (
	ClassRule        = "rule"
	ClassStatistical = "statistical"
)

// Kind names what a step does.
type Kind string

// The step kinds. A typed string constant per value, the shape of every
// enum in the module (audit.Result, outbox.State): not shared, only alike.
const (
	KindNotify     Kind = "notify"
	KindRevoke     Kind = "revoke"
	KindThrottle   Kind = "throttle"
	KindQuarantine Kind = "quarantine"
	KindSnapshot   Kind = "snapshot"
	KindWebhook    Kind = "webhook"
	KindApprove    Kind = "approve"
)

// Kinds lists every step kind, in the order of the Step fields.
func Kinds() []Kind {
	return []Kind{KindNotify, KindRevoke, KindThrottle, KindQuarantine, KindSnapshot, KindWebhook, KindApprove}
}

// Undoable reports whether a step of kind k can be undone, and so may
// have a TTL: revoke (restore the credential), throttle and quarantine
// (lift the block).
func (k Kind) Undoable() bool {
	return k == KindRevoke || k == KindThrottle || k == KindQuarantine
}

// ActsOnAgent reports whether a step of kind k changes what one agent may
// do at the gateway. Such steps need a single, real agent: an anomaly
// about many agents (global_event, agent_flood) must never trigger them.
func (k Kind) ActsOnAgent() bool { return k.Undoable() }

// Step is one step of a playbook: exactly one of the kind fields is set,
// and it carries that kind's parameters.
type Step struct {
	// The kind's parameters: exactly one is set.
	Notify     *Notify     `yaml:"notify,empty"`
	Revoke     *Revoke     `yaml:"revoke,empty"`
	Throttle   *Throttle   `yaml:"throttle,empty"`
	Quarantine *Quarantine `yaml:"quarantine,empty"`
	Snapshot   *Snapshot   `yaml:"snapshot,empty"`
	Webhook    *Webhook    `yaml:"webhook,empty"`
	Approve    *Approve    `yaml:"approve,empty"`

	// TTL undoes the step automatically this long after it ran (revoke,
	// throttle, quarantine only; required for throttle and quarantine).
	// 0 means never: a revocation stays until `responder restore`.
	TTL time.Duration `yaml:"ttl"`
	// DryRun records what the step would do and makes no outbound call.
	DryRun bool `yaml:"dry_run"`
}

// Kind returns the step's kind: the one kind field that is set, or ""
// when none or several are (Validate rejects both).
func (s *Step) Kind() Kind {
	ks := s.kinds()
	if len(ks) != 1 {
		return ""
	}
	return ks[0]
}

func (s *Step) kinds() []Kind {
	var ks []Kind
	for _, f := range []struct {
		kind Kind
		set  bool
	}{
		{KindNotify, s.Notify != nil}, {KindRevoke, s.Revoke != nil}, {KindThrottle, s.Throttle != nil},
		{KindQuarantine, s.Quarantine != nil}, {KindSnapshot, s.Snapshot != nil}, {KindWebhook, s.Webhook != nil},
		{KindApprove, s.Approve != nil},
	} {
		if f.set {
			ks = append(ks, f.kind)
		}
	}
	return ks
}

// Mention policies of a notify step.
const (
	MentionNone    = "none"
	MentionHere    = "here"
	MentionChannel = "channel"
)

// Notify posts an alert to a Slack channel.
type Notify struct {
	// Channel is "#name" or a channel id such as C0123ABCD.
	Channel string `yaml:"channel"`
	// Mention is none ("" too), here or channel: who Slack notifies.
	Mention string `yaml:"mention"`
	// MentionIDs are Slack user (U…, W…) or user-group (S…) ids to
	// mention as well.
	MentionIDs []string `yaml:"mention_ids"`
	// MentionMinSeverity mentions only for anomalies at least this
	// severe; below it the alert is posted without mentions. "" means
	// always.
	MentionMinSeverity string `yaml:"mention_min_severity"`
}

// Credential and gateway adapters, configured in the responder.
const (
	AdapterKong     = "kong"
	AdapterWebhook  = "webhook"
	AdapterDenylist = "denylist"
)

// Revoke revokes the agent's credential through an adapter.
type Revoke struct {
	// Adapter is kong, webhook or denylist.
	Adapter string `yaml:"adapter"`
}

// Throttle rate-limits the agent at the gateway.
type Throttle struct {
	// Adapter is kong or webhook (a deny-list cannot express a rate).
	Adapter string `yaml:"adapter"`
	// RatePerMinute is the requests per minute the agent keeps.
	RatePerMinute int `yaml:"rate_per_minute"`
}

// Quarantine blocks the agent at the gateway, for the step's TTL.
type Quarantine struct {
	// Adapter is kong, webhook or denylist.
	Adapter string `yaml:"adapter"`
}

// Default evidence window of a snapshot step.
const (
	DefaultSnapshotBefore = 15 * time.Minute
	DefaultSnapshotAfter  = 5 * time.Minute
)

// Snapshot writes an evidence bundle of the agent's timeline around the
// anomaly's window.
type Snapshot struct {
	// Before and After widen the anomaly's window: events from
	// window start - Before to window end + After. Defaults 15m and 5m.
	Before time.Duration `yaml:"before"`
	After  time.Duration `yaml:"after"`
}

func (s *Snapshot) setDefaults() { s.Before, s.After = DefaultSnapshotBefore, DefaultSnapshotAfter }

// Webhook calls a named target of the responder's webhook allow-list.
type Webhook struct {
	// Target names an entry of the allow-list in the responder's
	// configuration; the playbook never holds a URL.
	Target string `yaml:"target"`
}

// Decisions of an approve step that times out.
const (
	DecisionApprove = "approve"
	DecisionDeny    = "deny"
)

// DefaultApproveTimeout is how long an approve step waits by default.
const DefaultApproveTimeout = 30 * time.Minute

// Approve asks a human in Slack before the steps after it run.
type Approve struct {
	// Channel is where the request is posted: "#name" or a channel id.
	Channel string `yaml:"channel"`
	// Timeout is how long to wait (default 30m) before Default applies.
	Timeout time.Duration `yaml:"timeout"`
	// Default is what happens at the timeout: deny (the default: the
	// later steps do not run) or approve.
	Default string `yaml:"default"`
	// Approvers, when given, are the Slack user (U…, W…) or user-group
	// (S…) ids whose answer counts; empty means anyone in the channel.
	Approvers []string `yaml:"approvers"`
}

func (a *Approve) setDefaults() { a.Timeout, a.Default = DefaultApproveTimeout, DecisionDeny }

// Lookup returns the playbook named name. The pointer is into s: do not
// modify it.
func (s Set) Lookup(name string) (*Playbook, bool) {
	for i := range s.Playbooks {
		if s.Playbooks[i].Name == name {
			return &s.Playbooks[i], true
		}
	}
	return nil, false
}

// Names returns the playbook names in order.
func (s Set) Names() []string {
	out := make([]string, len(s.Playbooks))
	for i, pb := range s.Playbooks {
		out[i] = pb.Name
	}
	return out
}

// References are the outside names a Set uses, which the responder's
// configuration must provide; check them at start.
type References struct {
	// Channels are the Slack channels of notify and approve steps.
	Channels []string
	// Adapters are the adapters of revoke, throttle and quarantine steps.
	Adapters []string
	// WebhookTargets are the targets of webhook steps, which must be in
	// the responder's allow-list.
	WebhookTargets []string
}

// References returns the channels, adapters and webhook targets the Set
// uses, each sorted and without duplicates.
func (s Set) References() References {
	var r References
	for _, pb := range s.Playbooks {
		for _, st := range pb.Steps {
			// One case per step type, alike in shape: each names its own
			// field and the list it belongs in, so a table would say no less.
			switch {
			case st.Notify != nil:
				r.Channels = append(r.Channels, st.Notify.Channel)
			case st.Approve != nil:
				r.Channels = append(r.Channels, st.Approve.Channel)
			case st.Revoke != nil:
				r.Adapters = append(r.Adapters, st.Revoke.Adapter)
			case st.Throttle != nil:
				r.Adapters = append(r.Adapters, st.Throttle.Adapter)
			case st.Quarantine != nil:
				r.Adapters = append(r.Adapters, st.Quarantine.Adapter)
			case st.Webhook != nil:
				r.WebhookTargets = append(r.WebhookTargets, st.Webhook.Target)
			}
		}
	}
	for _, l := range []*[]string{&r.Channels, &r.Adapters, &r.WebhookTargets} {
		slices.Sort(*l)
		*l = slices.Compact(*l)
	}
	return r
}
