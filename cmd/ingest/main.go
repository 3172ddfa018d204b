// Command ingest reads raw API-gateway access logs from Kafka, turns them
// into canonical agent events, stores them in ClickHouse, publishes them keyed
// by agent id and dead-letters what it cannot parse.
//
//	ingest [run]        the consumer (default)
//	ingest migrate      apply the ClickHouse schema migrations and exit
//	ingest retention    drop event partitions older than clickhouse.retention_days
//	ingest inventory rebuild --from DAY [--to DAY]
//	                    recount the inventory's daily summaries from the events
//
// Run `ingest --help` for the rest; every config key is listed by
// `agentwatch config reference`.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentwatch/agentwatch/internal/ingest"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/obs"
	"github.com/agentwatch/agentwatch/internal/platform/pipeline"
)

func main() { cli.Main(newRoot()) }

// newRoot is deliberately parallel to the other binaries' newRoot: each
// declares its own help and commands; the shared root and run command are
// cli.NewRoot and cli.ServiceCommand.
func newRoot() *cobra.Command {
	root := cli.NewRoot("ingest", "Turn gateway access logs from Kafka into canonical agent events",
		`ingest consumes raw API-gateway access-log lines from the kafka.raw_topics,
parses and normalises them into canonical agent events, writes them to ClickHouse,
publishes them keyed by agent id to kafka.events_topic, and sends every line it
cannot parse to kafka.dead_letter_topic with the reason. Run without a command,
it runs the consumer.`)
	cli.ServiceCommand(root, runIngest)
	migrate := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the ClickHouse schema migrations, list them, and exit",
		Args:  cli.NoArgs,
		RunE:  runMigrate,
	}
	var dryRun bool
	retention := &cobra.Command{
		Use:   "retention",
		Short: "Drop event partitions older than clickhouse.retention_days",
		Args:  cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cli.LoadConfig(cmd)
			if err != nil {
				return err
			}
			log := cli.OperatorLogger(cmd, cfg, "ingest")
			return retentionRun(cmd.Context(), cmd.OutOrStdout(), cfg.ClickHouse.RetentionDays, dryRun, func(ctx context.Context, cut time.Time) ([]string, error) {
				if dryRun {
					return nil, nil
				}
				st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
				if err != nil {
					return nil, err
				}
				defer st.Close()
				return st.DropPartitionsBefore(ctx, cut)
			})
		},
	}
	retention.Flags().BoolVar(&dryRun, "dry-run", false, "print the cut-off date and drop nothing")
	root.AddCommand(migrate, retention, inventoryCommand())
	return root
}

// inventoryCommand is `ingest inventory rebuild`, beside migrate and
// retention: the ClickHouse chores of the tables ingest writes.
func inventoryCommand() *cobra.Command {
	inv := &cobra.Command{
		Use:   "inventory",
		Short: "Maintain the inventory's daily summary tables in ClickHouse",
		Args:  cli.NoArgs,
	}
	var from, to string
	rebuild := &cobra.Command{
		Use:   "rebuild",
		Short: "Recount the inventory's summaries of whole UTC days from the stored events",
		Long: `rebuild recounts the inventory's daily summaries (docs/schema.md) of each UTC
day from --from to --to, both included, from the events stored in ClickHouse,
each event once: it drops the day's summaries and sums the day's events again.
Run it once after upgrading, for the events stored before the summaries
existed, and after an ingest outage whose retried inserts were counted twice.
Ingest writing into a day while it is rebuilt may be counted twice or not at
all for that day: rebuild days that ingest no longer writes, or rebuild the
day again later.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			first, last, err := rebuildDays(from, to)
			if err != nil {
				return err
			}
			cfg, err := cli.LoadConfig(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, cli.OperatorLogger(cmd, cfg, "ingest"))
			if err != nil {
				return err
			}
			defer st.Close()
			start := time.Now()
			days, err := st.RebuildInventory(ctx, first, last)
			fmt.Fprintf(cmd.OutOrStdout(), "rebuilt the inventory of %d days in %s: %v\n", len(days), time.Since(start).Round(time.Millisecond), days)
			return err
		},
	}
	rebuild.Flags().StringVar(&from, "from", "", "first UTC day to rebuild, YYYY-MM-DD (required)")
	rebuild.Flags().StringVar(&to, "to", "", "last UTC day to rebuild, YYYY-MM-DD, included (default: --from)")
	inv.AddCommand(rebuild)
	return inv
}

// rebuildDays parses the days of `inventory rebuild`.
func rebuildDays(from, to string) (time.Time, time.Time, error) {
	if from == "" {
		return time.Time{}, time.Time{}, cli.Usagef("inventory rebuild: --from is required (a UTC day, YYYY-MM-DD)")
	}
	if to == "" {
		to = from
	}
	first, err := time.Parse(time.DateOnly, from)
	if err != nil {
		return time.Time{}, time.Time{}, cli.Usagef("inventory rebuild: --from %q is not a day like 2026-03-15", from)
	}
	last, err := time.Parse(time.DateOnly, to)
	if err != nil {
		return time.Time{}, time.Time{}, cli.Usagef("inventory rebuild: --to %q is not a day like 2026-03-15", to)
	}
	if last.Before(first) {
		return time.Time{}, time.Time{}, cli.Usagef("inventory rebuild: --to %s is before --from %s", to, from)
	}
	return first, last, nil
}

func runIngest(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if !cfg.Distributed() {
		return cli.Usagef("kafka.brokers is empty; the embedded mode runs inside `agentwatch demo`")
	}
	reg := obs.NewRegistry()
	svc, err := ingest.NewService(ctx, cfg, log, reg)
	if err != nil {
		return err
	}
	defer svc.Close()
	ready := &obs.Readiness{}
	ready.Add("ingest", svc.Ingester.Ready)
	ready.Add("clickhouse", svc.Store.Ping)
	log.Info("ingest started", "brokers", cfg.Kafka.Brokers, "raw_topics", cfg.Kafka.RawTopics,
		"events_topic", cfg.Kafka.EventsTopic, "dead_letter_topic", cfg.Kafka.DeadLetterTopic,
		"clickhouse", cfg.ClickHouse.Addr, "batch_size", cfg.Ingest.BatchSize, "batch_wait", cfg.Ingest.BatchWait,
		"retention_interval", cfg.Ingest.RetentionInterval, "retention_days", cfg.ClickHouse.RetentionDays)
	stages := []pipeline.Stage{svc.Ingester, &obs.Server{Addr: cfg.HTTP.Addr, WebConfigFile: cfg.HTTP.WebConfigFile, Registry: reg, Readiness: ready, Log: log}}
	if svc.Retention != nil {
		stages = append(stages, svc.Retention)
	}
	err = pipeline.Run(ctx, stages...)
	st := svc.Ingester.Stats()
	log.Info("ingest stopped", "records", st.Records, "events", st.Events, "dead_lettered", st.DeadLettered, "committed", st.Committed)
	return err
}

func runMigrate(cmd *cobra.Command, _ []string) error {
	cfg, err := cli.LoadConfig(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, cli.OperatorLogger(cmd, cfg, "ingest"))
	if err != nil {
		return err
	}
	defer st.Close()
	applied, err := st.AppliedMigrations(ctx)
	if err != nil {
		return err
	}
	for _, m := range applied {
		fmt.Fprintf(cmd.OutOrStdout(), "%04d %s applied %s\n", m.Version, m.Name, m.AppliedAt.Format(time.RFC3339))
	}
	return nil
}

func retentionRun(ctx context.Context, w io.Writer, days int, dryRun bool, drop func(context.Context, time.Time) ([]string, error)) error {
	cut := ingest.RetentionCutoff(time.Now(), days)
	dropped, err := drop(ctx, cut)
	if err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	if dryRun {
		fmt.Fprintf(w, "would drop event partitions before %s (retention_days=%d)\n", cut.Format("2006-01-02"), days)
		return nil
	}
	fmt.Fprintf(w, "dropped %d event partitions before %s: %v\n", len(dropped), cut.Format("2006-01-02"), dropped)
	return nil
}
