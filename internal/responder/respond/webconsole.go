package respond

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentwatch/agentwatch/internal/console"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/clientlimit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// ConsoleDeps are what the web console reads: the mode's visibility
// Source and the fleet the traffic is joined with. The console asks a
// visibility.Service built on them that audits each question on the
// responder's own audit trail. Source nil: console.enabled is refused.
type ConsoleDeps struct {
	Source    visibility.Source
	Registry  func() *inventory.Registry
	Inventory func() *inventory.Inventory
	Config    visibility.Config
	// Metrics, when set, counts and times the console's questions with
	// the API's.
	Metrics *visibility.Metrics
}

// consoleActions takes the console's actions through the code paths of
// the HTTP API: silences through the same store with the same audit
// record, false positives through the API's Verdicts (routed to the
// instance that owns the incident when there are several), and approval
// answers and restores through the Engine, as Slack's buttons and
// `responder restore` do.
type consoleActions struct {
	e        *Engine
	sil      respapi.Silences
	verdicts respapi.Verdicts
	audit    *audit.Logger
	now      func() time.Time
}

var _ console.Actions = consoleActions{}

func (a consoleActions) Silence(ctx context.Context, who audit.Actor, matchers string, d time.Duration, comment string) (string, error) {
	rec := audit.Record{Actor: who, Action: "silence", Why: comment, Result: audit.ResultRefused}
	ms, err := silence.ParseMatchers(matchers)
	if err != nil {
		rec.Detail = err.Error()
		_ = a.audit.Append(ctx, rec)
		return "", fmt.Errorf("%w: %v", respapi.ErrBadRequest, err)
	}
	now := a.now()
	s, err := a.sil.Add(ctx, silence.Silence{Matchers: ms, StartsAt: now, EndsAt: now.Add(d), CreatedBy: who.String(), Comment: comment, Reason: silence.ReasonManual})
	if err != nil {
		rec.Result, rec.Detail = audit.ResultFailed, err.Error()
		_ = a.audit.Append(ctx, rec)
		return "", err
	}
	rec.Result, rec.Detail = audit.ResultOK, fmt.Sprintf("added silence %s: %s until %s", s.ID, silence.FormatMatchers(s.Matchers), s.EndsAt.UTC().Format(time.RFC3339))
	return s.ID, a.audit.Append(ctx, rec)
}

func (a consoleActions) FalsePositive(ctx context.Context, who audit.Actor, incident, anomalyID string) error {
	return a.verdicts.FalsePositive(ctx, incident, anomalyID, who)
}

func (a consoleActions) Answer(ctx context.Context, who audit.Actor, request string, approved bool) error {
	_, err := a.e.Answer(ctx, request, approved, who)
	return err
}

func (a consoleActions) Restore(ctx context.Context, who audit.Actor, incident, why string) error {
	if why == "" {
		why = "restored from the console"
	}
	_, err := a.e.Restore(ctx, incident, who, why)
	return err
}

// buildConsole returns the console's handler mounted at /console, or nil
// when console.enabled is off.
func buildConsole(cfg config.Config, d Deps, s *Service, sil respapi.Silences, verdicts respapi.Verdicts, toks []respapi.Token,
	getenv func(string) string, now func() time.Time, log *slog.Logger, limiter func(endpoint string) *clientlimit.Limiter) (*console.Handler, error) {
	cc := cfg.Console
	if !cc.Enabled {
		return nil, nil
	}
	wc := d.WebConsole
	if wc.Source == nil {
		return nil, fmt.Errorf("console.enabled: this responder has no visibility source for the console, or turn console.enabled off")
	}
	if wc.Registry == nil {
		wc.Registry = inventory.EmptyRegistry
	}
	if wc.Inventory == nil {
		wc.Inventory = inventory.EmptyInventory
	}
	vis := visibility.New(wc.Source, wc.Registry, wc.Inventory, s.Audit, wc.Config, now)
	if wc.Metrics != nil {
		vis.SetMetrics(wc.Metrics)
	}
	trusted, err := cc.ProxyAuth.Prefixes()
	if err != nil {
		return nil, fmt.Errorf("console.proxy_auth.trusted_cidrs: %w", err)
	}
	o := console.Options{
		Visibility: vis, Records: wc.Source, Audit: s.Audit, Tokens: toks, Getenv: getenv,
		Actions: consoleActions{e: s.Engine, sil: sil, verdicts: verdicts, audit: s.Audit, now: now},
		Proxy: console.Proxy{Header: cc.ProxyAuth.Header, EmailHeader: cc.ProxyAuth.EmailHeader, GroupsHeader: cc.ProxyAuth.GroupsHeader,
			Trusted: trusted, Users: cc.ProxyAuth.Users, Groups: cc.ProxyAuth.Groups, DefaultScope: cc.ProxyAuth.DefaultScope},
		ReportsDir: cc.ReportsDir, EvidenceDir: s.Evidence, SessionTTL: cc.SessionTTL, Lookback: cc.Lookback,
		Prefix: "/console", Log: log, Now: now, Limit: limiter("console"),
	}
	if d.Scores != nil {
		o.Scores = d.Scores
	}
	return console.New(o)
}
