package revoke

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// SwitchState is the kill switch's record in the global table.
type SwitchState struct {
	Engaged bool      `json:"engaged"`
	By      string    `json:"by"`
	Reason  string    `json:"reason,omitempty"`
	At      time.Time `json:"at"`
}

// TableSwitch is a KillSwitch kept in the global table under SwitchKey, so
// engaging it on one instance (or with `responder kill-switch on`, which
// writes the table directly) stops automatic revocations on every
// instance as soon as each has applied the record. Safe for concurrent
// use.
type TableSwitch struct {
	t  Table
	mu sync.Mutex
	st SwitchState
}

var _ KillSwitch = (*TableSwitch)(nil)

// NewTableSwitch returns the switch over t; feed it the SwitchKey record
// through Apply.
func NewTableSwitch(t Table) *TableSwitch { return &TableSwitch{t: t} }

// Apply takes the table's SwitchKey record. An unreadable value counts as
// engaged: the switch fails closed, like FileSwitch.
func (s *TableSwitch) Apply(key string, value []byte) {
	if key != SwitchKey {
		return
	}
	var st SwitchState
	if value != nil {
		if err := json.Unmarshal(value, &st); err != nil {
			st = SwitchState{Engaged: true, By: "unreadable record", Reason: err.Error()}
		}
	}
	s.mu.Lock()
	s.st = st
	s.mu.Unlock()
}

// Engaged implements KillSwitch.
func (s *TableSwitch) Engaged() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Engaged
}

// State returns the switch's last record (zero if never set).
func (s *TableSwitch) State() SwitchState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Set engages or disengages the switch for every instance and returns
// once this process has applied it.
func (s *TableSwitch) Set(ctx context.Context, st SwitchState) error {
	if st.By == "" {
		return fmt.Errorf("kill switch: say who sets it")
	}
	if st.At.IsZero() {
		st.At = time.Now()
	}
	st.At = st.At.UTC()
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode kill switch: %w", err)
	}
	if _, err := s.t.Put(ctx, SwitchKey, b); err != nil {
		return fmt.Errorf("write kill switch: %w", err)
	}
	return nil
}
