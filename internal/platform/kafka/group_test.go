package kafka

import (
	"strings"
	"testing"
	"time"
)

func TestGroupConfigValidate(t *testing.T) {
	good := GroupConfig{Brokers: []string{"127.0.0.1:9092"}, GroupID: "g", Topic: "t"}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v, want nil", good, err)
	}
	bad := func(c GroupConfig, wantSub ...string) {
		t.Helper()
		err := c.Validate()
		if err == nil {
			t.Fatalf("Validate(%+v) = nil, want error", c)
		}
		for _, s := range wantSub {
			if !strings.Contains(err.Error(), s) {
				t.Fatalf("Validate(%+v) = %q, want it to mention %q", c, err, s)
			}
		}
	}
	bad(GroupConfig{}, "brokers", "group_id", "topic") // every problem at once
	c := good
	c.SessionTimeout = 5 * time.Second
	bad(c, "session_timeout", "6s")
	c = good
	c.HeartbeatInterval = 10 * time.Second // equals the default session timeout
	bad(c, "heartbeat_interval")
	c = good
	c.SessionTimeout, c.HeartbeatInterval = 30*time.Second, 10*time.Second
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate(%+v) = %v, want nil", c, err)
	}
	c = good
	c.MinBytes, c.MaxBytes = 10, 5
	bad(c, "min_bytes")
	c = good
	c.MaxWait, c.RebalanceTimeout = -time.Second, -time.Second
	bad(c, "max_wait", "rebalance_timeout")

	if _, err := NewGroup(GroupConfig{}); err == nil {
		t.Fatal("NewGroup with an empty config: got nil error")
	}
}
