package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
)

func simulateCommand() *cobra.Command {
	var (
		cfg                                  sim.Config
		start, formats, ledger               string
		incidentsOut, registryOut, routesOut string
		rate                                 float64
		noTooLarge, noIncidents              bool
	)
	cmd := &cobra.Command{
		Use:   "simulate",
		Short: "Write simulated gateway access-log lines to stdout",
		Long: `simulate writes simulated API-gateway access-log lines of every format to stdout,
with bad lines mixed in if asked and incidents injected, e.g. to feed a local Kafka:

  agentwatch simulate --rate 2000 | kcat -P -b 127.0.0.1:9092 -t agentwatch.raw`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if start == "" {
				cfg.Start = time.Now().UTC().Add(-cfg.Duration)
			} else {
				t, err := time.Parse(time.RFC3339, start)
				if err != nil {
					return cli.Usagef("--start: %q is not an RFC 3339 time like 2026-11-01T00:00:00Z", start)
				}
				cfg.Start = t
			}
			if formats != "" {
				cfg.Formats = strings.Split(formats, ",")
			}
			if noTooLarge {
				for _, k := range sim.GarbageKinds {
					if k != sim.GarbageTooLarge {
						cfg.GarbageKinds = append(cfg.GarbageKinds, k)
					}
				}
			}
			if noIncidents {
				cfg.Incidents = []sim.IncidentSpec{}
			}
			s, err := sim.New(cfg)
			if err != nil {
				return &cli.UsageError{Err: err}
			}
			if err := sim.WriteFiles(s, incidentsOut, registryOut, routesOut); err != nil {
				return err
			}
			o := sim.StreamOptions{Rate: rate, Progress: cmd.ErrOrStderr()}
			if ledger != "" {
				f, err := os.Create(ledger)
				if err != nil {
					return fmt.Errorf("ledger: %w", err)
				}
				defer f.Close()
				o.Ledger = f
			}
			return sim.Stream(cmd.Context(), s, cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&cfg.Seed, "seed", 1, "random seed: the same flags give the same lines")
	f.IntVar(&cfg.Agents, "agents", 60, "registered agents to simulate")
	f.DurationVar(&cfg.Duration, "duration", time.Hour, "simulated time span")
	f.StringVar(&start, "start", "", "simulated start, RFC 3339 (default: now minus --duration, so every line is inside ingest's accepted time window)")
	f.StringVar(&formats, "format", "", "comma-separated formats to emit (default all: "+strings.Join(sim.KnownFormats, ",")+")")
	f.Float64Var(&rate, "rate", 0, "lines per second to write (0 = as fast as possible)")
	f.Float64Var(&cfg.GarbageRate, "garbage-rate", 0, "share of lines replaced by bad lines of every kind (0..1)")
	f.BoolVar(&noTooLarge, "no-too-large", false, "leave out >1 MiB garbage lines (for brokers with the default 1 MB message limit)")
	f.BoolVar(&noIncidents, "no-incidents", false, "simulate normal traffic only")
	f.Float64Var(&cfg.RateScale, "rate-scale", 1, "multiply every agent's traffic rate")
	f.StringVar(&ledger, "ledger", "", "write each line's ground truth (good/bad, reason, incident) as JSON lines to this file")
	f.StringVar(&incidentsOut, "incidents-out", "", "write the injected incidents as JSON to this file")
	f.StringVar(&registryOut, "registry-out", "", "write the agent registry YAML to this file")
	f.StringVar(&routesOut, "routes-out", "", "write the route inventory as an OpenAPI 3 document to this file")
	return cmd
}
