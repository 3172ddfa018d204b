package clientlimit

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the limiter's series, shared by the endpoints (label
// endpoint). A nil *Metrics records nothing. Safe for concurrent use.
type Metrics struct {
	Refused *prometheus.CounterVec
	Rows    *prometheus.CounterVec
}

// NewMetrics registers the series on reg; once per registry.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	const ns, sub = "agentwatch", "responder"
	return &Metrics{
		Refused: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "requests_refused_total",
			Help: "Requests refused before any work, by endpoint (api, slack) and reason (rate_limited, no_token, bad_token, bad_signature)."},
			[]string{"endpoint", "reason"}),
		Rows: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "refusal_audit_rows_total",
			Help: "Sampled audit rows written for refused requests (one per client and interval), by endpoint."},
			[]string{"endpoint"}),
	}
}

func (m *Metrics) refused(endpoint, reason string) {
	if m != nil {
		m.Refused.WithLabelValues(endpoint, reason).Inc()
	}
}

func (m *Metrics) rows(endpoint string, n int) {
	if m != nil {
		m.Rows.WithLabelValues(endpoint).Add(float64(n))
	}
}
