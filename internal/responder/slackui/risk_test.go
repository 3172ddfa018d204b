package slackui

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/attack"
)

func blocksJSON(t *testing.T, m Message) string {
	t.Helper()
	b, err := json.Marshal(m.Blocks)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// riskSample is sample() with a risk above the level: 9.2 since 12:14
// UTC, above it until at least 10:54 UTC.
func riskSample() anomaly.Anomaly {
	a := sample()
	a.Risk, a.RiskLevel = 9.2, 8
	a.RiskAboveSinceMs, a.RiskAboveUntilMs = 1795600440000, 1795604040000
	return a
}

// TestRenderShowsRisk: an alert and a follow-up of an anomaly with a risk
// show it against the level; without a risk (an older detector) nothing
// is said; the alert with the peer-baseline fact as well (ten fields) is
// accepted by Slack's block types (the slacktest server).
func TestRenderShowsRisk(t *testing.T) {
	m, err := Render(riskSample(), sampleContext(t))
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, m)
	want := `Agent risk\n9.2 (level 8.0), at or above it since 09:54 UTC and until at least 10:54 UTC`
	if s := blocksJSON(t, m); !strings.Contains(s, want) {
		t.Errorf("alert lacks %q:\n%s", want, s)
	}
	below := sample()
	below.Risk, below.RiskLevel = 3, 8
	m, err = Render(below, sampleContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if s := blocksJSON(t, m); !strings.Contains(s, `Agent risk\n3.0 (level 8.0), below it`) {
		t.Errorf("alert lacks the risk below the level:\n%s", s)
	}
	m, err = Render(sample(), sampleContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if s := blocksJSON(t, m); strings.Contains(s, "Agent risk") {
		t.Errorf("an anomaly without a risk shows one:\n%s", s)
	}
	f, err := RenderFollowUp(riskSample(), sampleContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if s := blocksJSON(t, f); !strings.Contains(s, "· agent risk 9.2") {
		t.Errorf("follow-up lacks the risk:\n%s", s)
	}

	peer := riskSample()
	peer.PeerBaseline = true
	m, err = Render(peer, sampleContext(t))
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, m)
	srv := slacktest.NewTestServer()
	srv.Start()
	defer srv.Stop()
	p := NewPoster(slack.New("xoxb-test", slack.OptionAPIURL(srv.GetAPIURL())))
	if ts, err := p.PostAlert(context.Background(), "C0SOC", m); err != nil || ts == "" {
		t.Fatalf("PostAlert = %q, %v", ts, err)
	}
}

// TestRiskTrend: the trend keeps the latest MaxRiskPoints in window order,
// skips repeats (an elevated_risk carries its cause's risk) and anomalies
// without a risk, keeps the peak, and takes the episode from the newest.
func TestRiskTrend(t *testing.T) {
	var r RiskTrend
	at := func(min int64, risk float64) anomaly.Anomaly {
		return anomaly.Anomaly{WindowEndMs: 1795600000000 + min*60_000, Risk: risk, RiskLevel: 8}
	}
	r.Observe(at(0, 3))
	r.Observe(at(0, 3))          // a repeat
	r.Observe(anomaly.Anomaly{}) // no risk
	r.Observe(at(20, 5.7))
	r.Observe(at(10, 4.1)) // late: goes between
	a := at(30, 9.1)
	a.RiskAboveSinceMs, a.RiskAboveUntilMs = a.WindowEndMs, a.WindowEndMs+3_600_000
	r.Observe(a)
	if len(r.Points) != 4 || r.Points[1].Risk != 4.1 || r.Peak != 9.1 || r.AboveSinceMs != a.WindowEndMs || r.Level != 8 {
		t.Fatalf("trend %+v", r)
	}
	r.Observe(at(5, 3.5)) // older than the newest: the episode stays
	if r.AboveSinceMs != a.WindowEndMs {
		t.Fatalf("an older anomaly changed the episode: %+v", r)
	}
	for i := range 10 {
		r.Observe(at(40+int64(i), 8.5-float64(i)/10))
	}
	if len(r.Points) != MaxRiskPoints || r.Points[MaxRiskPoints-1].Risk != 7.6 || r.Peak != 9.1 || r.AboveSinceMs != 0 {
		t.Fatalf("trend after 10 more %+v", r)
	}
	got := r.trendText()
	for _, want := range []string{"7.6 ↓ (level 8.0)", "at its latest anomalies 8.1 → 8.0 → 7.9 → 7.8 → 7.7 → 7.6, peak 9.1"} {
		if !strings.Contains(got, want) {
			t.Errorf("trend text %q lacks %q", got, want)
		}
	}
	if strings.Contains(got, "at or above") {
		t.Errorf("trend text %q speaks of an episode the newest anomaly is not in", got)
	}
}

// TestCardShowsRiskTrend: the card of an incident whose anomalies carried
// a risk shows the latest with its direction, the values before it and
// the episode above the level; a card without any shows no risk.
func TestCardShowsRiskTrend(t *testing.T) {
	c := classCard(attack.Exfiltration)
	for i, v := range []float64{3, 5.7, 9.2} {
		a := riskSample()
		a.WindowEndMs += int64(i) * 600_000
		a.Risk = v
		if v < 8 {
			a.RiskAboveSinceMs, a.RiskAboveUntilMs = 0, 0
		}
		c.Risk.Observe(a)
	}
	m, err := RenderCard(c, sampleContext(t))
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, m)
	s := blocksJSON(t, m)
	for _, want := range []string{`Agent risk\n9.2 ↑ (level 8.0); at its latest anomalies 3.0 → 5.7 → 9.2; at or above the level since 09:54 UTC, until at least 10:54 UTC`} {
		if !strings.Contains(s, want) {
			t.Errorf("card lacks %q:\n%s", want, s)
		}
	}
	m, err = RenderCard(classCard(attack.Exfiltration), sampleContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(blocksJSON(t, m), "Agent risk") {
		t.Error("a card without risk shows one")
	}
}
