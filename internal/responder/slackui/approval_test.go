package slackui

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

func TestRenderApprovalEscapesAndSignsButtons(t *testing.T) {
	codec, err := NewActionCodec("0123456789abcdef0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	a := anomaly.Anomaly{ID: "an-1", AgentID: "<!channel>", Kind: anomaly.Behaviour}
	m, err := RenderApproval(a, AlertContext{IncidentID: "inc-1", Codec: codec}, ApprovalRequest{
		ID: "dec-1-3", What: "revoke credential <@U123> of agent <!channel>", Why: "budget spent <https://evil|click>",
		Timeout: 15 * time.Minute, Default: "deny",
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(m.Blocks)
	js := string(raw) + m.Text
	for _, bad := range []string{"<!channel>", "<@U123>", "<https://evil|click>"} {
		if strings.Contains(js, bad) {
			t.Errorf("rendered approval contains %q unescaped", bad)
		}
	}
	if !strings.Contains(js, "request is denied") {
		t.Errorf("approval does not say what happens at the timeout: %s", js)
	}
	for _, k := range []ActionKind{Approve, Deny} {
		v, _ := codec.Encode(ActionRef{Kind: k, IncidentID: "inc-1", AnomalyID: "dec-1-3"})
		if !strings.Contains(js, v) {
			t.Errorf("no %s button carrying the request id", k)
		}
		ref, err := codec.Decode(v)
		if err != nil || ref.Kind != k || ref.AnomalyID != "dec-1-3" {
			t.Errorf("button %s decodes to %+v, %v", k, ref, err)
		}
	}
}
