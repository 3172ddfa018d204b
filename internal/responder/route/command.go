package route

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// Prefix starts the global table's key of every command: "c/<command id>".
const Prefix = "c/"

// The kinds of command.
const (
	// KindClick is a verified Slack button click (Command.Click).
	KindClick = "click"
	// KindRun is an HTTP API run of a playbook (Command.Run).
	KindRun = "run"
	// KindFalsePositive is an HTTP API false-positive verdict
	// (Command.FalsePositive).
	KindFalsePositive = "false_positive"
	// KindOutboxRepair is an operator's requeue or dismiss of one outbox
	// entry (Command.OutboxRepair). It acts on no agent: it is located by
	// the anomaly partition that holds the entry (PartitionLocator).
	KindOutboxRepair = "outbox_repair"
)

// The states of a command. Pending is the only one that is not final.
const (
	StatePending = "pending"
	// StateDone: the owner ran it; Result holds what it returned.
	StateDone = "done"
	// StateFailed: the owner ran it and it failed; Error and ErrorKind say
	// how.
	StateFailed = "failed"
	// StateDuplicate: the owner had run it before (a retry of the same
	// click or request): nothing ran now.
	StateDuplicate = "duplicate"
	// StateExpired: no instance ran it within the command TTL (no owner
	// held the incident it names, or none was up).
	StateExpired = "expired"
)

// The error kinds of a failed command, so the instance that received the
// request answers as the owner would have.
const (
	ErrKindNotAllowed = "not_allowed"      // slackui.ErrNotAllowed
	ErrKindNotFound   = "not_found"        // respapi.ErrNotFound
	ErrKindBadRequest = "bad_request"      // respapi.ErrBadRequest
	ErrKindPlaybook   = "unknown_playbook" // the playbook does not exist
	ErrKindConflict   = "conflict"         // respapi.ErrConflict
)

// FalsePositive is the request of a KindFalsePositive command.
type FalsePositive struct {
	Incident  string      `json:"incident"`
	AnomalyID string      `json:"anomaly_id"`
	Actor     audit.Actor `json:"actor"`
}

// OutboxRepair is the request of a KindOutboxRepair command: requeue or
// dismiss the outbox entry Key. Partition is the anomaly partition the
// receiving instance found the entry in (the state topic), or -1: the
// owner of that partition runs the command even when the entry has gone
// since (it then answers not found).
type OutboxRepair struct {
	respapi.OutboxRepair
	Partition int32 `json:"partition"`
}

// Command is a request that must run on the instance that owns the agent it
// acts on, as written to the global table by the instance that received
// it, and then rewritten there by the owner with its outcome (the same key:
// the table keeps the latest).
type Command struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// From is the instance that received the request; AtMs when (its
	// clock). DeadlineMs is when it stops waiting for the outcome: the
	// owner bounds a run by it, so the outcome arrives while someone
	// still waits for it.
	From       string `json:"from"`
	AtMs       int64  `json:"at_ms"`
	DeadlineMs int64  `json:"deadline_ms,omitempty"`

	Click         *slackui.Action  `json:"click,omitempty"`
	Run           *respapi.Request `json:"run,omitempty"`
	FalsePositive *FalsePositive   `json:"false_positive,omitempty"`
	OutboxRepair  *OutboxRepair    `json:"outbox_repair,omitempty"`

	State string `json:"state"`
	// By is the instance that wrote the final state, DoneMs when.
	By        string          `json:"by,omitempty"`
	DoneMs    int64           `json:"done_ms,omitempty"`
	Error     string          `json:"error,omitempty"`
	ErrorKind string          `json:"error_kind,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
}

// Final reports whether the command has an outcome.
func (c Command) Final() bool { return c.State != "" && c.State != StatePending }

// Err is the outcome as the error the owner's call returned: nil for done,
// duplicate and pending; the same sentinel for the error kinds above.
func (c Command) Err() error {
	switch c.State {
	case StateFailed:
	case StateExpired:
		return fmt.Errorf("command %s: %w", c.ID, ErrExpired)
	default:
		return nil
	}
	var kind error
	switch c.ErrorKind {
	case ErrKindNotAllowed:
		kind = slackui.ErrNotAllowed
	case ErrKindNotFound:
		kind = respapi.ErrNotFound
	case ErrKindBadRequest:
		kind = respapi.ErrBadRequest
	case ErrKindPlaybook:
		kind = playbooks.ErrUnknownPlaybook
	case ErrKindConflict:
		kind = respapi.ErrConflict
	default:
		return errors.New(c.Error)
	}
	return &remoteError{msg: c.Error, kind: kind}
}

// ErrExpired means no instance ran the command within the command TTL.
var ErrExpired = errors.New("no instance ran the command in time; it was dropped")

// remoteError carries the owner's message and the sentinel it wrapped.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

// dedupKey is the handled-set key under which the owner marks the command
// before running it, or "" when the command is idempotent by itself. A
// click uses the key the interaction handler marks ("click:" and the
// click's key), so a click the owner received itself and a forwarded
// retry of it are one. A run is idempotent by its decision id (the engine
// finds its steps already queued) and a verdict by its silence and verdict
// ids, as when they run on the instance that received them; marking them
// would only turn a caller's retry after a failure into a duplicate that
// runs nothing.
func (c Command) dedupKey() string {
	if c.Kind == KindClick && c.Click != nil {
		return "click:" + c.Click.Key
	}
	return ""
}

func (c Command) validate() error {
	if c.ID == "" {
		return errors.New("no id")
	}
	switch {
	case c.Kind == KindClick && c.Click != nil && c.Click.Key != "":
	case c.Kind == KindRun && c.Run != nil && c.Run.AgentID != "":
	case c.Kind == KindFalsePositive && c.FalsePositive != nil:
	case c.Kind == KindOutboxRepair && c.OutboxRepair != nil && c.OutboxRepair.Key != "" &&
		(c.OutboxRepair.Op == respapi.OutboxRequeue || c.OutboxRepair.Op == respapi.OutboxDismiss):
	default:
		return fmt.Errorf("kind %q without its request", c.Kind)
	}
	return nil
}

func (c Command) at() time.Time { return time.UnixMilli(c.AtMs) }
