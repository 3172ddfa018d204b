package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/agentwatch/agentwatch/internal/detector/detect"
	"github.com/agentwatch/agentwatch/internal/ingest"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/gateway"
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
	if *job == "" {
		*job = fmt.Sprintf("backfill-%d-%d", fromT.UnixMilli(), toT.UnixMilli())
	}
	log := cli.Logger(os.Stderr, cfg.Log, "detector")
	ctx, stop := cli.SignalContext()
	defer stop()

	st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
	if err != nil {
		return err
	}
	defer st.Close()
	w, err := detect.NewWatcher(cfg, log, nil)
	if err != nil {
		return err
	}
	b := &detect.Backfill{
		Proc:  detect.NewProcessor(detect.SettingsFrom(cfg), detect.WatcherCatalog{W: w}, func() int64 { return time.Now().UnixMilli() }),
		Store: st, Events: st.EventsBetween,
		PartitionOf: func(ev *event.Event) int32 { return kafka.PartitionFor(ingest.Key(ev), cfg.Kafka.Partitions) },
		Partitions:  cfg.Kafka.Partitions, Group: cfg.Kafka.DetectorGroup, Topic: cfg.Kafka.EventsTopic, Job: *job,
		FromMs: fromT.UnixMilli(), ToMs: toT.UnixMilli(), Log: log,
	}
	if *file != "" {
		events, err := fileEvents(cfg, *file)
		if err != nil {
			return err
		}
		b.Events, b.Chunk = events, toT.Sub(fromT)
	}
	b.Progress = newProgress(os.Stderr, log, b.FromMs, b.ToMs)
	started := time.Now()
	res, err := b.Do(ctx)
	if p, ok := b.Progress.(interface{ Finish() }); ok {
		p.Finish()
	}
	if err != nil {
		return fmt.Errorf("backfill %s: %w (run the same command again to resume)", *job, err)
	}
	took := time.Since(started)
	fmt.Fprintf(os.Stdout, "backfill %s: %s .. %s (resumed from %s): %d events in %s (%.0f events/s); %d agent windows, %d agents, anomalies %v\n",
		*job, fromT.Format(time.RFC3339), toT.Format(time.RFC3339), time.UnixMilli(res.ResumedFromMs).UTC().Format(time.RFC3339),
		res.Events, took.Round(time.Millisecond), float64(res.Events)/took.Seconds(), res.Stats.Windows, b.Proc.Agents(), res.Stats.Anomalies)
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

// fileEvents parses a raw log file with the configured parser. Bad lines
// are counted and skipped, as ingest would dead-letter them.
func fileEvents(cfg config.Config, path string) (func(context.Context, int64, int64, func(*event.Event) error) error, error) {
	rt, err := cfg.RouteNormalizer()
	if err != nil {
		return nil, err
	}
	p, err := gateway.NewParser(cfg.ParserOptions(rt))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("--file: %w", err)
	}
	return func(ctx context.Context, fromMs, toMs int64, fn func(*event.Event) error) error {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), cfg.Ingest.MaxLineBytes+1)
		var line int64
		bad := 0
		for sc.Scan() {
			line++
			// "Now" for a file is the end of the span, so max-age and
			// max-future checks judge lines against the backfilled period.
			ev, err := p.Parse(sc.Bytes(), gateway.Source{Topic: path, Partition: 0, Offset: line}, time.UnixMilli(toMs))
			if err != nil {
				bad++
				continue
			}
			if ev.EventTimeMs < fromMs || ev.EventTimeMs >= toMs {
				continue
			}
			if err := fn(&ev); err != nil {
				return err
			}
		}
		if bad > 0 {
			slog.Default().Warn("backfill file: lines skipped as unparseable", "file", path, "lines", bad)
		}
		return sc.Err()
	}, nil
}

// progress shows a bar with rate and ETA on a terminal, and log lines
// every 5 s otherwise.
type progress struct {
	bar      *progressbar.ProgressBar
	log      *slog.Logger
	from, to int64
	started  time.Time
	lastLog  time.Time
}

func newProgress(w io.Writer, log *slog.Logger, from, to int64) detect.Progress {
	p := &progress{log: log, from: from, to: to, started: time.Now(), lastLog: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64((to-from)/60_000,
			progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("backfill (minutes of event time)"),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionFullWidth())
	}
	return p
}

func (p *progress) Update(events uint64, through int64) {
	done := float64(through-p.from) / float64(p.to-p.from)
	rate := float64(events) / time.Since(p.started).Seconds()
	if p.bar != nil {
		_ = p.bar.Set64((through - p.from) / 60_000)
		p.bar.Describe(fmt.Sprintf("backfill: %d events, %.0f/s", events, rate))
		return
	}
	if time.Since(p.lastLog) < 5*time.Second && done < 1 {
		return
	}
	p.lastLog = time.Now()
	eta := time.Duration(0)
	if done > 0 {
		eta = time.Duration(float64(time.Since(p.started)) * (1 - done) / done)
	}
	p.log.Info("backfill progress", "done_pct", fmt.Sprintf("%.1f", 100*done), "through", time.UnixMilli(through).UTC(),
		"events", events, "events_per_s", int(rate), "eta", eta.Round(time.Second))
}

func (p *progress) Finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(os.Stderr)
	}
}
