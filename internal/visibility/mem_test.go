package visibility

import (
	"context"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// TestMemActionsLeaveOutQuestions: the questions asked are on the trail,
// never among an agent's actions.
func TestMemActionsLeaveOutQuestions(t *testing.T) {
	at := time.Date(2026, 3, 15, 9, 0, 0, 0, time.UTC).UnixMilli()
	recs := []audit.Record{
		{ID: "a", AtMs: at, AgentID: "billing-bot", Action: "revoke", Result: audit.ResultOK},
		{ID: "q", AtMs: at + 1, AgentID: "billing-bot", Action: audit.ActionAsk, Result: audit.ResultOK, Detail: "agent billing-bot"},
	}
	src := NewMemSource(nil, nil, recs, nil)
	span := Span{From: time.UnixMilli(at - 1000), To: time.UnixMilli(at + 1000)}
	got, err := src.Actions(context.Background(), span, "billing-bot")
	if err != nil || len(got) != 1 || got[0].ID != "a" {
		t.Fatalf("Actions = %+v, %v; want the revocation alone", got, err)
	}
}
