// Command ingest reads raw API-gateway access logs from Kafka, turns them
// into canonical agent events, stores them in ClickHouse, publishes them keyed
// by agent id and dead-letters what it cannot parse.
//
//	ingest [run]        the consumer (default)
//	ingest migrate      apply the ClickHouse schema migrations and exit
//	ingest retention    drop event partitions older than clickhouse.retention_days
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
	root.AddCommand(migrate, retention)
	return root
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
