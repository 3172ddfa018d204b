package slackui

import (
	"fmt"
	"time"

	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// ApprovalRequest is what a human is asked to approve.
type ApprovalRequest struct {
	// ID identifies the request; the Approve and Deny buttons carry it.
	ID string
	// What is the action, in our own words ("revoke credential c-1 through
	// kong"); it may quote attacker-controlled ids, so it is escaped.
	What string
	// Why is why approval is needed: the playbook's approve step, or the
	// blast-radius budget being spent.
	Why string
	// Timeout and Default say what happens without an answer.
	Timeout time.Duration
	Default string
}

// RenderApproval returns the message asking for approval of req, posted in
// the incident's thread: what would run, why it waits, what happens with no
// answer, and the Approve and Deny buttons. The first answer wins.
func RenderApproval(a anomaly.Anomaly, ac AlertContext, req ApprovalRequest) (Message, error) {
	what := line(req.What, capSummary)
	head := fmt.Sprintf(":raised_hand: Approval needed: %s", what)
	body := line(req.Why, capSummary)
	if req.Timeout > 0 {
		outcome := "denied"
		if req.Default == "approve" {
			outcome = "approved"
		}
		body += fmt.Sprintf("\nWithout an answer within %s the request is %s.", req.Timeout, outcome)
	}
	blocks := []slack.Block{
		slack.NewSectionBlock(plain(head+"\n"+body), nil, nil, slack.SectionBlockOptionBlockID("aw_approval")),
		footer(a, ac),
	}
	if !ac.HideActions {
		if ac.Codec == nil {
			return Message{}, fmt.Errorf("render approval %s: no action codec in the alert context", line(req.ID, capID))
		}
		var elems []slack.BlockElement
		for _, k := range []ActionKind{Approve, Deny} {
			v, err := ac.Codec.Encode(ActionRef{Kind: k, IncidentID: ac.IncidentID, AnomalyID: req.ID})
			if err != nil {
				return Message{}, fmt.Errorf("render approval %s: %w", line(req.ID, capID), err)
			}
			b := slack.NewButtonBlockElement(slackActionID[k], v, plain(buttonLabel(k)))
			if k == Approve {
				b = b.WithStyle(slack.StyleDanger).WithConfirm(confirm("Approve?", "Run: "+what+"?", "Approve"))
			}
			elems = append(elems, b)
		}
		blocks = append(blocks, slack.NewActionBlock("aw_actions", elems...))
	}
	return finish("Approval needed: "+what, blocks), nil
}

// RenderNote returns a one-section message of our own words (an action's
// outcome posted in the incident's thread). The text is escaped like any
// other, since it may quote ids.
func RenderNote(text string) Message {
	t := line(text, capSummary)
	return finish(t, []slack.Block{slack.NewSectionBlock(plain(t), nil, nil, slack.SectionBlockOptionBlockID("aw_note"))})
}
