package respsvc

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/report"
	"github.com/agentwatch/agentwatch/internal/report/reportsvc"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
)

// reportScheduler is the stage that writes the report of each period on
// report.schedule: on the responder's evidence chain and audit trail,
// posted with its Slack token. nil without a schedule.
//
// In the distributed mode every instance runs it, and the period's lease
// in ClickHouse (chstore.Store.TakeLease, owner instance) picks the one
// that writes and posts; the chain it records in and asks whether a
// period is done is the instances' shared one (svc.Chain: sequenced by
// the global table, stored in ClickHouse's evidence_chain).
func (r *Responder) reportScheduler(ctx context.Context, cfg config.Config, svc *respond.Service, instance string, log *slog.Logger, reg prometheus.Registerer) (*report.Scheduler, error) {
	sch, ok, err := config.ParseReportSchedule(cfg.Report.Schedule)
	if err != nil || !ok {
		return nil, err // Validate said so already
	}
	log = log.With("component", "report")
	var up report.Uploader
	if cfg.Report.SlackChannel != "" {
		client, err := reportsvc.SlackClient(cfg)
		if err != nil {
			return nil, err
		}
		up = client
	}
	who := audit.Actor{Kind: audit.ActorAutomatic}
	s := &report.Scheduler{
		Schedule: report.Schedule{Weekly: sch.Weekly, At: sch.At},
		Chain:    svc.Chain,
		Log:      log,
		Metrics:  report.NewMetrics(reg),
		Prepare: func(ctx context.Context, p report.Period) (*report.Job, func(), error) {
			b, closeFn, err := reportsvc.Builder(ctx, cfg, log, p, who, svc.Audit, nil)
			if err != nil {
				return nil, nil, err
			}
			return &report.Job{Builder: b, Formats: cfg.Report.Formats, OutDir: reportsvc.OutDir(cfg),
				Chain: svc.Chain, EvidenceRoot: svc.Evidence, Slack: up, Channel: cfg.Report.SlackChannel}, closeFn, nil
		},
	}
	if !cfg.Distributed() {
		return s, nil
	}
	if _, ok := svc.Chain.(*evidence.SequencedChain); !ok {
		// A chain the instances do not order together would fork when
		// two of them record (a lease expiring mid-run): refuse.
		return nil, errors.New("the distributed mode's scheduled report records in the chain the global table orders; this responder has none")
	}
	st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
	if err != nil {
		return nil, err
	}
	r.closers = append(r.closers, st.Close)
	s.Lease, s.Owner = st, instance
	return s, nil
}
