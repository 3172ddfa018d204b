package respapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
)

// The operations of POST /v1/outbox/{op}.
const (
	OutboxRequeue = "requeue"
	OutboxDismiss = "dismiss"
)

// Audit actions of an outbox repair.
const (
	ActionOutboxRequeue = "outbox_requeue"
	ActionOutboxDismiss = "outbox_dismiss"
)

// OutboxAction is the audit action of op.
func OutboxAction(op string) string {
	if op == OutboxDismiss {
		return ActionOutboxDismiss
	}
	return ActionOutboxRequeue
}

// OutboxRepair is an operator's requeue or dismiss of one outbox entry.
type OutboxRepair struct {
	// Op is OutboxRequeue or OutboxDismiss.
	Op  string `json:"op"`
	Key string `json:"key"`
	// Reason is why (required for a dismiss).
	Reason string `json:"reason,omitempty"`
	// RequestID is the caller's idempotency key: the same one, sent again,
	// acts no more. "" acts every time.
	RequestID string      `json:"request_id,omitempty"`
	Actor     audit.Actor `json:"actor"`
}

// OutboxResult is what a repair left.
type OutboxResult struct {
	Entry outbox.Entry
	// Duplicate says the request id had acted before: nothing was done
	// now, and Entry is the entry as it is now.
	Duplicate bool
}

// Outbox repairs the responder's outbox: the Engine, or with several
// instances the one that forwards the repair to the instance holding the
// entry. It writes the audit record of what it did or refused; the
// handler audits only the requests it refuses itself.
type Outbox interface {
	// RepairOutbox requeues or dismisses the entry. An error wrapping
	// ErrNotFound answers 404, ErrConflict 409 (the entry is not in a
	// state the operation applies to), ErrQueued 202.
	RepairOutbox(ctx context.Context, req OutboxRepair) (OutboxResult, error)
}

// ErrConflict is what an Outbox returns (wrapped) when the entry is not in
// a state the operation applies to: the API answers 409.
var ErrConflict = errors.New("conflict")

const (
	outboxRequeuePattern = "POST /v1/outbox/requeue"
	outboxDismissPattern = "POST /v1/outbox/dismiss"
)

// outboxBody is the body of POST /v1/outbox/requeue and /dismiss.
type outboxBody struct {
	Key       string `json:"key"`
	Reason    string `json:"reason"`
	RequestID string `json:"request_id"`
}

func (b *outboxBody) validate(op string) error {
	var errs []error
	switch {
	case b.Key == "":
		errs = append(errs, errors.New("key: required (responder outbox list shows the keys)"))
	case len(b.Key) > outbox.MaxKeyLen:
		errs = append(errs, fmt.Errorf("key: longer than %d bytes", outbox.MaxKeyLen))
	case strings.IndexFunc(b.Key, unicode.IsControl) >= 0:
		errs = append(errs, errors.New("key: holds a control character"))
	}
	if op == OutboxDismiss && strings.TrimSpace(b.Reason) == "" {
		errs = append(errs, errors.New("reason: required for a dismiss: say why the action is not to be done"))
	}
	if len(b.Reason) > maxReason {
		errs = append(errs, fmt.Errorf("reason: longer than %d bytes", maxReason))
	}
	if b.RequestID != "" && !requestIDRE.MatchString(b.RequestID) {
		errs = append(errs, errors.New("request_id: 1 to 128 letters, digits, '.', '_', ':' or '-'"))
	}
	return errors.Join(errs...)
}

// OutboxEntryResponse is the JSON answer to a repair: the entry's new
// state (its payload left out: it may hold what the action sends).
type OutboxEntryResponse struct {
	Key         string       `json:"key"`
	Kind        string       `json:"kind"`
	State       outbox.State `json:"state"`
	Attempts    int          `json:"attempts"`
	Failures    int          `json:"failures"`
	NextAttempt time.Time    `json:"next_attempt"`
	LastError   string       `json:"last_error,omitempty"`
	Partition   int32        `json:"partition"`
	Updated     time.Time    `json:"updated"`
	// Duplicate says the request_id had acted before: nothing was done
	// now.
	Duplicate bool `json:"duplicate"`
	// Result is "queued" in a 202: the instance holding the entry had
	// not answered yet.
	Result string `json:"result,omitempty"`
}

// outboxRepair serves POST /v1/outbox/requeue and /dismiss, for tokens
// with can_repair_outbox.
func (h *Handler) outboxRepair(op string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := audit.Record{Actor: audit.Actor{Kind: audit.ActorAPI}, Action: OutboxAction(op), Result: audit.ResultRefused}
		tok, err := h.authenticate(r)
		if err != nil {
			h.unauthorized(w, r, rec, err)
			return
		}
		rec.Actor.TokenName = tok.name
		if !tok.canRepairOutbox {
			h.refuse(w, r, rec, http.StatusForbidden, "token "+tok.name+" may not repair the outbox")
			return
		}
		var in outboxBody
		if !h.readJSON(w, r, rec, &in) {
			return
		}
		rec.Why, rec.Detail = in.Reason, "outbox entry "+in.Key
		if err := in.validate(op); err != nil {
			h.refuse(w, r, rec, http.StatusBadRequest, err.Error())
			return
		}
		if in.RequestID != "" {
			// One caller's ids never meet another's.
			in.RequestID = "api:" + tok.name + ":" + in.RequestID
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), h.runTimeout)
		defer cancel()
		res, err := h.outbox.RepairOutbox(ctx, OutboxRepair{Op: op, Key: in.Key, Reason: in.Reason, RequestID: in.RequestID, Actor: rec.Actor})
		// The Outbox audits what it did and refused; what it answers
		// here is only turned into a status.
		switch {
		case errors.Is(err, ErrQueued):
			writeJSON(w, http.StatusAccepted, OutboxEntryResponse{Key: in.Key, Result: "queued"})
			return
		case errors.Is(err, ErrNotFound):
			writeError(w, http.StatusNotFound, err.Error())
			return
		case errors.Is(err, ErrConflict):
			writeError(w, http.StatusConflict, err.Error())
			return
		case err != nil:
			h.log.Error("outbox repair failed", "op", op, "key", in.Key, "token", tok.name, "err", err)
			writeError(w, http.StatusInternalServerError, "outbox "+op+" failed; the responder log has the reason")
			return
		}
		e := res.Entry
		writeJSON(w, http.StatusOK, OutboxEntryResponse{Key: e.Key, Kind: e.Kind, State: e.State, Attempts: e.Attempts, Failures: e.Failures,
			NextAttempt: e.NextAttempt, LastError: e.LastError, Partition: e.Partition, Updated: e.Updated, Duplicate: res.Duplicate})
	}
}
