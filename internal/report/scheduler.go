package report

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/agentwatch/agentwatch/internal/responder/evidence"
)

// Schedule says when a Scheduler writes a report: Weekly on Mondays for
// the ISO week before, else on the 1st for the month before, At after
// midnight UTC.
type Schedule struct {
	Weekly bool
	At     time.Duration
}

// Due is the period whose report is due at now: the last period whose
// run time (its end plus At) is not after now.
func (s Schedule) Due(now time.Time) Period {
	return PeriodOf(now.UTC().Add(-s.At), s.Weekly).Previous()
}

// Next is the first run time after now.
func (s Schedule) Next(now time.Time) time.Time {
	cur := PeriodOf(now.UTC().Add(-s.At), s.Weekly)
	return cur.Span.To.Add(s.At)
}

// Leaser is a lease several instances share (chstore.Store.TakeLease):
// TakeLease claims name for owner for ttl and reports whether owner holds
// it; a live lease of owner's is renewed.
type Leaser interface {
	TakeLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
}

// DefaultLeaseTTL is how long a period's lease lasts without renewal: an
// instance that died holding it delays the report by this long, plus
// Retry.
const DefaultLeaseTTL = 15 * time.Minute

// LeaseName is the name of the lease on period's report.
func LeaseName(period string) string { return "report-" + period }

// Scheduler writes each period's report once, at its scheduled time, from
// inside a service (the responder). Before a run it asks the evidence
// chain whether a report of the period is recorded; the Job records one
// after it posted, so a restart neither skips nor repeats a period. A
// failed run is tried again after Retry. It is a pipeline stage.
//
// Several instances (the distributed mode's responders) each run a
// Scheduler on one shared chain: with Lease set, an instance runs a
// period only while it holds the period's lease, renewed during the run,
// and asks the chain again once it holds it, so one instance writes and
// posts the report. The others try again after Retry, which takes the
// period over once the lease of an instance that died has expired.
type Scheduler struct {
	// Job is the run; Prepare, when set, builds it afresh for each run
	// instead (loading the data the period needs), and its closeFn is
	// called after the run.
	Job      *Job
	Prepare  func(ctx context.Context, p Period) (_ *Job, closeFn func(), _ error)
	Schedule Schedule
	// Chain is where Done looks; usually Job.Chain.
	Chain evidence.ChainStore
	// Retry is the wait after a failed run (default 10 minutes).
	Retry time.Duration
	// Now and After are the clock (time.Now and time.After when nil).
	Now   func() time.Time
	After func(d time.Duration) <-chan time.Time
	Log   *slog.Logger
	// OnRun, when set, is told each run's outcome (tests).
	OnRun func(p Period, res Result, err error)
	// Metrics, when set, count the runs.
	Metrics *Metrics
	// Lease, when set, is taken as Owner (required then) for LeaseTTL
	// (default DefaultLeaseTTL) before each run.
	Lease    Leaser
	Owner    string
	LeaseTTL time.Duration
}

// outcome is what a tick did.
type outcome int

const (
	outcomeDone      outcome = iota // the period's report is in the chain
	outcomeRan                      // this instance wrote it
	outcomeElsewhere                // another instance holds the period's lease
)

func (s *Scheduler) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Scheduler) after(d time.Duration) <-chan time.Time {
	if s.After != nil {
		return s.After(d)
	}
	return time.After(d)
}

// Done says whether the report of p is in the evidence chain.
func (s *Scheduler) Done(ctx context.Context, p Period) (bool, error) {
	recs, err := evidence.FindReports(ctx, s.Chain, p.Name)
	if err != nil {
		return false, err
	}
	return len(recs) > 0, nil
}

// Tick writes the report due now unless it is done. ran says a report
// was written.
func (s *Scheduler) Tick(ctx context.Context) (ran bool, err error) {
	o, err := s.tickCounted(ctx)
	return o == outcomeRan, err
}

func (s *Scheduler) tickCounted(ctx context.Context) (outcome, error) {
	o, err := s.tick(ctx)
	switch {
	case err != nil:
		s.Metrics.count("failed")
	case o == outcomeRan:
		s.Metrics.count("ok")
		if s.Metrics != nil {
			s.Metrics.LastSuccess.Set(float64(s.now().Unix()))
		}
	case o == outcomeElsewhere:
		s.Metrics.count("elsewhere")
	default:
		s.Metrics.count("skipped")
	}
	return o, err
}

func (s *Scheduler) leaseTTL() time.Duration {
	if s.LeaseTTL > 0 {
		return s.LeaseTTL
	}
	return DefaultLeaseTTL
}

func (s *Scheduler) tick(ctx context.Context) (outcome, error) {
	p := s.Schedule.Due(s.now())
	done, err := s.Done(ctx, p)
	if err != nil {
		return outcomeDone, fmt.Errorf("scheduled report %s: %w", p.Name, err)
	}
	if done {
		return outcomeDone, nil
	}
	if s.Lease != nil {
		if s.Owner == "" {
			return outcomeDone, fmt.Errorf("scheduled report %s: a lease needs an owner", p.Name)
		}
		held, err := s.Lease.TakeLease(ctx, LeaseName(p.Name), s.Owner, s.leaseTTL())
		if err != nil {
			return outcomeDone, fmt.Errorf("scheduled report %s: %w", p.Name, err)
		}
		if !held {
			if s.Log != nil {
				s.Log.Info("another instance holds the report's lease", "period", p.Name)
			}
			return outcomeElsewhere, nil
		}
		// The holder before us may have finished and let its lease expire.
		if done, err = s.Done(ctx, p); err != nil || done {
			if err != nil {
				err = fmt.Errorf("scheduled report %s: %w", p.Name, err)
			}
			return outcomeDone, err
		}
		var stop func()
		ctx, stop = s.keepLease(ctx, p)
		defer stop()
	}
	ran, err := s.run(ctx, p)
	if ran {
		return outcomeRan, nil
	}
	return outcomeDone, err
}

// errLeaseLost ends a run whose lease another instance took over.
var errLeaseLost = errors.New("the report's lease was lost to another instance")

// errLeaseUnsure ends a run whose lease could not be renewed for so long
// that it may have expired.
var errLeaseUnsure = errors.New("the report's lease could not be renewed before it could expire")

// keepLease renews p's lease every third of its TTL until stop, and
// cancels the returned context if a renewal finds it held by another
// instance: that one is running the period now. A renewal that fails
// (ClickHouse unreachable) is tried again at the next interval, but once
// two thirds of the TTL have passed since the last claim that held, the
// run is cancelled too: the lease may expire before the next try, and
// another instance may then take it and run the period as well.
func (s *Scheduler) keepLease(ctx context.Context, p Period) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	quit := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		// The wall clock, not s.After: renewals follow the lease's real
		// expiry in the shared store, whatever clock the schedule reads.
		t := time.NewTicker(s.leaseTTL() / 3)
		defer t.Stop()
		lastHeld := time.Now() // the claim that started the run held
		limit := s.leaseTTL() - s.leaseTTL()/3
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			held, err := s.Lease.TakeLease(ctx, LeaseName(p.Name), s.Owner, s.leaseTTL())
			switch {
			case err != nil && ctx.Err() == nil:
				if time.Since(lastHeld) >= limit {
					cancel(fmt.Errorf("%w: %w", errLeaseUnsure, err))
					return
				}
				if s.Log != nil {
					s.Log.Warn("renewing the report's lease failed; trying again", "period", p.Name, "err", err)
				}
			case err == nil && !held:
				cancel(errLeaseLost)
				return
			case err == nil:
				lastHeld = time.Now()
			}
		}
	}()
	return ctx, func() {
		close(quit)
		<-finished
		cancel(nil)
	}
}

func (s *Scheduler) run(ctx context.Context, p Period) (ran bool, err error) {
	job := s.Job
	if s.Prepare != nil {
		var closeFn func()
		if job, closeFn, err = s.Prepare(ctx, p); err == nil {
			defer closeFn()
		} else {
			if s.OnRun != nil {
				s.OnRun(p, Result{}, err)
			}
			return false, fmt.Errorf("scheduled report %s: %w", p.Name, err)
		}
	}
	res, err := job.Run(ctx, p)
	if err != nil && errors.Is(context.Cause(ctx), errLeaseLost) {
		err = fmt.Errorf("%w: %w", errLeaseLost, err)
	}
	if s.OnRun != nil {
		s.OnRun(p, res, err)
	}
	if err != nil {
		return false, fmt.Errorf("scheduled report %s: %w", p.Name, err)
	}
	if s.Log != nil {
		attrs := []any{"period", p.Name, "files", len(res.Files), "slack_files", len(res.SlackFiles)}
		if res.Bundle != nil {
			attrs = append(attrs, "bundle", res.Bundle.Manifest.BundleID, "seq", res.Bundle.Manifest.Seq)
		}
		s.Log.Info("report written", attrs...)
	}
	return true, nil
}

// Run ticks at start (catching up the period just ended if a restart
// missed it), then at each scheduled time, until ctx is done.
func (s *Scheduler) Run(ctx context.Context) error {
	retry := s.Retry
	if retry <= 0 {
		retry = 10 * time.Minute
	}
	for {
		wait := time.Duration(0)
		o, err := s.tickCounted(ctx)
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			if s.Log != nil {
				s.Log.Warn("scheduled report failed; trying again later", "err", err, "retry_in", retry)
			}
			wait = retry
		case o == outcomeElsewhere:
			// Looked at again in case its holder dies before the record.
			wait = retry
		}
		now := s.now()
		if next := s.Schedule.Next(now).Sub(now); wait == 0 || next < wait {
			wait = next
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.after(wait):
		}
	}
}

// Metrics count the scheduled runs.
type Metrics struct {
	Runs        *prometheus.CounterVec
	LastSuccess prometheus.Gauge
}

// NewMetrics registers the report metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		Runs: f.NewCounterVec(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "report", Name: "runs_total",
			Help: "Scheduled report runs, by result: ok (written, posted, recorded), skipped (the period's report is in the evidence chain already), elsewhere (another responder instance holds the period's lease), failed (tried again later)."}, []string{"result"}),
		LastSuccess: f.NewGauge(prometheus.GaugeOpts{Namespace: "agentwatch", Subsystem: "report", Name: "last_success_timestamp_seconds",
			Help: "When the schedule last wrote a report, in Unix seconds; alert if it is older than the schedule's period plus a day."}),
	}
}

func (m *Metrics) count(result string) {
	if m != nil {
		m.Runs.WithLabelValues(result).Inc()
	}
}
