package scenario

import (
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

func TestMatch(t *testing.T) {
	t0 := time.Date(2026, 11, 2, 10, 0, 30, 0, time.UTC)
	incs := []sim.Incident{
		{ID: "i1", Kind: sim.Exfiltration, Agent: "a", Start: t0, End: t0.Add(10 * time.Minute)},
		{ID: "i2", Kind: sim.AuthStorm, Agent: "b", Start: t0, End: t0.Add(5 * time.Minute)},
	}
	min := int64(60_000)
	w0 := t0.UnixMilli() - t0.UnixMilli()%min
	as := []anomaly.Anomaly{
		{AgentID: "a", Kind: anomaly.Behaviour, WindowStartMs: w0 + 2*min, WindowEndMs: w0 + 3*min},
		{AgentID: "a", Kind: anomaly.FirstSensitive, WindowStartMs: w0 + 3*min, WindowEndMs: w0 + 4*min},
		{AgentID: "a", Kind: anomaly.Behaviour, WindowStartMs: w0 + 60*min, WindowEndMs: w0 + 61*min}, // long after: false
		{AgentID: "c", Kind: anomaly.Behaviour, WindowStartMs: w0, WindowEndMs: w0 + min},             // other agent: false
		{AgentID: "b", Kind: anomaly.Behaviour, WindowStartMs: w0 - min, WindowEndMs: w0},             // before: false
	}
	cs, falseAlerts := Match(incs, as, time.Minute)
	if !cs[0].Caught || cs[0].Windows != 2 || len(cs[0].Kinds) != 2 {
		t.Errorf("exfiltration: %+v", cs[0])
	}
	if cs[1].Caught {
		t.Errorf("auth storm caught by an anomaly before it began: %+v", cs[1])
	}
	if falseAlerts != 3 {
		t.Errorf("false alerts = %d, want 3", falseAlerts)
	}
}
