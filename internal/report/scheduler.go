package report

import (
	"context"
	"fmt"
	"log/slog"
	"time"

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

// Scheduler writes each period's report once, at its scheduled time, from
// inside a service (the responder). Before a run it asks the evidence
// chain whether a report of the period is recorded; the Job records one
// after it posted, so a restart neither skips nor repeats a period. A
// failed run is tried again after Retry. It is a pipeline stage.
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
	// OnRun, when set, is told each run's outcome (tests, metrics).
	OnRun func(p Period, res Result, err error)
}

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
	p := s.Schedule.Due(s.now())
	done, err := s.Done(ctx, p)
	if err != nil {
		return false, fmt.Errorf("scheduled report %s: %w", p.Name, err)
	}
	if done {
		return false, nil
	}
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
		if _, err := s.Tick(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if s.Log != nil {
				s.Log.Warn("scheduled report failed; trying again later", "err", err, "retry_in", retry)
			}
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
