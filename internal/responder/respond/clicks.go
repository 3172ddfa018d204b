package respond

import (
	"context"
	"errors"
	"fmt"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// OnClick runs a verified Slack button click (slackui's interaction handler
// has checked the signature and deduplicated it). It records what it must
// and queues actions; it never calls a gateway itself, so Slack gets its
// answer within its 3 seconds.
func (e *Engine) OnClick(ctx context.Context, a slackui.Action) error {
	actor := audit.Actor{Kind: audit.ActorSlack, Name: a.UserName, UserID: a.UserID}
	in, inOK := e.inc.get(a.IncidentID)
	switch a.Kind {
	case slackui.Approve, slackui.Deny:
		j, err := e.approvalJob(ctx, a.AnomalyID)
		if err != nil {
			return err
		}
		var approvers []string
		if ap := j.Step.Approve; ap != nil {
			approvers = ap.Approvers
		}
		if err := e.authorize(ctx, a, actor, in, j.Anomaly, approvers); err != nil {
			return err
		}
		_, err = e.Answer(ctx, a.AnomalyID, a.Kind == slackui.Approve, actor)
		return err
	}
	if !inOK {
		return fmt.Errorf("button on incident %q: %w", a.IncidentID, errNoIncident)
	}
	an, ok := in.Anomaly(a.AnomalyID)
	if !ok && len(in.Anomalies) > 0 {
		an = in.Anomalies[0]
	}
	if acts(a.Kind) {
		if err := e.authorize(ctx, a, actor, in, an, e.playbookApprovers(an)); err != nil {
			return err
		}
	}
	switch a.Kind {
	case slackui.Acknowledge:
		return e.simpleRecord(ctx, in, an, actor, "acknowledge", "acknowledged", "Acknowledged by "+actor.String())
	case slackui.FalsePositive:
		return e.FalsePositive(ctx, in.ID, an.ID, actor)
	case slackui.Snooze:
		if e.o.Silences == nil {
			return errors.New("snooze: no silence store")
		}
		s, _, err := e.o.Silences.AddWithKey(ctx, "snooze:"+a.Key, silence.ForSnooze(in.AgentID, actor.String(), e.now(), e.o.Settings.Snooze))
		if err != nil {
			return fmt.Errorf("snooze agent %s: %w", in.AgentID, err)
		}
		return e.simpleRecord(ctx, in, an, actor, "snooze", "silence "+s.ID, fmt.Sprintf("Snoozed for %s by %s", e.o.Settings.Snooze, actor))
	case slackui.Revoke, slackui.Quarantine:
		return e.buttonAction(ctx, in, an, actor, a.Kind)
	}
	return fmt.Errorf("unknown button %q", a.Kind)
}

func (e *Engine) simpleRecord(ctx context.Context, in Incident, an anomaly.Anomaly, actor audit.Actor, action, detail, note string) error {
	r := audit.Record{Actor: actor, Action: action, IncidentID: in.ID, AnomalyID: an.ID, AgentID: in.AgentID,
		CredentialID: an.CredentialID, Result: audit.ResultOK, Detail: detail}
	if err := e.o.Audit.Append(ctx, r); err != nil {
		return err
	}
	e.o.Metrics.action(action, string(audit.ResultOK))
	e.note(ctx, job{Incident: in.ID}, in.ID+"-"+action+"-"+actor.UserID+"-"+an.ID, action, note)
	return nil
}

// buttonAction queues the revoke-now or quarantine-1h of an incident. Both
// are Manual: a human chose them, so the budget does not hold them back.
// Pressing twice (or two analysts) revokes once: the key is the incident's.
func (e *Engine) buttonAction(ctx context.Context, in Incident, an anomaly.Anomaly, actor audit.Actor, k slackui.ActionKind) error {
	if slackui.Grouped(an.Kind) || an.Grouped() {
		return errors.New("no revoke or quarantine on a grouped alert")
	}
	adapter := e.o.Settings.ButtonAdapter
	info, _ := e.agentInfo(in.AgentID)
	cred := an.CredentialID
	if cred == "" {
		cred = info.CredentialID
	}
	st := playbooks.Action{ID: in.ID + "-button-" + string(k)}
	kind := kindRevoke
	if k == slackui.Revoke {
		st.Step = playbooks.Step{Revoke: &playbooks.Revoke{Adapter: adapter}}
	} else {
		if cred == "" {
			adapter = "denylist" // only the deny-list can block an agent id
		}
		st.Step = playbooks.Step{Quarantine: &playbooks.Quarantine{Adapter: adapter}, TTL: slackui.QuarantineTTL}
		kind = kindQuar
	}
	j := job{
		Decision: playbooks.Decision{ID: in.ID, Playbook: "slack-button", AnomalyID: an.ID, Manual: true,
			Target: playbooks.Target{AgentID: in.AgentID, CredentialID: cred, Role: info.Role, Owner: info.Owner}},
		Step: st, Anomaly: an, Incident: in.ID, Actor: actor, Why: string(k) + " button", Origin: revoke.Manual,
	}
	_, err := e.enqueue(ctx, st.ID, kind, j)
	return err
}

// FalsePositive records a human's verdict that an anomaly was benign: an
// audit record, a silence of the same pattern for the agent, and the
// verdict for the detector, which folds the window into the agent's
// baseline (docs/feedback.md).
func (e *Engine) FalsePositive(ctx context.Context, incident, anomalyID string, actor audit.Actor) error {
	in, ok := e.inc.get(incident)
	if !ok {
		return fmt.Errorf("false positive: no incident %q: %w", incident, respapi.ErrNotFound)
	}
	an, ok := in.Anomaly(anomalyID)
	if !ok {
		return fmt.Errorf("false positive: incident %s has no anomaly %q: %w", incident, anomalyID, respapi.ErrNotFound)
	}
	now := e.now()
	detail := "verdict recorded"
	if e.o.Silences != nil && e.o.Settings.FalsePositiveSuppress > 0 {
		s, _, err := e.o.Silences.AddWithKey(ctx, "fp:"+an.ID, silence.ForFalsePositive(an, actor.String(), now, e.o.Settings.FalsePositiveSuppress))
		if err != nil {
			return fmt.Errorf("silence false positive %s: %w", an.ID, err)
		}
		detail += "; silence " + s.ID
	}
	if e.o.Feedback != nil {
		v := anomaly.Verdict{ID: "fp-" + an.ID, AnomalyID: an.ID, AgentID: an.AgentID, Kind: an.Kind,
			WindowStartMs: an.WindowStartMs, WindowEndMs: an.WindowEndMs, Values: e.verdictValues(ctx, an),
			Verdict: anomaly.VerdictFalsePositive, Author: actor.String(), AtMs: now.UnixMilli()}
		if err := e.o.Feedback.Put(ctx, v); err != nil {
			return fmt.Errorf("send verdict on %s to the detector: %w", an.ID, err)
		}
		detail += "; sent to the detector"
	}
	return e.simpleRecord(ctx, in, an, actor, "false_positive", detail, "Marked false positive by "+actor.String()+": similar anomalies of this agent are silenced for "+e.o.Settings.FalsePositiveSuppress.String())
}
