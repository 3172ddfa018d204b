package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/responder/respctl"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/internal/visibility/filesource"
	"github.com/agentwatch/agentwatch/internal/visibility/tabular"
	"github.com/agentwatch/agentwatch/internal/visibility/vissvc"
)

// progressDays is the number of event day files past which loading the
// embedded data dir reports its progress on stderr.
const progressDays = 7

const timeNote = `
--from and --to are RFC 3339 times or YYYY-MM-DD days; a day alone is that whole UTC
day, so "--from 2026-03-15 --to 2026-03-15" is March 15th. The question is written to
the audit trail (action ask) before it is answered: "responder audit --action ask"
lists them.`

// question is the shared part of the visibility commands: the time range,
// the output format, the service's bounds, and how to ask.
type question struct {
	from, to, output                                    string
	lookbackDays, newDays, dormantDays, unusedGrantDays int
	defSpan                                             time.Duration
	span                                                bool
}

func (q *question) flags(cmd *cobra.Command, withSpan bool, defSpan time.Duration, what string) {
	f := cmd.Flags()
	q.span, q.defSpan = withSpan, defSpan
	if withSpan {
		f.StringVar(&q.from, "from", "", "from this time, inclusive (default: "+what+" before --to)")
		f.StringVar(&q.to, "to", "", "to this time, exclusive; a day alone includes that day (default now)")
	}
	f.StringVarP(&q.output, "output", "o", "table", "output format: table, json or csv")
	f.IntVar(&q.lookbackDays, "lookback-days", int(visibility.DefaultLookback/(24*time.Hour)), "how far back first and last seen, lifecycle and findings look")
	f.IntVar(&q.newDays, "new-days", visibility.DefaultNewDays, "an agent first seen within this many days is new")
	f.IntVar(&q.dormantDays, "dormant-days", visibility.DefaultDormantDays, "an agent without a call for this many days is dormant")
	f.IntVar(&q.unusedGrantDays, "unused-grant-days", visibility.DefaultUnusedGrantDays, "an approved route not called for this many days is an unused grant")
}

// ask opens the service, asks fn, and prints the answer.
func (q *question) ask(cmd *cobra.Command, fn func(ctx context.Context, svc *visibility.Service, span visibility.Span) (any, error)) error {
	format, err := tabular.ParseFormat(q.output)
	if err != nil {
		return cli.Usagef("--output: %v", err)
	}
	vcfg := visibility.Config{Lookback: time.Duration(q.lookbackDays) * 24 * time.Hour, NewDays: q.newDays,
		DormantDays: q.dormantDays, UnusedGrantDays: q.unusedGrantDays}
	if err := vcfg.Validate(); err != nil {
		return cli.Usagef("%v", err)
	}
	now := time.Now().UTC()
	since := now.Add(-vcfg.Lookback)
	var span visibility.Span
	if q.span {
		if span, err = visibility.ParseSpan(q.from, q.to, now, q.defSpan); err != nil {
			return cli.Usagef("%v", err)
		}
		if span.From.Before(since) {
			since = span.From
		}
	}
	cfg, err := cli.LoadConfig(cmd)
	if err != nil {
		return err
	}
	log := cli.OperatorLogger(cmd, cfg, "agentwatch")
	o := vissvc.Options{Since: since, Config: vcfg, Now: func() time.Time { return now }}
	if days, _ := os.ReadDir(filepath.Join(cfg.Embedded.DataDir, filesource.EventsDir)); cli.Verbose(cmd) || len(days) > progressDays {
		o.Progress = cmd.ErrOrStderr()
	}
	svc, closeFn, err := vissvc.Open(cmd.Context(), cfg, log, o)
	if err != nil {
		return err
	}
	defer closeFn()
	ans, err := fn(cmd.Context(), svc, span)
	if errors.Is(err, visibility.ErrInvalid) {
		return cli.Usagef("%v", err)
	}
	if err != nil {
		return err
	}
	return tabular.Write(cmd.OutOrStdout(), format, ans)
}

func inventoryCommand() *cobra.Command {
	var agents, routes, pairs question
	var agentID string
	agentsCmd := &cobra.Command{
		Use:   "agents",
		Short: "Every agent registered or seen: lifecycle, owner, role, first and last seen, usage",
		Long: `agents lists every agent of the registry and every agent seen in the traffic, with its
lifecycle (new, active, dormant, never_seen, shadow), its owner and role from the
registry, its first and last call over the lookback, and its usage over the time range.` + timeNote,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return agents.ask(cmd, func(ctx context.Context, svc *visibility.Service, sp visibility.Span) (any, error) {
				return svc.Agents(ctx, respctl.Operator(), sp)
			})
		},
	}
	agents.flags(agentsCmd, true, 30*24*time.Hour, "30 days")
	routesCmd := &cobra.Command{
		Use:   "routes",
		Short: "Every route documented or called: tags, documented or not, deprecated, callers",
		Long: `routes lists every route of the route inventory (routes file, OpenAPI document) and every
route called in the time range, with its tags, whether it is documented, deprecated (a
zombie when still called) or sensitive, and who called it.` + timeNote,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return routes.ask(cmd, func(ctx context.Context, svc *visibility.Service, sp visibility.Span) (any, error) {
				return svc.Routes(ctx, respctl.Operator(), sp)
			})
		},
	}
	routes.flags(routesCmd, true, 30*24*time.Hour, "30 days")
	pairsCmd := &cobra.Command{
		Use:   "agent-routes",
		Short: "Agent × route: calls, and whether the registry approves the route",
		Long: `agent-routes lists each agent and route called in the time range with whether the
registry approves it ("no list" when the registry gives the agent none), and each
approved route not called (0 calls).` + timeNote,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return pairs.ask(cmd, func(ctx context.Context, svc *visibility.Service, sp visibility.Span) (any, error) {
				return svc.AgentRoutes(ctx, respctl.Operator(), sp, agentID)
			})
		},
	}
	pairs.flags(pairsCmd, true, 30*24*time.Hour, "30 days")
	pairsCmd.Flags().StringVar(&agentID, "agent", "", "only this agent")
	return cli.Group(&cobra.Command{
		Use:   "inventory",
		Short: "The agent and route inventory kept from the traffic, the registry and the route inventory",
	}, agentsCmd, routesCmd, pairsCmd)
}

func findingsCommand() *cobra.Command {
	var q question
	cmd := &cobra.Command{
		Use:   "findings",
		Short: "Least-privilege and lifecycle findings: shadow, unapproved, zombie, expired, unowned, unused, dormant",
		Long: `findings lists what to fix, over the lookback ending now: shadow agents, unapproved
routes called, deprecated (zombie) routes still called, credentials past their renewal
date, agents without an owner, registry entries past their review date, undocumented
routes called, approved routes unused for --unused-grant-days, dormant agents and
registered agents never seen. The question is audited (action ask).`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return q.ask(cmd, func(ctx context.Context, svc *visibility.Service, _ visibility.Span) (any, error) {
				return svc.Findings(ctx, respctl.Operator())
			})
		},
	}
	q.flags(cmd, false, 0, "")
	return cmd
}

func accessCommand() *cobra.Command {
	var q question
	var req visibility.AccessRequest
	cmd := &cobra.Command{
		Use:   "access",
		Short: "Who called the routes with a tag or matching a template, between two times",
		Long: `access answers "who called these routes, when": per agent, its calls, bytes, status
mix, first and last call, the routes it called and sample request ids to look up at the
gateway. --tag selects the routes of the route inventory with that tag (sensitive, pii,
…); --template is a glob over route templates, * matching one segment and ** any
number (/customers/** is every route under /customers). Both may be given; with neither,
every route. Drill down with "agentwatch events".` + timeNote,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return q.ask(cmd, func(ctx context.Context, svc *visibility.Service, sp visibility.Span) (any, error) {
				req.Span = sp
				return svc.Access(ctx, respctl.Operator(), req)
			})
		},
	}
	q.flags(cmd, true, 24*time.Hour, "24 hours")
	f := cmd.Flags()
	f.StringVar(&req.Tag, "tag", "", "routes with this tag in the route inventory, e.g. pii or sensitive")
	f.StringVar(&req.Template, "template", "", "routes matching this template glob, e.g. '/customers/**'")
	f.StringVar(&req.AgentID, "agent", "", "only this agent")
	f.IntVar(&req.Samples, "samples", 0, "request ids per agent (default 5, at most 100)")
	return cmd
}

func agentCommand() *cobra.Command {
	var q question
	cmd := &cobra.Command{
		Use:   "agent ID",
		Short: "One agent: profile, routes used versus approved, timeline, findings",
		Long: `agent shows one agent: its inventory row and registry entry, the routes it used versus
those approved, its timeline (calls per day, anomalies, the responder's actions and the
analysts' verdicts, in time order) and its findings.` + timeNote,
		Args: cli.ExactArgs(1, "the agent ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return q.ask(cmd, func(ctx context.Context, svc *visibility.Service, sp visibility.Span) (any, error) {
				return svc.Agent(ctx, respctl.Operator(), args[0], sp)
			})
		},
	}
	q.flags(cmd, true, 30*24*time.Hour, "30 days")
	return cmd
}

func routeCommand() *cobra.Command {
	var q question
	cmd := &cobra.Command{
		Use:   "route TEMPLATE",
		Short: "One route: its tags, its callers, and its callers per day",
		Long: `route shows one route template (as the ingest writes it, e.g. /customers/{id}): what
the route inventory says of it, who called it with their grants, and its callers per
day.` + timeNote,
		Args: cli.ExactArgs(1, "the route TEMPLATE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return q.ask(cmd, func(ctx context.Context, svc *visibility.Service, sp visibility.Span) (any, error) {
				return svc.Route(ctx, respctl.Operator(), args[0], sp)
			})
		},
	}
	q.flags(cmd, true, 30*24*time.Hour, "30 days")
	return cmd
}

func eventsCommand() *cobra.Command {
	var q question
	var eq visibility.EventQuery
	cmd := &cobra.Command{
		Use:   "events",
		Short: "The events behind an answer, newest first",
		Long: `events lists the events of an agent and/or routes between two times, newest first: the
drill-down of an access answer.` + timeNote,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return q.ask(cmd, func(ctx context.Context, svc *visibility.Service, sp visibility.Span) (any, error) {
				eq.Span = sp
				return svc.Events(ctx, respctl.Operator(), eq)
			})
		},
	}
	q.flags(cmd, true, 24*time.Hour, "24 hours")
	f := cmd.Flags()
	f.StringVar(&eq.AgentID, "agent", "", "only this agent")
	f.StringArrayVar(&eq.Routes, "route", nil, "only this route template (repeat for several)")
	f.IntVar(&eq.Limit, "limit", visibility.DefaultEventLimit, "at most this many events (at most 10000)")
	return cmd
}
