package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
)

// Service is cmd/ingest in the distributed mode: Kafka in, ClickHouse and
// Kafka out. It owns its clients and closes them in Close.
type Service struct {
	Ingester *Ingester
	Store    *chstore.Store
	// Retention drops old event partitions on a schedule; nil when
	// ingest.retention_interval is 0.
	Retention *Retention

	reader *kafka.Reader
	events *kafka.Writer
	dlq    *kafka.Writer
}

// Topics returns the topic specs ingest reads and writes, for EnsureTopics.
func Topics(cfg config.Config) []kafka.TopicSpec {
	max := map[string]string{"max.message.bytes": strconv.Itoa(cfg.Kafka.MaxMessageBytes)}
	var specs []kafka.TopicSpec
	for _, t := range cfg.Kafka.RawTopics {
		specs = append(specs, kafka.TopicSpec{Name: t, Partitions: cfg.Kafka.Partitions, ReplicationFactor: cfg.Kafka.ReplicationFactor, Configs: max})
	}
	specs = append(specs,
		kafka.TopicSpec{Name: cfg.Kafka.EventsTopic, Partitions: cfg.Kafka.Partitions, ReplicationFactor: cfg.Kafka.ReplicationFactor},
		kafka.TopicSpec{Name: cfg.Kafka.DeadLetterTopic, Partitions: cfg.Kafka.Partitions, ReplicationFactor: cfg.Kafka.ReplicationFactor, Configs: max},
	)
	return specs
}

// NewService connects to Kafka and ClickHouse, applies the schema
// migrations, creates missing topics (when kafka.create_topics) and builds
// the ingest stage.
func NewService(ctx context.Context, cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if !cfg.Distributed() {
		return nil, errors.New("ingest: kafka.brokers is empty; run `agentwatch demo` for the embedded mode or set kafka.brokers")
	}
	sec, err := kafka.Connect(ctx, cfg.Kafka, log)
	if err != nil {
		return nil, err
	}
	if cfg.Kafka.CreateTopics {
		if err := kafka.EnsureTopics(ctx, cfg.Kafka.Brokers, sec, Topics(cfg)...); err != nil {
			return nil, fmt.Errorf("ensure topics on %v: %w", cfg.Kafka.Brokers, err)
		}
	}
	st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
	if err != nil {
		return nil, err
	}
	s := &Service{Store: st}
	fail := func(err error) (*Service, error) {
		_ = s.Close()
		return nil, err
	}
	s.reader, err = kafka.NewReader(kafka.ReaderConfig{
		Brokers: cfg.Kafka.Brokers, Security: sec, GroupID: cfg.Kafka.IngestGroup, Topics: cfg.Kafka.RawTopics,
		MaxBytes: 2 * cfg.Kafka.MaxMessageBytes,
	}, log)
	if err != nil {
		return fail(fmt.Errorf("kafka reader: %w", err))
	}
	s.events, err = kafka.NewWriter(kafka.WriterConfig{Brokers: cfg.Kafka.Brokers, Security: sec, Topic: cfg.Kafka.EventsTopic, BatchSize: 10000, Compression: "lz4"}, log)
	if err != nil {
		return fail(fmt.Errorf("kafka events writer: %w", err))
	}
	s.dlq, err = kafka.NewWriter(kafka.WriterConfig{Brokers: cfg.Kafka.Brokers, Security: sec, Topic: cfg.Kafka.DeadLetterTopic, BatchBytes: int64(cfg.Kafka.MaxMessageBytes) - 64<<10}, log)
	if err != nil {
		return fail(fmt.Errorf("kafka dead-letter writer: %w", err))
	}
	rt, err := cfg.RouteNormalizer()
	if err != nil {
		return fail(err)
	}
	s.Ingester, err = New(s.reader, st, s.events, s.dlq, Options{
		EventsTopic: cfg.Kafka.EventsTopic, DeadLetterTopic: cfg.Kafka.DeadLetterTopic,
		BatchSize: cfg.Ingest.BatchSize, BatchBytes: cfg.Ingest.BatchBytes, BatchWait: cfg.Ingest.BatchWait,
		Parser: cfg.ParserOptions(rt), TopicFormats: cfg.Ingest.TopicFormats,
		RetryInitial: cfg.Ingest.RetryInitial, RetryMax: cfg.Ingest.RetryMax, ShutdownGrace: cfg.Ingest.ShutdownGrace,
	}, log, NewMetrics(reg))
	if err != nil {
		return fail(err)
	}
	if cfg.Ingest.RetentionInterval > 0 {
		s.Retention = &Retention{Store: st, Days: cfg.ClickHouse.RetentionDays, Interval: cfg.Ingest.RetentionInterval,
			Log: log.With("component", "retention"), Metrics: NewRetentionMetrics(reg)}
	}
	return s, nil
}

// Close closes the Kafka clients and the store; alike in shape to the
// detector's Service.Close, each closing its own clients.
func (s *Service) Close() error {
	var errs []error
	if s.reader != nil {
		errs = append(errs, s.reader.Close())
	}
	if s.events != nil {
		errs = append(errs, s.events.Close())
	}
	if s.dlq != nil {
		errs = append(errs, s.dlq.Close())
	}
	if s.Store != nil {
		errs = append(errs, s.Store.Close())
	}
	return errors.Join(errs...)
}
