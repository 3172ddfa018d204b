// Command responder consumes anomalies from the anomalies topic and runs
// playbooks (Slack alerts, credential revocation, evidence snapshots).
//
// Playbooks are issue 4 and are not built yet: today the responder joins its
// consumer group, logs each anomaly record it receives, commits it and
// serves its metrics, so deployments can be wired end to end.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/agentwatch/agentwatch/internal/cli"
	"github.com/agentwatch/agentwatch/internal/kafka"
	"github.com/agentwatch/agentwatch/internal/obs"
	"github.com/agentwatch/agentwatch/internal/pipeline"
)

func main() { cli.Exit("responder", run(os.Args[1:])) }

func run(args []string) error {
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
	r, err := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Kafka.Brokers, GroupID: cfg.Kafka.ResponderGroup, Topics: []string{cfg.Kafka.AnomaliesTopic}}, log)
	if err != nil {
		return fmt.Errorf("anomalies reader: %w", err)
	}
	defer r.Close()
	reg := obs.NewRegistry()
	received := promauto.With(reg).NewCounter(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "anomalies_total", Help: "Anomaly records consumed."})
	consume := pipeline.StageFunc(func(ctx context.Context) error {
		for {
			m, err := r.Fetch(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("fetch anomalies: %w", err)
			}
			received.Inc()
			log.Info("anomaly received; no playbooks yet", "key", string(m.Key), "partition", m.Partition, "offset", m.Offset)
			if err := r.Commit(ctx, m); err != nil {
				return fmt.Errorf("commit anomaly offset: %w", err)
			}
		}
	})
	log.Info("responder started", "brokers", cfg.Kafka.Brokers, "anomalies_topic", cfg.Kafka.AnomaliesTopic, "group", cfg.Kafka.ResponderGroup)
	return pipeline.Run(ctx, consume, &obs.Server{Addr: cfg.HTTP.Addr, Registry: reg, Readiness: &obs.Readiness{}, Log: log})
}
