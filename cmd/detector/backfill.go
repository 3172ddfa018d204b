package main

import (
	"fmt"
	"os"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detect"
	"github.com/agentwatch/agentwatch/internal/platform/cli"
)

func runBackfill(args []string) error {
	fs := cli.FlagSet("detector backfill")
	from := fs.String("from", "", "start of the span (RFC 3339 or YYYY-MM-DD), inclusive")
	to := fs.String("to", "", "end of the span (RFC 3339 or YYYY-MM-DD), exclusive; default now")
	job := fs.String("job", "", "progress record name; a run with the same name resumes (default backfill-FROM-TO)")
	file := fs.String("file", "", "read raw gateway log lines from this file instead of ClickHouse's events table")
	cfg, err := cli.Load(fs, args)
	if err != nil {
		return err
	}
	if *from == "" {
		return cli.Usagef("--from is required")
	}
	fromT, err := parseTime(*from)
	if err != nil {
		return cli.Usagef("--from: %v", err)
	}
	toT := time.Now().UTC()
	if *to != "" {
		if toT, err = parseTime(*to); err != nil {
			return cli.Usagef("--to: %v", err)
		}
	}
	if !toT.After(fromT) {
		return cli.Usagef("--to (%s) must be after --from (%s)", toT.Format(time.RFC3339), fromT.Format(time.RFC3339))
	}
	log := cli.Logger(os.Stderr, cfg.Log, "detector")
	ctx, stop := cli.SignalContext()
	defer stop()
	rep, err := detect.RunBackfill(ctx, cfg, detect.BackfillOptions{From: fromT, To: toT, Job: *job, File: *file}, log, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stdout, rep)
	return nil
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor YYYY-MM-DD", s)
	}
	return t, nil
}
