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
	// SlackSuppressed counts posts a channel's cap held back, by what
	// (alert, follow-up, note); SlackSummaries the summaries queued
	// instead; ApprovalsGrouped the approval requests that joined an
	// earlier one of the same cause instead of being posted.
	SlackSuppressed  *prometheus.CounterVec
	SlackSummaries   prometheus.Counter
	ApprovalsGrouped prometheus.Counter
	// SlackPostChecks counts the lookups for a message an interrupted run
	// may have posted, by outcome (see postCheck).
	SlackPostChecks *prometheus.CounterVec
	// CardUpdates counts incident cards updated in place; Escalations the
	// severity steps announced at the top level, by severity reached;
	// Digests the summaries posted in incident threads.
	CardUpdates prometheus.Counter
	Escalations *prometheus.CounterVec
	Digests     prometheus.Counter
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
		SlackSuppressed: f.NewCounterVec(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "slack_suppressed_total",
			Help: "Slack messages not posted because their channel was over responder.slack.max_messages_per_minute, by what (alert, follow-up, note); each is counted in the minute's summary."}, []string{"what"}),
		SlackSummaries: f.NewCounter(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "slack_summaries_total",
			Help: "Summaries of suppressed messages queued (one per channel and minute at most)."}),
		ApprovalsGrouped: f.NewCounter(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "approvals_grouped_total",
			Help: "Approval requests that joined an earlier request of the same cause instead of being posted."}),
		SlackPostChecks: f.NewCounterVec(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "slack_post_checks_total",
			Help: "Lookups in Slack for the message of an interrupted post before posting again, by outcome: found (not posted again), not_found (posted), retry (the lookup failed and is retried), unchecked (it could not be made, e.g. missing_scope: posted, maybe a duplicate), unsupported (the console)."},
			[]string{"outcome"}),
		CardUpdates: f.NewCounter(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "slack_card_updates_total",
			Help: "Incident cards updated in place (chat.update); changes within 10s share one update."}),
		Escalations: f.NewCounterVec(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "slack_escalations_total",
			Help: "Severity steps of incidents announced at the top level of their channel, by the severity reached."}, []string{"severity"}),
		Digests: f.NewCounter(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "slack_digests_total",
			Help: "Summaries posted in incident threads (at most one per thread and responder.slack.digest_interval)."}),
	}
}

func (m *Metrics) cardUpdate() {
	if m != nil {
		m.CardUpdates.Inc()
	}
}

func (m *Metrics) escalation(severity string) {
	if m != nil {
		m.Escalations.WithLabelValues(severity).Inc()
	}
}

func (m *Metrics) digest() {
	if m != nil {
		m.Digests.Inc()
	}
}

// postCheck counts a lookup's outcome: found, not_found, retry, unchecked
// or unsupported.
func (m *Metrics) postCheck(outcome string) {
	if m != nil {
		m.SlackPostChecks.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) suppressed(what string) {
	if m != nil {
		m.SlackSuppressed.WithLabelValues(what).Inc()
	}
}

func (m *Metrics) summary() {
	if m != nil {
		m.SlackSummaries.Inc()
	}
}

func (m *Metrics) grouped() {
	if m != nil {
		m.ApprovalsGrouped.Inc()
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
