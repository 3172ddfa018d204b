package main

import (
	"os"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/timeflag"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respctl"
)

func runPlaybook(args []string) error {
	fs := cli.FlagSet("responder run-playbook")
	agent := fs.String("agent", "", "the agent to act on (required)")
	dry := fs.Bool("dry-run", false, "record what would be done; make no outbound call")
	reason := fs.String("reason", "", "why, for the audit record")
	reqID := fs.String("request-id", "", "idempotency key: the same one runs once (default: a new one)")
	api := fs.String("api", "", "the running responder's API base URL (default http://responder.api_addr)")
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	cfg, err := cli.Load(fs, args)
	if err != nil {
		return err
	}
	if name == "" || *agent == "" {
		return cli.Usagef("usage: responder run-playbook NAME --agent ID [--dry-run] [--reason TEXT]")
	}
	log := cli.Logger(os.Stderr, cfg.Log, "responder")
	ctx, stop := cli.SignalContext()
	defer stop()
	return respctl.RunPlaybook(ctx, cfg, log, respctl.RunPlaybookOptions{Playbook: name, AgentID: *agent, DryRun: *dry, Reason: *reason, RequestID: *reqID, API: *api}, os.Stdout)
}

func runRestore(args []string) error {
	fs := cli.FlagSet("responder restore")
	incident := fs.String("incident", "", "the incident whose revocation or quarantine to undo (required)")
	cred := fs.String("credential", "", "the credential id (required; for a quarantined unregistered agent: agent:ID)")
	reason := fs.String("reason", "", "why, for the audit record")
	cfg, err := cli.Load(fs, args)
	if err != nil {
		return err
	}
	if *incident == "" || *cred == "" {
		return cli.Usagef("usage: responder restore --incident ID --credential ID [--reason TEXT]")
	}
	log := cli.Logger(os.Stderr, cfg.Log, "responder")
	ctx, stop := cli.SignalContext()
	defer stop()
	return respctl.Restore(ctx, cfg, log, respctl.RestoreOptions{IncidentID: *incident, CredentialID: *cred, Reason: *reason}, os.Stdout)
}

func runAudit(args []string) error {
	fs := cli.FlagSet("responder audit")
	agent := fs.String("agent", "", "only this agent")
	incident := fs.String("incident", "", "only this incident")
	from := fs.String("from", "", "from this time (RFC 3339 or YYYY-MM-DD), inclusive; default 30 days ago")
	to := fs.String("to", "", "to this time, exclusive; default now")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	limit := fs.Int("limit", audit.DefaultLimit, "at most this many records")
	cfg, err := cli.Load(fs, args)
	if err != nil {
		return err
	}
	f := audit.Filter{AgentID: *agent, IncidentID: *incident, Limit: *limit, FromMs: time.Now().Add(-30 * 24 * time.Hour).UnixMilli()}
	if *from != "" {
		t, err := timeflag.Parse(*from)
		if err != nil {
			return cli.Usagef("--from: %v", err)
		}
		f.FromMs = t.UnixMilli()
	}
	if *to != "" {
		t, err := timeflag.Parse(*to)
		if err != nil {
			return cli.Usagef("--to: %v", err)
		}
		f.ToMs = t.UnixMilli()
	}
	if err := f.Validate(); err != nil {
		return cli.Usagef("%v", err)
	}
	log := cli.Logger(os.Stderr, cfg.Log, "responder")
	ctx, stop := cli.SignalContext()
	defer stop()
	return respctl.Audit(ctx, cfg, log, respctl.AuditOptions{Filter: f, JSON: *asJSON}, os.Stdout)
}

func runVerify(args []string) error {
	fs := cli.FlagSet("responder verify")
	bundle := fs.String("bundle", "", "verify this bundle only (default: every bundle of the chain, and the chain)")
	cfg, err := cli.Load(fs, args)
	if err != nil {
		return err
	}
	log := cli.Logger(os.Stderr, cfg.Log, "responder")
	ctx, stop := cli.SignalContext()
	defer stop()
	return respctl.Verify(ctx, cfg, log, respctl.VerifyOptions{Bundle: *bundle}, os.Stdout)
}

func runIncidents(args []string) error {
	fs := cli.FlagSet("responder incidents")
	one := fs.String("incident", "", "list this incident's anomalies")
	cfg, err := cli.Load(fs, args)
	if err != nil {
		return err
	}
	return respctl.Incidents(cfg, respctl.IncidentsOptions{Incident: *one}, os.Stdout)
}
