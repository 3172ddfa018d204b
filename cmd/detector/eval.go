package main

import (
	"os"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detect"
	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/tools/eval"
	"github.com/agentwatch/agentwatch/pkg/baseline"
)

func runEval(args []string) error {
	if len(args) == 0 {
		return cli.Usagef("eval: say what to evaluate: nab or scenarios")
	}
	switch args[0] {
	case "nab":
		return runEvalNAB(args[1:])
	case "scenarios":
		return runEvalScenarios(args[1:])
	}
	return cli.Usagef("eval: unknown evaluation %q; use nab or scenarios", args[0])
}

func runEvalNAB(args []string) error {
	fs := cli.FlagSet("detector eval nab")
	data := fs.String("data", "../shared/nab", "the NAB corpus: a directory with data/, labels/ and config/")
	out := fs.String("out", "", "write results CSVs and plots here (required)")
	only := fs.StringSlice("only", nil, "score only these files (category/file.csv), for a quick run")
	if _, err := cli.Load(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return cli.Usagef("--out is required")
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	res, err := eval.RunNAB(ctx, eval.NABOptions{
		Data: *data, Out: *out, Only: *only, Params: baseline.DefaultSeriesParams(), Progress: os.Stderr,
	})
	if err != nil {
		return err
	}
	return eval.WriteNABSummary(os.Stdout, res, *out, len(*only) > 0)
}

func runEvalScenarios(args []string) error {
	fs := cli.FlagSet("detector eval scenarios")
	seeds := fs.UintSlice("seed", []uint{1, 2}, "simulator seeds; the first is the one tuned on, the others are held out")
	agents := fs.Int("agents", 200, "registered agents (5 roles)")
	history := fs.Int("history-days", 14, "days of normal traffic before the test days (warm-up)")
	test := fs.Int("test-days", 3, "days with labeled incidents and benign events")
	start := fs.String("start", "2026-10-05", "simulated start (a Monday, YYYY-MM-DD)")
	partitions := fs.Int32("partitions", 4, "events-topic partitions to key agents to")
	falseOut := fs.String("false-alerts", "", "write the false alerts as JSON lines to this file (seed appended to the name)")
	cfg, err := cli.Load(fs, args)
	if err != nil {
		return err
	}
	st, err := time.Parse("2006-01-02", *start)
	if err != nil {
		return cli.Usagef("--start: %v", err)
	}
	if *agents < 10 || *history < 1 || *test < 1 {
		return cli.Usagef("need --agents >= 10, --history-days >= 1 and --test-days >= 1")
	}
	ctx, stop := cli.SignalContext()
	defer stop()
	ss := make([]uint64, len(*seeds))
	for i, seed := range *seeds {
		ss[i] = uint64(seed)
	}
	return eval.RunScenarioSeeds(ctx, eval.ScenarioOptions{
		Agents: *agents, HistoryDays: *history, TestDays: *test, Start: st,
		Partitions: *partitions, Settings: detect.SettingsFrom(cfg), Progress: os.Stderr,
	}, ss, *falseOut, os.Stdout)
}
