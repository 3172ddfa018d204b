// Command ingest reads raw API-gateway access logs from Kafka, turns them
// into canonical agent events, stores them in ClickHouse, publishes them keyed
// by agent id and dead-letters what it cannot parse.
//
//	ingest [run] [--config agentwatch.yaml] [--KEY=VALUE ...]
//	ingest migrate      apply the ClickHouse schema migrations and exit
//	ingest retention    drop event partitions older than clickhouse.retention_days
//
// Every config key is also a flag and an AGENTWATCH_* variable; see README.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/agentwatch/agentwatch/internal/ingest"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/obs"
	"github.com/agentwatch/agentwatch/internal/platform/pipeline"
)

func main() {
	cli.Exit("ingest", run(os.Args[1:]))
}

func run(args []string) error {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	fs := cli.FlagSet("ingest " + cmd)
	dryRun := false
	if cmd == "retention" {
		fs.BoolVar(&dryRun, "dry-run", false, "list the partitions that would be dropped")
	}
	cfg, err := cli.Load(fs, args)
	if err != nil {
		return err
	}
	log := cli.Logger(os.Stderr, cfg.Log, "ingest")
	ctx, stop := cli.SignalContext()
	defer stop()

	switch cmd {
	case "run":
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
			"clickhouse", cfg.ClickHouse.Addr, "batch_size", cfg.Ingest.BatchSize, "batch_wait", cfg.Ingest.BatchWait)
		err = pipeline.Run(ctx, svc.Ingester, &obs.Server{Addr: cfg.HTTP.Addr, Registry: reg, Readiness: ready, Log: log})
		st := svc.Ingester.Stats()
		log.Info("ingest stopped", "records", st.Records, "events", st.Events, "dead_lettered", st.DeadLettered, "committed", st.Committed)
		return err
	case "migrate":
		st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
		if err != nil {
			return err
		}
		defer st.Close()
		applied, err := st.AppliedMigrations(ctx)
		if err != nil {
			return err
		}
		for _, m := range applied {
			fmt.Printf("%04d %s applied %s\n", m.Version, m.Name, m.AppliedAt.Format(time.RFC3339))
		}
		return nil
	case "retention":
		return retention(ctx, cfg.ClickHouse.RetentionDays, dryRun, func(ctx context.Context, cut time.Time) ([]string, error) {
			st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
			if err != nil {
				return nil, err
			}
			defer st.Close()
			if dryRun {
				return nil, nil
			}
			return st.DropPartitionsBefore(ctx, cut)
		})
	default:
		return cli.Usagef("unknown command %q; want run, migrate or retention", cmd)
	}
}

func retention(ctx context.Context, days int, dryRun bool, drop func(context.Context, time.Time) ([]string, error)) error {
	cut := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -days)
	dropped, err := drop(ctx, cut)
	if err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	if dryRun {
		fmt.Printf("would drop event partitions before %s (retention_days=%d)\n", cut.Format("2006-01-02"), days)
		return nil
	}
	fmt.Printf("dropped %d event partitions before %s: %v\n", len(dropped), cut.Format("2006-01-02"), dropped)
	return nil
}
