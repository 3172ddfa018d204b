// Package reportsvc opens what a report reads in the configured mode: the
// visibility service and its Source on the embedded data dir, the
// evidence chain and Slack. `agentwatch report` and the responder's
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

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/report"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/internal/visibility/filesource"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// ErrDistributed: this build reads the embedded data dir only.
var ErrDistributed = errors.New("reports read the embedded data dir in this build; the report on ClickHouse is not connected yet (unset kafka.brokers)")

// StateDir is where the embedded mode's responder keeps its state (the
// demo's layout): the audit trail, the evidence chain and its bundles.
func StateDir(cfg config.Config) string {
	return filepath.Join(cfg.Embedded.DataDir, filesource.ResponderDir)
}

// Builder loads the data a report of p needs (p, the period before it,
// and the visibility lookback) from the embedded data dir and returns a
// Builder on the visibility service over it. Its questions are audited to
// rec as who; nil rec opens the embedded audit trail (a responder passes
// its own logger: the file is its, and locked). progress gets the loading
// lines.
func Builder(ctx context.Context, cfg config.Config, log *slog.Logger, p report.Period, who audit.Actor, rec visibility.Recorder, progress io.Writer) (*report.Builder, error) {
	if cfg.Distributed() {
		return nil, ErrDistributed
	}
	if progress == nil {
		progress = io.Discard
	}
	lookback := visibility.Config{}.WithDefaults().Lookback
	since := p.Previous().Span.From
	if l := time.Now().Add(-lookback); l.Before(since) {
		since = l
	}
	src, _, err := filesource.Load(ctx, filesource.Options{DataDir: cfg.Embedded.DataDir, Since: since, Progress: progress})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", cfg.Embedded.DataDir, err)
	}
	reg, inv, err := filesource.Fleet(cfg.Embedded.DataDir, cfg.Detector.RegistryFile, cfg.Detector.RoutesFile, cfg.Detector.OpenAPIFile)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		state := StateDir(cfg)
		if err := os.MkdirAll(state, 0o700); err != nil {
			return nil, fmt.Errorf("audit trail: %w", err)
		}
		afs, err := audit.OpenFileStore(filepath.Join(state, respond.AuditFile))
		if err != nil {
			return nil, fmt.Errorf("audit trail: %w", err)
		}
		rec = audit.NewLogger(afs, log, nil)
	}
	svc := visibility.New(src, func() *inventory.Registry { return reg }, func() *inventory.Inventory { return inv }, rec, visibility.Config{}, nil)
	return &report.Builder{Questions: svc, Source: src, Who: who}, nil
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
