package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/agentwatch/agentwatch/internal/detector/detect"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/obs"
	"github.com/agentwatch/agentwatch/internal/platform/pipeline"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

func runResponder(args []string) error {
	cfg, err := cli.Load(cli.FlagSet("responder"), args)
	if err != nil {
		return err
	}
	if !cfg.Distributed() {
		return cli.Usagef("kafka.brokers is empty; the embedded mode runs inside `agentwatch demo`")
	}
	log := cli.Logger(os.Stderr, cfg.Log, "responder")
	ctx, stop := cli.SignalContext()
	defer stop()
	if cfg.Kafka.CreateTopics {
		if err := kafka.EnsureTopics(ctx, cfg.Kafka.Brokers, kafka.TopicSpec{Name: cfg.Kafka.AnomaliesTopic, Partitions: cfg.Kafka.Partitions, ReplicationFactor: cfg.Kafka.ReplicationFactor}); err != nil {
			return fmt.Errorf("ensure anomalies topic: %w", err)
		}
	}
	reg := obs.NewRegistry()
	st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
	if err != nil {
		return err
	}
	defer st.Close()
	watcher, err := detect.NewWatcher(cfg, log, reg)
	if err != nil {
		return err
	}
	deps := clickhouseDeps(st, respond.RegistryFunc(func() *inventory.Registry { return watcher.Current().Registry }))
	// Every action is audited before it counts as done; grouping the
	// concurrent ones into one insert keeps ClickHouse from drowning in
	// one-row inserts during a burst.
	batcher := audit.NewBatcher(deps.Audit, 10*time.Millisecond, 1000)
	defer batcher.Close()
	deps.Audit = batcher
	deps.AfterAction = failpoint(log)
	svc, err := respond.Build(cfg, deps, log, reg)
	if err != nil {
		return err
	}
	defer svc.Close()
	r, err := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Kafka.Brokers, GroupID: cfg.Kafka.ResponderGroup, Topics: []string{cfg.Kafka.AnomaliesTopic}}, log)
	if err != nil {
		return fmt.Errorf("anomalies reader: %w", err)
	}
	defer r.Close()
	c := &respond.Consumer{Reader: r, Engine: svc.Engine, Log: log, Invalid: promauto.With(reg).NewCounter(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder",
		Name: "invalid_records_total", Help: "Records on the anomalies topic that are not anomalies; logged and skipped."})}
	log.Info("responder started", "brokers", cfg.Kafka.Brokers, "anomalies_topic", cfg.Kafka.AnomaliesTopic, "group", cfg.Kafka.ResponderGroup,
		"playbooks", cfg.Responder.Playbooks, "api", cfg.Responder.APIAddr, "state_dir", cfg.Responder.StateDir)
	return pipeline.Run(ctx, c, svc, watcher,
		&respond.HTTPServer{Addr: cfg.Responder.APIAddr, Handler: svc.Handler, Log: log},
		&obs.Server{Addr: cfg.HTTP.Addr, Registry: reg, Readiness: &obs.Readiness{}, Log: log})
}

// clickhouseDeps are the distributed mode's shared stores.
func clickhouseDeps(st *chstore.Store, reg respond.Registry) respond.Deps {
	return respond.Deps{Seen: chstore.NewSeen(st), Audit: chstore.NewAudit(st), Chain: chstore.NewChain(st), Events: chstore.NewEvents(st),
		Scores: st, Feedback: chstore.NewFeedback(st), Registry: reg, Console: os.Stdout}
}

// failpoint reads RESPONDER_FAILPOINT, for the crash tests only:
// "pause-after-revoke:FILE" makes the first revocation that reached the
// gateway write FILE and hang before it is recorded, so the test can
// SIGKILL the process in that gap.
func failpoint(log *slog.Logger) func(kind, key string) {
	v, ok := strings.CutPrefix(os.Getenv("RESPONDER_FAILPOINT"), "pause-after-revoke:")
	if !ok || v == "" {
		return nil
	}
	log.Warn("failpoint armed: the first revocation will hang before it is recorded", "marker", v)
	var once sync.Once
	return func(kind, key string) {
		once.Do(func() {
			_ = os.WriteFile(v, []byte(key), 0o644)
			select {}
		})
	}
}
