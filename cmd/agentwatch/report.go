package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/report"
	"github.com/agentwatch/agentwatch/internal/report/reportsvc"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/respctl"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
)

func reportCommand() *cobra.Command {
	var period, out, channel string
	var formats []string
	var record bool
	cmd := &cobra.Command{
		Use:   "report --period 2026-11",
		Short: "Write the period's visibility and compliance report as HTML and PDF",
		Long: `report writes the report of a month (--period 2026-11) or an ISO week (--period 2026-W47),
in UTC: inventory completeness, ownership, zombie APIs, access-policy coverage,
permission violations, anomalies by kind and severity, the false-positive rate, time to
detect and to contain, revocations and restores, and the agents to review, each number
with its definition, and charts. It reads the embedded data dir (embedded.data_dir), or
ClickHouse in the distributed mode when this build connects its visibility source.

The files go to --out (report.out_dir, else the current directory) as
agentwatch-report-PERIOD.html and .pdf, and their SHA-256 into the evidence chain as a
report bundle (--record=false to skip: the chain has one writer, so stop a running demo
first or skip; in the distributed mode the responders alone append to it, and the
command does not record). --slack-channel uploads them to a Slack conversation with
responder.slack's token. Progress goes to stderr, the files and hashes to stdout.
Docs: docs/reports.md.`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if period == "" {
				return cli.Usagef("--period is required: a month (2026-11) or an ISO week (2026-W47)")
			}
			p, err := report.ParsePeriod(period)
			if err != nil {
				return cli.Usagef("--period: %v", err)
			}
			if channel != "" {
				if err := report.ValidChannel(channel); err != nil {
					return cli.Usagef("--slack-channel: %v", err)
				}
			}
			cfg, err := cli.LoadConfig(cmd)
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("format") {
				formats = cfg.Report.Formats
			}
			for _, f := range formats {
				if f != "html" && f != "pdf" {
					return cli.Usagef("--format: %q is not html or pdf", f)
				}
			}
			if out == "" {
				out = cfg.Report.OutDir
			}
			if out == "" {
				out = "."
			}
			return runReport(cmd.Context(), cfg, cli.OperatorLogger(cmd, cfg, "agentwatch"), reportRun{
				period: p, out: out, formats: formats, channel: channel, record: record, recordSet: cmd.Flags().Changed("record"), who: respctl.Operator(),
			}, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&period, "period", "", "month (2026-11) or ISO week (2026-W47), UTC")
	f.StringVar(&out, "out", "", "directory of the files (default report.out_dir, else the current directory)")
	f.StringSliceVar(&formats, "format", []string{"html", "pdf"}, "editions, comma-separated: html, pdf (default report.formats)")
	f.StringVar(&channel, "slack-channel", "", "Slack conversation id (C...) to upload the files to")
	f.BoolVar(&record, "record", true, "record the files' SHA-256 in the evidence chain as a report bundle")
	return cmd
}

type reportRun struct {
	period       report.Period
	out, channel string
	formats      []string
	// record asks for the evidence record; recordSet says --record was
	// given, not defaulted.
	record, recordSet bool
	who               audit.Actor
}

// runReport opens the mode's data and stores and runs the job.
func runReport(ctx context.Context, cfg config.Config, log *slog.Logger, o reportRun, stdout, stderr io.Writer) error {
	start := time.Now()
	progress := func(step string) { fmt.Fprintf(stderr, "[%5.1fs] %s\n", time.Since(start).Seconds(), step) }
	progress("load " + cfg.Embedded.DataDir)
	b, closeFn, err := reportsvc.Builder(ctx, cfg, log, o.period, o.who, nil, stderr)
	if err != nil {
		return err
	}
	defer closeFn()
	b.Progress = progress
	job := &report.Job{Builder: b, Formats: o.formats, OutDir: o.out, Progress: progress}
	if o.record && cfg.Distributed() {
		// The responders order the chain's appends through Kafka; a
		// command appending on its own could fork it.
		if o.recordSet {
			return errors.New("--record: in the distributed mode the evidence chain is appended by the responders only; run without --record")
		}
		fmt.Fprintln(stderr, "not recorded in the evidence chain: in the distributed mode only the responders append to it")
		o.record = false
	}
	if o.record {
		chain, err := evidence.OpenFileChain(filepath.Join(reportsvc.StateDir(cfg), respond.ChainFile))
		if err != nil {
			return err
		}
		defer chain.Close()
		job.Chain, job.EvidenceRoot = chain, filepath.Join(reportsvc.StateDir(cfg), "evidence")
	}
	if o.channel != "" {
		client, err := reportsvc.SlackClient(cfg)
		if err != nil {
			return err
		}
		job.Slack, job.Channel = client, o.channel
	}
	res, err := job.Run(ctx, o.period)
	if err != nil {
		return err
	}
	progress("done")
	for _, w := range res.Files {
		fmt.Fprintf(stdout, "%s  %s\n", w.SHA256, w.Path)
	}
	if res.Bundle != nil {
		fmt.Fprintf(stdout, "recorded in the evidence chain: bundle %s at seq %d (manifest %s)\n", res.Bundle.Manifest.BundleID, res.Bundle.Manifest.Seq, res.Bundle.SHA256)
	}
	if len(res.SlackFiles) > 0 {
		fmt.Fprintf(stdout, "posted to Slack %s: %s\n", o.channel, strings.Join(res.SlackFiles, ", "))
	}
	return nil
}
