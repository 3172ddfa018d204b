// Command detector consumes canonical agent events from the events topic
// in a consumer group, scores each agent's event-time windows against its
// baseline, applies the registry and route rules, and writes explained
// anomalies to the anomalies topic and ClickHouse. It also builds
// baselines from stored events (backfill) and runs the detection-quality
// evaluations (eval). This package only parses arguments: the work is in
// internal/detector/detect and internal/tools/eval.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentwatch/agentwatch/internal/detector/detect"
	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/obs"
	"github.com/agentwatch/agentwatch/internal/platform/pipeline"
	"github.com/agentwatch/agentwatch/internal/platform/timeflag"
	"github.com/agentwatch/agentwatch/internal/tools/eval"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/baseline"
)

func main() { cli.Main(newRoot()) }

// newRoot is deliberately parallel to the other binaries' newRoot: each
// declares its own help and commands; the shared root and run command are
// cli.NewRoot and cli.ServiceCommand.
func newRoot() *cobra.Command {
	root := cli.NewRoot("detector", "Score each agent's behaviour against its baseline and raise explained anomalies",
		`detector consumes canonical agent events from kafka.events_topic in a consumer
group, scores each agent's event-time windows against its own baseline and its
peers', applies the agent-registry and route rules, and writes explained
anomalies to kafka.anomalies_topic and ClickHouse. Run without a command, it
runs the consumer.`)
	cli.ServiceCommand(root, runDetector)
	root.AddCommand(backfillCommand(), evalCommand())
	return root
}

func runDetector(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if !cfg.Distributed() {
		return cli.Usagef("kafka.brokers is empty; the embedded mode runs inside `agentwatch demo`")
	}
	reg := obs.NewRegistry()
	svc, err := detect.NewService(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	defer svc.Close()
	log.Info("detector started", "brokers", cfg.Kafka.Brokers, "events_topic", cfg.Kafka.EventsTopic,
		"anomalies_topic", cfg.Kafka.AnomaliesTopic, "group", cfg.Kafka.DetectorGroup, "window", cfg.Detector.Window)
	return pipeline.Run(ctx, svc.Detector, svc.Watcher, &obs.Server{Addr: cfg.HTTP.Addr, WebConfigFile: cfg.HTTP.WebConfigFile, Registry: reg, Readiness: &obs.Readiness{}, Log: log})
}

// backfillCommand is deliberately parallel to responder's auditCommand:
// both parse a --from/--to span with timeflag, with their own defaults and
// messages.
func backfillCommand() *cobra.Command {
	var (
		o        detect.BackfillOptions
		from, to string
	)
	cmd := &cobra.Command{
		Use:   "backfill --from TIME [--to TIME]",
		Short: "Build baselines from stored events (or a raw log file) before going live",
		Long: `backfill replays a span of events through the detector's scoring, without
publishing anomalies, so that baselines are warm when the detector goes live.
It reads ClickHouse's events table, or raw gateway log lines from --file. It
resumes where it stopped when run again with the same --job. TIME is RFC 3339
(2026-11-01T00:00:00Z) or a date (2026-11-01).`,
		Example: "  detector backfill -c agentwatch.yaml --from 2026-11-01 --to 2026-11-15",
		Args:    cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return cli.Usagef("%s needs --from (see %s --help)", cmd.CommandPath(), cmd.CommandPath())
			}
			var err error
			if o.From, err = timeflag.Parse(from); err != nil {
				return cli.Usagef("--from: %v", err)
			}
			o.To = time.Now().UTC()
			if to != "" {
				if o.To, err = timeflag.Parse(to); err != nil {
					return cli.Usagef("--to: %v", err)
				}
			}
			if !o.To.After(o.From) {
				return cli.Usagef("--to (%s) must be after --from (%s)", o.To.Format(time.RFC3339), o.From.Format(time.RFC3339))
			}
			cfg, err := cli.LoadConfig(cmd)
			if err != nil {
				return err
			}
			rep, err := detect.RunBackfill(cmd.Context(), cfg, o, cli.OperatorLogger(cmd, cfg, "detector"), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "start of the span (RFC 3339 or YYYY-MM-DD), inclusive (required)")
	f.StringVar(&to, "to", "", "end of the span (RFC 3339 or YYYY-MM-DD), exclusive; default now")
	f.StringVar(&o.Job, "job", "", "progress record name; a run with the same name resumes (default backfill-FROM-TO)")
	f.StringVar(&o.File, "file", "", "read raw gateway log lines from this file instead of ClickHouse's events table")
	return cmd
}

func evalCommand() *cobra.Command {
	return cli.Group(&cobra.Command{
		Use:   "eval",
		Short: "Measure detection quality: the Numenta Anomaly Benchmark, or labelled agent-attack scenarios (make eval)",
	}, evalNABCommand(), evalScenariosCommand())
}

func evalNABCommand() *cobra.Command {
	o := eval.NABOptions{Params: baseline.DefaultSeriesParams()}
	cmd := &cobra.Command{
		Use:   "nab --data NAB_DIR --out DIR",
		Short: "Score the Numenta Anomaly Benchmark with the detector's series model",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Data == "" || o.Out == "" {
				return cli.Usagef("%s needs --data (the NAB corpus) and --out (see %s --help)", cmd.CommandPath(), cmd.CommandPath())
			}
			if _, err := cli.LoadConfig(cmd); err != nil {
				return err
			}
			o.Progress = cmd.ErrOrStderr()
			res, err := eval.RunNAB(cmd.Context(), o)
			if err != nil {
				return err
			}
			return eval.WriteNABSummary(cmd.OutOrStdout(), res, o.Out, len(o.Only) > 0)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Data, "data", "", "the NAB corpus: a directory with data/, labels/ and config/ (required)")
	f.StringVar(&o.Out, "out", "", "write results CSVs and plots here (required)")
	f.StringSliceVar(&o.Only, "only", nil, "score only these files (category/file.csv), for a quick run")
	return cmd
}

func evalScenariosCommand() *cobra.Command {
	var (
		o        eval.ScenarioOptions
		seeds    []uint
		start    string
		falseOut string
		long     bool
		plan     = sim.DefaultLongPlan()
	)
	cmd := &cobra.Command{
		Use:   "scenarios",
		Short: "Labelled agent-attack scenarios through the real parser and detector: catch rate, precision, false alerts",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := time.Parse(time.DateOnly, start)
			if err != nil {
				return cli.Usagef("--start: %q is not a date like 2026-10-05", start)
			}
			if o.Agents < 10 || o.HistoryDays < 1 || o.TestDays < 1 {
				return cli.Usagef("need --agents >= 10, --history-days >= 1 and --test-days >= 1")
			}
			cfg, err := cli.LoadConfig(cmd)
			if err != nil {
				return err
			}
			o.Start, o.Settings, o.Progress = st, detect.SettingsFrom(cfg), cmd.ErrOrStderr()
			if plan.BatchRate <= 0 || plan.Repeat < 1 {
				return cli.Usagef("--batch-job-rate must be positive and --low-and-slow-repeat at least 1, got %g and %d", plan.BatchRate, plan.Repeat)
			}
			if !long {
				plan = sim.LongPlan{}
			}
			o.Long = &plan
			ss := make([]uint64, len(seeds))
			for i, seed := range seeds {
				ss[i] = uint64(seed)
			}
			return eval.RunScenarioSeeds(cmd.Context(), o, ss, falseOut, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.UintSliceVar(&seeds, "seed", []uint{1, 2}, "simulator seeds; the first is the one tuned on, the others are held out")
	f.IntVar(&o.Agents, "agents", 200, "registered agents (5 roles)")
	f.IntVar(&o.HistoryDays, "history-days", 14, "days of normal traffic before the test days (warm-up)")
	f.IntVar(&o.TestDays, "test-days", 3, "days with labeled incidents and benign events")
	f.StringVar(&start, "start", "2026-10-05", "simulated start (a Monday, YYYY-MM-DD)")
	f.Int32Var(&o.Partitions, "partitions", 4, "events-topic partitions to key agents to")
	f.StringVar(&falseOut, "false-alerts", "", "write the false alerts as JSON lines to this file (seed appended to the name)")
	f.BoolVar(&long, "low-and-slow", true, "add low-and-slow incidents (2, 3 and 4 times an agent's calls for 2, 4 and 8 hours) and benign long changes (a new hourly batch job, a rollout that doubles an agent's calls)")
	f.IntVar(&plan.Repeat, "low-and-slow-repeat", 1, "low-and-slow incidents of each speed and length (they need weekdays and agents of their own: 7 test days and 200 agents hold 2)")
	f.Float64Var(&plan.BatchRate, "batch-job-rate", sim.BatchRate, "the new batch job's burst rate, in times the agent's peak rate")
	return cmd
}
