package detect

import (
	"math"
	"testing"
	"time"
)

// TestRuleRepeat: drift repeats at most once per DriftRepeatMs, off_hours
// once per OffHoursRepeatMs, the other rules once per RuleRepeatMs; a
// kind's own repeat shorter than RuleRepeatMs (0 included) gives way to
// it.
func TestRuleRepeat(t *testing.T) {
	const hour = int64(time.Hour / time.Millisecond)
	set := testSettings()
	set.DriftRepeatMs, set.OffHoursRepeatMs = 168*hour, 12*hour
	short := testSettings()
	short.DriftRepeatMs, short.OffHoursRepeatMs = 0, hour/2
	for _, tc := range []struct {
		name  string
		set   Settings
		rule  int
		after int64
		due   bool
	}{
		{"drift an hour later", set, ruleDrift, hour, false},
		{"drift six days later", set, ruleDrift, 144 * hour, false},
		{"drift a week later", set, ruleDrift, 168 * hour, true},
		{"off_hours two hours later", set, ruleOffHours, 2 * hour, false},
		{"off_hours 12 h later", set, ruleOffHours, 12 * hour, true},
		{"zombie_route an hour later", set, ruleZombie, hour, true},
		{"zombie_route half an hour later", set, ruleZombie, hour / 2, false},
		{"drift repeat 0: rule_repeat", short, ruleDrift, hour, true},
		{"off_hours repeat below rule_repeat", short, ruleOffHours, hour / 2, false},
	} {
		p := NewProcessor(tc.set, nil, nil)
		a := &agentState{}
		const t0 = int64(1_792_400_000_000)
		if !p.due(a, tc.rule, t0, false) {
			t.Fatalf("%s: first anomaly not due", tc.name)
		}
		if got := p.due(a, tc.rule, t0+tc.after, false); got != tc.due {
			t.Errorf("%s: due = %v, want %v", tc.name, got, tc.due)
		}
	}
}

// TestOffHoursTail: off_hours needs an improbable count and at least
// OffHoursMinRatio times the hour's expected calls.
func TestOffHoursTail(t *testing.T) {
	for _, tc := range []struct {
		k, lambda, disp, minRatio float64
		raise                     bool
	}{
		{60, 3, 1, 3, true},     // 20×, improbable
		{18, 3.7, 1, 3, true},   // 4.9×: improbable and above the ratio
		{202, 118, 1, 3, false}, // 1.7× of a busy "quiet" hour: improbable, but under 3×
		{202, 118, 1, 0, true},  // the same with no ratio
		{12, 3.9, 1, 3, false},  // 3.1×, not improbable enough
		{300, 101, 1, 3, false}, // just under 3×
		{300, 99, 1, 3, true},   // just over
		{40, 3, 20, 3, false},   // bursty agent: 13× is not improbable
	} {
		lnP, raise := offHoursTail(tc.k, tc.lambda, tc.disp, tc.minRatio)
		if raise != tc.raise {
			t.Errorf("%g calls, %g expected (dispersion %g, min ratio %g): raise %v (score %.1f), want %v",
				tc.k, tc.lambda, tc.disp, tc.minRatio, raise, -lnP/math.Ln10, tc.raise)
		}
	}
}

// TestNoteHour: a window that raised its own anomaly counts as activity
// in the hour, not with its calls.
func TestNoteHour(t *testing.T) {
	var a agentState
	a.noteHour(30, false)
	a.noteHour(500, true)
	a.noteHour(20, false)
	if a.hourActive != 3 || a.hourCalls != 50 {
		t.Errorf("hour: %d windows, %d calls; want 3 windows, 50 calls", a.hourActive, a.hourCalls)
	}
}
