// Package audit records who did what to which agent, when, why and with what
// result: one Record per responder action — automatic, Slack button, CLI or
// HTTP API, executed or dry-run — and per refused request. It answers
// `responder audit --agent ID --from T --to T`.
//
// A Store keeps records. FileStore (JSON lines, for the embedded mode and
// tests) and MemStore are here; chstore.Audit keeps them in ClickHouse for
// the services (table audit, migration 0003). A Logger sits
// in front of a Store: it stamps each record with a time and an id and also
// writes it to the log. WriteTable and WriteJSON print records for a
// terminal, with every attacker-controlled string made inert.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// ActorKind says through which door an action came in.
type ActorKind string

// Actor kinds.
const (
	// ActorAutomatic: a playbook step run by the responder on its own.
	ActorAutomatic ActorKind = "automatic"
	// ActorSlack: an analyst clicked a button in Slack (UserID, Name).
	ActorSlack ActorKind = "slack"
	// ActorCLI: someone ran a responder command (Name: the OS user).
	ActorCLI ActorKind = "cli"
	// ActorAPI: a caller of the HTTP API (TokenName; "" when it presented
	// no valid token).
	ActorAPI ActorKind = "api"
)

// ActorKinds lists every actor kind.
func ActorKinds() []ActorKind {
	return []ActorKind{ActorAutomatic, ActorSlack, ActorCLI, ActorAPI}
}

// Actor is who asked for an action.
type Actor struct {
	Kind ActorKind `json:"kind"`
	// Name is a human name: the Slack user name, the OS user of a CLI
	// run. Display data: never trust it for a decision.
	Name string `json:"name,omitempty"`
	// UserID is the Slack user id (U…, W…) of a button click.
	UserID string `json:"user_id,omitempty"`
	// TokenName is the configured name of the API token used (never the
	// token itself).
	TokenName string `json:"token_name,omitempty"`
}

// String is a short label: "automatic", "slack:alice (U123)", "cli:root",
// "api:ci-bot", "api:-" for an unauthenticated request. Not escaped.
func (a Actor) String() string {
	switch a.Kind {
	case ActorAutomatic:
		return string(a.Kind)
	case ActorAPI:
		return "api:" + cmpOr(a.TokenName, a.Name, "-")
	case ActorSlack:
		s := "slack:" + cmpOr(a.Name, a.UserID, "-")
		if a.Name != "" && a.UserID != "" {
			s += " (" + a.UserID + ")"
		}
		return s
	}
	return string(a.Kind) + ":" + cmpOr(a.Name, a.UserID, a.TokenName, "-")
}

// Result is how an action ended.
type Result string

// Results. Like every enum here (playbooks.Kind, outbox.State), a typed
// string constant per value: the values differ, only the shape repeats.
const (
	// ResultOK: the action was carried out.
	ResultOK Result = "ok"
	// ResultSkipped: the action was not needed or not possible (already
	// done, no credential to revoke, a replayed anomaly).
	ResultSkipped Result = "skipped"
	// ResultRefused: the request was not allowed (bad or missing token, a
	// playbook the token may not run, the kill switch).
	ResultRefused Result = "refused"
	// ResultFailed: the action was tried and did not succeed.
	ResultFailed Result = "failed"
	// ResultNeedsApproval: the action waits for a human (approve step,
	// revocation budget spent).
	ResultNeedsApproval Result = "needs_approval"
	// ResultDryRun: the action was recorded, not carried out; no outbound
	// call was made.
	ResultDryRun Result = "dry_run"
)

// Results lists every result.
func Results() []Result {
	return []Result{ResultOK, ResultSkipped, ResultRefused, ResultFailed, ResultNeedsApproval, ResultDryRun}
}

// Actions that are not step kinds (step kinds are playbooks.Kind values:
// notify, revoke, throttle, quarantine, snapshot, webhook, approve).
const (
	// ActionPlaybook is a whole playbook run (or a request for one).
	ActionPlaybook = "playbook"
	// ActionAuditQuery is a read of the audit records through the API.
	ActionAuditQuery = "audit_query"
	// ActionCheckpoint is a signed checkpoint of the evidence chain's
	// head; its Detail is the checkpoint (evidence.Checkpoint's text).
	ActionCheckpoint = "checkpoint"
	// ActionAsk is a question put to the visibility service (inventory,
	// findings, access, an agent's or a route's profile, events), from
	// the CLI, the HTTP API or the console; its Detail is the question in
	// one line, written before it is answered.
	ActionAsk = "ask"
)

// Record is one audited action. Strings other than the enums may hold
// attacker-controlled text (agent ids, credential ids, reasons): escape them
// before display (WriteTable and WriteJSON do). Its fields look like other
// records' (revoke.DenyEntry) but are this record's own JSON form.
type Record struct {
	// ID identifies the record. A Logger sets it to ContentID when empty,
	// so the same record appended twice (a retry) collapses to one, in
	// Query and in ClickHouse's ReplacingMergeTree.
	ID string `json:"id"`
	// AtMs is when the action ended, in Unix milliseconds.
	AtMs  int64 `json:"at_ms"`
	Actor Actor `json:"actor"`
	// Action is a step kind (notify, revoke, …), ActionPlaybook,
	// ActionAuditQuery, ActionCheckpoint or ActionAsk.
	Action     string `json:"action"`
	Playbook   string `json:"playbook,omitempty"`
	DecisionID string `json:"decision_id,omitempty"`
	// StepID is the playbooks.Action id (decision id + "-" + index).
	StepID string `json:"step_id,omitempty"`
	// IncidentID groups the actions of one incident (the decision id that
	// opened it).
	IncidentID   string `json:"incident_id,omitempty"`
	AnomalyID    string `json:"anomaly_id,omitempty"`
	AgentID      string `json:"agent_id,omitempty"`
	CredentialID string `json:"credential_id,omitempty"`
	DryRun       bool   `json:"dry_run,omitempty"`
	// Why is the reason: which trigger conditions held, or the reason a
	// human gave.
	Why    string `json:"why,omitempty"`
	Result Result `json:"result"`
	// Detail says more about the result: an error, the gateway's answer,
	// the address of a refused caller.
	Detail string `json:"detail,omitempty"`
}

// Caps on the string fields, in bytes, applied by Normalize so that a
// hostile id or reason cannot bloat files, tables or logs.
const (
	capID     = 128  // ids, names, enums
	capEntity = 256  // agent and credential ids
	capWhy    = 2048 // Why
	capDetail = 4096 // Detail
)

// Normalize returns r with every string made valid UTF-8 (invalid bytes
// become U+FFFD) and cut to its cap (an ellipsis marks a cut). It is
// idempotent. Stores keep normalized records, so a Filter must be
// normalized the same way (Filter.Normalize) to match them.
//
// One line per field on purpose: each field has its own cap, and a loop over
// fields would need reflection.
func (r Record) Normalize() Record {
	r.ID = capString(r.ID, capID)
	r.Actor.Kind = ActorKind(capString(string(r.Actor.Kind), capID))
	r.Actor.Name = capString(r.Actor.Name, capEntity)
	r.Actor.UserID = capString(r.Actor.UserID, capID)
	r.Actor.TokenName = capString(r.Actor.TokenName, capID)
	r.Action = capString(r.Action, capID)
	r.Playbook = capString(r.Playbook, capID)
	r.DecisionID = capString(r.DecisionID, capID)
	r.StepID = capString(r.StepID, capID)
	r.IncidentID = capString(r.IncidentID, capID)
	r.AnomalyID = capString(r.AnomalyID, capID)
	r.AgentID = capString(r.AgentID, capEntity)
	r.CredentialID = capString(r.CredentialID, capEntity)
	r.Why = capString(r.Why, capWhy)
	r.Result = Result(capString(string(r.Result), capID))
	r.Detail = capString(r.Detail, capDetail)
	return r
}

// Validate reports every problem of r at once. A Store refuses an invalid
// record.
func (r Record) Validate() error {
	var errs []error
	if r.ID == "" {
		errs = append(errs, errors.New("id: required"))
	}
	if r.AtMs <= 0 {
		errs = append(errs, fmt.Errorf("at_ms: must be positive, got %d", r.AtMs))
	}
	if !slices.Contains(ActorKinds(), r.Actor.Kind) {
		errs = append(errs, fmt.Errorf("actor.kind: unknown %.64q; want automatic, slack, cli or api", r.Actor.Kind))
	}
	if r.Action == "" {
		errs = append(errs, errors.New("action: required (a step kind, playbook, audit_query, checkpoint or ask)"))
	}
	if !slices.Contains(Results(), r.Result) {
		errs = append(errs, fmt.Errorf("result: unknown %.64q; want ok, skipped, refused, failed, needs_approval or dry_run", r.Result))
	}
	return errors.Join(errs...)
}

// ContentID is a hash of everything in r but its ID: the first 16 bytes of
// SHA-256 over its JSON form, in hex. Equal records have equal ids.
func (r Record) ContentID() string {
	r.ID = ""
	b, _ := json.Marshal(r) // a struct of strings, ints and bools always encodes
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// DefaultLimit is the number of records a Query returns when the Filter
// sets no Limit.
const DefaultLimit = 1000

// Filter selects records. Zero fields select everything.
type Filter struct {
	// AgentID, when set, selects the records about this agent.
	AgentID string
	// FromMs (inclusive) and ToMs (exclusive) bound AtMs, in Unix
	// milliseconds; ToMs 0 means no upper bound.
	FromMs, ToMs int64
	// IncidentID, when set, selects the records of this incident.
	IncidentID string
	// Action, when set, selects the records of this action (a step kind,
	// ActionCheckpoint, …).
	Action string
	// NotAction, when set, leaves out the records of this action: the
	// visibility questions read the responder's actions without the
	// questions asked (ActionAsk), which can be most of the trail.
	NotAction string
	// Limit caps the records returned: the earliest Limit that match.
	// 0 or less means DefaultLimit.
	Limit int
}

// Normalize returns f with its ids normalized as Record.Normalize does, so
// that an over-long or invalid id still finds its (capped) records, and a
// non-positive Limit replaced by DefaultLimit.
func (f Filter) Normalize() Filter {
	f.AgentID = capString(f.AgentID, capEntity)
	f.IncidentID = capString(f.IncidentID, capID)
	f.Action = capString(f.Action, capID)
	f.NotAction = capString(f.NotAction, capID)
	if f.Limit <= 0 {
		f.Limit = DefaultLimit
	}
	return f
}

// Validate reports a filter no store can answer.
func (f Filter) Validate() error {
	if f.ToMs != 0 && f.ToMs < f.FromMs {
		return fmt.Errorf("time range: to (%d) is before from (%d); swap them", f.ToMs, f.FromMs)
	}
	return nil
}

// Match reports whether r passes the filter (the limit aside).
func (f Filter) Match(r Record) bool {
	return (f.AgentID == "" || r.AgentID == f.AgentID) &&
		(f.IncidentID == "" || r.IncidentID == f.IncidentID) &&
		(f.Action == "" || r.Action == f.Action) &&
		(f.NotAction == "" || r.Action != f.NotAction) &&
		r.AtMs >= f.FromMs && (f.ToMs == 0 || r.AtMs < f.ToMs)
}

// Store keeps audit records. Implementations are safe for concurrent use;
// an Append that returned nil is durable.
type Store interface {
	// Append stores the records. Each must be valid (Record.Validate);
	// the store normalizes them. On error none, some or all may be
	// stored: appending the same records again is safe, as records with
	// an equal ID collapse.
	Append(ctx context.Context, recs ...Record) error
	// Query returns the records that match f, ordered by AtMs then ID,
	// at most f.Limit of them (after Filter.Normalize). Records with
	// equal ID and AtMs (the same record appended twice) count once.
	Query(ctx context.Context, f Filter) ([]Record, error)
}

// finish sorts matches by (AtMs, ID), keeps one record per ID and cuts the
// result to limit: the common tail of every Query.
func finish(recs []Record, limit int) []Record {
	slices.SortStableFunc(recs, func(a, b Record) int {
		if a.AtMs != b.AtMs {
			if a.AtMs < b.AtMs {
				return -1
			}
			return 1
		}
		return strings.Compare(a.ID, b.ID)
	})
	recs = slices.CompactFunc(recs, func(a, b Record) bool { return a.ID == b.ID && a.AtMs == b.AtMs })
	if len(recs) > limit {
		recs = recs[:limit:limit]
	}
	return recs
}

// validateAll validates each record, naming its index.
func validateAll(recs []Record) error {
	var errs []error
	for i, r := range recs {
		if err := r.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("audit record %d (id %.40q): %w", i, r.ID, err))
		}
	}
	return errors.Join(errs...)
}

const ellipsis = "…"

// capString makes s valid UTF-8 and at most max bytes, cutting at a rune
// boundary and ending a cut string with an ellipsis.
func capString(s string, max int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= max {
		return s
	}
	cut := max - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

func cmpOr(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
