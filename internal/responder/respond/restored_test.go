package respond

import (
	"context"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
)

// TestRestoreBesideTheResponderLiftsSuppression: `responder restore` run
// beside a running embedded responder (its own guards on the same ledger
// file) ends the suppression of the incident's alerts: the next anomaly
// of the agent is alerted again.
func TestRestoreBesideTheResponderLiftsSuppression(t *testing.T) {
	// One follow-up per anomaly (no summaries): each anomaly's notify
	// step is then audited on its own, posted or suppressed.
	r := newRig(t, func(c *config.Config) { c.Responder.Slack.DigestInterval = 0 })
	ctx := context.Background()
	r.kong.Add("agent-1", "cred-1", "secret-key")
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()
	handle := func(id string, at int64) {
		t.Helper()
		if _, err := r.svc.Engine.Handle(ctx, exfil(id, "agent-1", "cred-1", at)); err != nil {
			t.Fatal(err)
		}
		r.settle()
	}
	notify := func(id string) audit.Record {
		t.Helper()
		recs, err := r.svc.Audit.Query(ctx, audit.Filter{Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs {
			if rec.Action == "notify" && rec.AnomalyID == id {
				return rec
			}
		}
		t.Fatalf("no notify record for %s", id)
		return audit.Record{}
	}
	handle("an-1", start)
	handle("an-2", start+60_000)
	if rec := notify("an-2"); rec.Result != audit.ResultSkipped {
		t.Fatalf("the revoked agent's next alert: %s %s; want skipped", rec.Result, rec.Detail)
	}
	guards, _, err := Guards(r.cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	incident := IncidentID(exfil("an-1", "agent-1", "cred-1", start))
	if res, err := guards["kong"].Restore(ctx, revoke.Target{CredentialID: "cred-1", IncidentID: incident, Origin: revoke.Manual}); err != nil || res.Status != revoke.StatusRestored {
		t.Fatalf("restore: %+v %v", res, err)
	}
	handle("an-3", start+120_000)
	if rec := notify("an-3"); rec.Result != audit.ResultOK {
		t.Fatalf("alert after the restore: %s %s; want posted", rec.Result, rec.Detail)
	}
}
