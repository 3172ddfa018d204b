// Package revoke revokes and restores agent credentials at the API gateway,
// safely: once per (adapter, credential, incident), within a blast-radius
// budget, behind a kill switch, and with every outbound HTTP call confined
// to an allow-list of addresses checked at dial time.
//
// A Guard is the Revoker the responder calls. It wraps one Gateway adapter
// (Kong Admin API, a templated HTTP webhook or a deny-list file), records
// each action in a Ledger before and after it runs, and refuses automatic
// requests past the Budget or with the KillSwitch engaged (ErrNeedsApproval).
package revoke

import (
	"context"
	"errors"
	"fmt"
)

// Revoker revokes and restores credentials. Implementations are safe for
// concurrent use.
type Revoker interface {
	// Revoke revokes t's credential unless this incident already did.
	Revoke(ctx context.Context, t Target) (Result, error)
	// Restore undoes the revocation t's incident made.
	Restore(ctx context.Context, t Target) (Result, error)
}

// Origin says who asked for an action; it decides whether the budget and
// the kill switch apply.
type Origin string

// Origins. The zero value is Automatic, so a request that does not say
// otherwise is held to the budget. Alike in shape to other enums
// (silence.Reason), not shared.
const (
	// Automatic: a playbook step run without a human. Held to the budget
	// and stopped by the kill switch.
	Automatic Origin = ""
	// Manual: a responder ran it by hand (CLI, HTTP API, Slack button).
	// Not held to the budget; stopped by the kill switch unless Force.
	Manual Origin = "manual"
	// Approved: an automatic request a human approved after
	// ErrNeedsApproval. Treated as Manual.
	Approved Origin = "approved"
)

// String returns the origin's name, "automatic" for the zero value.
func (o Origin) String() string {
	if o == Automatic {
		return "automatic"
	}
	return string(o)
}

// Target names the credential to act on and why.
type Target struct {
	// CredentialID is the gateway's id of the credential (Kong: the
	// key-auth credential id, as in the access log's
	// authenticated_entity.id). Required.
	CredentialID string `json:"credential_id"`
	// AgentID is the agent the credential belongs to.
	AgentID string `json:"agent_id,omitempty"`
	// Consumer is the gateway consumer (Kong: consumer id or username)
	// owning the credential; optional for Kong.
	Consumer string `json:"consumer,omitempty"`
	// IncidentID groups the actions of one incident; revoking is
	// idempotent per (adapter, credential, incident). Required.
	IncidentID string `json:"incident_id"`
	// Origin is who asked; the zero value is Automatic.
	Origin Origin `json:"origin,omitempty"`
	// Force lets a Manual or Approved request through an engaged kill
	// switch. It is ignored for Automatic requests.
	Force bool `json:"force,omitempty"`
}

func (t Target) automatic() bool { return t.Origin != Manual && t.Origin != Approved }

// maxField bounds each Target field, so a hostile id cannot bloat requests,
// files or logs.
const maxField = 512

func (t Target) validate() error {
	var errs []error
	if t.CredentialID == "" {
		errs = append(errs, errors.New("credential_id: empty"))
	}
	if t.IncidentID == "" {
		errs = append(errs, errors.New("incident_id: empty"))
	}
	switch t.Origin {
	case Automatic, Manual, Approved:
	default:
		errs = append(errs, fmt.Errorf("origin: unknown %q; want automatic (empty), manual or approved", t.Origin))
	}
	for _, f := range []struct{ name, v string }{
		{"credential_id", t.CredentialID}, {"agent_id", t.AgentID}, {"consumer", t.Consumer}, {"incident_id", t.IncidentID},
	} {
		if len(f.v) > maxField {
			errs = append(errs, fmt.Errorf("%s: %d bytes, more than %d", f.name, len(f.v), maxField))
		}
		// A whole path segment of "." or ".." would be normalised away by
		// servers and move the request to the parent resource.
		if f.v == "." || f.v == ".." {
			errs = append(errs, fmt.Errorf("%s: %q is not a usable id", f.name, f.v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidTarget, err)
	}
	return nil
}

// Status is what an action did.
type Status string

// Statuses.
const (
	// StatusRevoked: this call revoked the credential.
	StatusRevoked Status = "revoked"
	// StatusAlreadyRevoked: nothing to do; this incident had revoked it
	// already, or the gateway no longer had it (a 404).
	StatusAlreadyRevoked Status = "already_revoked"
	// StatusRestored: this call restored the credential.
	StatusRestored Status = "restored"
	// StatusAlreadyRestored: nothing to do; it was restored already.
	StatusAlreadyRestored Status = "already_restored"
	// StatusLeftRevoked: Restore did nothing because the credential was
	// already revoked when the incident came to revoke it, so undoing
	// that is not this incident's call.
	StatusLeftRevoked Status = "left_revoked"
)

// Result is the outcome of a Revoke or Restore that did not fail.
type Result struct {
	Status Status `json:"status"`
	// Detail is a short human sentence for logs, audit and Slack.
	Detail string `json:"detail,omitempty"`
	// Attempts is how many times the gateway's mutating call was sent
	// (retries included); 0 when no call was needed.
	Attempts int `json:"attempts"`
}

// ErrNeedsApproval means an automatic revocation was not made: the budget
// is spent, the kill switch is engaged, or the incident's revocation was
// restored already. Ask a human (a Slack approval) and, if approved, call
// Revoke again with Origin Approved. The error is an *ApprovalError, which
// says why.
var ErrNeedsApproval = errors.New("revocation needs approval")

// Reasons of an ApprovalError, also the reason label of the refusals metric.
const (
	ReasonBudget     = "budget"
	ReasonKillSwitch = "kill_switch"
	ReasonRestored   = "restored"
)

// ApprovalError is the ErrNeedsApproval a Guard returns, with the reason.
type ApprovalError struct {
	// Reason is ReasonBudget, ReasonKillSwitch or ReasonRestored.
	Reason string
	// Detail is a human sentence for the approval request.
	Detail string
}

// Error implements error.
func (e *ApprovalError) Error() string { return "revocation needs approval: " + e.Detail }

// Unwrap makes errors.Is(err, ErrNeedsApproval) true.
func (e *ApprovalError) Unwrap() error { return ErrNeedsApproval }

// ErrKillSwitch means a Manual or Approved revocation was refused because
// the kill switch is engaged; retry with Target.Force if a human means it,
// or disengage the switch.
var ErrKillSwitch = errors.New("kill switch engaged: revocations are stopped; set force to override, or disengage the switch")

// ErrNoRevocation means Restore found no revocation of the credential in
// the incident; check the incident id (the responder's audit log has it).
var ErrNoRevocation = errors.New("no revocation recorded for this credential and incident")

// ErrInvalidTarget means the Target can never be acted on (an empty or
// oversized id, or one the adapter cannot express); fix the caller.
var ErrInvalidTarget = errors.New("invalid target")

// permanentError marks an error that retrying cannot cure.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return permanentError{err} }

// Retryable reports whether calling Revoke or Restore again later may
// succeed where err failed: false for approval requests, the kill switch,
// egress refusals, invalid targets, 4xx answers and other errors only a
// human can cure; true for network errors, 5xx after the last attempt and
// ledger failures. The responder decides here, once, whether to retry.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var (
		se *StatusError
		pe permanentError
	)
	switch {
	case errors.Is(err, ErrNeedsApproval), errors.Is(err, ErrKillSwitch), errors.Is(err, ErrEgressRefused),
		errors.Is(err, ErrInvalidTarget), errors.Is(err, ErrNoRevocation), errors.Is(err, context.Canceled),
		errors.As(err, &pe):
		return false
	case errors.As(err, &se):
		return se.Temporary()
	}
	return true
}

// changeMarker is what adapters with nothing to keep pass to keep.
var changeMarker = []byte("{}")

// A Gateway performs revocations at one kind of gateway: an adapter. The
// Guard calls it at most once at a time per (credential, incident).
// Implementations are safe for concurrent use.
type Gateway interface {
	// Name identifies the adapter: the metrics label and part of the
	// ledger key ("kong", "webhook", "denylist", or a configured name).
	Name() string
	// Check reports a target the adapter can never act on (for example
	// an id a deny-list line cannot hold). It makes no call.
	Check(t Target) error
	// Revoke revokes the credential. Just before the step that changes
	// the gateway it passes keep a non-nil value: whatever Restore will
	// need to put the credential back (Kong: the credential as read
	// before the DELETE), or changeMarker; it stops if keep fails. The
	// kept value also tells a resumed revocation that finds the
	// credential revoked that the revocation was its own. It returns
	// StatusRevoked or StatusAlreadyRevoked.
	Revoke(ctx context.Context, t Target, keep func(saved []byte) error) (Result, error)
	// Restore undoes Revoke given what Revoke kept (nil if nothing). It
	// returns StatusRestored or StatusAlreadyRestored.
	Restore(ctx context.Context, t Target, saved []byte) (Result, error)
}
