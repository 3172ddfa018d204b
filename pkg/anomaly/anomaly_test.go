package anomaly

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestTopFeature(t *testing.T) {
	ok := func(a Anomaly, want string) {
		t.Helper()
		if got := a.TopFeature(); got != want {
			t.Errorf("TopFeature(%+v) = %q; want %q", a.Explanation, got, want)
		}
	}
	ok(Anomaly{}, "")
	ok(Anomaly{Explanation: []Feature{{Name: "calls"}, {Name: "errors_5xx"}}}, "calls")
}

// TestRiskJSON: an anomaly without a risk is written without the risk
// keys, as before they existed, and a record written before them decodes
// with no risk; one with a risk keeps it through JSON.
func TestRiskJSON(t *testing.T) {
	plain := Anomaly{V: Version, ID: "a1", AgentID: "agent-1", Kind: Behaviour, Severity: "medium", Score: 8}
	b, err := json.Marshal(plain)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "risk") {
		t.Fatalf("an anomaly without a risk writes one: %s", b)
	}
	old := `{"v":1,"anomaly_id":"a1","agent_id":"agent-1","kind":"behaviour","window_start_ms":1,"window_end_ms":2,"score":8,"severity":"medium","summary":"s","partition":0,"detected_ms":3}`
	var back Anomaly
	if err := json.Unmarshal([]byte(old), &back); err != nil {
		t.Fatal(err)
	}
	if back.Risk != 0 || back.RiskLevel != 0 || back.RiskAboveSinceMs != 0 || back.RiskAboveUntilMs != 0 || back.RiskAboveMs() != 0 {
		t.Fatalf("an old record decodes with a risk: %+v", back)
	}
	risky := plain
	risky.Risk, risky.RiskLevel, risky.RiskAboveSinceMs, risky.RiskAboveUntilMs = 9.213, 8, 1_000, 3_601_000
	b, err = json.Marshal(risky)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"risk":9.213`, `"risk_level":8`, `"risk_above_since_ms":1000`, `"risk_above_until_ms":3601000`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	back = Anomaly{}
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, risky) {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	if got := back.RiskAboveMs(); got != 3_600_000 {
		t.Fatalf("RiskAboveMs = %d, want an hour", got)
	}
}
