package respond

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// riskPlaybooks: every anomaly of the agent alerts in #soc-watch, and one
// whose risk stays at or above the detector's level for an hour also goes
// to #soc-risk.
const riskPlaybooks = `
playbooks:
  - name: sustained-risk
    trigger: {risk_for: 1h}
    steps:
      - notify: {channel: "#soc-risk"}
  - name: watch
    trigger: {kinds: [behaviour, drift, off_hours, elevated_risk]}
    final: true
    steps:
      - notify: {channel: "#soc-watch"}
`

// An agent's medium anomalies raise its risk from 3.0 to 5.7 to 9.1: each
// alert shows the risk against the level, the incident card its trend, and
// the playbook on risk_for: 1h fires for the anomaly that keeps the risk
// above the level for over an hour, and not for those before it. Slack is
// the local test server; the clock is moved by hand.
func TestRiskInAlertCardAndPlaybook(t *testing.T) {
	clock := &fakeClock{t: time.Now().Truncate(time.Minute).Add(time.Minute)}
	r := newRigWith(t, func(r *rig) {
		r.now = clock.now
		r.playbooks = riskPlaybooks
	})
	ctx := context.Background()
	start := clock.now().Add(-2 * time.Minute).UnixMilli()
	kinds := []string{anomaly.Behaviour, anomaly.OffHours, anomaly.Drift}
	risks := []float64{3, 5.7, 9.1}
	for i, kind := range kinds {
		if i > 0 {
			clock.add(time.Minute)
		}
		w := start + int64(i)*60_000
		a := anomaly.Anomaly{V: 1, ID: fmt.Sprintf("risk-%d", i), AgentID: "agent-risk", CredentialID: "cred-risk", Kind: kind,
			Severity: "medium", Score: 8, WindowStartMs: w, WindowEndMs: w + 60_000, Summary: "odd again",
			Risk: risks[i], RiskLevel: 8}
		if risks[i] >= 8 {
			// 9.1 stays at or above 8 for 6 h · log2(9.1/8) = 67 min.
			a.RiskAboveSinceMs, a.RiskAboveUntilMs = w+60_000, w+60_000+67*60_000
		}
		res, err := r.svc.Engine.Handle(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		var fired []string
		for _, d := range res.Decisions {
			fired = append(fired, d.Playbook)
		}
		want := "watch"
		if i == 2 {
			want = "sustained-risk,watch"
		}
		if got := strings.Join(fired, ","); got != want {
			t.Fatalf("anomaly %d (risk %g): playbooks %s, want %s", i, risks[i], got, want)
		}
		r.settleBy(clock)
	}
	clock.add(6 * time.Minute)
	r.settleBy(clock)

	watchID, riskID := r.slack.ChannelID("#soc-watch"), r.slack.ChannelID("#soc-risk")
	var watch, risk []testsrv.SlackPost
	for _, p := range r.slack.Posts() {
		switch p.Channel {
		case "#soc-watch", watchID:
			watch = append(watch, p)
		case "#soc-risk", riskID:
			risk = append(risk, p)
		}
	}
	if len(watch) == 0 {
		t.Fatal("nothing posted to #soc-watch")
	}
	first := watch[0]
	if !strings.Contains(first.Blocks, `Agent risk\n3.0 (level 8.0), below it`) {
		t.Errorf("the first alert does not show the risk against the level: %s", first.Blocks)
	}
	var last testsrv.SlackPost
	for _, p := range watch {
		if p.Method == "chat.update" && strings.Contains(p.Blocks, `"aw_card"`) {
			last = p
		}
	}
	if last.Blocks == "" {
		t.Fatal("the card was never updated")
	}
	for _, want := range []string{`Agent risk\n9.1 ↑ (level 8.0)`, "at its latest anomalies 3.0 → 5.7 → 9.1", "at or above the level since"} {
		if !strings.Contains(last.Blocks, want) {
			t.Errorf("the card's last update lacks %q: %s", want, last.Blocks)
		}
	}
	// The third anomaly opened sustained-risk's thread in #soc-risk.
	if len(risk) == 0 || !strings.Contains(risk[0].Blocks, "Agent risk") {
		t.Fatalf("sustained-risk posted %d messages to #soc-risk, or without the risk", len(risk))
	}
}
