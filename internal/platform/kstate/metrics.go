package kstate

import "github.com/prometheus/client_golang/prometheus"

// Metrics are a process's state-topic series, labelled by topic. One
// Metrics serves every Table and Changelog of the process.
type Metrics struct {
	applied   *prometheus.CounterVec
	restore   *prometheus.HistogramVec
	batch     *prometheus.HistogramVec
	failures  *prometheus.CounterVec
	restored  *prometheus.CounterVec
	appliedTo *prometheus.GaugeVec
	// shared counts the requests of a shared Producer, every topic
	// together.
	shared prometheus.Histogram
}

// NewMetrics registers the series with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentwatch_state_table_records_applied_total",
			Help: "Records of a replicated state table applied in this process, its own and other processes' writes."}, []string{"topic"}),
		appliedTo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "agentwatch_state_table_applied_offset",
			Help: "Offset after the last record of a replicated state table applied in this process; compare across instances to see one fall behind."}, []string{"topic"}),
		restore: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "agentwatch_state_restore_seconds",
			Help:    "Time to read a state topic partition back (a table at start, a changelog partition on assignment).",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"topic"}),
		restored: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentwatch_state_restored_records_total",
			Help: "Records read back from state topics while restoring."}, []string{"topic"}),
		batch: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "agentwatch_state_write_batch_records",
			Help:    "Records per produce request to a state topic: above 1 when concurrent writes are group-committed.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10)}, []string{"topic"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "agentwatch_state_write_failures_total",
			Help: "Produce requests to a state topic that failed after their retries; the writes they carried returned errors."}, []string{"topic"}),
		shared: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "agentwatch_state_shared_write_batch_records",
			Help: "Records per produce request of a producer that state topics share, every topic together; " +
				"a request that carried several topics counts once here and once in agentwatch_state_write_batch_records of each.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
	}
	if reg != nil {
		reg.MustRegister(m.applied, m.appliedTo, m.restore, m.restored, m.batch, m.failures, m.shared)
	}
	return m
}

// observer returns the committer hook of topic; nil without metrics. A
// request that carried several topics is seen once by each topic's hook,
// with that topic's records.
func (m *Metrics) observer(topic string) func(int, error) {
	if m == nil {
		return nil
	}
	batch, failures := m.batch.WithLabelValues(topic), m.failures.WithLabelValues(topic)
	return func(n int, err error) {
		batch.Observe(float64(n))
		if err != nil {
			failures.Inc()
		}
	}
}

// sharedObserver returns a shared Producer's hook; nil without metrics.
func (m *Metrics) sharedObserver() func(int, error) {
	if m == nil {
		return nil
	}
	return func(n int, _ error) { m.shared.Observe(float64(n)) }
}

// BatchHistogram returns the records-per-request histogram of topic, for
// tests that check writes were group-committed.
func (m *Metrics) BatchHistogram(topic string) (prometheus.Metric, error) {
	o, err := m.batch.GetMetricWithLabelValues(topic)
	if err != nil {
		return nil, err
	}
	return o.(prometheus.Metric), nil
}
