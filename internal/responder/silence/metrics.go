package silence

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the silence series. Register them once per registry. A nil
// *Metrics records nothing. Safe for concurrent use.
type Metrics struct {
	// Active is the number of active silences when the Store last looked
	// (every Add, Expire, Match and maintenance tick).
	Active prometheus.Gauge
	// Suppressed counts anomalies muted by Store.Mutes, by the reason of
	// the oldest matching silence: manual, snooze, false_positive.
	Suppressed *prometheus.CounterVec
}

// NewMetrics registers the silence series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	const ns, sub = "agentwatch", "responder"
	m := &Metrics{
		Active: f.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "silences_active",
			Help: "Silences active now (started, not ended, not expired)."}),
		Suppressed: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "anomalies_suppressed_total",
			Help: "Anomalies whose alert a silence muted, by the silence's reason (manual, snooze, false_positive)."},
			[]string{"reason"}),
	}
	for _, r := range []Reason{ReasonManual, ReasonSnooze, ReasonFalsePositive} {
		m.Suppressed.WithLabelValues(string(r))
	}
	return m
}

func (m *Metrics) active(n int) {
	if m != nil {
		m.Active.Set(float64(n))
	}
}

func (m *Metrics) suppressed(r Reason) {
	if m != nil {
		m.Suppressed.WithLabelValues(string(r)).Inc()
	}
}
