package visbench

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/report"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// benchActor is who the benchmark's questions are asked as: every
// question goes to the audit trail, as in production.
var benchActor = audit.Actor{Kind: audit.ActorCLI, Name: "bench"}

// service builds the visibility.Service on o.Database the way the
// services do: the ClickHouse Source, the simulated fleet's registry and
// route inventory, the audit trail in ClickHouse, and a clock stopped at
// now.
func service(st *chstore.Store, src visibility.Source, o Options, now time.Time, log *slog.Logger) (*visibility.Service, *inventory.Registry, error) {
	s, err := sim.New(o.Simulation())
	if err != nil {
		return nil, nil, fmt.Errorf("visbench: %w", err)
	}
	reg, inv, err := s.Catalog()
	if err != nil {
		return nil, nil, fmt.Errorf("visbench: %w", err)
	}
	rec := audit.NewLogger(chstore.NewAudit(st), log, nil)
	svc := visibility.New(src, func() *inventory.Registry { return reg }, func() *inventory.Inventory { return inv },
		rec, visibility.Config{}, func() time.Time { return now })
	return svc, reg, nil
}

// serviceQuestions time the visibility.Service's answers: what the CLI,
// the HTTP API and the console ask. svc's clock is o.now(); monthly's
// is the morning after the month, when the scheduled report runs.
func serviceQuestions(svc, monthly *visibility.Service, src visibility.Source, reg *inventory.Registry, o Options) []Question {
	from, to := o.Span()
	now := o.now()
	// The profile's span is the one the CLI and the HTTP API ask when no
	// from or to is given (visibility.ParseSpan): the last 30 days, to
	// the end of today.
	month := visibility.Span{From: now.AddDate(0, 0, -30), To: now.UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)}
	ids := reg.IDs()
	agent := func(run int) string { return ids[(run*97+13)%len(ids)] }
	tags := []string{"sensitive", "deprecated"}
	return []Question{{
		Name:   "access: one day, one tag (sensitive / deprecated)",
		Target: time.Second,
		Ask: func(ctx context.Context, run int) (int, error) {
			d := from.AddDate(0, 0, run%o.Days)
			ans, err := svc.Access(ctx, benchActor, visibility.AccessRequest{Span: visibility.Span{From: d, To: d.AddDate(0, 0, 1)}, Tag: tags[run%2]})
			return len(ans.Rows), err
		},
	}, {
		Name:   "one agent's profile and timeline, the last 30 days (the default span)",
		Target: 500 * time.Millisecond,
		Ask: func(ctx context.Context, run int) (int, error) {
			p, err := svc.Agent(ctx, benchActor, agent(run), month)
			return len(p.Routes) + len(p.Timeline), err
		},
	}, {
		Name:   "findings (90-day lookback)",
		Target: 2 * time.Second,
		Ask: func(ctx context.Context, _ int) (int, error) {
			fs, err := svc.Findings(ctx, benchActor)
			return len(fs), err
		},
	}, {
		Name:   "monthly report " + from.Format("2006-01") + ": built, charts, HTML and PDF",
		Target: 30 * time.Second,
		Ask: func(ctx context.Context, _ int) (int, error) {
			p, err := report.ParsePeriod(from.Format("2006-01"))
			if err != nil {
				return 0, err
			}
			r, err := (&report.Builder{Questions: monthly, Source: src, Who: benchActor, Now: func() time.Time { return to.Add(6 * time.Hour) }}).Build(ctx, p)
			if err != nil {
				return 0, err
			}
			charts, err := report.Charts(r)
			if err != nil {
				return 0, err
			}
			html, err := report.HTML(r, charts)
			if err != nil {
				return 0, err
			}
			pdf, err := report.PDF(r, charts)
			if err != nil {
				return 0, err
			}
			if len(html) == 0 || len(pdf) == 0 {
				return 0, fmt.Errorf("empty report: %d bytes of HTML, %d of PDF", len(html), len(pdf))
			}
			return len(r.Review) + len(r.Violations), nil
		},
	}}
}

// now is the clock of the questions: 18:00 on the last simulated day, as
// when someone asks in the evening. Spans that end now, and the lookback,
// then end in the middle of a day, which the Source answers from the
// events (a day's summary is only whole at its end): the common case in
// production, and the costlier one.
func (o Options) now() time.Time {
	if !o.Now.IsZero() {
		return o.Now.UTC()
	}
	_, to := o.Span()
	return to.Add(-6 * time.Hour)
}
