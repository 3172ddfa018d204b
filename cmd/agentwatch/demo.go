package main

import (
	"io"
	"os"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/tools/demo"
)

func runDemo(args []string) error {
	fs := cli.FlagSet("agentwatch demo")
	seed := fs.Uint64("seed", 1, "simulator seed")
	agents := fs.Int("agents", 60, "simulated agents")
	span := fs.Duration("sim-duration", 24*time.Hour, "simulated traffic span with incidents, ending now, replayed at --speed")
	history := fs.Duration("history", 72*time.Hour, "quiet history before it, replayed as fast as possible to warm the baselines (at most 6 days: ingest rejects events older than ingest.max_age)")
	speed := fs.Float64("speed", 1440, "simulated seconds per wall second (1440: a day per minute)")
	garbage := fs.Float64("garbage-rate", 0.02, "share of bad lines the simulator mixes in")
	verbose := fs.Bool("verbose", false, "show the services' logs (warnings and up) on stderr")
	cfg, err := cli.Load(fs, args)
	if err != nil {
		return err
	}
	if cfg.Distributed() {
		return cli.Usagef("demo runs on the embedded default; unset kafka.brokers (run cmd/ingest, cmd/detector, cmd/responder for the distributed mode)")
	}
	var logw io.Writer = io.Discard
	if *verbose {
		logw = os.Stderr
	}
	cfg.Log.Level = "warn"
	log := cli.Logger(logw, cfg.Log, "agentwatch-demo")
	ctx, stop := cli.SignalContext()
	defer stop()
	_, err = demo.Run(ctx, demo.Options{
		Config: cfg, Seed: *seed, Agents: *agents, SimDuration: *span, History: *history, Speed: *speed, GarbageRate: *garbage,
	}, os.Stdout, log)
	return err
}
