package respond

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

func TestTextOfMrkdwn(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"<!here> HIGH behaviour", "@here HIGH behaviour"},
		{"<!channel> <@U123ABC> <!subteam^S42>", "@channel @U123ABC @S42"},
		{"<!subteam^S42|@oncall> look", "@oncall look"},
		{"<!subteam^S42|oncall>", "@oncall"},
		{"<@W1|alice>", "@alice"},
		{"<#C123|soc-alerts>", "#soc-alerts"},
		{"see <https://example.com/x|the runbook>", "see the runbook"},
		{"see <https://example.com/x>", "see https://example.com/x"},
		// What slackui escaped stays text: an attacker's "<!here>" reads
		// as typed and mentions nobody.
		{"agent &lt;!here&gt; &amp; co", "agent <!here> & co"},
		{"a &lt;b&gt; &amp;amp;", "a <b> &amp;"},
		{"no tokens, 3 > 2", "no tokens, 3 > 2"},
		{"<not a token", "<not a token"},
		{"", ""},
	} {
		if got := TextOfMrkdwn(c.in); got != c.want {
			t.Errorf("TextOfMrkdwn(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestConsolePrintsMentionsAsText(t *testing.T) {
	var out bytes.Buffer
	c := NewConsole(&out)
	a := anomaly.Anomaly{ID: "a1", AgentID: "bot-<!channel>", Kind: anomaly.Behaviour, Severity: "critical", Score: 80,
		Summary: "pulled <b>much</b> & more"}
	m, err := slackui.Render(a, slackui.AlertContext{IncidentID: "inc-1", HideActions: true, Mention: "here", MentionIDs: []string{"U123"}})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := c.PostAlert(context.Background(), "#soc", m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PostThreadReply(context.Background(), "#soc", ts, m); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"[#soc] @here @U123 CRITICAL", "bot-<!channel>", "pulled <b>much</b> & more", "↳ [#soc thread " + ts + "] @here"} {
		if !strings.Contains(got, want) {
			t.Errorf("console output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "<!here>") || strings.Contains(got, "&lt;") {
		t.Errorf("console output shows Slack's markup:\n%s", got)
	}
}
