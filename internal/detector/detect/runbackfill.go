package detect

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/gateway"
)

// BackfillOptions say which span RunBackfill covers and where its events
// come from.
type BackfillOptions struct {
	// From and To bound the span of event time: From inclusive, To
	// exclusive.
	From, To time.Time
	// Job names the progress record; a run with the same name resumes.
	// Default backfill-FROM-TO, in Unix ms.
	Job string
	// File, if set, is read as raw gateway log lines, parsed with the
	// configured parser, instead of ClickHouse's events table.
	File string
}

// BackfillReport says what RunBackfill did.
type BackfillReport struct {
	BackfillResult
	Job      string
	From, To time.Time
	// Took is the wall time of the backfill proper, after the store and
	// the registry were opened.
	Took time.Duration
}

// String is the one-line summary cmd/detector prints.
func (r BackfillReport) String() string {
	return fmt.Sprintf("backfill %s: %s .. %s (resumed from %s): %d events in %s (%.0f events/s); %d agent windows, %d agents, anomalies %v",
		r.Job, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), time.UnixMilli(r.ResumedFromMs).UTC().Format(time.RFC3339),
		r.Events, r.Took.Round(time.Millisecond), float64(r.Events)/r.Took.Seconds(), r.Stats.Windows, r.Stats.Agents, r.Stats.Anomalies)
}

// RunBackfill is `detector backfill`: it builds the live detector's
// processor from cfg and runs a Backfill of o's span against cfg's
// ClickHouse, filing each agent under the events-topic partition ingest
// keys it to. progress gets a progress bar when it is a terminal;
// otherwise progress is logged every 5 s. An error leaves the saved
// progress behind, so the same call again resumes.
func RunBackfill(ctx context.Context, cfg config.Config, o BackfillOptions, log *slog.Logger, progress io.Writer) (BackfillReport, error) {
	if o.Job == "" {
		o.Job = fmt.Sprintf("backfill-%d-%d", o.From.UnixMilli(), o.To.UnixMilli())
	}
	rep := BackfillReport{Job: o.Job, From: o.From, To: o.To}
	st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
	if err != nil {
		return rep, err
	}
	defer st.Close()
	w, err := NewWatcher(cfg, log, nil)
	if err != nil {
		return rep, err
	}
	b := &Backfill{
		Proc:  NewProcessor(SettingsFrom(cfg), WatcherCatalog{W: w}, wallMs),
		Store: st, Events: st.EventsBetween,
		PartitionOf: func(ev *event.Event) int32 { return kafka.PartitionFor(ev.PartitionKey(), cfg.Kafka.Partitions) },
		Partitions:  cfg.Kafka.Partitions, Group: cfg.Kafka.DetectorGroup, Topic: cfg.Kafka.EventsTopic, Job: o.Job,
		FromMs: o.From.UnixMilli(), ToMs: o.To.UnixMilli(), Log: log,
	}
	if o.File != "" {
		events, err := fileEvents(cfg, o.File, log)
		if err != nil {
			return rep, err
		}
		b.Events, b.Chunk = events, o.To.Sub(o.From)
	}
	p := newProgress(progress, log, b.FromMs, b.ToMs)
	b.Progress = p
	started := time.Now()
	res, err := b.Do(ctx)
	p.Finish()
	if err != nil {
		return rep, fmt.Errorf("backfill %s: %w (run the same command again to resume)", o.Job, err)
	}
	rep.BackfillResult, rep.Took = res, time.Since(started)
	return rep, nil
}

// fileEvents parses a raw log file with the configured parser. Bad lines
// are counted and skipped, as ingest would dead-letter them.
func fileEvents(cfg config.Config, path string, log *slog.Logger) (func(context.Context, int64, int64, func(*event.Event) error) error, error) {
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
			log.Warn("backfill file: lines skipped as unparseable", "file", path, "lines", bad)
		}
		return sc.Err()
	}, nil
}
