package slackui

import (
	"regexp"

	"github.com/slack-go/slack"
)

// mentionIDRE is a Slack user (U…, W…) or user-group (S…) id: the only
// mentions the responder ever writes, from the playbook, never from an
// anomaly.
var mentionIDRE = regexp.MustCompile(`^[UWS][A-Z0-9]{2,20}$`)

// mentionText returns the mrkdwn that notifies the people a notify step
// names: <!here>, <!channel>, <@U…> and <!subteam^S…>. Anything else is
// dropped, so a mention can come only from the playbook's own fixed words
// and validated ids.
func mentionText(ac AlertContext) string {
	var s string
	switch ac.Mention {
	case "here":
		s = "<!here>"
	case "channel":
		s = "<!channel>"
	}
	for _, id := range ac.MentionIDs {
		if !mentionIDRE.MatchString(id) {
			continue
		}
		if s != "" {
			s += " "
		}
		if id[0] == 'S' {
			s += "<!subteam^" + id + ">"
		} else {
			s += "<@" + id + ">"
		}
	}
	return s
}

// withMentions puts the step's mentions first in the message: in the
// notification text and in a section of their own (the only mrkdwn the
// responder posts that is not escaped text).
func withMentions(m Message, ac AlertContext) Message {
	s := mentionText(ac)
	if s == "" {
		return m
	}
	m.Text = s + " " + m.Text
	sec := slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, s, false, false), nil, nil, slack.SectionBlockOptionBlockID("aw_mentions"))
	m.Blocks = append([]slack.Block{sec}, m.Blocks...)
	return m
}
