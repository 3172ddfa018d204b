// Package outbox is the responder's durable work log: a queue of actions
// (post a Slack alert, revoke a credential, undo a quarantine) that
// survives crashes, so that an action is never lost and, as seen from
// outside, never done twice.
//
// The caller enqueues each action under an idempotency key it derives from
// the decision (a playbooks.Action ID, its UndoID, or "slack:<decision>:post"),
// so a replayed anomaly enqueues nothing new. A Worker hands due entries to
// a Handler per kind and records the outcome. A Seen set records which
// anomalies were handled, so a redelivered or replayed anomaly is skipped.
//
// # Crash semantics
//
// Every state change is one fsynced line before the call that changed it
// returns. The Worker marks an entry in_flight, durably, before it calls
// the handler, and marks it done after. A crash (SIGKILL, power loss)
// between the two leaves the entry in_flight: the next Worker on the store
// hands it to the handler again with Entry.Recovered set. The action may or
// may not have happened, and only the outside world knows, so a handler
// given a recovered entry must look before acting again: Kong GET before
// DELETE (revoke's ledger does this), Slack search by the message's
// metadata or client message id before posting. An entry is therefore
// handled at least once, and the handler's check makes it once as seen from
// outside. RunOnceThenCrash simulates the crash in tests.
//
// A crash before the in_flight line is written leaves the entry pending,
// and it runs normally. An entry whose runs keep being cut short (a handler
// that kills the process) is parked after Backoff.MaxAttempts runs instead
// of crash-looping the responder.
//
// # Handled once
//
// For "each anomaly is handled once", the consumer of the anomalies topic
// does, per anomaly: Handled (skip if true); decide; Enqueue every action;
// MarkHandled; commit the Kafka offset. A crash anywhere in between
// redelivers the anomaly, and the deterministic keys make the second
// Enqueue a no-op. Done entries and handled ids are dropped by compaction
// after their retention: keep both retentions longer than the anomalies
// topic's retention (the replay horizon), or a replay older than that acts
// again.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// State is where an entry stands.
type State string

// States. An entry starts pending; the Worker moves it to in_flight while
// the handler runs, then to done, back to pending (a retry), to failed or
// to parked. Alike in shape to other enums (silence.MatchType), not shared.
const (
	// StatePending: waiting for NextAttempt.
	StatePending State = "pending"
	// StateInFlight: handed to the handler. Found at start, it means the
	// last run was cut short: the handler gets it again, Recovered.
	StateInFlight State = "in_flight"
	// StateDone: the handler succeeded; Result holds what it returned.
	StateDone State = "done"
	// StateFailed: the handler returned a Permanent error, or an operator
	// dismissed the entry. It is not retried.
	StateFailed State = "failed"
	// StateParked: retryable errors (or cut-short runs) reached
	// Backoff.MaxAttempts. A human must look: fix the cause and Requeue
	// it, or Dismiss it. Parked entries are never dropped by compaction.
	StateParked State = "parked"
)

// Valid reports whether s is one of the States.
func (s State) Valid() bool {
	switch s {
	case StatePending, StateInFlight, StateDone, StateFailed, StateParked:
		return true
	}
	return false
}

// Open reports whether the entry still has work to do: pending or in_flight.
func (s State) Open() bool { return s == StatePending || s == StateInFlight }

// Limits on what an entry holds, so a line of the file stays a sane size.
const (
	MaxKeyLen     = 512
	MaxKindLen    = 64
	MaxPayloadLen = 1 << 20
)

// Entry is one action in the outbox. The store owns the Payload and Result
// bytes it returns: treat them as read-only.
type Entry struct {
	// Key is the caller's idempotency key: one entry per key, ever (until
	// compaction drops the done entry after its retention).
	Key string `json:"key"`
	// Kind selects the Worker's handler ("slack.post", "revoke", ...).
	Kind string `json:"kind"`
	// OrderKey, when not empty, makes entries with the same OrderKey run
	// one at a time, in Seq order, whatever their kind (see WithOrderKey).
	OrderKey string `json:"order_key,omitempty"`
	// Partition is the anomaly partition whose owner runs the entry, in
	// the distributed mode (PartStore; see InPartition). The file store
	// ignores it.
	Partition int32 `json:"partition,omitempty"`
	// Seq is the enqueue order, given by the store.
	Seq     int64  `json:"seq"`
	Payload []byte `json:"payload"`
	State   State  `json:"state"`
	// Attempts counts the runs handed to the handler, including any cut
	// short by a crash. It only grows.
	Attempts int `json:"attempts"`
	// Failures counts the runs since the last Requeue that ended neither
	// in success nor in a Retry-After: retryable errors and runs cut short
	// (a run counts as a failure from its start until it ends otherwise,
	// so a crash leaves it counted). The entry is parked when it reaches
	// Backoff.MaxAttempts.
	Failures int `json:"failures"`
	// RetryAfterWaits counts the runs that ended in a Retry-After.
	RetryAfterWaits int `json:"retry_after_waits"`
	// NextAttempt is when the entry is due.
	NextAttempt time.Time `json:"next_attempt"`
	// LastError is the last handler error (capped), or why it was parked
	// or dismissed; kept after a later success.
	LastError string `json:"last_error,omitempty"`
	// Result is what the handler returned on success (e.g. a Slack ts).
	Result  []byte    `json:"result,omitempty"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`

	// Recovered is set by the Worker (never stored) when it hands the
	// handler an entry found in_flight: an earlier run was cut short and
	// may or may not have acted. Check the outside world before acting.
	Recovered bool `json:"-"`
}

// EnqueueOption sets an optional field of a new entry. Options apply only
// when Enqueue creates the entry.
type EnqueueOption func(*Entry)

// WithOrderKey makes the entry wait until every entry enqueued before it
// with the same key is done, failed or parked (a retry, a Retry-After or a
// running handler of an earlier one holds it back). Use one key per Slack
// thread, e.g. "slack:<incident>", so replies follow their root message;
// a key shared across kinds would make a revocation wait for Slack's rate
// limit. A handler that needs its predecessor's Result (the thread ts) reads
// it with Store.Get and decides what to do if it failed or was parked.
func WithOrderKey(k string) EnqueueOption { return func(e *Entry) { e.OrderKey = k } }

// InPartition files the entry under anomaly partition p: in the
// distributed mode (PartStore) the entry lives in p's changelog and runs
// only on p's owner. The file store ignores it.
func InPartition(p int32) EnqueueOption { return func(e *Entry) { e.Partition = p } }

// NotBefore makes the entry due at t instead of now: the undo of an action
// with a TTL (a quarantine lifted after an hour) is enqueued with the
// action, due when the TTL ends, and so survives restarts.
func NotBefore(t time.Time) EnqueueOption { return func(e *Entry) { e.NextAttempt = t } }

// Store keeps the entries. Implementations are safe for concurrent use, and
// a call that returned nil is durable. One Worker at a time may run on a
// store.
type Store interface {
	// Enqueue creates a pending entry under key, due now unless NotBefore
	// says otherwise, and returns it with created true. If key already
	// has an entry, in any state, it returns that entry unchanged with
	// created false, whatever kind, payload and options were passed.
	Enqueue(ctx context.Context, key, kind string, payload []byte, opts ...EnqueueOption) (e Entry, created bool, err error)
	// Get returns the entry of key; found is false if there is none.
	Get(ctx context.Context, key string) (e Entry, found bool, err error)
	// List returns the entries in the given states (every entry if none
	// is given), in Seq order.
	List(ctx context.Context, states ...State) ([]Entry, error)
	// Update stores e's State, Attempts, Failures, RetryAfterWaits,
	// NextAttempt, LastError and Result under e.Key, sets Updated, and
	// returns the stored entry. The other fields are the store's. It
	// fails with ErrNotFound if key has no entry.
	Update(ctx context.Context, e Entry) (Entry, error)
}

// Seen is the set of anomaly ids already handled. Implementations are safe
// for concurrent use, and a call that returned nil is durable.
type Seen interface {
	// MarkHandled records id as handled; first is false if it already was.
	MarkHandled(ctx context.Context, id string) (first bool, err error)
	// Handled reports whether id was marked handled.
	Handled(ctx context.Context, id string) (bool, error)
}

// Notifier is a Store that can tell its Worker about new work, so the
// Worker starts an enqueued entry at once instead of at its next poll.
type Notifier interface {
	// Changes receives a value (coalesced) after an entry became pending
	// through Enqueue or Update. It has one reader: the Worker.
	Changes() <-chan struct{}
}

// ErrNotFound means the key has no entry: check the key (List shows them).
var ErrNotFound = errors.New("no outbox entry with this key")

// ErrWrongState is what Requeue and Dismiss return (wrapped) for an entry
// not in a state the operation applies to (a pending entry requeued, a
// done one dismissed): nothing changed.
var ErrWrongState = errors.New("the entry is not in a state this operation applies to")

type stateError struct{ msg string }

func (e *stateError) Error() string { return e.msg }
func (e *stateError) Unwrap() error { return ErrWrongState }

// ErrClosed means the store was closed, or stopped after a write it could
// not make durable; open it again.
var ErrClosed = errors.New("outbox store is closed")

// ErrInUse means another process holds the outbox file: one responder per
// outbox file. Stop the other process, or give this one its own file.
var ErrInUse = errors.New("outbox file is in use by another process")

// Permanent marks err as one that retrying cannot cure (a 4xx, a refused
// target, an invalid payload): the Worker marks the entry failed. A nil err
// stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// RetryAfterer is what an error implements to say "try again after this
// wait" (a 429 with Retry-After). ok false means it says nothing. The
// Worker reschedules the entry at exactly the end of the wait without
// counting a failure. Found with errors.As, so it may be wrapped.
type RetryAfterer interface {
	RetryAfter() (wait time.Duration, ok bool)
}

// RetryAfter wraps err (which may be nil) as a RetryAfterer asking for
// wait, e.g. for a *slackui.PostError with RetryAfter set:
//
//	var pe *slackui.PostError
//	switch {
//	case errors.As(err, &pe) && pe.RetryAfter > 0:
//		return nil, outbox.RetryAfter(pe.RetryAfter, err)
//	case errors.As(err, &pe) && !pe.Retry:
//		return nil, outbox.Permanent(err)
//	}
//	return nil, err // retried with backoff
func RetryAfter(wait time.Duration, err error) error {
	if err == nil {
		err = errors.New("rate limited")
	}
	return &retryAfterError{wait: wait, err: err}
}

// Wait is RetryAfter for an entry waiting on another one (a thread reply
// on its thread's first message), not on a rate limit: it reschedules the
// entry alone — the other entries of its kind go on — and it is logged at
// debug level, since it is normal.
func Wait(wait time.Duration, reason string) error {
	return &retryAfterError{wait: wait, err: errors.New(reason), local: true}
}

type retryAfterError struct {
	wait  time.Duration
	err   error
	local bool
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %v", e.wait, e.err)
}
func (e *retryAfterError) Unwrap() error                     { return e.err }
func (e *retryAfterError) RetryAfter() (time.Duration, bool) { return e.wait, true }

// Requeue makes a parked or failed entry pending again, due now, with its
// Failures reset. Attempts keeps counting, so the handler sees it was tried
// before. It may run while the Worker runs.
func Requeue(ctx context.Context, s Store, key string) (Entry, error) {
	return change(ctx, s, "requeue", key, func(e *Entry) error {
		if e.State != StateParked && e.State != StateFailed {
			return &stateError{fmt.Sprintf("it is %s; only parked or failed entries can be requeued", e.State)}
		}
		e.State, e.Failures, e.NextAttempt = StatePending, 0, time.Now()
		return nil
	})
}

// Dismiss marks a parked entry failed, with reason as its LastError: a
// human decided the action is not to be done.
func Dismiss(ctx context.Context, s Store, key, reason string) (Entry, error) {
	return change(ctx, s, "dismiss", key, func(e *Entry) error {
		if e.State != StateParked {
			return &stateError{fmt.Sprintf("it is %s; only parked entries can be dismissed", e.State)}
		}
		e.State, e.LastError = StateFailed, clip("dismissed: "+reason, maxErrLen)
		return nil
	})
}

// change is an operator's edit of the entry key: it reads the entry, lets
// edit refuse it or change it, and stores the result. Every error is
// prefixed with verb and key.
func change(ctx context.Context, s Store, verb, key string, edit func(*Entry) error) (Entry, error) {
	e, found, err := s.Get(ctx, key)
	switch {
	case err != nil:
	case !found:
		err = ErrNotFound
	default:
		if err = edit(&e); err == nil {
			e, err = s.Update(ctx, e)
		}
	}
	if err != nil {
		return Entry{}, fmt.Errorf("%s %q: %w", verb, key, err)
	}
	return e, nil
}

// maxErrLen caps LastError.
const maxErrLen = 4096

// clip cuts s to at most n bytes.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// checkNew validates what Enqueue is given.
func checkNew(key, kind string, payload []byte) error {
	var errs []error
	if key == "" || len(key) > MaxKeyLen {
		errs = append(errs, fmt.Errorf("key: want 1 to %d bytes, got %d", MaxKeyLen, len(key)))
	}
	if strings.HasPrefix(key, payloadMark) {
		errs = append(errs, errors.New("key: must not start with a NUL byte"))
	}
	if kind == "" || len(kind) > MaxKindLen {
		errs = append(errs, fmt.Errorf("kind: want 1 to %d bytes, got %d", MaxKindLen, len(kind)))
	}
	if len(payload) > MaxPayloadLen {
		errs = append(errs, fmt.Errorf("payload: at most %d bytes, got %d", MaxPayloadLen, len(payload)))
	}
	return errors.Join(errs...)
}

// validate checks what every stored entry must satisfy.
func (e *Entry) validate() error {
	var errs []error
	if err := checkNew(e.Key, e.Kind, e.Payload); err != nil {
		errs = append(errs, err)
	}
	if len(e.OrderKey) > MaxKeyLen {
		errs = append(errs, fmt.Errorf("order_key: at most %d bytes, got %d", MaxKeyLen, len(e.OrderKey)))
	}
	if e.Seq < 1 {
		errs = append(errs, fmt.Errorf("seq: must be at least 1, got %d", e.Seq))
	}
	if !e.State.Valid() {
		errs = append(errs, fmt.Errorf("state: unknown %q", clip(string(e.State), 40)))
	}
	if e.Attempts < 0 || e.Failures < 0 || e.RetryAfterWaits < 0 {
		errs = append(errs, errors.New("attempts, failures, retry_after_waits: must not be negative"))
	}
	if e.Failures > e.Attempts || e.RetryAfterWaits > e.Attempts {
		errs = append(errs, fmt.Errorf("failures (%d) and retry_after_waits (%d): cannot exceed attempts (%d)", e.Failures, e.RetryAfterWaits, e.Attempts))
	}
	if len(e.LastError) > maxErrLen {
		errs = append(errs, fmt.Errorf("last_error: at most %d bytes, got %d", maxErrLen, len(e.LastError)))
	}
	if len(e.Result) > MaxPayloadLen {
		errs = append(errs, fmt.Errorf("result: at most %d bytes, got %d", MaxPayloadLen, len(e.Result)))
	}
	return errors.Join(errs...)
}
