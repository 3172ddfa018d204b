package revoke

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the revocation series. Register them once per registry; one
// Metrics may be shared by every Guard and Egress of a process. A nil
// *Metrics records nothing. Safe for concurrent use.
type Metrics struct {
	// Actions counts Revoke and Restore calls, and Throttle and
	// Unthrottle calls, by adapter and status (a Status, or "error").
	Actions *prometheus.CounterVec
	// Refusals counts automatic revocations turned into approval
	// requests (reason budget, kill_switch, restored) and manual ones
	// stopped by the kill switch (reason kill_switch_manual).
	Refusals *prometheus.CounterVec
	// EgressRefusals counts outbound HTTP refused by the SSRF guard, by
	// reason: address (not on the allow-list) or redirect.
	EgressRefusals *prometheus.CounterVec
	// Retries counts gateway calls sent again after a 5xx, 429 or
	// network error, by adapter.
	Retries *prometheus.CounterVec
	// Duration is the wall time of a Revoke or Restore that reached the
	// gateway, retries included, by adapter.
	Duration *prometheus.HistogramVec
}

// NewMetrics registers the revocation series on reg.
// Each package declares its own series like this (STYLE.md); the
// declarations look alike but name different things, so they are not shared.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	const ns, sub = "agentwatch", "responder"
	return &Metrics{
		Actions: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "revocations_total",
			Help: "Revoke and restore calls, by adapter and status (revoked, already_revoked, restored, already_restored, left_revoked, throttled, already_throttled, unthrottled, already_unthrottled, error)."},
			[]string{"adapter", "status"}),
		Refusals: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "revocation_refusals_total",
			Help: "Revocations not made: automatic ones turned into approval requests (budget, kill_switch, restored) and manual ones stopped by the kill switch (kill_switch_manual)."},
			[]string{"reason"}),
		EgressRefusals: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "egress_refusals_total",
			Help: "Outbound HTTP refused by the SSRF guard, by reason (address, redirect)."},
			[]string{"reason"}),
		Retries: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "revocation_retries_total",
			Help: "Gateway calls sent again after a 5xx, 429 or network error, by adapter."},
			[]string{"adapter"}),
		Duration: f.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "revocation_duration_seconds",
			Help:    "Wall time of a revoke or restore that reached the gateway, retries included, by adapter.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)},
			[]string{"adapter"}),
	}
}

// One nil-safe method per series, so callers need no nil check. They look
// alike across packages (outbox) but each touches its own series.
func (m *Metrics) action(adapter, status string) {
	if m != nil {
		m.Actions.WithLabelValues(adapter, status).Inc()
	}
}

func (m *Metrics) refusal(reason string) {
	if m != nil {
		m.Refusals.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) egressRefusal(reason string) {
	if m != nil {
		m.EgressRefusals.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) retry(adapter string) {
	if m != nil {
		m.Retries.WithLabelValues(adapter).Inc()
	}
}

func (m *Metrics) observe(adapter string, secs float64) {
	if m != nil {
		m.Duration.WithLabelValues(adapter).Observe(secs)
	}
}

// BudgetView is what the budget gauges read: a Budget, or the distributed
// mode's Claims.
type BudgetView interface {
	Remaining() int
	Limit() int
}

// RegisterBudget exports b on reg as two gauges read at each scrape: the
// revocations the sliding window still allows and its limit, so that an
// operator sees the budget run out before revocations turn into approval
// requests.
func RegisterBudget(reg prometheus.Registerer, b BudgetView) {
	f := promauto.With(reg)
	const ns, sub = "agentwatch", "responder"
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "revoke_budget_remaining",
		Help: "Automatic revocations the sliding window (responder.revoke_interval) still allows; at 0 they become approval requests."},
		func() float64 { return float64(b.Remaining()) })
	f.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "revoke_budget_limit",
		Help: "Automatic revocations allowed per responder.revoke_interval (responder.revoke_budget)."},
		func() float64 { return float64(b.Limit()) })
}
