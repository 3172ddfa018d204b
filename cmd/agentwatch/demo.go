package main

import (
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/timeflag"
	"github.com/agentwatch/agentwatch/internal/tools/demo"
)

func demoCommand() *cobra.Command {
	var o demo.Options
	var end string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole job in one process: simulator → ingest → detector → responder",
		Long: `demo runs ingest, the detector and the responder in one process on the embedded
default (no Kafka, no ClickHouse), fed by the built-in simulator: a quiet history
to warm the baselines, then a day with injected incidents replayed at --speed.
It prints progress, the alerts the responder raises, and a summary of what was
caught and where the results are. --verbose shows the services' warnings.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if end != "" {
				t, err := timeflag.Parse(end)
				if err != nil {
					return cli.Usagef("--end: %v", err)
				}
				if t.After(time.Now()) {
					return cli.Usagef("--end: %s is in the future", end)
				}
				o.End = t
			}
			cfg, err := cli.LoadConfig(cmd)
			if err != nil {
				return err
			}
			if cfg.Distributed() {
				return cli.Usagef("demo runs on the embedded default; unset kafka.brokers (run ingest, detector and responder for the distributed mode)")
			}
			var logw io.Writer = io.Discard
			if cli.Verbose(cmd) {
				logw = cmd.ErrOrStderr()
			}
			cfg.Log.Level = "warn"
			log := cli.Logger(logw, cfg.Log, "agentwatch-demo")
			o.Config = cfg
			_, err = demo.Run(cmd.Context(), o, cmd.OutOrStdout(), log)
			return err
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&o.Seed, "seed", 1, "simulator seed")
	f.IntVar(&o.Agents, "agents", 60, "simulated agents")
	f.DurationVar(&o.SimDuration, "sim-duration", 24*time.Hour, "simulated traffic span with incidents, ending now, replayed at --speed")
	f.DurationVar(&o.History, "history", 72*time.Hour, "quiet history before it, replayed as fast as possible to warm the baselines (at most 6 days: ingest rejects events older than ingest.max_age)")
	f.Float64Var(&o.Speed, "speed", 1440, "simulated seconds per wall second (1440: a day per minute)")
	f.StringVar(&end, "end", "", "when the simulated span ends (RFC 3339 or YYYY-MM-DD; default now): with --seed, the same run at any time of day, for comparing two builds")
	f.Float64Var(&o.GarbageRate, "garbage-rate", 0.02, "share of bad lines the simulator mixes in")
	return cmd
}
