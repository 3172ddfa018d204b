// Package anomaly defines what the detector emits: the Anomaly record
// published to the anomalies topic (keyed by agent id) and stored in
// ClickHouse, and the per-window Score written for every agent window. It is
// the contract between cmd/detector and its consumers (cmd/responder,
// evaluation tools), documented in docs/anomalies.md. Pure: no I/O.
package anomaly

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// Version is the Anomaly record version written in V.
const Version = 1

// Kinds of anomaly. Behaviour is the statistical one; the others are rules
// that need no statistics.
const (
	// Behaviour: the window's features are improbable under the agent's
	// baseline (or its peer group's during warm-up).
	Behaviour = "behaviour"
	// Drift: the window is improbable against the long-horizon reference
	// baseline although the short-term baseline has followed a slow ramp.
	Drift = "drift"
	// ShadowAgent: the agent id is absent from the agent registry. Several
	// unregistered agents of one window and partition are folded into one
	// grouped shadow_agent (see Grouped).
	ShadowAgent = "shadow_agent"
	// UnapprovedRoute: a route outside the agent's approved routes.
	UnapprovedRoute = "unapproved_route"
	// ZombieRoute: a call to a route tagged deprecated.
	ZombieRoute = "zombie_route"
	// FirstSensitive: the agent's first call to a route tagged sensitive.
	FirstSensitive = "first_sensitive_route"
	// AgentFlood: new agent ids arrived faster than the configured rate.
	AgentFlood = "agent_flood"
	// NewSourceIP: a registered agent with few, stable source addresses
	// called from one it had never used.
	NewSourceIP = "new_source_ip"
	// GlobalEvent: many agents of one partition anomalous in the same
	// window (an upstream outage); their behaviour anomalies are folded
	// into this one.
	GlobalEvent = "global_event"
	// OffHours: an agent busy in an hour of the week it is (almost) never
	// active in.
	OffHours = "off_hours"
	// FleetGauge: the calls, or the 5xx answers, summed over all agents of
	// one partition in a window rose above what the partition's gauge
	// (a baseline.Series) expected. Raised for increases only.
	FleetGauge = "fleet_gauge"
	// ElevatedRisk: the agent's risk (Anomaly.Risk), which its anomalies
	// raise by their severity and which decays with a half-life, rose to
	// the detector's risk level from below: several anomalies that each
	// alerted alone add up to an incident worth a look. Raised once per
	// episode; see docs/detection.md#risk.
	ElevatedRisk = "elevated_risk"
	// SustainedExcess: an agent has run above its usual rate of calls, or
	// of response bytes per call, for long enough that the excesses of
	// many windows add up, though no window was extreme on its own (low
	// and slow). One per episode; the explanation holds the episode's
	// calls and response bytes, observed and expected.
	SustainedExcess = "sustained_excess"
)

// Kinds lists every kind, for docs and validation.
func Kinds() []string {
	return []string{Behaviour, Drift, ShadowAgent, UnapprovedRoute, ZombieRoute, FirstSensitive, AgentFlood, OffHours, NewSourceIP, GlobalEvent, FleetGauge, ElevatedRisk, SustainedExcess}
}

// Feature explains one feature's part in an anomaly.
type Feature struct {
	Name     string  `json:"feature"`
	Observed float64 `json:"observed"`
	Expected float64 `json:"expected"`
	// Surprise is -ln of the feature's upper-tail probability under the baseline.
	Surprise float64 `json:"surprise"`
	// Contribution is the feature's share of the window's total surprise, 0..1.
	Contribution float64 `json:"contribution"`
}

// RouteCount is a route template and how often the agent called it in the window.
type RouteCount struct {
	Route string `json:"route"`
	Calls int    `json:"calls"`
	// Succeeded is how many of the calls were answered 2xx (served, not
	// refused); absent when none were.
	Succeeded int `json:"succeeded,omitempty"`
}

// Anomaly is one anomalous (agent, window, kind). Its ID depends only on
// those three, so re-processing the same window after a restart yields the
// same ID and consumers deduplicate on it. Its field list looks like
// Score's and playbooks.Trigger's, but the fields are its own.
type Anomaly struct {
	V             int    `json:"v"`
	ID            string `json:"anomaly_id"`
	AgentID       string `json:"agent_id"`
	Role          string `json:"role,omitempty"`
	Owner         string `json:"owner,omitempty"`
	CredentialID  string `json:"credential_id,omitempty"`
	Kind          string `json:"kind"`
	WindowStartMs int64  `json:"window_start_ms"`
	WindowEndMs   int64  `json:"window_end_ms"`
	// Score is the anomaly's place on the one severity scale: -log10 of
	// the combined tail probability for behaviour and drift; for a rule,
	// a place in the band of the severity its finding deserves (see
	// baseline.Params.BandScore and docs/detection.md).
	Score float64 `json:"score"`
	// Severity is the grade of Score (baseline.Params.Grade), whatever the
	// kind.
	Severity string `json:"severity"`
	// Summary is one human sentence saying what happened.
	Summary     string    `json:"summary"`
	Explanation []Feature `json:"explanation,omitempty"`
	// PeerBaseline is true when the agent was still warming up and was
	// scored against its peer group (its role, or all agents).
	PeerBaseline     bool         `json:"peer_baseline,omitempty"`
	Routes           []RouteCount `json:"routes,omitempty"`
	SampleRequestIDs []string     `json:"sample_request_ids,omitempty"`
	SampleEventIDs   []string     `json:"sample_event_ids,omitempty"`
	// SourceIPs are the never-used addresses of a new_source_ip anomaly.
	SourceIPs []string `json:"source_ips,omitempty"`
	// Count is how many events hit the rule in the window (rules only);
	// for a grouped anomaly, how many agents it stands for.
	Count int `json:"count,omitempty"`
	// AgentIDs are the agents a grouped shadow_agent or agent_flood stands
	// for, sorted, at most MaxAgentIDs of them; Count says how many in all.
	AgentIDs []string `json:"agent_ids,omitempty"`
	// Partition is the events-topic partition the agent's events came from.
	Partition int32 `json:"partition"`
	// Group is set on a partition's share of a fleet-wide event
	// (global_event): every partition that reports the event gives its
	// share its own ID (ShareID) and this same Group, so no share replaces
	// another and a consumer joins them into one record (GroupKey).
	Group string `json:"group,omitempty"`
	// DetectedMs is wall-clock time of detection; it is not part of the ID.
	DetectedMs int64 `json:"detected_ms"`
	// Risk is the agent's risk right after this anomaly, at WindowEndMs:
	// the sum of its anomalies' severity weights, each halved every risk
	// half-life since its window ended (docs/detection.md#risk). Absent
	// (0) on grouped anomalies and on records of detectors without risk.
	Risk float64 `json:"risk,omitempty"`
	// RiskLevel is the detector's risk level, what Risk is read against
	// and what RiskAboveSinceMs and RiskAboveUntilMs are about; absent
	// with Risk.
	RiskLevel float64 `json:"risk_level,omitempty"`
	// RiskAboveSinceMs is when the agent's risk rose to RiskLevel or above
	// and has stayed there since, in event time (a window end); absent
	// (0) while Risk is below RiskLevel.
	RiskAboveSinceMs int64 `json:"risk_above_since_ms,omitempty"`
	// RiskAboveUntilMs is when the risk will fall below RiskLevel if no
	// further anomaly raises it: risk only rises with anomalies and
	// otherwise decays at a known rate, so the episode lasts at least
	// until then. Absent (0) while Risk is below RiskLevel.
	RiskAboveUntilMs int64 `json:"risk_above_until_ms,omitempty"`
}

// RiskAboveMs is how long the agent's risk episode at or above RiskLevel
// is certain to last, counting from RiskAboveSinceMs to RiskAboveUntilMs:
// the time it has stayed above so far plus the time its decay alone keeps
// it there. 0 when the risk is below the level.
func (a Anomaly) RiskAboveMs() int64 {
	if a.RiskAboveSinceMs <= 0 || a.RiskAboveUntilMs <= a.RiskAboveSinceMs {
		return 0
	}
	return a.RiskAboveUntilMs - a.RiskAboveSinceMs
}

// MaxAgentIDs caps Anomaly.AgentIDs, so that a flood of ids cannot make
// one record (and the alert rendered from it) unbounded.
const MaxAgentIDs = 50

// Grouped reports whether a stands for many agents rather than one: its
// agent id starts with "*" (*global/…, *flood/…, *shadow/…, *fleet/…).
// Nothing may act on "the agent" of a grouped anomaly.
func (a Anomaly) Grouped() bool {
	return strings.HasPrefix(a.AgentID, "*")
}

// TopFeature returns the name of the feature that explains a most (the
// explanation lists the most surprising first), or "" when a has no
// explanation. The detector groups anomalies by it and the responder
// labels them with it for silences.
func (a Anomaly) TopFeature() string {
	if len(a.Explanation) == 0 {
		return ""
	}
	return a.Explanation[0].Name
}

// ID returns the deterministic anomaly id: the first 16 bytes of SHA-256
// over agent, window start and kind, in hex.
func ID(agentID string, windowStartMs int64, kind string) string {
	buf := make([]byte, 0, len(agentID)+len(kind)+24)
	buf = append(buf, agentID...)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, windowStartMs, 10)
	buf = append(buf, 0)
	buf = append(buf, kind...)
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:16])
}

// ShareID returns the id of partition's share of the fleet-wide event
// group: the first 16 bytes of SHA-256 over the group and the partition, in
// hex. A re-processed window gives the same id again; two partitions never
// give the same one.
func ShareID(group string, partition int32) string {
	buf := make([]byte, 0, len(group)+16)
	buf = append(buf, "share\x00"...)
	buf = append(buf, group...)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, int64(partition), 10)
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:16])
}

// GroupKey returns what a consumer joins a on to keep one record per event:
// its Group when it is a share of a fleet-wide event, else its ID.
func (a Anomaly) GroupKey() string {
	if a.Group != "" {
		return a.Group
	}
	return a.ID
}

// Score is one agent window's result, written for every closed window
// whether anomalous or not (for plots and evaluation). Values, Expected and
// Surprise are indexed by features.ID. detstate's fileScore mirrors it
// field for field on purpose: it is the JSON form that can carry ±Inf and
// NaN, which encoding/json refuses for float64.
type Score struct {
	AgentID       string    `json:"agent_id"`
	WindowStartMs int64     `json:"window_start_ms"`
	WindowEndMs   int64     `json:"window_end_ms"`
	Partition     int32     `json:"partition"`
	Score         float64   `json:"score"`
	Severity      string    `json:"severity"`
	Values        []float64 `json:"values"`
	Expected      []float64 `json:"expected"`
	Surprise      []float64 `json:"surprise"`
	// Trained says whether the window trained the baseline (anomalous
	// windows do not, or with a small weight).
	Trained bool `json:"trained"`
	// PeerBaseline as in Anomaly.
	PeerBaseline bool `json:"peer_baseline"`
	// Late counts events that arrived after their window had closed and
	// were accounted here instead of being dropped silently.
	Late int `json:"late"`
}
