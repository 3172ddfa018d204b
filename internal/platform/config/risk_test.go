package config

import (
	"strings"
	"testing"
	"time"
)

// TestRiskKeys: the defaults are the documented ones, a file and the
// environment set them, and each bad value is refused naming its key.
func TestRiskKeys(t *testing.T) {
	c, err := load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Detector.Risk; r.HalfLife != 6*time.Hour || r.Level != 8 || r.WeightLow != 1 || r.WeightMedium != 3 || r.WeightHigh != 6 || r.WeightCritical != 10 {
		t.Fatalf("defaults %+v", r)
	}
	c, err = load(write(t, "detector:\n  risk:\n    half_life: 12h\n    level: 10\n"), nil, []string{"AGENTWATCH_DETECTOR_RISK_WEIGHT_HIGH=7", "AGENTWATCH_DETECTOR_RISK_HALF_LIFE=0"})
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Detector.Risk; r.HalfLife != 0 || r.Level != 10 || r.WeightHigh != 7 {
		t.Fatalf("set %+v", r)
	}
	for _, tc := range []struct {
		name string
		env  []string
		want string
	}{
		{"half-life too short", []string{"AGENTWATCH_DETECTOR_RISK_HALF_LIFE=30s"}, "detector.risk.half_life"},
		{"half-life too long", []string{"AGENTWATCH_DETECTOR_RISK_HALF_LIFE=1000h"}, "detector.risk.half_life"},
		{"no level", []string{"AGENTWATCH_DETECTOR_RISK_LEVEL=0"}, "detector.risk.level"},
		{"one medium is enough", []string{"AGENTWATCH_DETECTOR_RISK_LEVEL=3"}, "a single medium anomaly"},
		{"negative weight", []string{"AGENTWATCH_DETECTOR_RISK_WEIGHT_LOW=-1"}, "detector.risk.weight_low"},
		{"high below medium", []string{"AGENTWATCH_DETECTOR_RISK_WEIGHT_HIGH=2"}, "detector.risk.weight_high: must be at least detector.risk.weight_medium"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load("", nil, tc.env)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one about %q", err, tc.want)
			}
		})
	}
}
