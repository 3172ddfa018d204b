package respond

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// KindManual is the anomaly kind of the alert a manual run posts.
const KindManual = "manual"

// Run implements respapi.Runner: a manual run of a playbook for one agent,
// from the HTTP API or `responder run-playbook`. The same request key runs
// once. It waits until every queued step has ended (or ctx ends); an
// approve step answers needs_approval.
func (e *Engine) Run(ctx context.Context, req respapi.Request) (respapi.Result, error) {
	if req.AgentID == "" {
		return respapi.Result{}, fmt.Errorf("%w: agent is required", respapi.ErrBadRequest)
	}
	if info, ok := e.agentInfo(req.AgentID); ok {
		req.Agent = info
	}
	d, err := playbooks.Plan(e.o.Set, req.Manual)
	if err != nil {
		return respapi.Result{}, err
	}
	res := respapi.Result{Decision: d}
	if len(d.Steps) == 0 {
		return res, nil
	}
	if _, found, err := e.o.Outbox.Get(ctx, d.Steps[0].ID); err != nil {
		return res, err
	} else if found {
		res.Duplicate = true
	}
	why := req.Reason
	if why == "" {
		why = "manual run"
	}
	a := anomaly.Anomaly{V: anomaly.Version, ID: d.ID, AgentID: req.AgentID, Kind: KindManual, Role: d.Target.Role, Owner: d.Target.Owner,
		CredentialID: d.Target.CredentialID, Severity: "high",
		Summary: fmt.Sprintf("Manual run of playbook %s by %s: %s", d.Playbook, req.Actor, why), DetectedMs: e.now().UnixMilli()}
	if !res.Duplicate {
		if err := e.inc.open(d.ID, a, e.now()); err != nil {
			return res, err
		}
		if _, err := e.queueDecision(ctx, d, a, d.ID, req.Actor, why, revoke.Manual); err != nil {
			return res, err
		}
	}
	res.Steps, err = e.waitSteps(ctx, d)
	return res, err
}

// waitSteps polls the decision's entries until each has ended, or ctx ends
// (the missing results are then reported pending).
func (e *Engine) waitSteps(ctx context.Context, d playbooks.Decision) ([]respapi.StepResult, error) {
	out := make([]respapi.StepResult, 0, len(d.Steps))
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for _, st := range d.Steps {
		for {
			r, done, err := e.stepResult(ctx, st)
			if err != nil {
				return out, err
			}
			if done {
				out = append(out, r)
				if st.Kind() == playbooks.KindApprove && st.Skip == "" {
					return out, nil // the rest waits for a human
				}
				break
			}
			select {
			case <-ctx.Done():
				return out, nil
			case <-tick.C:
			}
		}
	}
	return out, nil
}

func (e *Engine) stepResult(ctx context.Context, st playbooks.Action) (respapi.StepResult, bool, error) {
	en, found, err := e.o.Outbox.Get(ctx, st.ID)
	if err != nil || !found {
		return respapi.StepResult{}, false, err
	}
	switch en.State {
	case outbox.StateDone:
		switch {
		case st.Skip != "":
			return respapi.StepResult{Status: audit.ResultSkipped, Detail: st.Skip}, true, nil
		case st.DryRun:
			return respapi.StepResult{Status: audit.ResultDryRun}, true, nil
		case st.Kind() == playbooks.KindApprove || string(en.Result) == "needs_approval":
			return respapi.StepResult{Status: audit.ResultNeedsApproval}, true, nil
		}
		return respapi.StepResult{Status: audit.ResultOK, Detail: string(en.Result)}, true, nil
	case outbox.StateFailed, outbox.StateParked:
		return respapi.StepResult{Status: audit.ResultFailed, Detail: en.LastError}, true, nil
	}
	return respapi.StepResult{}, false, nil
}

// Restore undoes the revocations (and quarantines) of an incident through
// the outbox: `responder restore`. It returns the restore entries' keys.
func (e *Engine) Restore(ctx context.Context, incident string, actor audit.Actor, why string) ([]string, error) {
	ens, err := e.o.Outbox.List(ctx, outbox.StateDone)
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, en := range ens {
		if en.Kind != kindRevoke && en.Kind != kindQuar {
			continue
		}
		j, err := decodeJob(en)
		if err != nil || j.Incident != incident || string(en.Result) == "needs_approval" || j.Step.Skip != "" || j.Step.DryRun {
			continue
		}
		j.Actor, j.Why, j.Origin = actor, why, revoke.Manual
		key := j.Step.UndoID() + "-manual"
		if _, err := e.enqueue(ctx, key, kindRestore, j); err != nil {
			return keys, err
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("incident %s has no revocation or quarantine to restore", incident)
	}
	return keys, nil
}

// Wait polls the entries until each has ended or ctx ends; it returns the
// failures.
func (e *Engine) Wait(ctx context.Context, keys ...string) error {
	var errs []string
	for _, k := range keys {
		for {
			en, found, err := e.o.Outbox.Get(ctx, k)
			if err != nil {
				return err
			}
			if found && (en.State == outbox.StateDone || en.State == outbox.StateFailed || en.State == outbox.StateParked) {
				if en.State != outbox.StateDone {
					errs = append(errs, k+": "+en.LastError)
				}
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s: %w", k, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// OpenApprovals returns the approval requests that were posted and have no
// answer yet, oldest first.
func (e *Engine) OpenApprovals(ctx context.Context) ([]string, error) {
	ens, err := e.o.Outbox.List(ctx, outbox.StateDone)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, en := range ens {
		if en.Kind != kindApprove {
			continue
		}
		if string(en.Result) == "" {
			if _, answered, err := e.o.Outbox.Get(ctx, en.Key+"-answer"); err != nil {
				return nil, err
			} else if !answered {
				out = append(out, en.Key)
			}
		}
	}
	return out, nil
}

// Settle waits until no entry is open and due within horizon, or ctx ends.
func (e *Engine) Settle(ctx context.Context, horizon time.Duration) error {
	for {
		open, err := e.o.Outbox.List(ctx, outbox.StatePending, outbox.StateInFlight)
		if err != nil {
			return err
		}
		busy := false
		for _, en := range open {
			if time.Until(en.NextAttempt) < horizon {
				busy = true
				break
			}
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
