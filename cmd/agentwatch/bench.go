package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/tools/detectbench"
	"github.com/agentwatch/agentwatch/internal/tools/ingestbench"
	"github.com/agentwatch/agentwatch/internal/tools/respbench"
)

const benchUsage = `usage: agentwatch bench ingest [--records N] [--brokers host:port] [--clickhouse host:port]
       agentwatch bench detector [--agents N] [--days N] [--brokers host:port] [--clickhouse host:port]
       agentwatch bench responder [--anomalies N] [--rate N] [--brokers host:port] [--clickhouse host:port]`

func runBench(args []string) error {
	if len(args) == 0 {
		return cli.Usagef(benchUsage)
	}
	switch args[0] {
	case "ingest":
		return benchIngest(args)
	case "detector":
		return benchDetector(args)
	case "responder":
		return benchResponder(args)
	}
	return cli.Usagef(benchUsage)
}

// startProfile starts a CPU profile into path ("" for none) and returns
// its stop function.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func benchDetector(args []string) error {
	fs := pflag.NewFlagSet("agentwatch bench detector", pflag.ContinueOnError)
	agents := fs.Int("agents", 100, "simulated agents")
	days := fs.Int("days", 4, "simulated days of history, ending now (default incidents fall in the last two thirds)")
	scale := fs.Float64("rate-scale", 1, "multiplies the simulated traffic")
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka brokers, comma-separated")
	ch := fs.String("clickhouse", "127.0.0.1:9000", "ClickHouse native addresses, comma-separated")
	partitions := fs.Int("partitions", 6, "partitions of the scratch topics")
	idle := fs.Duration("idle-flush", 2*time.Second, "detector.idle_flush: wall time after the last record before open windows are flushed")
	seed := fs.Uint64("seed", 1, "simulator seed")
	keep := fs.Bool("keep", false, "keep the scratch topics and database")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args[1:]); err != nil {
		return &cli.UsageError{Err: err}
	}
	stopProfile, err := startProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	ctx, stop := cli.SignalContext()
	defer stop()
	log := cli.Logger(os.Stderr, config.Log{Level: "warn", Format: "text"}, "bench")
	rep, err := detectbench.Run(ctx, detectbench.Options{
		Brokers: strings.Split(*brokers, ","), ClickHouse: strings.Split(*ch, ","),
		Agents: *agents, Days: *days, RateScale: *scale, Partitions: *partitions, IdleFlush: *idle, Seed: *seed, Keep: *keep,
	}, log, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Print(rep.String())
	return nil
}

func benchIngest(args []string) error {
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
	stopProfile, err := startProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
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

func benchResponder(args []string) error {
	fs := pflag.NewFlagSet("agentwatch bench responder", pflag.ContinueOnError)
	anomalies := fs.Int("anomalies", 500, "anomalies to write, each for its own agent and credential")
	rate := fs.Float64("rate", 50, "anomalies written per second (steady, one at a time)")
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka brokers, comma-separated")
	ch := fs.String("clickhouse", "127.0.0.1:9000", "ClickHouse native addresses, comma-separated")
	partitions := fs.Int("partitions", 6, "partitions of the scratch anomalies topic")
	wait := fs.Duration("wait", 2*time.Minute, "how long after the last write to wait for the last revocation and alert")
	keep := fs.Bool("keep", false, "keep the scratch topic, database and responder state")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args[1:]); err != nil {
		return &cli.UsageError{Err: err}
	}
	stopProfile, err := startProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()
	ctx, stop := cli.SignalContext()
	defer stop()
	log := cli.Logger(os.Stderr, config.Log{Level: "warn", Format: "text"}, "bench")
	rep, err := respbench.Run(ctx, respbench.Options{
		Brokers: strings.Split(*brokers, ","), ClickHouse: strings.Split(*ch, ","),
		Anomalies: *anomalies, Rate: *rate, Partitions: *partitions, Wait: *wait, Keep: *keep,
	}, log, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Print(rep.String())
	return nil
}
