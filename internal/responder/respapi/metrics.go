package respapi

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the HTTP API series. Register them once per registry. A nil
// *Metrics records nothing. Safe for concurrent use.
type Metrics struct {
	// Requests counts requests by route (run, audit, silences, false_positive, denylist, kill_switch, outbox, visibility, other) and HTTP
	// status code.
	Requests *prometheus.CounterVec
	// Duration is the time to answer a request, by route.
	Duration *prometheus.HistogramVec
	// AuditErrors counts audit records the handler could not store (the
	// record is in the log all the same).
	AuditErrors prometheus.Counter
}

// NewMetrics registers the HTTP API series on reg.
// Each package declares its own series like this (STYLE.md); the
// declarations look alike but name different things, so they are not shared.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	const ns, sub = "agentwatch", "responder"
	return &Metrics{
		Requests: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "api_requests_total",
			Help: "HTTP API requests, by route (run, audit, silences, false_positive, denylist, kill_switch, outbox, visibility, other) and status code."},
			[]string{"route", "code"}),
		Duration: f.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "api_request_duration_seconds",
			Help:    "Time to answer an HTTP API request, by route (run, audit, silences, false_positive, denylist, kill_switch, outbox, visibility, other).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)},
			[]string{"route"}),
		AuditErrors: f.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "api_audit_errors_total",
			Help: "Audit records of API requests that could not be stored (they are in the log)."}),
	}
}

func (m *Metrics) request(route string, code int, secs float64) {
	if m == nil {
		return
	}
	m.Requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.Duration.WithLabelValues(route).Observe(secs)
}

func (m *Metrics) auditError() {
	if m != nil {
		m.AuditErrors.Inc()
	}
}
