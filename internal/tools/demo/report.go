package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/report"
	"github.com/agentwatch/agentwatch/internal/report/reportsvc"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
)

// reportSummary is the report the demo wrote at its end.
type reportSummary struct {
	Period string
	Files  []string
	Bundle string
	// Err says why there is none; the report is a view for the reader,
	// so it does not fail the demo.
	Err error
}

// writeReport writes the report of the ISO week holding the middle of the
// simulated span, as `agentwatch report` would, once the responder has
// closed its evidence chain: HTML and PDF under DATA_DIR/reports,
// recorded in the chain (verified again after).
func writeReport(ctx context.Context, cfg config.Config, mid time.Time, log *slog.Logger) reportSummary {
	p := report.PeriodOf(mid, true)
	s := reportSummary{Period: p.Name}
	who := audit.Actor{Kind: audit.ActorCLI, Name: "demo (agentwatch report)"}
	b, closeFn, err := reportsvc.Builder(ctx, cfg, log, p, who, nil, io.Discard)
	if err != nil {
		s.Err = err
		return s
	}
	defer closeFn()
	state := reportsvc.StateDir(cfg)
	chain, err := evidence.OpenFileChain(filepath.Join(state, respond.ChainFile))
	if err != nil {
		s.Err = err
		return s
	}
	defer chain.Close()
	root := filepath.Join(state, "evidence")
	res, err := (&report.Job{Builder: b, OutDir: reportsvc.OutDir(cfg), Chain: chain, EvidenceRoot: root}).Run(ctx, p)
	if err != nil {
		s.Err = err
		return s
	}
	for _, f := range res.Files {
		s.Files = append(s.Files, f.Path)
	}
	s.Bundle = res.Bundle.Manifest.BundleID
	if err := evidence.VerifyChain(ctx, chain, root); err != nil {
		s.Err = fmt.Errorf("the evidence chain does not verify after the report: %w", err)
	}
	return s
}
