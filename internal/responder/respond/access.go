package respond

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// kindEphemeral is the outbox kind of a message shown to one user only.
const kindEphemeral = "slack.ephemeral"

// Ephemeral shows a message to one user of a channel (slackui.Poster).
type Ephemeral interface {
	PostEphemeral(ctx context.Context, channel, user string, m slackui.Message) error
}

// acts says whether a button acts on an agent (or answers a request that
// would): only those need the clicker to be allowed. Acknowledge, false
// positive and snooze change no gateway.
func acts(k slackui.ActionKind) bool {
	switch k {
	case slackui.Revoke, slackui.Quarantine, slackui.Approve, slackui.Deny:
		return true
	}
	return false
}

// playbookApprovers are the approvers of the approve steps of the playbooks
// that match an incident's anomaly: who the playbooks trust to decide on
// that agent.
func (e *Engine) playbookApprovers(an anomaly.Anomaly) []string {
	info, _ := e.agentInfo(an.AgentID)
	var out []string
	for _, d := range playbooks.Match(e.o.Set, an, info) {
		for _, st := range d.Steps {
			if ap := st.Approve; ap != nil {
				out = append(out, ap.Approvers...)
			}
		}
	}
	return out
}

// authorize checks that the clicker may take an acting click: a Slack
// user id in approvers or in responder.slack.responders, directly or by
// user group. Anyone else is refused: the attempt is audited, the clicker
// told (ephemeral), nothing runs, and the error wraps
// slackui.ErrNotAllowed.
func (e *Engine) authorize(ctx context.Context, a slackui.Action, actor audit.Actor, in Incident, an anomaly.Anomaly, approvers []string) error {
	ids := slices.Concat(e.o.Settings.Responders, approvers)
	ok, lookupErr := slackui.Allowed(ctx, a.UserID, ids, e.o.Groups)
	if ok {
		return nil
	}
	why := fmt.Sprintf("slack user %s is neither an approver of this incident's playbooks nor in responder.slack.responders", a.UserID)
	if lookupErr != nil {
		why += fmt.Sprintf(" (a user group could not be checked: %v)", lookupErr)
	}
	r := audit.Record{Actor: actor, Action: string(a.Kind), IncidentID: in.ID, AnomalyID: an.ID, AgentID: in.AgentID,
		CredentialID: an.CredentialID, Result: audit.ResultRefused, Why: "slack button", Detail: why + "; nothing was done"}
	if r.IncidentID == "" {
		r.IncidentID = a.IncidentID
	}
	if r.AnomalyID == "" {
		r.AnomalyID = a.AnomalyID
	}
	if err := e.o.Audit.Append(ctx, r); err != nil {
		return fmt.Errorf("audit refused %s click of %s: %w", a.Kind, a.UserID, err)
	}
	e.o.Metrics.action(string(a.Kind), string(audit.ResultRefused))
	if a.ChannelID != "" {
		j := job{Incident: r.IncidentID, Channel: a.ChannelID, User: a.UserID,
			Text: fmt.Sprintf("You may not %s here: only the playbook's approvers and the configured responders may. Nothing was done; the attempt is recorded.", clickVerb(a.Kind))}
		if _, err := e.enqueue(ctx, "ephemeral-"+a.Key, kindEphemeral, j); err != nil {
			e.log.Warn("queue the refusal's ephemeral message", "user_id", a.UserID, "err", err)
		}
	}
	return fmt.Errorf("%s by %s on incident %s: %w", a.Kind, a.UserID, r.IncidentID, slackui.ErrNotAllowed)
}

func clickVerb(k slackui.ActionKind) string {
	switch k {
	case slackui.Revoke:
		return "revoke this agent's credential"
	case slackui.Quarantine:
		return "quarantine this agent"
	}
	return "answer this approval request"
}

// runEphemeral shows the text to the job's user. Without a Slack poster
// (console mode) there is nobody to show it to.
func (e *Engine) runEphemeral(ctx context.Context, j job) ([]byte, error) {
	ep, ok := e.o.Notifier.(Ephemeral)
	if !ok {
		return nil, nil
	}
	if err := ep.PostEphemeral(ctx, j.Channel, j.User, slackui.RenderNote(j.Text)); err != nil {
		var pe *slackui.PostError
		if errors.As(err, &pe) && !pe.Retry {
			return nil, outbox.Permanent(err)
		}
		return nil, err
	}
	return nil, nil
}
