package visibility

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the visibility service's series. Register them once per
// registry. A nil *Metrics records nothing. Safe for concurrent use.
type Metrics struct {
	// Questions counts questions by question (inventory_agents,
	// inventory_routes, inventory_agent_routes, findings, access, agent,
	// route, events) and result (ok, invalid, not_found, not_audited,
	// failed).
	Questions *prometheus.CounterVec
	// Duration is the time to answer a question, audit record included,
	// by question.
	Duration *prometheus.HistogramVec
}

// NewMetrics registers the visibility series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	const ns, sub = "agentwatch", "visibility"
	return &Metrics{
		Questions: f.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "questions_total",
			Help: "Visibility questions, by question (inventory_agents, inventory_routes, inventory_agent_routes, findings, access, agent, route, events) and result (ok, invalid, not_found, not_audited, failed)."},
			[]string{"question", "result"}),
		Duration: f.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "question_duration_seconds",
			Help:    "Time to answer a visibility question, its audit record included, by question.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)},
			[]string{"question"}),
	}
}

// SetMetrics makes s count its questions in m (nil: none). Call it before
// the first question.
func (s *Service) SetMetrics(m *Metrics) { s.metrics = m }

// observe records one question's result and time: deferred by each
// question with a pointer to its error.
func (s *Service) observe(question string, start time.Time, err *error) {
	m := s.metrics
	if m == nil {
		return
	}
	result := "ok"
	switch e := *err; {
	case e == nil:
	case errors.Is(e, ErrInvalid):
		result = "invalid"
	case errors.Is(e, ErrNotFound):
		result = "not_found"
	case errors.Is(e, ErrNotAudited):
		result = "not_audited"
	default:
		result = "failed"
	}
	m.Questions.WithLabelValues(question, result).Inc()
	m.Duration.WithLabelValues(question).Observe(time.Since(start).Seconds())
}
