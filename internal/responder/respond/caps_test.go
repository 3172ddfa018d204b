package respond

import (
	"strings"
	"testing"
	"time"
)

// Approval requests are never dropped by the cap: past it they wait for
// the next minute, where alerts leave them a slot.
func TestChannelCapsGiveApprovalsPriority(t *testing.T) {
	c := newChannelCaps(2)
	t0 := time.Date(2026, 1, 2, 3, 4, 10, 0, time.UTC)
	steps := []struct {
		at       time.Duration
		approval string // key, or "" for an alert
		want     bool
	}{
		{0, "", true},
		{time.Second, "", true},
		{2 * time.Second, "", false},     // over the cap: counted
		{3 * time.Second, "ap-1", false}, // waits for the next minute
		{time.Minute, "", true},          // 1 posted + 1 waiting < 2
		{time.Minute + time.Second, "", false},
		{time.Minute + 2*time.Second, "ap-1", true},
		{time.Minute + 3*time.Second, "ap-2", false},
	}
	for i, s := range steps {
		now := t0.Add(s.at)
		var got bool
		if s.approval == "" {
			got = c.admit("#soc", capAlert, "shadow_agent", now)
		} else {
			var wait time.Duration
			got, wait = c.admitApproval("#soc", s.approval, now)
			if !got && (wait <= 0 || !now.Add(wait).Equal(now.Truncate(time.Minute).Add(time.Minute))) {
				t.Errorf("step %d: wait %s does not end at the next minute", i, wait)
			}
		}
		if got != s.want {
			t.Errorf("step %d (%+v): admitted %v; want %v", i, s, got, s.want)
		}
	}
	due := c.due(t0.Add(2 * time.Minute))
	if len(due) != 2 {
		t.Fatalf("%d summaries due; want 2 (one per minute with suppressed alerts)", len(due))
	}
	if txt := due[0].text(2); !strings.Contains(txt, "1 more messages") || !strings.Contains(txt, "1 alerts (shadow_agent 1)") {
		t.Errorf("summary %q", txt)
	}
	if len(c.due(t0.Add(2*time.Minute))) != 0 {
		t.Error("a summary was due twice")
	}
	// No cap: everything passes, nothing is due.
	off := newChannelCaps(0)
	for i := 0; i < 100; i++ {
		if !off.admit("#soc", capAlert, "x", t0) {
			t.Fatal("refused without a cap")
		}
	}
}
