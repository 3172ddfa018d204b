package silence

import (
	"slices"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

func TestLabels(t *testing.T) {
	a := anomaly.Anomaly{
		AgentID: "cs-agent-1", Kind: anomaly.Behaviour, Severity: "high", Role: "customer_service", Owner: "alice",
		CredentialID: "key_1", Partition: 3, Explanation: []anomaly.Feature{{Name: "response_bytes"}, {Name: "calls"}},
	}
	got := Labels(a)
	want := map[string]string{
		"agent_id": "cs-agent-1", "kind": "behaviour", "severity": "high", "role": "customer_service", "owner": "alice",
		"credential_id": "key_1", "partition": "3", "feature": "response_bytes",
	}
	if len(got) != len(want) {
		t.Fatalf("Labels = %v; want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Labels[%s] = %q; want %q", k, got[k], v)
		}
	}
	for k := range got {
		if !isLabelName(k) {
			t.Errorf("Labels gave %q, which matchers may not use", k)
		}
	}
	// A rule anomaly: no explanation, no registry data. Partition 0 is
	// still a partition.
	got = Labels(anomaly.Anomaly{AgentID: "x", Kind: anomaly.ShadowAgent, Severity: "critical"})
	if _, ok := got["feature"]; ok || got["partition"] != "0" || len(got) != 4 {
		t.Fatalf("Labels of a rule anomaly = %v", got)
	}
	if !slices.IsSorted(LabelNames()) || len(LabelNames()) != 8 {
		t.Fatalf("LabelNames = %v", LabelNames())
	}
}

func TestForFalsePositive(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	a := anomaly.Anomaly{ID: "an1", AgentID: "cs-agent-1", Kind: anomaly.Drift, Explanation: []anomaly.Feature{{Name: "response_bytes"}}}
	s := ForFalsePositive(a, "U1", now, 24*time.Hour)
	want := []Matcher{{"agent_id", "cs-agent-1", MatchEqual}, {"kind", "drift", MatchEqual}, {"feature", "response_bytes", MatchEqual}}
	if !slices.Equal(s.Matchers, want) || s.Comment != "marked false positive" || s.Reason != ReasonFalsePositive ||
		s.AnomalyID != "an1" || s.CreatedBy != "U1" || !s.StartsAt.Equal(now) || !s.EndsAt.Equal(now.Add(24*time.Hour)) {
		t.Fatalf("ForFalsePositive = %+v", s)
	}
	if !s.Matches(Labels(a)) {
		t.Fatal("the silence does not match its own anomaly")
	}
	a.Explanation = nil
	if s := ForFalsePositive(a, "U1", now, time.Hour); len(s.Matchers) != 2 || !s.Matches(Labels(a)) {
		t.Fatalf("ForFalsePositive without explanation = %+v", s.Matchers)
	}
}

func TestForSnooze(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := ForSnooze("cs-agent-1", "U1", now, time.Hour)
	if FormatMatchers(s.Matchers) != "agent_id=cs-agent-1" || s.Reason != ReasonSnooze || !s.EndsAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("ForSnooze = %+v", s)
	}
	if !s.Matches(map[string]string{"agent_id": "cs-agent-1", "kind": "drift"}) || s.Matches(map[string]string{"agent_id": "cs-agent-2"}) {
		t.Fatal("snooze matches the wrong agents")
	}
}

func TestState(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := Silence{StartsAt: t0, EndsAt: t0.Add(time.Hour)}
	for _, tc := range []struct {
		at   time.Duration
		want State
	}{{-time.Second, StatePending}, {0, StateActive}, {time.Hour - 1, StateActive}, {time.Hour, StateExpired}} {
		if got := s.State(t0.Add(tc.at)); got != tc.want {
			t.Errorf("State(t0%+v) = %s; want %s", tc.at, got, tc.want)
		}
	}
	s.ExpiredAt, s.ExpiredBy = t0.Add(time.Minute), "U1"
	if s.State(t0) != StateExpired || !s.Ended().Equal(t0.Add(time.Minute)) {
		t.Fatalf("expired silence: State %s, Ended %s", s.State(t0), s.Ended())
	}
}
