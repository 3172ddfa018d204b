package slackui

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the Slack series. Register them once per registry; one
// Metrics may be shared by the Poster and the InteractionHandler of a
// process. A nil *Metrics records nothing. Safe for concurrent use.
type Metrics struct {
	// Interactions counts interactivity requests by outcome: ok, duplicate,
	// unauthorized (bad signature or timestamp), bad_request, too_large,
	// method, dedup_error, action_error, rate_limited, refused (a click by
	// someone not allowed to act).
	Interactions *prometheus.CounterVec
	// Calls counts Web API calls by method and outcome: ok, rate_limited,
	// retry (another retryable failure), failed (not worth retrying).
	Calls *prometheus.CounterVec
	// Duration is the wall time of a Web API call, by method.
	Duration *prometheus.HistogramVec
}

// NewMetrics registers the Slack series on reg.
// Each package declares its own series like this (STYLE.md); the
// declarations look alike but name different things, so they are not shared.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	const ns, sub = "agentwatch", "responder"
	return &Metrics{
		Interactions: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "slack_interactions_total",
			Help: "Slack interactivity requests, by outcome (ok, duplicate, unauthorized, bad_request, too_large, method, dedup_error, action_error, rate_limited, refused, forwarded: run by the instance that owns the agent, route_error)."},
			[]string{"outcome"}),
		Calls: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "slack_calls_total",
			Help: "Slack Web API calls, by method and outcome (ok, rate_limited, retry, failed)."},
			[]string{"method", "outcome"}),
		Duration: f.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "slack_call_duration_seconds",
			Help:    "Wall time of a Slack Web API call, by method.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)},
			[]string{"method"}),
	}
}

func (m *Metrics) interaction(outcome string) {
	if m != nil {
		m.Interactions.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) call(method string, secs float64, err *PostError) {
	if m == nil {
		return
	}
	outcome := "ok"
	switch {
	case err == nil:
	case err.RetryAfter > 0:
		outcome = "rate_limited"
	case err.Retry:
		outcome = "retry"
	default:
		outcome = "failed"
	}
	m.Calls.WithLabelValues(method, outcome).Inc()
	m.Duration.WithLabelValues(method).Observe(secs)
}
