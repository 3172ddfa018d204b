package respond

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// TestIncidentAndOutboxMoveWithTheirPartition: an agent's incident (its
// Slack thread) and its queued actions go with its anomaly partition from
// one instance to the next through the changelog; the next instance posts
// into the same thread, repeats nothing the first did, and runs the
// approval the first asked for.
func TestIncidentAndOutboxMoveWithTheirPartition(t *testing.T) {
	ctx := context.Background()
	cl := partstate.NewMemChangelog(4)
	seen := &memBatchSeen{ids: map[string]bool{}}
	a := newRigWith(t, func(r *rig) { r.stateLog, r.seen = cl, seen })
	z1 := anomaly.Anomaly{V: 1, ID: "z-1", AgentID: "agent-z", CredentialID: "cred-z", Kind: anomaly.ZombieRoute, Severity: "medium", Score: 3,
		WindowStartMs: 1, WindowEndMs: 60_001}
	if _, err := a.svc.Engine.Handle(ctx, z1); err != nil {
		t.Fatal(err)
	}
	a.settle()
	id := IncidentID(z1)
	roots, replies := postsAbout(a.slack.Posts(), "agent-z")
	if len(roots) != 1 || len(replies) != 1 {
		t.Fatalf("first instance: %d alerts and %d replies, want the alert and its approval request", len(roots), len(replies))
	}
	p := a.owner.Partition("agent-z")
	if !a.owner.Owns("agent-z") {
		t.Fatal("the first instance does not own agent-z")
	}
	if err := a.owner.Revoke(ctx, []int32{p}); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.svc.Engine.Incident(id); ok {
		t.Error("the first instance still holds the incident after handing its partition over")
	}
	if _, found, _ := a.svc.Worker.Store.Get(ctx, id+"-gated-1"); found {
		t.Error("the first instance still holds the approval entry after handing its partition over")
	}
	nPosts := len(a.slack.Posts())
	a.stop()

	// The second instance shares Slack, the changelog and the handled set.
	b := newRigWith(t, func(r *rig) {
		r.stateLog, r.seen = cl, seen
		r.slack = a.slack
		r.cfg.Responder.Slack.APIURL = a.slack.URL()
	})
	in, ok := b.svc.Engine.Incident(id)
	if !ok || in.Roots["#soc-alerts"] == "" {
		t.Fatalf("incident after the move: %+v, %v; want it with its thread", in, ok)
	}
	if e, found, _ := b.svc.Worker.Store.Get(ctx, id+"-gated-1-timeout"); !found || e.State != outbox.StatePending {
		t.Errorf("approval timeout after the move: %+v, %v; want it pending", e, found)
	}
	if res, err := b.svc.Engine.Handle(ctx, z1); err != nil || !res.Duplicate {
		t.Errorf("redelivery of z-1 on the new owner: %+v, %v; want a duplicate", res, err)
	}
	z2 := z1
	z2.ID, z2.WindowStartMs, z2.WindowEndMs = "z-2", 60_001, 120_001
	if _, err := b.svc.Engine.Handle(ctx, z2); err != nil {
		t.Fatal(err)
	}
	b.settle()
	roots2, replies2 := postsAbout(b.slack.Posts(), "agent-z")
	if len(roots2) != 1 {
		t.Errorf("%d top-level alerts after the move, want the first one only", len(roots2))
	}
	if len(replies2) <= len(replies) || replies2[len(replies2)-1].ThreadTS != roots[0].TS {
		t.Errorf("the later anomaly did not go into the incident's thread %s: %+v", roots[0].TS, b.slack.Posts()[nPosts:])
	}

	// The approval asked by the first instance is answered on the second.
	codec, _ := slackui.NewActionCodec(testSecret)
	v, err := codec.Encode(slackui.ActionRef{Kind: slackui.Approve, IncidentID: id, AnomalyID: id + "-gated-1"})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	b.svc.Handler.ServeHTTP(w, signed(t, "aw_approve", v, "trig-1", time.Now()))
	if w.Code != http.StatusOK {
		t.Fatalf("approve click: %d", w.Code)
	}
	b.settle()
	has, _ := os.ReadFile(filepath.Join(b.cfg.Responder.StateDir, "denylist.txt"))
	if !bytes.Contains(has, []byte("cred-z")) {
		t.Fatalf("the approved revocation did not run on the new owner; deny-list:\n%s", has)
	}
	recs, _ := b.svc.Audit.Query(ctx, audit.Filter{AgentID: "agent-z"})
	revokes := 0
	for _, rec := range recs {
		if rec.Action == "revoke" && rec.Result == audit.ResultOK {
			revokes++
		}
	}
	if revokes != 1 {
		t.Errorf("%d revocations, want 1", revokes)
	}
}
