// Command detector consumes canonical agent events from the events topic in
// a consumer group (partitions keyed by agent id, so one instance owns each
// agent's state).
//
// Today it accounts for the events it consumes and exposes the counts as
// metrics; per-agent features, statistical baselines and anomalies are
// issue 3 and are not built yet.
package main

import (
	"fmt"
	"os"

	"github.com/agentwatch/agentwatch/internal/cli"
	"github.com/agentwatch/agentwatch/internal/detect"
	"github.com/agentwatch/agentwatch/internal/kafka"
	"github.com/agentwatch/agentwatch/internal/obs"
	"github.com/agentwatch/agentwatch/internal/pipeline"
)

func main() { cli.Exit("detector", run(os.Args[1:])) }

func run(args []string) error {
	cfg, err := cli.Load(cli.FlagSet("detector"), args)
	if err != nil {
		return err
	}
	if !cfg.Distributed() {
		return cli.Usagef("kafka.brokers is empty; the embedded mode runs inside `agentwatch demo`")
	}
	log := cli.Logger(os.Stderr, cfg.Log, "detector")
	ctx, stop := cli.SignalContext()
	defer stop()
	r, err := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Kafka.Brokers, GroupID: cfg.Kafka.DetectorGroup, Topics: []string{cfg.Kafka.EventsTopic}}, log)
	if err != nil {
		return fmt.Errorf("events reader: %w", err)
	}
	defer r.Close()
	reg := obs.NewRegistry()
	log.Info("detector started", "brokers", cfg.Kafka.Brokers, "events_topic", cfg.Kafka.EventsTopic, "group", cfg.Kafka.DetectorGroup)
	return pipeline.Run(ctx, detect.NewTally(r, log, reg), &obs.Server{Addr: cfg.HTTP.Addr, Registry: reg, Readiness: &obs.Readiness{}, Log: log})
}
