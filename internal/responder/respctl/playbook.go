package respctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// RunPlaybookOptions say which playbook to run on which agent.
type RunPlaybookOptions struct {
	Playbook string
	AgentID  string
	// DryRun records what would be done and makes no outbound call.
	DryRun bool
	// Reason is why, for the audit record.
	Reason string
	// RequestID is the idempotency key: the same one runs once. "" means
	// a new one.
	RequestID string
	// API is the running responder's API base URL; "" means
	// http://responder.api_addr.
	API string
}

// RunPlaybook runs a playbook on an agent by hand: in a responder built in
// this process on the state directory, or through the running
// responder's API when one holds it. It writes the steps and their
// results (or the API's answer) to w.
func RunPlaybook(ctx context.Context, cfg config.Config, log *slog.Logger, o RunPlaybookOptions, w io.Writer) error {
	if o.RequestID == "" {
		o.RequestID = fmt.Sprintf("cli-%d", time.Now().UnixNano())
	}
	svc, closeFn, inUse, err := localResponder(ctx, cfg, log, w)
	if inUse {
		api, err := newAPIClient(cfg, o.API, fmt.Sprintf("playbook %q allowed", o.Playbook))
		if err != nil {
			return err
		}
		b, err := api.call(ctx, http.MethodPost, "/v1/playbooks/"+o.Playbook+"/run",
			map[string]any{"agent_id": o.AgentID, "dry_run": o.DryRun, "reason": o.Reason, "request_id": o.RequestID})
		if err != nil {
			return err
		}
		var out bytes.Buffer
		_ = json.Indent(&out, b, "", "  ")
		fmt.Fprintln(w, out.String())
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
		Manual: playbooks.Manual{Playbook: o.Playbook, AgentID: o.AgentID, Key: "cli:" + o.RequestID, DryRun: o.DryRun},
		Actor:  Operator(), Reason: o.Reason, RequestID: o.RequestID,
	})
	rcancel()
	cancel()
	<-done
	if err != nil {
		return err
	}
	printRun(w, res.Decision, res.Steps, res.Duplicate)
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

// RestoreOptions name the revocation or quarantine to undo.
type RestoreOptions struct {
	IncidentID string
	// CredentialID is the credential; for a quarantined unregistered
	// agent, agent:ID.
	CredentialID string
	// Reason is why, for the audit record.
	Reason string
}

// Restore undoes an incident's revocation or quarantine of a credential
// through every configured adapter that recorded one, auditing each, and
// writes a line per adapter to w. It works beside a running responder:
// the ledger and deny-list are safe across processes.
func Restore(ctx context.Context, cfg config.Config, log *slog.Logger, o RestoreOptions, w io.Writer) error {
	// Open, defer the close, work: the shape of every respctl command (Audit, Verify);
	// what each opens and does differs, so there is nothing to share.
	al, closeAudit, err := respsvc.OpenAudit(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeAudit()
	var guards map[string]*revoke.Guard
	if cfg.Distributed() {
		// The shared ledger: the restore is seen by every running
		// instance, which stops counting the incident as revoked.
		g, err := openGlobal(ctx, cfg)
		if err != nil {
			return err
		}
		defer g.Close()
		guards, err = respond.GlobalGuards(cfg, nil, log, g.Rules)
		if err != nil {
			return err
		}
	} else if guards, _, err = respond.Guards(cfg, nil, log); err != nil {
		return err
	}
	restored := 0
	names := make([]string, 0, len(guards))
	for n := range guards {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, inc := range []string{o.IncidentID, o.IncidentID + "/quarantine"} {
			t := revoke.Target{CredentialID: o.CredentialID, IncidentID: inc, Origin: revoke.Manual}
			res, err := guards[n].Restore(ctx, t)
			if errors.Is(err, revoke.ErrNoRevocation) {
				continue
			}
			rec := audit.Record{Actor: Operator(), Action: "restore", IncidentID: o.IncidentID, CredentialID: o.CredentialID, Why: o.Reason, Result: audit.ResultOK,
				Detail: fmt.Sprintf("%s via %s: %s", res.Status, n, res.Detail)}
			if err != nil {
				rec.Result, rec.Detail = audit.ResultFailed, err.Error()
			}
			if aerr := al.Append(ctx, rec); aerr != nil {
				return errors.Join(err, aerr)
			}
			if err != nil {
				return fmt.Errorf("restore %s through %s: %w", o.CredentialID, n, err)
			}
			fmt.Fprintf(w, "%s: %s (%s)\n", n, res.Status, audit.TerminalSafe(res.Detail, 200))
			restored++
		}
	}
	if restored == 0 {
		return fmt.Errorf("no revocation or quarantine of credential %s is recorded for incident %s", audit.TerminalSafe(o.CredentialID, 128), audit.TerminalSafe(o.IncidentID, 128))
	}
	return nil
}

// FalsePositiveOptions name the anomaly of an incident to mark.
type FalsePositiveOptions struct {
	IncidentID string
	AnomalyID  string
	// API is the running responder's API base URL; "" means
	// http://responder.api_addr.
	API string
}

// FalsePositive marks an anomaly of an incident a false positive, as the
// Slack button does: a silence of the pattern, the verdict to the
// detector, an audit record. It writes one line to w.
func FalsePositive(ctx context.Context, cfg config.Config, log *slog.Logger, o FalsePositiveOptions, w io.Writer) error {
	svc, closeFn, inUse, err := localResponder(ctx, cfg, log, w)
	if inUse {
		api, err := newAPIClient(cfg, o.API, "can_silence")
		if err != nil {
			return err
		}
		if _, err := api.call(ctx, http.MethodPost, "/v1/incidents/"+o.IncidentID+"/false-positive", map[string]string{"anomaly_id": o.AnomalyID}); err != nil {
			return err
		}
		fmt.Fprintf(w, "anomaly %s of incident %s marked a false positive\n", audit.TerminalSafe(o.AnomalyID, 128), audit.TerminalSafe(o.IncidentID, 128))
		return nil
	}
	if err != nil {
		return err
	}
	defer closeFn()
	if err := svc.Engine.FalsePositive(ctx, o.IncidentID, o.AnomalyID, Operator()); err != nil {
		return err
	}
	fmt.Fprintf(w, "anomaly %s of incident %s marked a false positive: the pattern is silenced for %s and the verdict recorded\n",
		audit.TerminalSafe(o.AnomalyID, 128), audit.TerminalSafe(o.IncidentID, 128), cfg.Responder.FalsePositiveSuppress)
	return nil
}
