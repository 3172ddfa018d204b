package respond

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// Metrics are the responder's series. A nil *Metrics records nothing.
type Metrics struct {
	Anomalies *prometheus.CounterVec
	Actions   *prometheus.CounterVec
	// AlertLatency and RevokeLatency run from the anomaly's detection
	// (DetectedMs, the detector's clock) to the post or the gateway's
	// answer.
	AlertLatency  prometheus.Histogram
	RevokeLatency prometheus.Histogram
}

// NewMetrics registers the responder's series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	buckets := []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	return &Metrics{
		Anomalies: f.NewCounterVec(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "anomalies_total",
			Help: "Anomalies consumed, by outcome: handled, duplicate (already handled), silenced."}, []string{"outcome"}),
		Actions: f.NewCounterVec(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "actions_total",
			Help: "Audited actions by action and result."}, []string{"action", "result"}),
		AlertLatency: f.NewHistogram(prometheus.HistogramOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "alert_latency_seconds",
			Help: "Anomaly detected to alert posted.", Buckets: buckets}),
		RevokeLatency: f.NewHistogram(prometheus.HistogramOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "revoke_latency_seconds",
			Help: "Anomaly detected to automatic revocation answered by the gateway.", Buckets: buckets}),
	}
}

func (m *Metrics) handled(outcome string) {
	if m != nil {
		m.Anomalies.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) action(action, result string) {
	if m != nil {
		m.Actions.WithLabelValues(action, result).Inc()
	}
}

func (m *Metrics) alertLatency(a anomaly.Anomaly, now time.Time) {
	if m != nil && a.DetectedMs > 0 {
		m.AlertLatency.Observe(now.Sub(time.UnixMilli(a.DetectedMs)).Seconds())
	}
}

func (m *Metrics) revokeLatency(a anomaly.Anomaly, o revoke.Origin, now time.Time) {
	if m != nil && a.DetectedMs > 0 && o == revoke.Automatic {
		m.RevokeLatency.Observe(now.Sub(time.UnixMilli(a.DetectedMs)).Seconds())
	}
}
