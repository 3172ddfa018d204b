package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/agentwatch/agentwatch/internal/platform/pipeline"
)

// RetentionLease is the name of the lease that the retention schedulers of
// every ingest replica share.
const RetentionLease = "ingest.retention"

// RetentionStore is what the retention scheduler needs of ClickHouse
// (chstore.Store).
type RetentionStore interface {
	// TakeLease claims name for owner for ttl and reports whether owner
	// holds it (see chstore.Store.TakeLease).
	TakeLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	// DropPartitionsBefore drops the event day partitions before day's
	// day and returns them; dropping what is gone already is no error.
	DropPartitionsBefore(ctx context.Context, day time.Time) ([]string, error)
}

// RetentionCutoff is the first day kept: the UTC day days before now's.
// Partitions of earlier days are dropped.
func RetentionCutoff(now time.Time, days int) time.Time {
	return now.UTC().Truncate(24*time.Hour).AddDate(0, 0, -days)
}

// Retention runs `ingest retention` inside the ingest service: at start,
// then every Interval, it drops the event day partitions older than Days.
// Of several replicas, the one holding the lease RetentionLease does the
// work; the lease lasts 1.5 intervals and its holder renews it at each run,
// so the same replica keeps it, and another takes over within two
// intervals of its end. Two runs racing (a lease claimed twice within a
// second) is harmless: dropping a partition that is gone does nothing.
// A failed run is counted and logged, not fatal: ingest goes on and the
// next interval tries again. Run it as a pipeline.Stage.
type Retention struct {
	Store    RetentionStore
	Days     int
	Interval time.Duration
	// Owner names this replica in the lease; default hostname:pid.
	Owner   string
	Now     func() time.Time
	Log     *slog.Logger
	Metrics *RetentionMetrics
}

var _ pipeline.Stage = (*Retention)(nil)

// RetentionMetrics are the scheduler's series. Safe for concurrent use.
type RetentionMetrics struct {
	Runs        *prometheus.CounterVec
	Dropped     prometheus.Counter
	LastSuccess prometheus.Gauge
}

// NewRetentionMetrics registers the retention scheduler's series on reg.
func NewRetentionMetrics(reg prometheus.Registerer) *RetentionMetrics {
	f := promauto.With(reg)
	return &RetentionMetrics{
		Runs: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "agentwatch", Subsystem: "ingest", Name: "retention_runs_total",
			Help: "Scheduled retention runs, by result: ok (this replica held the lease and dropped what was due), standby (another replica holds the lease) or error.",
		}, []string{"result"}),
		Dropped: f.NewCounter(prometheus.CounterOpts{
			Namespace: "agentwatch", Subsystem: "ingest", Name: "retention_partitions_dropped_total",
			Help: "Event day partitions dropped by this replica's retention runs.",
		}),
		LastSuccess: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "agentwatch", Subsystem: "ingest", Name: "retention_last_success_timestamp_seconds",
			Help: "Unix time of this replica's last retention run that held the lease and succeeded (0: none yet).",
		}),
	}
}

// Outcomes of one run, as the runs_total label says.
const (
	RetentionOK      = "ok"
	RetentionStandby = "standby"
	RetentionError   = "error"
)

func (r *Retention) defaults() {
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.Log == nil {
		r.Log = slog.New(slog.DiscardHandler)
	}
	if r.Metrics == nil {
		r.Metrics = NewRetentionMetrics(prometheus.NewRegistry())
	}
	if r.Owner == "" {
		host, _ := os.Hostname()
		r.Owner = host + ":" + strconv.Itoa(os.Getpid())
	}
}

// Run implements pipeline.Stage: a run at start, then one every Interval,
// until ctx ends. It returns nil; failures are the runs' business.
func (r *Retention) Run(ctx context.Context) error {
	r.defaults()
	if r.Interval <= 0 {
		return fmt.Errorf("retention: interval %s is not positive", r.Interval)
	}
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		_, _, _ = r.RunOnce(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunOnce takes (or renews) the lease and, holding it, drops the day
// partitions older than Days. It returns the outcome (RetentionOK,
// RetentionStandby or RetentionError), the partitions dropped and the
// error; it counts and logs each run. Safe for concurrent use.
func (r *Retention) RunOnce(ctx context.Context) (string, []string, error) {
	r.defaults()
	ttl := r.Interval + r.Interval/2
	if ttl < time.Second {
		ttl = time.Second
	}
	cut := RetentionCutoff(r.Now(), r.Days)
	held, err := r.Store.TakeLease(ctx, RetentionLease, r.Owner, ttl)
	if err != nil {
		return r.failed(ctx, cut, nil, fmt.Errorf("retention lease: %w", err))
	}
	if !held {
		r.Metrics.Runs.WithLabelValues(RetentionStandby).Inc()
		r.Log.Info("retention: another replica holds the lease", "owner", r.Owner)
		return RetentionStandby, nil, nil
	}
	dropped, err := r.Store.DropPartitionsBefore(ctx, cut)
	r.Metrics.Dropped.Add(float64(len(dropped)))
	if err != nil {
		return r.failed(ctx, cut, dropped, err)
	}
	r.Metrics.Runs.WithLabelValues(RetentionOK).Inc()
	r.Metrics.LastSuccess.Set(float64(r.Now().Unix()))
	r.Log.Info("retention done", "before", cut.Format(time.DateOnly), "retention_days", r.Days, "dropped", len(dropped), "partitions", dropped)
	return RetentionOK, dropped, nil
}

func (r *Retention) failed(ctx context.Context, cut time.Time, dropped []string, err error) (string, []string, error) {
	if ctx.Err() != nil {
		return RetentionError, dropped, err // shutting down: not worth a warning
	}
	r.Metrics.Runs.WithLabelValues(RetentionError).Inc()
	r.Log.Warn("retention failed; the next interval tries again", "before", cut.Format(time.DateOnly), "dropped", len(dropped), "err", err)
	return RetentionError, dropped, err
}
