package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strings"

	"github.com/spf13/pflag"

	"github.com/agentwatch/agentwatch/internal/cli"
	"github.com/agentwatch/agentwatch/internal/config"
	"github.com/agentwatch/agentwatch/internal/ingestbench"
)

func runBench(args []string) error {
	if len(args) == 0 || args[0] != "ingest" {
		return cli.Usagef("usage: agentwatch bench ingest [--records N] [--brokers host:port] [--clickhouse host:port]")
	}
	fs := pflag.NewFlagSet("agentwatch bench ingest", pflag.ContinueOnError)
	records := fs.Int("records", 1_000_000, "raw lines to measure with")
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka brokers, comma-separated")
	ch := fs.String("clickhouse", "127.0.0.1:9000", "ClickHouse native addresses, comma-separated")
	partitions := fs.Int("partitions", 6, "partitions of the scratch topics")
	batch := fs.Int("batch-size", 0, "ingest batch size (default: ingest.batch_size's default)")
	keep := fs.Bool("keep", false, "keep the scratch topics and databases")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args[1:]); err != nil {
		return &cli.UsageError{Err: err}
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	log := cli.Logger(os.Stderr, config.Log{Level: "warn", Format: "text"}, "bench")
	rep, err := ingestbench.Run(ctx, ingestbench.Options{
		Brokers: strings.Split(*brokers, ","), ClickHouse: strings.Split(*ch, ","),
		Records: *records, Partitions: *partitions, BatchSize: *batch, Keep: *keep,
	}, log, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Print(rep.String())
	return nil
}
