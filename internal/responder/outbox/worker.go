package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/pipeline"
	"github.com/agentwatch/agentwatch/internal/platform/retry"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
)

// Handler performs the action of one entry and returns what to keep as the
// entry's Result (e.g. the Slack ts). Its error decides what happens next:
// nil marks the entry done; an error wrapped by Permanent marks it failed;
// an error that is a RetryAfterer (see RetryAfter) reschedules it at the end
// of the wait, without counting a failure; any other error is retried with
// backoff and parks the entry after Backoff.MaxAttempts failures.
//
// When e.Recovered is set, an earlier run was cut short after the entry was
// marked in flight: the action may have been done. Look before acting again
// (Kong: GET the credential before DELETE; Slack: find the message by its
// metadata before posting), and return the earlier result if it was done.
// e.Attempts > 1 says an earlier run failed, which for an ambiguous error
// (a timeout) calls for the same care.
//
// A handler must honour ctx: it is cancelled at the Kind's Timeout and when
// the Worker stops. A panic is recovered and counts as a retryable error.
type Handler func(ctx context.Context, e Entry) (result []byte, err error)

// Kind is how a Worker runs the entries of one kind.
type Kind struct {
	Handler Handler
	// Concurrency is how many entries of the kind may run at once; default
	// 1, which keeps them in Seq order as long as none is retried.
	Concurrency int
	// Timeout bounds one run of the handler; default 1 minute.
	Timeout time.Duration
	// IndependentRetryAfter, when set, makes a Retry-After hold back only
	// its own entry (and the entries after it with its OrderKey). By
	// default it holds back every entry of the kind until it ends, since a
	// rate limit is the destination's (Slack limits per method and app),
	// and sending the others would only spend it. Other kinds are never
	// held back. The hold is not stored: after a restart each rate-limited
	// entry still waits for its own Retry-After, but others of the kind
	// may run before meeting the limit again.
	IndependentRetryAfter bool
}

func (k Kind) concurrency() int { return max(k.Concurrency, 1) }

func (k Kind) timeout() time.Duration {
	if k.Timeout <= 0 {
		return time.Minute
	}
	return k.Timeout
}

// Backoff bounds the retries of failed runs. The zero value gives the
// defaults.
type Backoff struct {
	// Base is the wait after the first failure; each further failure
	// doubles it, up to Max, and a random half of it is jitter. Defaults 1s
	// and 5m.
	Base, Max time.Duration
	// MaxAttempts is how many failures (retryable errors and runs cut
	// short) park the entry; default 10.
	MaxAttempts int
}

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = time.Second
	}
	if b.Max <= 0 {
		b.Max = 5 * time.Minute
	}
	b.Max = max(b.Max, b.Base)
	if b.MaxAttempts <= 0 {
		b.MaxAttempts = 10
	}
	return b
}

// delay is the wait after failure n (1-based): retry.Backoff's rule, so
// entries failing together spread out. The Worker schedules the retry
// itself (the entry's NextAttempt), so it needs the delay, not the loop.
func (b Backoff) delay(n int) time.Duration {
	return retry.Backoff{Base: b.Base, Max: b.Max}.Delay(n)
}

// Worker runs the entries of a Store: it takes due entries in Seq order,
// marks each in flight, calls its kind's Handler in a goroutine and records
// the outcome. Entries with the same OrderKey run one at a time in Seq
// order; at most Kind.Concurrency entries of a kind run at once; a
// Retry-After or a slow handler of one kind never holds back another.
//
// It starts an entry within Poll of it becoming due, at once if the Store is
// a Notifier. One Worker, and one call of Run, may run on a store at a
// time. Set the fields before Run and leave them; the Worker does not own
// the Store (close it after Run returned).
type Worker struct {
	Store Store
	// Kinds maps Entry.Kind to how to run it. An entry of a kind missing
	// here stays pending (an error is logged once per kind and Run).
	Kinds   map[string]Kind
	Backoff Backoff
	// Poll is how often the Store is read when nothing else wakes the
	// Worker; default 1s.
	Poll    time.Duration
	Log     *slog.Logger
	Metrics *Metrics
	// Now, when set, can move the Worker's clock (which entries are due,
	// when a retry falls) ahead of the wall clock, never behind it (a
	// store stamps new entries due at the wall clock's now): tests move
	// it by hand to run entries scheduled minutes out.
	Now func() time.Time
}

func (w *Worker) now() time.Time {
	now := time.Now()
	if w.Now != nil {
		if t := w.Now(); t.After(now) {
			return t
		}
	}
	return now
}

var _ pipeline.Stage = (*Worker)(nil)

// result is what a run's goroutine hands back: that the claim failed
// (claimErr), that the handler returned (res, err, dur), or that its
// outcome was written (recorded, recErr). An entry counts as running from
// its start until its claim failed, its run was interrupted or its outcome
// was written, so nothing starts it again meanwhile.
type result struct {
	e   Entry
	res []byte
	err error
	dur time.Duration

	claimErr error
	recorded bool
	recErr   error
	outcome  string
}

// panicError is a recovered handler panic.
type panicError struct {
	v     any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.v) }

// Run implements pipeline.Stage. It returns nil when ctx is done, after the
// running handlers returned (their context is cancelled): an entry whose
// handler failed then is left in flight, so the next Run hands it over
// Recovered; one that succeeded is recorded done. It returns an error when
// the Store fails, which leaves the same state as a crash.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.validate(); err != nil {
		return fmt.Errorf("outbox worker: %w", err)
	}
	log := w.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &runState{
		w: w, bo: w.Backoff.withDefaults(), log: log.With("stage", "outbox"),
		results:     make(chan result),
		running:     make(map[string]bool),
		perKind:     make(map[string]int),
		pausedUntil: make(map[string]time.Time),
		warned:      make(map[string]bool),
		gaugeKinds:  make(map[string]bool),
	}
	for k := range w.Kinds {
		r.gaugeKinds[k] = true
	}
	poll := w.Poll
	if poll <= 0 {
		poll = time.Second
	}
	var changes <-chan struct{}
	if n, ok := w.Store.(Notifier); ok {
		changes = n.Changes()
	}
	hctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		r.stopping = true
		// Wait for every handler, so no goroutine outlives Run.
		for len(r.running) > 0 {
			if err := r.finish(ctx, <-r.results); err != nil {
				r.log.Error("outbox outcome not recorded at stop", "err", err)
			}
		}
		r.log.Info("outbox worker stopped")
	}()
	r.log.Info("outbox worker started", "kinds", len(w.Kinds), "max_attempts", r.bo.MaxAttempts)
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		next, err := r.startDue(ctx, hctx, poll)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		timer.Reset(max(next.Sub(w.now()), 0))
		select {
		case <-ctx.Done():
			return nil
		case res := <-r.results:
			if err := r.finish(ctx, res); err != nil {
				return err
			}
			// Take the other results already waiting before the next
			// pass: under load one pass then serves many of them.
			for drained := false; !drained; {
				select {
				case res := <-r.results:
					if err := r.finish(ctx, res); err != nil {
						return err
					}
				default:
					drained = true
				}
			}
		case <-changes:
		case <-timer.C:
		}
		if r.lastOpen >= coalesceAbove {
			if err := r.gather(ctx, coalesceFor); err != nil {
				return err
			}
		}
	}
}

// Under a backlog a wake-up may walk thousands of open entries (when a kind
// has room but its entries are held or not due), and waking for each
// outcome and each new entry would spend on walking the CPU that the
// handlers need: past coalesceAbove open entries the Worker gathers
// outcomes for coalesceFor before its next pass. Below it, it starts at
// once.
const (
	coalesceAbove = 256
	coalesceFor   = 25 * time.Millisecond
)

// gather records the outcomes that arrive within d.
func (r *runState) gather(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case res := <-r.results:
			if err := r.finish(ctx, res); err != nil {
				return err
			}
		case <-t.C:
			return nil
		}
	}
}

func (w *Worker) validate() error {
	var errs []error
	if w.Store == nil {
		errs = append(errs, errors.New("store: missing"))
	}
	if len(w.Kinds) == 0 {
		errs = append(errs, errors.New("kinds: need at least one kind with a handler"))
	}
	for name, k := range w.Kinds {
		if k.Handler == nil {
			errs = append(errs, fmt.Errorf("kinds[%s].handler: missing", name))
		}
		if k.Concurrency < 0 {
			errs = append(errs, fmt.Errorf("kinds[%s].concurrency: must not be negative, got %d", name, k.Concurrency))
		}
	}
	if w.Backoff.Base < 0 || w.Backoff.Max < 0 || w.Backoff.MaxAttempts < 0 {
		errs = append(errs, errors.New("backoff: base, max and max_attempts must not be negative"))
	}
	return errors.Join(errs...)
}

// runState is one Run's bookkeeping, touched only by Run's goroutine.
type runState struct {
	w       *Worker
	bo      Backoff
	log     *slog.Logger
	results chan result
	// running holds the keys whose handler runs; perKind counts them.
	running map[string]bool
	perKind map[string]int
	// pausedUntil is when a kind's Retry-After ends.
	pausedUntil map[string]time.Time
	// warned holds the kinds without a handler already logged.
	warned     map[string]bool
	gaugeKinds map[string]bool
	// stopping is set once Run is returning: failed runs are then left
	// in flight.
	stopping bool
	// lastOpen is how many open entries the last pass found.
	lastOpen int
	// pass is startDue's, kept to reuse its maps.
	pass *pass
}

// start marks e in flight and runs its handler in a goroutine. An entry
// found in flight whose failures already reached the limit is parked
// instead: its runs keep being cut short.
func (r *runState) start(ctx, hctx context.Context, e Entry, k Kind, late time.Duration) error {
	log := r.log.With("key", e.Key, "kind", e.Kind)
	if e.State == StateInFlight {
		r.w.Metrics.recovered(e.Kind)
		if e.Failures >= r.bo.MaxAttempts {
			e.State = StateParked
			e.LastError = clip(fmt.Sprintf("parked after %d failed runs; the last was cut short (a crash or a stop while the handler ran), "+
				"so the action may have been done: check before requeueing; before that: %s", e.Failures, e.LastError), maxErrLen)
			if _, err := r.w.Store.Update(ctx, e); errors.Is(err, partstate.ErrNotOwned) {
				return nil
			} else if err != nil {
				return fmt.Errorf("park outbox entry %q: %w", e.Key, err)
			}
			r.w.Metrics.attempt(e.Kind, "parked")
			log.Error("outbox entry parked: a human must requeue or dismiss it", "attempts", e.Attempts, "err", e.LastError)
			return nil
		}
		log.Warn("resuming an outbox entry whose last run was cut short", "attempts", e.Attempts)
	}
	r.running[e.Key] = true
	r.perKind[e.Kind]++
	r.w.Metrics.startDelay(e.Kind, late.Seconds())
	// The claim is written in the run's goroutine, so that the claims of
	// entries started together are written concurrently (a store that
	// group-commits, PartStore, then writes them in one request).
	go func() {
		claimed, err := claim(ctx, r.w.Store, e)
		if err != nil {
			r.results <- result{e: e, claimErr: err}
			return
		}
		start := time.Now()
		res, err := call(hctx, k, claimed)
		r.results <- result{e: claimed, res: res, err: err, dur: time.Since(start)}
	}()
	return nil
}

// ended forgets e as running.
func (r *runState) ended(e Entry) {
	delete(r.running, e.Key)
	r.perKind[e.Kind]--
}

// claim marks e in flight, durably, counting the run as an attempt and,
// until it ends otherwise, a failure: a run cut short stays counted. The
// stored entry is returned, Recovered if e was found in flight.
func claim(ctx context.Context, s Store, e Entry) (Entry, error) {
	recovered := e.State == StateInFlight
	e.State = StateInFlight
	e.Attempts++
	e.Failures++
	stored, err := s.Update(ctx, e)
	if err != nil {
		return Entry{}, err
	}
	stored.Recovered = recovered
	return stored, nil
}

// call runs the handler with the kind's timeout, turning a panic into an
// error.
func call(ctx context.Context, k Kind, e Entry) (res []byte, err error) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout())
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			res, err = nil, &panicError{v: v, stack: debug.Stack()}
		}
	}()
	return k.Handler(ctx, e)
}

// finish records the outcome of a run. When the Worker stops, a failed run
// (most likely cancelled) is left in flight, to be resumed as Recovered.
func (r *runState) finish(ctx context.Context, res result) error {
	e := res.e
	log := r.log.With("key", e.Key, "kind", e.Kind, "attempts", e.Attempts)
	switch {
	case res.claimErr != nil:
		r.ended(e)
		if errors.Is(res.claimErr, partstate.ErrNotOwned) {
			// Its partition is being handed over since the pass: the
			// new owner runs it.
			log.Debug("outbox entry not started: its partition is being handed over")
			return nil
		}
		if r.stopping || ctx.Err() != nil {
			return nil // not claimed: it is as it was
		}
		return fmt.Errorf("mark outbox entry %q in flight: %w", e.Key, res.claimErr)
	case res.recorded:
		r.ended(e)
		if errors.Is(res.recErr, partstate.ErrNotOwned) {
			// Handed over before the run ended (the hand-over stopped
			// waiting): the new owner finds it in flight and runs it
			// again, Recovered, which checks before acting.
			log.Warn("outbox outcome not recorded: the partition was handed over meanwhile", "outcome", res.outcome)
			return nil
		}
		if res.recErr != nil {
			return fmt.Errorf("record outcome %s of outbox entry %q: %w", res.outcome, e.Key, res.recErr)
		}
		r.w.Metrics.attempt(e.Kind, res.outcome)
		if res.outcome == "done" {
			log.Debug("outbox entry done")
		}
		return nil
	}
	r.w.Metrics.duration(e.Kind, res.dur.Seconds())
	now := r.w.now()
	e.Recovered = false
	var outcome string
	var pe *panicError
	var ra RetryAfterer
	var perm *permanentError
	switch {
	case res.err == nil:
		e.State, e.Result, outcome = StateDone, res.res, "done"
		e.Failures--
		if len(res.res) > MaxPayloadLen {
			e.Result, e.LastError = nil, fmt.Sprintf("result of %d bytes not kept: over %d", len(res.res), MaxPayloadLen)
			log.Error("outbox handler result too large, not kept", "bytes", len(res.res))
		}
	case r.stopping || ctx.Err() != nil:
		r.ended(e)
		r.w.Metrics.attempt(e.Kind, "interrupted")
		log.Info("outbox entry left in flight at stop", "err", res.err)
		if rl, ok := r.w.Store.(releaser); ok {
			rl.Release(e.Key)
		}
		return nil
	case errors.As(res.err, &perm):
		e.State, outcome = StateFailed, "failed"
		log.Error("outbox entry failed", "err", res.err)
	case errors.As(res.err, &ra) && retryAfterOK(ra):
		wait, _ := ra.RetryAfter()
		wait = max(wait, 0)
		e.State, e.NextAttempt, outcome = StatePending, now.Add(wait), "retry_after"
		e.Failures--
		e.RetryAfterWaits++
		var w *retryAfterError
		if errors.As(res.err, &w) && w.local {
			outcome = "wait"
			log.Debug("outbox entry waits", "wait", wait, "for", w.err)
			break
		}
		if k := r.w.Kinds[e.Kind]; !k.IndependentRetryAfter && e.NextAttempt.After(r.pausedUntil[e.Kind]) {
			r.pausedUntil[e.Kind] = e.NextAttempt
		}
		r.w.Metrics.retryAfterWait(e.Kind)
		log.Warn("outbox entry rate limited", "retry_after", wait, "err", res.err)
	case e.Failures >= r.bo.MaxAttempts:
		e.State, outcome = StateParked, "parked"
		log.Error("outbox entry parked: a human must requeue or dismiss it", "failures", e.Failures, "err", res.err)
	default:
		wait := r.bo.delay(e.Failures)
		e.State, e.NextAttempt, outcome = StatePending, now.Add(wait), "retry"
		log.Warn("outbox entry will be retried", "failures", e.Failures, "backoff", wait, "err", res.err)
	}
	if errors.As(res.err, &pe) {
		log.Error("outbox handler panicked", "err", res.err, "stack", string(pe.stack))
	}
	if res.err != nil {
		e.LastError = clip(res.err.Error(), maxErrLen)
	}
	// Written in a goroutine, as the claim: the entry stays running
	// until the write is done (the recorded result).
	go func() {
		_, err := r.w.Store.Update(context.WithoutCancel(ctx), e)
		r.results <- result{e: e, recorded: true, recErr: err, outcome: outcome}
	}()
	return nil
}

// releaser is a Store told when the Worker stops running an entry without
// recording an outcome (it stops): PartStore then stops waiting for it.
type releaser interface{ Release(key string) }

func retryAfterOK(ra RetryAfterer) bool {
	_, ok := ra.RetryAfter()
	return ok
}
