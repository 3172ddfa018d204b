package respsvc

import (
	"context"
	"errors"
	"log/slog"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/report"
	"github.com/agentwatch/agentwatch/internal/report/reportsvc"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
)

// reportScheduler is the stage that writes the report of each period on
// report.schedule: on the responder's evidence chain and audit trail,
// posted with its Slack token. nil without a schedule.
func reportScheduler(cfg config.Config, svc *respond.Service, log *slog.Logger) (*report.Scheduler, error) {
	sch, ok, err := config.ParseReportSchedule(cfg.Report.Schedule)
	if err != nil || !ok {
		return nil, err // Validate said so already
	}
	if cfg.Distributed() {
		// Several instances would each write and post it: the schedule
		// waits for a way to pick one.
		return nil, errors.New("the scheduled report runs in the embedded mode only in this build")
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
	return &report.Scheduler{
		Schedule: report.Schedule{Weekly: sch.Weekly, At: sch.At},
		Chain:    svc.Chain,
		Log:      log,
		Prepare: func(ctx context.Context, p report.Period) (*report.Job, func(), error) {
			b, closeFn, err := reportsvc.Builder(ctx, cfg, log, p, who, svc.Audit, nil)
			if err != nil {
				return nil, nil, err
			}
			return &report.Job{Builder: b, Formats: cfg.Report.Formats, OutDir: reportsvc.OutDir(cfg),
				Chain: svc.Chain, EvidenceRoot: svc.Evidence, Slack: up, Channel: cfg.Report.SlackChannel}, closeFn, nil
		},
	}, nil
}
