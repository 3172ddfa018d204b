package respond

import (
	"regexp"
	"strings"
)

// slackToken is one of Slack's control sequences in mrkdwn: a special
// mention (<!here>, <!channel>, <!everyone>), a user (<@U1>), a user group
// (<!subteam^S1>, optionally <!subteam^S1|@name>), a channel or a link.
var slackToken = regexp.MustCompile(`<([!@#][^<>|]*|[a-z][a-z0-9+.-]*:[^<>|]*)(\|[^<>]*)?>`)

// slackEntities undoes Slack's three escapes, which slackui applies to
// every text it renders.
var slackEntities = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

// TextOfMrkdwn renders Slack message text as a reader sees it in Slack:
// <!here> as @here, <@U123> as @U123, <!subteam^S1|@oncall> as @oncall, a
// link as its label (or address), and &lt; &gt; &amp; as < > &. The
// console prints it; the result is display text, not safe to send back to
// Slack.
func TextOfMrkdwn(s string) string {
	var b strings.Builder
	last := 0
	for _, m := range slackToken.FindAllStringSubmatchIndex(s, -1) {
		b.WriteString(slackEntities.Replace(s[last:m[0]]))
		body := s[m[2]:m[3]]
		label := ""
		if m[4] >= 0 {
			label = s[m[4]+1 : m[5]]
		}
		b.WriteString(slackEntities.Replace(tokenText(body, label)))
		last = m[1]
	}
	b.WriteString(slackEntities.Replace(s[last:]))
	return b.String()
}

func tokenText(body, label string) string {
	switch {
	case label != "" && (body[0] == '!' || body[0] == '@' || body[0] == '#'):
		if body[0] == '#' && !strings.HasPrefix(label, "#") {
			return "#" + label
		}
		if body[0] != '#' && !strings.HasPrefix(label, "@") {
			return "@" + label
		}
		return label
	case label != "":
		return label
	case strings.HasPrefix(body, "!subteam^"):
		return "@" + strings.TrimPrefix(body, "!subteam^")
	case body[0] == '!' || body[0] == '@':
		return "@" + body[1:]
	}
	return body // a channel id or a bare link
}
