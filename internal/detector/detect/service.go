package detect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/invwatch"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/pkg/features"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// SettingsFrom maps the detector.* configuration to processor settings.
func SettingsFrom(cfg config.Config) Settings {
	d := cfg.Detector
	return Settings{
		Features:           features.Config{WindowMs: d.Window.Milliseconds(), LatenessMs: d.Lateness.Milliseconds()},
		Baseline:           cfg.BaselineParams(),
		NewAgentsPerWindow: d.NewAgentsPerWindow,
		RuleRepeatMs:       d.RuleRepeat.Milliseconds(),
		DriftRepeatMs:      d.DriftRepeat.Milliseconds(),
		OffHoursRepeatMs:   d.OffHoursRepeat.Milliseconds(),
		OffHoursMinRatio:   d.OffHoursMinRatio,
		NoveltyMatureMs:    d.NoveltyMature.Milliseconds(),
		GlobalMinAgents:    d.GlobalMinAgents,
		NewIPMaxKnown:      d.NewIPMaxKnown,
		GlobalShare:        d.GlobalShare,
		GlobalGapMs:        d.GlobalGap.Milliseconds(),
		FleetGauge:         d.FleetGauge,
		Risk: RiskSettings{
			HalfLifeMs: d.Risk.HalfLife.Milliseconds(), Level: d.Risk.Level,
			Weights: [4]float64{d.Risk.WeightLow, d.Risk.WeightMedium, d.Risk.WeightHigh, d.Risk.WeightCritical},
		},
	}
}

// StaticCatalog is a Catalog that never changes: for replays, evaluations
// and tests.
type StaticCatalog struct {
	Reg *inventory.Registry
	Inv *inventory.Inventory
}

// Registry implements Catalog.
func (c StaticCatalog) Registry() *inventory.Registry { return c.Reg }

// Routes implements Catalog.
func (c StaticCatalog) Routes() *inventory.Inventory { return c.Inv }

// WatcherCatalog adapts the inventory watcher to Catalog.
type WatcherCatalog struct{ W *invwatch.Watcher }

// Registry implements Catalog.
func (c WatcherCatalog) Registry() *inventory.Registry { return c.W.Current().Registry }

// Routes implements Catalog.
func (c WatcherCatalog) Routes() *inventory.Inventory { return c.W.Current().Routes }

// NewWatcher loads the registry and route files named by the config
// (invwatch.FromConfig, which the responder shares).
func NewWatcher(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*invwatch.Watcher, error) {
	return invwatch.FromConfig(cfg, log, reg)
}

// Service is cmd/detector in the distributed mode: the events topic in,
// ClickHouse and the anomalies topic out. It owns its clients.
//
// Its Detector polls the analysts' false-positive verdicts every
// detector.feedback_poll from the feedback_verdicts table of the same
// ClickHouse (internal/platform/chstore's Feedback, docs/feedback.md); the verdicts
// apply to the agents of the partitions it owns.
type Service struct {
	Detector *Detector
	Watcher  *invwatch.Watcher
	Store    *chstore.Store

	group *kafka.Group
	out   *kafka.Writer
}

// NewService connects to Kafka and ClickHouse and builds the detector.
func NewService(ctx context.Context, cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*Service, error) {
	if !cfg.Distributed() {
		return nil, errors.New("detector: kafka.brokers is empty; the embedded mode runs inside `agentwatch demo`")
	}
	sec, err := kafka.Connect(ctx, cfg.Kafka, log)
	if err != nil {
		return nil, err
	}
	if cfg.Kafka.CreateTopics {
		k := cfg.Kafka
		if err := kafka.EnsureTopics(ctx, k.Brokers, sec,
			kafka.TopicSpec{Name: k.EventsTopic, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor},
			kafka.TopicSpec{Name: k.AnomaliesTopic, Partitions: k.Partitions, ReplicationFactor: k.ReplicationFactor},
		); err != nil {
			return nil, fmt.Errorf("ensure topics on %v: %w", k.Brokers, err)
		}
	}
	w, err := NewWatcher(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
	if err != nil {
		return nil, err
	}
	s := &Service{Store: st, Watcher: w}
	s.group, err = kafka.NewGroup(kafka.GroupConfig{
		Brokers: cfg.Kafka.Brokers, Security: sec, GroupID: cfg.Kafka.DetectorGroup, Topic: cfg.Kafka.EventsTopic,
		SessionTimeout: cfg.Detector.SessionTimeout, Logger: log,
	})
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("detector group: %w", err)
	}
	s.out, err = kafka.NewWriter(kafka.WriterConfig{Brokers: cfg.Kafka.Brokers, Security: sec, Topic: cfg.Kafka.AnomaliesTopic}, log)
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("anomalies writer: %w", err)
	}
	s.Detector = New(cfg, SettingsFrom(cfg), Wiring{
		Source: SourceFunc(func(ctx context.Context) (Generation, error) {
			g, err := s.group.Next(ctx)
			if err != nil {
				return nil, err // not a typed nil inside the interface
			}
			return g, nil
		}),
		Store: st, Out: s.out, Catalog: WatcherCatalog{w},
		Group: cfg.Kafka.DetectorGroup, EventsTopic: cfg.Kafka.EventsTopic, AnomaliesTopic: cfg.Kafka.AnomaliesTopic,
	}, log, reg)
	s.Detector.Feedback, s.Detector.FeedbackPoll, s.Detector.FeedbackLookback = chstore.NewFeedback(st), cfg.Detector.FeedbackPoll, cfg.Detector.FeedbackLookback
	s.Detector.Published = func(ctx context.Context, parts []int32, sinceMs int64) (map[string]struct{}, error) {
		return publishedIDs(ctx, cfg.Kafka.Brokers, sec, cfg.Kafka.AnomaliesTopic, parts, sinceMs)
	}
	return s, nil
}

// Wiring is what a Detector reads from and writes to. The caller owns
// each part and closes it after the detector's Run has returned.
type Wiring struct {
	// Source yields the generations of the events topic EventsTopic, read
	// as consumer group Group.
	Source      Source
	Group       string
	EventsTopic string
	// Store keeps state and results; Out receives anomalies for
	// AnomaliesTopic.
	Store          Store
	Out            bus.Writer
	AnomaliesTopic string
	// Catalog is the agent registry and route inventory, usually a
	// WatcherCatalog.
	Catalog Catalog
}

// New builds the detector stage on w with processor settings set (usually
// SettingsFrom(cfg)) and the snapshot, idle-flush, agent-cap and retry
// settings of cfg; its metrics are registered on reg. It is the one
// constructor of the stage: NewService uses it for the distributed mode
// and the demo for the embedded one. Fields it leaves unset (Feedback,
// Published, Idle, OnGeneration) are the caller's to set before Run.
func New(cfg config.Config, set Settings, w Wiring, log *slog.Logger, reg prometheus.Registerer) *Detector {
	return &Detector{
		Source: w.Source, Store: w.Store, Out: w.Out, AnomaliesTopic: w.AnomaliesTopic,
		Group: w.Group, EventsTopic: w.EventsTopic, Proc: NewProcessor(set, w.Catalog, wallMs),
		SnapshotEvery: cfg.Detector.SnapshotEvery, IdleFlush: cfg.Detector.IdleFlush, MaxAgents: cfg.Detector.MaxAgents,
		TakeOverGroup: cfg.Detector.TakeOverGroup, UnregisteredTTL: cfg.Detector.UnregisteredTTL,
		RetryInitial: cfg.Ingest.RetryInitial, RetryMax: cfg.Ingest.RetryMax,
		Log: log.With("stage", "detector"), Metrics: NewMetrics(reg),
	}
}

// wallMs is the wall clock in Unix ms, the processor's now outside tests.
func wallMs() int64 { return time.Now().UnixMilli() }

var _ FeedbackSource = (*chstore.Feedback)(nil)

// publishedIDs reads the anomalies topic from sinceMs to its end and
// returns the ids of anomalies about the given events-topic partitions.
func publishedIDs(ctx context.Context, brokers []string, sec kafka.Security, topic string, parts []int32, sinceMs int64) (map[string]struct{}, error) {
	want := make(map[int32]bool, len(parts))
	for _, p := range parts {
		want[p] = true
	}
	ids := map[string]struct{}{}
	err := kafka.ReadSince(ctx, brokers, sec, topic, time.UnixMilli(sinceMs), func(m bus.Message) error {
		var a struct {
			ID        string `json:"anomaly_id"`
			Partition int32  `json:"partition"`
		}
		if json.Unmarshal(m.Value, &a) == nil && want[a.Partition] {
			ids[a.ID] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read published anomalies: %w", err)
	}
	return ids, nil
}

// Close closes the clients and the store. It looks like ingest's
// Service.Close, but each closes its own clients.
func (s *Service) Close() error {
	var errs []error
	if s.group != nil {
		errs = append(errs, s.group.Close())
	}
	if s.out != nil {
		errs = append(errs, s.out.Close())
	}
	if s.Store != nil {
		errs = append(errs, s.Store.Close())
	}
	return errors.Join(errs...)
}
