package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the ingest stage's Prometheus series. Safe for concurrent use.
type Metrics struct {
	Records      prometheus.Counter
	Events       prometheus.Counter
	Dropped      *prometheus.CounterVec
	Retries      *prometheus.CounterVec
	Batches      prometheus.Counter
	BatchSecs    prometheus.Histogram
	BatchSize    prometheus.Histogram
	InputLag     prometheus.Gauge
	Unattributed prometheus.Counter
	Committed    prometheus.Counter
}

// NewMetrics registers the ingest series on reg. Each package declares its
// own series like this (STYLE.md); the declarations look alike but name
// different things, so they are not shared.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		Records: f.NewCounter(prometheus.CounterOpts{
			Namespace: "agentwatch", Subsystem: "ingest", Name: "records_total",
			Help: "Raw records read from the input topics.",
		}),
		Events: f.NewCounter(prometheus.CounterOpts{
			Namespace: "agentwatch", Subsystem: "ingest", Name: "events_total",
			Help: "Canonical events stored and published.",
		}),
		Dropped: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "agentwatch", Subsystem: "ingest", Name: "dropped_total",
			Help: "Raw records sent to the dead-letter topic instead of becoming events, by reason.",
		}, []string{"reason"}),
		Retries: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "agentwatch", Subsystem: "ingest", Name: "retries_total",
			Help: "Retried writes, by target (store, events, dead_letter, commit).",
		}, []string{"target"}),
		Batches: f.NewCounter(prometheus.CounterOpts{
			Namespace: "agentwatch", Subsystem: "ingest", Name: "batches_total",
			Help: "Batches fully written and committed.",
		}),
		BatchSecs: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: "agentwatch", Subsystem: "ingest", Name: "batch_duration_seconds",
			Help:    "Time from a batch's first record fetched to its offsets committed.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		BatchSize: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: "agentwatch", Subsystem: "ingest", Name: "batch_records",
			Help:    "Records per committed batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		InputLag: f.NewGauge(prometheus.GaugeOpts{
			Namespace: "agentwatch", Subsystem: "ingest", Name: "input_lag_seconds",
			Help: "Age (by its Kafka timestamp) of the newest record fetched.",
		}),
		Unattributed: f.NewCounter(prometheus.CounterOpts{
			Namespace: "agentwatch", Subsystem: "ingest", Name: "unattributed_total",
			Help: "Events kept without an agent identity.",
		}),
		Committed: f.NewCounter(prometheus.CounterOpts{
			Namespace: "agentwatch", Subsystem: "ingest", Name: "committed_records_total",
			Help: "Raw records whose offsets were committed.",
		}),
	}
}
