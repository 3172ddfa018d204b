package main

import (
	"fmt"
	"os"

	"github.com/agentwatch/agentwatch/internal/detector/detect"
	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/obs"
	"github.com/agentwatch/agentwatch/internal/platform/pipeline"
)

func runDetector(args []string) error {
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
	reg := obs.NewRegistry()
	svc, err := detect.NewService(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	defer svc.Close()
	log.Info("detector started", "brokers", cfg.Kafka.Brokers, "events_topic", cfg.Kafka.EventsTopic,
		"anomalies_topic", cfg.Kafka.AnomaliesTopic, "group", cfg.Kafka.DetectorGroup, "window", cfg.Detector.Window)
	if err := pipeline.Run(ctx, svc.Detector, svc.Watcher, &obs.Server{Addr: cfg.HTTP.Addr, Registry: reg, Readiness: &obs.Readiness{}, Log: log}); err != nil {
		return fmt.Errorf("detector: %w", err)
	}
	return nil
}
