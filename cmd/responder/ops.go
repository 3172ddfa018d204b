package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/timeflag"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

func operator() audit.Actor {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return audit.Actor{Kind: audit.ActorCLI, Name: name}
}

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
	if *reqID == "" {
		*reqID = fmt.Sprintf("cli-%d", time.Now().UnixNano())
	}
	log := cli.Logger(os.Stderr, cfg.Log, "responder")
	ctx, stop := cli.SignalContext()
	defer stop()
	svc, closeFn, inUse, err := localResponder(ctx, cfg, log)
	if inUse {
		api, err := newAPIClient(cfg, *api, fmt.Sprintf("playbook %q allowed", name))
		if err != nil {
			return err
		}
		b, err := api.call(ctx, http.MethodPost, "/v1/playbooks/"+name+"/run",
			map[string]any{"agent_id": *agent, "dry_run": *dry, "reason": *reason, "request_id": *reqID})
		if err != nil {
			return err
		}
		var out bytes.Buffer
		_ = json.Indent(&out, b, "", "  ")
		fmt.Println(out.String())
		return nil
	}
	if err != nil {
		return err
	}
	defer closeFn()
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(wctx) }()
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
	res, err := svc.Engine.Run(rctx, respapi.Request{
		Manual: playbooks.Manual{Playbook: name, AgentID: *agent, Key: "cli:" + *reqID, DryRun: *dry},
		Actor:  operator(), Reason: *reason, RequestID: *reqID,
	})
	rcancel()
	cancel()
	<-done
	if err != nil {
		return err
	}
	printRun(os.Stdout, res.Decision, res.Steps, res.Duplicate)
	return nil
}

func printRun(w io.Writer, d playbooks.Decision, steps []respapi.StepResult, dup bool) {
	fmt.Fprintf(w, "playbook %s for agent %s: incident %s", d.Playbook, audit.TerminalSafe(d.Target.AgentID, 128), d.ID)
	if dup {
		fmt.Fprint(w, " (this request ran before: nothing ran now)")
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tKIND\tRESULT\tDETAIL")
	for i, st := range d.Steps {
		r := respapi.StepResult{Status: "pending"}
		if i < len(steps) {
			r = steps[i]
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", i, st.Kind(), r.Status, audit.TerminalSafe(r.Detail, 200))
	}
	tw.Flush()
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
	al, closeAudit, err := respsvc.OpenAudit(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeAudit()
	guards, _, err := respond.Guards(cfg, nil, log)
	if err != nil {
		return err
	}
	restored := 0
	names := make([]string, 0, len(guards))
	for n := range guards {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, inc := range []string{*incident, *incident + "/quarantine"} {
			t := revoke.Target{CredentialID: *cred, IncidentID: inc, Origin: revoke.Manual}
			res, err := guards[n].Restore(ctx, t)
			if errors.Is(err, revoke.ErrNoRevocation) {
				continue
			}
			rec := audit.Record{Actor: operator(), Action: "restore", IncidentID: *incident, CredentialID: *cred, Why: *reason, Result: audit.ResultOK,
				Detail: fmt.Sprintf("%s via %s: %s", res.Status, n, res.Detail)}
			if err != nil {
				rec.Result, rec.Detail = audit.ResultFailed, err.Error()
			}
			if aerr := al.Append(ctx, rec); aerr != nil {
				return errors.Join(err, aerr)
			}
			if err != nil {
				return fmt.Errorf("restore %s through %s: %w", *cred, n, err)
			}
			fmt.Printf("%s: %s (%s)\n", n, res.Status, audit.TerminalSafe(res.Detail, 200))
			restored++
		}
	}
	if restored == 0 {
		return fmt.Errorf("no revocation or quarantine of credential %s is recorded for incident %s", audit.TerminalSafe(*cred, 128), audit.TerminalSafe(*incident, 128))
	}
	return nil
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
	al, closeAudit, err := respsvc.OpenAudit(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeAudit()
	recs, err := al.Query(ctx, f)
	if err != nil {
		return err
	}
	// Reading the audit trail is itself audited: who looked at what.
	q := audit.Record{Actor: operator(), Action: audit.ActionAuditQuery, AgentID: *agent, IncidentID: *incident, Result: audit.ResultOK,
		Detail: fmt.Sprintf("%d records", len(recs))}
	if err := al.Append(ctx, q); err != nil {
		return err
	}
	if *asJSON {
		return audit.WriteJSON(os.Stdout, recs)
	}
	return audit.WriteTable(os.Stdout, recs, audit.TableOptions{})
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
	deps, closeStores, err := respsvc.Stores(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeStores()
	chain := deps.Chain
	if chain == nil {
		fc, err := evidence.OpenFileChain(filepath.Join(cfg.Responder.StateDir, respond.ChainFile))
		if err != nil {
			return err
		}
		chain = fc
	}
	root := cfg.Responder.EvidenceRoot()
	if *bundle != "" {
		if err := evidence.Verify(ctx, chain, root, *bundle); err != nil {
			return fmt.Errorf("bundle %s does NOT verify: %w", audit.TerminalSafe(*bundle, 128), err)
		}
		fmt.Printf("bundle %s verifies: every file matches its manifest, and the manifest its chain record\n", *bundle)
		return nil
	}
	n := 0
	if err := chain.Records(ctx, func(evidence.Record) error { n++; return nil }); err != nil {
		return err
	}
	if err := evidence.VerifyChain(ctx, chain, root); err != nil {
		return fmt.Errorf("evidence chain does NOT verify: %w", err)
	}
	fmt.Printf("evidence chain verifies: %d records, each bundle matches its manifest and each manifest links to the one before\n", n)
	return nil
}

func runIncidents(args []string) error {
	fs := cli.FlagSet("responder incidents")
	one := fs.String("incident", "", "list this incident's anomalies")
	cfg, err := cli.Load(fs, args)
	if err != nil {
		return err
	}
	ins, err := respond.ReadIncidents(cfg.Responder.StateDir)
	if err != nil {
		return err
	}
	if *one != "" {
		for _, in := range ins {
			if in.ID != *one {
				continue
			}
			tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ANOMALY\tKIND\tSEVERITY\tSCORE\tWINDOW (UTC)\tSUMMARY")
			for _, a := range in.Anomalies {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\t%s\n", audit.TerminalSafe(a.ID, 64), audit.TerminalSafe(a.Kind, 32), audit.TerminalSafe(a.Severity, 16), a.Score,
					time.UnixMilli(a.WindowStartMs).UTC().Format("2006-01-02 15:04"), audit.TerminalSafe(a.Summary, 100))
			}
			if in.Count > len(in.Anomalies) {
				fmt.Fprintf(tw, "… and %d more not kept\n", in.Count-len(in.Anomalies))
			}
			return tw.Flush()
		}
		return fmt.Errorf("no incident %s in %s", audit.TerminalSafe(*one, 128), cfg.Responder.StateDir)
	}
	sort.Slice(ins, func(i, j int) bool { return ins[i].OpenedMs < ins[j].OpenedMs })
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "INCIDENT\tAGENT\tOPENED (UTC)\tANOMALIES\tEVIDENCE\tREVOKED")
	for _, in := range ins {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", in.ID, audit.TerminalSafe(in.AgentID, 64), time.UnixMilli(in.OpenedMs).UTC().Format("2006-01-02 15:04:05"),
			in.Count, strings.Join(in.Snapshots, ","), audit.TerminalSafe(strings.Join(in.Revoked, ","), 200))
	}
	return tw.Flush()
}
