package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/tools/detectbench"
	"github.com/agentwatch/agentwatch/internal/tools/ingestbench"
	"github.com/agentwatch/agentwatch/internal/tools/respbench"
	"github.com/agentwatch/agentwatch/internal/tools/visbench"
)

// benchFlags are the flags every benchmark takes: where the real services
// are, the scratch topics' partitions, and what to keep.
type benchFlags struct {
	brokers, clickhouse []string
	partitions          int
	keep                bool
	cpuprofile          string
}

func (b *benchFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringSliceVar(&b.brokers, "brokers", []string{"127.0.0.1:9092"}, "Kafka brokers, comma-separated")
	f.StringSliceVar(&b.clickhouse, "clickhouse", []string{"127.0.0.1:9000"}, "ClickHouse native addresses, comma-separated")
	f.IntVar(&b.partitions, "partitions", 6, "partitions of the scratch topics")
	f.BoolVar(&b.keep, "keep", false, "keep the scratch topics, database and state")
	f.StringVar(&b.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to this file")
}

// reporter is what every benchmark returns.
type reporter interface{ String() string }

// run runs one benchmark with the profile, logger and report every
// benchmark shares; progress goes to stderr, the report to stdout.
func (b *benchFlags) run(cmd *cobra.Command, bench func(ctx context.Context, log *slog.Logger, progress io.Writer) (reporter, error)) error {
	if b.cpuprofile != "" {
		f, err := os.Create(b.cpuprofile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	l := config.Log{Level: "warn", Format: "text"}
	if cli.Verbose(cmd) {
		l.Level = "info"
	}
	rep, err := bench(cmd.Context(), cli.Logger(cmd.ErrOrStderr(), l, "bench"), cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	fmt.Fprint(cmd.OutOrStdout(), rep.String())
	return nil
}

func benchCommand() *cobra.Command {
	return cli.Group(&cobra.Command{
		Use:   "bench",
		Short: "Measure a service end to end against the real Kafka and ClickHouse (make bench-*)",
	}, benchIngestCommand(), benchDetectorCommand(), benchDetectorMemoryCommand(), benchResponderCommand(), benchVisibilityCommand())
}

// newBench builds one `agentwatch bench` command: the flags every
// benchmark takes, then its own (flags), and a run with the shared options
// given to bench.
func newBench(use, short string, flags func(*pflag.FlagSet), bench func(ctx context.Context, b benchFlags, log *slog.Logger, progress io.Writer) (reporter, error)) *cobra.Command {
	var b benchFlags
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return b.run(cmd, func(ctx context.Context, log *slog.Logger, progress io.Writer) (reporter, error) {
				return bench(ctx, b, log, progress)
			})
		},
	}
	b.add(cmd)
	flags(cmd.Flags())
	return cmd
}

// The three benchmark commands are deliberately parallel: what they share
// is newBench; each declares its benchmark's own flags and Options type.
func benchIngestCommand() *cobra.Command {
	var o ingestbench.Options
	var pwFile string
	return newBench("ingest", "Ingest end to end, next to the consume-only and insert-only limits, and over a SASL_SSL listener with --secure-brokers",
		func(f *pflag.FlagSet) {
			f.IntVar(&o.Records, "records", 1_000_000, "raw lines to measure with")
			f.IntVar(&o.BatchSize, "batch-size", 0, "ingest batch size (default: ingest.batch_size's default)")
			f.StringSliceVar(&o.Secure.Brokers, "secure-brokers", nil, "a TLS/SASL listener of the same cluster: repeat the consume-only and end-to-end runs through it")
			f.StringVar(&o.Secure.TLS.CAFile, "secure-ca-file", "", "CA bundle the secured listener's certificate chains to (TLS is on with --secure-brokers)")
			f.StringVar(&o.Secure.SASL.Mechanism, "secure-sasl-mechanism", "scram-sha-512", "SASL mechanism on the secured listener: none, plain, scram-sha-256 or scram-sha-512")
			f.StringVar(&o.Secure.SASL.Username, "secure-sasl-username", "", "SASL user on the secured listener")
			f.StringVar(&pwFile, "secure-sasl-password-file", "", "file holding that user's password")
			f.IntVar(&o.Rounds, "rounds", 3, "end-to-end runs per listener with --secure-brokers (alternating plaintext and secured), and per side with --compare-views")
			f.BoolVar(&o.CompareViews, "compare-views", false, "also measure ingest without the inventory's materialized views, next to runs with them")
		},
		func(ctx context.Context, b benchFlags, log *slog.Logger, progress io.Writer) (reporter, error) {
			o.Brokers, o.ClickHouse, o.Partitions, o.Keep = b.brokers, b.clickhouse, b.partitions, b.keep
			if len(o.Secure.Brokers) > 0 {
				o.Secure.TLS.Enabled, o.Secure.TLS.MinVersion = true, "1.2"
				if pwFile != "" {
					pw, err := os.ReadFile(pwFile)
					if err != nil {
						return nil, fmt.Errorf("--secure-sasl-password-file: %w", err)
					}
					o.Secure.SASL.Password = strings.TrimRight(string(pw), "\r\n")
				}
			}
			return ingestbench.Run(ctx, o, log, progress)
		})
}

func benchDetectorCommand() *cobra.Command {
	var o detectbench.Options
	return newBench("detector", "The detector service on a real events topic, next to consume-only, with close → publish latency",
		func(f *pflag.FlagSet) {
			f.IntVar(&o.Agents, "agents", 100, "simulated agents")
			f.IntVar(&o.Days, "days", 4, "simulated days of history, ending now (default incidents fall in the last two thirds)")
			f.Float64Var(&o.RateScale, "rate-scale", 1, "multiplies the simulated traffic")
			f.DurationVar(&o.IdleFlush, "idle-flush", 2*time.Second, "detector.idle_flush: wall time after the last record before open windows are flushed")
			f.Uint64Var(&o.Seed, "seed", 1, "simulator seed")
		},
		func(ctx context.Context, b benchFlags, log *slog.Logger, progress io.Writer) (reporter, error) {
			o.Brokers, o.ClickHouse, o.Partitions, o.Keep = b.brokers, b.clickhouse, b.partitions, b.keep
			return detectbench.Run(ctx, o, log, progress)
		})
}

func benchDetectorMemoryCommand() *cobra.Command {
	var o detectbench.MemoryOptions
	return newBench("detector-memory", "The detector binary's RSS per agent, for real agents or a fake-id flood, and its restart on the saved state",
		func(f *pflag.FlagSet) {
			f.StringVar(&o.Detector, "detector", "bin/detector", "the detector binary to run (make build writes it)")
			f.IntVar(&o.Agents, "agents", 100_000, "agent ids that send events")
			f.BoolVar(&o.Fake, "fake", false, "a flood of unregistered fake ids, one event each, instead of real agents")
			f.IntVar(&o.MaxAgents, "max-agents", 1_000_000, "detector.max_agents (-1: no cap)")
			f.IntVar(&o.RestartMaxAgents, "restart-max-agents", 0, "restart the detector on the saved state with this detector.max_agents and measure it (0: no restart, -1: no cap)")
			f.DurationVar(&o.UnregisteredTTL, "unregistered-ttl", 0, "detector.unregistered_ttl (0: its default)")
			f.DurationVar(&o.ExpireWait, "expire-wait", 0, "wait up to this long after the run for every idle fake agent to leave detector_state (0: do not wait)")
		},
		func(ctx context.Context, b benchFlags, log *slog.Logger, progress io.Writer) (reporter, error) {
			o.Brokers, o.ClickHouse, o.Partitions, o.Keep = b.brokers, b.clickhouse, b.partitions, b.keep
			return detectbench.RunMemory(ctx, o, log, progress)
		})
}

func benchResponderCommand() *cobra.Command {
	var (
		o     respbench.Options
		rates []float64
		dur   time.Duration
	)
	return newBench("responder", "Anomaly on the topic → revocation at a local Kong and alert at a local Slack, through the distributed responder",
		func(f *pflag.FlagSet) {
			f.IntVar(&o.Anomalies, "anomalies", 500, "anomalies to write, each for its own agent and credential")
			f.Float64Var(&o.Rate, "rate", 50, "anomalies written per second (steady, each write at its own time)")
			f.DurationVar(&o.Wait, "wait", 2*time.Minute, "how long after the last write to wait for the last revocation and alert")
			f.IntVar(&o.Instances, "instances", 1, "responders sharing the consumer group, each with its own state directory (in this process)")
			f.Float64SliceVar(&rates, "rates", nil, "step through these rates (each for --duration, on fresh topics) until one misses p99 ≤ 1s, and report the highest sustained; replaces --rate and --anomalies")
			f.DurationVar(&dur, "duration", 20*time.Second, "with --rates: how long each step writes")
			f.DurationVar(&o.GroupWait, "group-wait", 0, "each instance's responder.group_wait: 0 posts every alert at once and updates it as the actions end; a wait longer than the revocation posts it once, with the revocation on it")
			f.DurationVar(&o.ActionWait, "action-wait", time.Second, "each instance's responder.action_wait: how much longer than the group wait an alert may wait for its revocation, posted as soon as the revocation is done (0: it does not wait)")
			f.StringVar(&o.Path, "path", respbench.PathKafka, "what each instance is built on: kafka (as `responder run`: group generations, state and global topics) or files (the older path: a plain group reader, outbox and incidents in local files)")
		},
		func(ctx context.Context, b benchFlags, log *slog.Logger, progress io.Writer) (reporter, error) {
			o.Brokers, o.ClickHouse, o.Partitions, o.Keep = b.brokers, b.clickhouse, b.partitions, b.keep
			if len(rates) > 0 {
				return respbench.RunSteps(ctx, o, rates, dur, log, progress)
			}
			return respbench.Run(ctx, o, log, progress)
		})
}

func benchVisibilityCommand() *cobra.Command {
	var (
		o        visbench.Options
		m        visbench.MeasureOptions
		loadOnly bool
		start    string
		now      string
	)
	return newBench("visibility", "A simulated month (2,000 agents, 30 days, 50M+ events) loaded through the events insert, then the visibility questions timed next to each other; the database is kept, so a rerun only measures",
		func(f *pflag.FlagSet) {
			f.StringVar(&o.Database, "database", "bench_visibility", "the benchmark's database, kept between runs (its name must start with bench_)")
			f.IntVar(&o.Agents, "agents", 2000, "simulated agents")
			f.IntVar(&o.Days, "days", 30, "simulated UTC days from --start")
			f.StringVar(&start, "start", "2026-11-01", "the first simulated day (UTC)")
			f.Float64Var(&o.RateScale, "rate-scale", 0.8, "multiplies the simulated traffic (0.8 gives about 52M events for 2,000 agents over 30 days)")
			f.Uint64Var(&o.Seed, "seed", 1, "simulator seed")
			f.IntVar(&o.BatchSize, "batch-size", 20_000, "events per insert (ingest.batch_size's default)")
			f.IntVar(&o.Inserters, "inserters", 2, "inserts running at once")
			f.IntVar(&o.MaxDays, "max-days", 0, "load at most this many days in this run, then stop (0: all); a rerun goes on where it stopped")
			f.Uint64Var(&o.MinEvents, "min-events", 50_000_000, "the least a complete load must hold")
			f.BoolVar(&o.Fresh, "fresh", false, "drop the database and load it again")
			f.BoolVar(&loadOnly, "load-only", false, "load (or check the load) and stop before measuring")
			f.IntVar(&m.Runs, "runs", 20, "times each question is asked, with varying days, tags and agents")
			f.StringVar(&now, "now", "", "the questions' clock, RFC 3339 (default 18:00 on the last simulated day: spans ending now end mid-day, read from the events)")
		},
		func(ctx context.Context, b benchFlags, log *slog.Logger, progress io.Writer) (reporter, error) {
			t, err := time.Parse(time.DateOnly, start)
			if err != nil {
				return nil, cli.Usagef("--start: %v", err)
			}
			o.Start, o.ClickHouse = t, b.clickhouse
			if now != "" {
				if o.Now, err = time.Parse(time.RFC3339, now); err != nil {
					return nil, cli.Usagef("--now: %v", err)
				}
			}
			return visbench.Run(ctx, o, m, loadOnly, log, progress)
		})
}
