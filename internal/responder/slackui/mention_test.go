package slackui

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

func TestMentionsComeOnlyFromThePlaybook(t *testing.T) {
	a := anomaly.Anomaly{ID: "an-1", AgentID: "<!channel> <@U999>", Kind: anomaly.Behaviour, Severity: "critical",
		Summary: "<!here> look"}
	for _, tc := range []struct {
		name    string
		mention string
		ids     []string
		want    []string
	}{
		{"none", "", nil, nil},
		{"here", "here", nil, []string{"<!here>"}},
		{"channel and people", "channel", []string{"U0123ABC", "S0GROUP1"}, []string{"<!channel>", "<@U0123ABC>", "<!subteam^S0GROUP1>"}},
		{"bad ids dropped", "everyone", []string{"<!channel>", "u123", "U1|x"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Render(a, AlertContext{IncidentID: "inc-1", HideActions: true, Mention: tc.mention, MentionIDs: tc.ids})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(m.Blocks); err != nil {
				t.Fatal(err)
			}
			raw := buf.String()
			all := raw + m.Text
			// The attacker's strings never turn into mentions.
			for _, bad := range []string{"<@U999>", "<!here> look"} {
				if strings.Contains(all, bad) {
					t.Errorf("attacker string %q reached the message", bad)
				}
			}
			n := strings.Count(all, "<!") + strings.Count(all, "<@")
			if want := 2 * len(tc.want); n != want { // each in the text and the mentions block
				t.Errorf("%d mentions in the message, want %d: %s", n, want, all)
			}
			for _, w := range tc.want {
				if !strings.HasPrefix(m.Text, strings.Join(tc.want, " ")) || !strings.Contains(raw, w) {
					t.Errorf("mention %s missing: text %q", w, m.Text)
				}
			}
		})
	}
}
