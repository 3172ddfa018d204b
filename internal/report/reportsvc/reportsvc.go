// Package reportsvc opens what a report reads in the configured mode: the
// visibility service and its Source (the embedded data dir, or ClickHouse
// when a Source is connected), and Slack. `agentwatch report` and the responder's
// schedule share it, so they write the same report.
package reportsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/report"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/internal/visibility/filesource"
	"github.com/agentwatch/agentwatch/internal/visibility/vissvc"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// StateDir is where the embedded mode's responder keeps its state (the
// demo's layout): the audit trail, the evidence chain and its bundles.
func StateDir(cfg config.Config) string {
	return filepath.Join(cfg.Embedded.DataDir, filesource.ResponderDir)
}

// Builder opens what a report of p reads and returns a Builder on it:
// in the embedded mode the data dir's files (p, the period before it and
// the visibility lookback), in the distributed mode ClickHouse through
// vissvc.NewClickHouseSource (an error wrapping
// vissvc.ErrNoClickHouseSource when the build has none). The questions
// are audited to rec as who; nil rec opens the mode's audit trail (a
// responder passes its own logger: the file is its, and locked).
// progress gets the loading lines. closeFn releases what it opened.
func Builder(ctx context.Context, cfg config.Config, log *slog.Logger, p report.Period, who audit.Actor, rec visibility.Recorder, progress io.Writer) (_ *report.Builder, closeFn func(), _ error) {
	if progress == nil {
		progress = io.Discard
	}
	reg, inv, err := filesource.Fleet(cfg.Embedded.DataDir, cfg.Detector.RegistryFile, cfg.Detector.RoutesFile, cfg.Detector.OpenAPIFile)
	if err != nil {
		return nil, nil, err
	}
	var src visibility.Source
	closeFn = func() {}
	if cfg.Distributed() {
		if vissvc.NewClickHouseSource == nil {
			return nil, nil, vissvc.ErrNoClickHouseSource
		}
		chSrc, closeSrc, err := vissvc.NewClickHouseSource(ctx, cfg, log)
		if err != nil {
			return nil, nil, err
		}
		src, closeFn = chSrc, closeSrc
		if rec == nil {
			st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
			if err != nil {
				closeSrc()
				return nil, nil, err
			}
			rec = audit.NewLogger(chstore.NewAudit(st), log, nil)
			closeFn = func() { st.Close(); closeSrc() }
		}
	} else {
		lookback := visibility.Config{}.WithDefaults().Lookback
		since := p.Previous().Span.From
		if l := time.Now().Add(-lookback); l.Before(since) {
			since = l
		}
		mem, _, err := filesource.Load(ctx, filesource.Options{DataDir: cfg.Embedded.DataDir, Since: since, Progress: progress})
		if err != nil {
			return nil, nil, fmt.Errorf("load %s: %w", cfg.Embedded.DataDir, err)
		}
		src = mem
		if rec == nil {
			if rec, err = vissvc.EmbeddedAudit(cfg, log); err != nil {
				return nil, nil, err
			}
		}
	}
	svc := visibility.New(src, func() *inventory.Registry { return reg }, func() *inventory.Inventory { return inv }, rec, visibility.Config{}, nil)
	return &report.Builder{Questions: svc, Source: src, Who: who}, closeFn, nil
}

// SlackClient is responder.slack's client: its token (or the variable
// token_env names) and API URL.
func SlackClient(cfg config.Config) (*slack.Client, error) {
	sc := cfg.Responder.Slack
	token := sc.Token
	if token == "" && sc.TokenEnv != "" {
		token = os.Getenv(sc.TokenEnv)
	}
	if token == "" {
		return nil, errors.New("posting a report to Slack needs responder.slack.token (or responder.slack.token_env) with the files:write scope")
	}
	var opts []slack.Option
	if sc.APIURL != "" {
		opts = append(opts, slack.OptionAPIURL(strings.TrimSuffix(sc.APIURL, "/")+"/"))
	}
	return slack.New(token, opts...), nil
}

// OutDir is report.out_dir, else DATA_DIR/reports.
func OutDir(cfg config.Config) string {
	if cfg.Report.OutDir != "" {
		return cfg.Report.OutDir
	}
	return filepath.Join(cfg.Embedded.DataDir, "reports")
}
