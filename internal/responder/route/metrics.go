package route

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the Router's series. A nil *Metrics records nothing.
type Metrics struct {
	// Commands counts commands by kind and outcome: on the receiving
	// instance forwarded, answered_before (a retry of an answered
	// request), wait_ended (answered before the owner did), forward_error;
	// on the owner executed, duplicate, failed, dedup_error; expired on
	// whoever expired it; undecodable.
	Commands *prometheus.CounterVec
	// Pending is the commands in the global table without an outcome.
	Pending prometheus.Gauge
}

// NewMetrics registers the Router's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		Commands: f.NewCounterVec(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "commands_total",
			Help: "Requests for an agent another instance owns (Slack clicks, API runs and verdicts), by kind and outcome: forwarded, answered_before, wait_ended, forward_error on the instance that received them; executed, duplicate, failed, dedup_error on the owner; expired; undecodable."},
			[]string{"kind", "outcome"}),
		Pending: f.NewGauge(prometheus.GaugeOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "commands_pending",
			Help: "Commands in the global table that no instance has run yet; one that stays up means no instance owns what they name."}),
	}
}

func (m *Metrics) count(kind, outcome string) {
	if m != nil {
		m.Commands.WithLabelValues(kind, outcome).Inc()
	}
}

func (m *Metrics) pending(n int) {
	if m != nil {
		m.Pending.Set(float64(n))
	}
}
