package outbox

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the outbox series, labelled by entry kind (a small fixed set
// the responder chooses). Register them once per registry. A nil *Metrics
// records nothing. Safe for concurrent use.
type Metrics struct {
	// Pending is the number of open entries (pending or in flight).
	Pending *prometheus.GaugeVec
	// Parked is the number of parked entries: each needs a human. Alert
	// on it being above zero.
	Parked *prometheus.GaugeVec
	// Attempts counts handler runs by outcome: done, retry, retry_after, wait (on another entry),
	// failed, parked, interrupted (left in flight at stop).
	Attempts *prometheus.CounterVec
	// RetryAfterWaits counts runs rescheduled by a Retry-After.
	RetryAfterWaits *prometheus.CounterVec
	// Recovered counts entries found in flight and handed over again.
	Recovered *prometheus.CounterVec
	// HandlerDuration is the wall time of one handler run.
	HandlerDuration *prometheus.HistogramVec
	// StartDelay is how long after falling due an entry started: the
	// outbox's lag.
	StartDelay *prometheus.HistogramVec
}

// NewMetrics registers the outbox series on reg.
// Each package declares its own series like this (STYLE.md); the
// declarations look alike but name different things, so they are not shared.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	const ns, sub = "agentwatch", "responder"
	kind := []string{"kind"}
	return &Metrics{
		Pending: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "outbox_pending",
			Help: "Outbox entries not yet done: pending or in flight, by kind."}, kind),
		Parked: f.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "outbox_parked",
			Help: "Outbox entries parked after too many failures, by kind; each needs a human to requeue or dismiss it."}, kind),
		Attempts: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "outbox_attempts_total",
			Help: "Outbox handler runs, by kind and outcome (done, retry, retry_after, failed, parked, interrupted)."},
			[]string{"kind", "outcome"}),
		RetryAfterWaits: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "outbox_retry_after_waits_total",
			Help: "Outbox entries rescheduled by a Retry-After (rate limit), by kind."}, kind),
		Recovered: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "outbox_recovered_total",
			Help: "Outbox entries found in flight after a crash or stop and handed to their handler again, by kind."}, kind),
		HandlerDuration: f.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "outbox_handler_duration_seconds",
			Help: "Wall time of one outbox handler run, by kind.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, kind),
		StartDelay: f.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "outbox_start_delay_seconds",
			Help: "Time from an outbox entry falling due to its handler starting, by kind.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}, kind),
	}
}

// One nil-safe method per series, so callers need no nil check. They look
// alike across packages (revoke) but each touches its own series.
func (m *Metrics) attempt(kind, outcome string) {
	if m != nil {
		m.Attempts.WithLabelValues(kind, outcome).Inc()
	}
}

func (m *Metrics) retryAfterWait(kind string) {
	if m != nil {
		m.RetryAfterWaits.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) recovered(kind string) {
	if m != nil {
		m.Recovered.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) duration(kind string, secs float64) {
	if m != nil {
		m.HandlerDuration.WithLabelValues(kind).Observe(secs)
	}
}

func (m *Metrics) startDelay(kind string, secs float64) {
	if m != nil {
		m.StartDelay.WithLabelValues(kind).Observe(secs)
	}
}
