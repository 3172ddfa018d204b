package respond

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// parkedRevocations handles one budgeted anomaly per agent (a deny-list
// revocation), waits for them to run, then parks their entries as a
// gateway failing MaxAttempts times would have: the state an operator
// repairs. It returns the entries' keys, by agent.
func parkedRevocations(t *testing.T, r *rig, agents ...string) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys := map[string]string{}
	for i, agent := range agents {
		a := anomaly.Anomaly{V: 1, ID: "n-" + agent, AgentID: agent, CredentialID: "cred-" + agent, Kind: anomaly.NewSourceIP, Severity: "high", Score: 5,
			WindowStartMs: int64(i+1) * 60_000, WindowEndMs: int64(i+2) * 60_000}
		if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	r.settle()
	all, err := r.svc.Worker.Store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		if e.Kind != kindRevoke {
			continue
		}
		j, err := decodeJob(e)
		if err != nil {
			t.Fatal(err)
		}
		e.State, e.Failures, e.LastError = outbox.StateParked, e.Attempts, "kong: 503 (test)"
		if _, err := r.svc.Worker.Store.Update(ctx, e); err != nil {
			t.Fatal(err)
		}
		keys[j.Anomaly.AgentID] = e.Key
	}
	if len(keys) != len(agents) {
		t.Fatalf("revocation entries %v; want one per agent %v", keys, agents)
	}
	return keys
}

// TestEngineRepairsTheDistributedOutbox: requeue and dismiss act on the
// PartStore's entries (the changelog has them), wake the Worker, audit,
// refuse what does not apply, and a retried request acts once.
func TestEngineRepairsTheDistributedOutbox(t *testing.T) {
	ctx := context.Background()
	cl := partstate.NewMemChangelog(4)
	seen := &memBatchSeen{ids: map[string]bool{}}
	r := newRigWith(t, func(r *rig) { r.stateLog, r.seen = cl, seen })
	keys := parkedRevocations(t, r, "agent-r1", "agent-r2")
	ops := audit.Actor{Kind: audit.ActorAPI, TokenName: "ops"}
	e := r.svc.Engine

	type step struct {
		name    string
		req     respapi.OutboxRepair
		wantErr error
		// state is the entry's state once the Worker settled.
		state outbox.State
		dup   bool
		// repark parks the entry again before the step, as a failing
		// gateway would after the requeued run.
		repark bool
	}
	steps := []step{
		{name: "requeue runs the parked revocation", req: respapi.OutboxRepair{Op: respapi.OutboxRequeue, Key: keys["agent-r1"], RequestID: "api:ops:r-1", Actor: ops},
			state: outbox.StateDone},
		{name: "the same request again, after it ran and was parked again, acts no more", repark: true,
			req: respapi.OutboxRepair{Op: respapi.OutboxRequeue, Key: keys["agent-r1"], RequestID: "api:ops:r-1", Actor: ops}, state: outbox.StateParked, dup: true},
		{name: "a new request requeues it again", req: respapi.OutboxRepair{Op: respapi.OutboxRequeue, Key: keys["agent-r1"], RequestID: "api:ops:r-2", Actor: ops},
			state: outbox.StateDone},
		{name: "requeue of a done entry", req: respapi.OutboxRepair{Op: respapi.OutboxRequeue, Key: keys["agent-r1"], Actor: ops}, wantErr: respapi.ErrConflict},
		{name: "dismiss of a done entry", req: respapi.OutboxRepair{Op: respapi.OutboxDismiss, Key: keys["agent-r1"], Reason: "x", Actor: ops}, wantErr: respapi.ErrConflict},
		{name: "unknown key", req: respapi.OutboxRepair{Op: respapi.OutboxRequeue, Key: "no-such-key", Actor: ops}, wantErr: respapi.ErrNotFound},
		{name: "dismiss notes who and why", req: respapi.OutboxRepair{Op: respapi.OutboxDismiss, Key: keys["agent-r2"], Reason: "agent retired", Actor: ops},
			state: outbox.StateFailed},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.repark {
				en, _, _ := r.svc.Worker.Store.Get(ctx, s.req.Key)
				en.State, en.Failures = outbox.StateParked, en.Attempts
				if _, err := r.svc.Worker.Store.Update(ctx, en); err != nil {
					t.Fatal(err)
				}
			}
			before, _, _ := r.svc.Worker.Store.Get(ctx, s.req.Key)
			had := map[string]bool{}
			for _, rec := range repairAudit(t, r, respapi.OutboxAction(s.req.Op)) {
				had[rec.ID] = true
			}
			res, err := e.RepairOutbox(ctx, s.req)
			if s.wantErr != nil {
				if !errors.Is(err, s.wantErr) {
					t.Fatalf("RepairOutbox: %v, want %v", err, s.wantErr)
				}
			} else if err != nil || res.Duplicate != s.dup {
				t.Fatalf("RepairOutbox: %+v, %v; want duplicate %v", res, err, s.dup)
			}
			r.settle()
			// The step's record is the one not there before: Query orders
			// by (AtMs, ID), and the previous step's record can share the
			// millisecond and sort after it.
			var recs []audit.Record
			for _, rec := range repairAudit(t, r, respapi.OutboxAction(s.req.Op)) {
				if !had[rec.ID] {
					recs = append(recs, rec)
				}
			}
			if len(recs) != 1 {
				t.Fatalf("%d new %s audit records %+v, want 1", len(recs), respapi.OutboxAction(s.req.Op), recs)
			}
			rec := recs[0]
			wantRes := audit.ResultOK
			switch {
			case s.wantErr != nil:
				wantRes = audit.ResultRefused
			case s.dup:
				wantRes = audit.ResultSkipped
			}
			if rec.Result != wantRes || rec.Actor.String() != "api:ops" || !strings.Contains(rec.Detail, s.req.Key) {
				t.Fatalf("audit record %+v; want %s by api:ops naming the key", rec, wantRes)
			}
			if s.state == "" {
				return
			}
			if rec.AgentID == "" || rec.IncidentID == "" {
				t.Errorf("audit record %+v does not name the entry's agent and incident", rec)
			}
			after, found, _ := r.svc.Worker.Store.Get(ctx, s.req.Key)
			if !found || after.State != s.state {
				t.Fatalf("entry after the repair: %+v; want %s", after, s.state)
			}
			ran := after.Attempts - before.Attempts
			switch {
			case s.req.Op == respapi.OutboxRequeue && !s.dup && ran != 1:
				t.Fatalf("the requeued entry ran %d times, want once", ran)
			case (s.dup || s.req.Op == respapi.OutboxDismiss) && ran != 0:
				t.Fatalf("the entry ran %d times; want none", ran)
			}
			if s.req.Op == respapi.OutboxDismiss && after.LastError != "dismissed: dismissed by api:ops: agent retired" {
				t.Errorf("dismissed entry's note %q", after.LastError)
			}
		})
	}
	// The changelog has the repaired states: a new owner restores them.
	for agent, want := range map[string]outbox.State{"agent-r1": outbox.StateDone, "agent-r2": outbox.StateFailed} {
		en, found, err := FindOutboxEntry(ctx, cl, keys[agent])
		if err != nil || !found || en.State != want || en.Partition != r.owner.Partition(agent) {
			t.Errorf("%s's entry in the changelog: %+v, %v, %v; want %s in partition %d", agent, en, found, err, want, r.owner.Partition(agent))
		}
	}
	if _, found, err := FindOutboxEntry(ctx, cl, "no-such-key"); err != nil || found {
		t.Errorf("FindOutboxEntry of an unknown key: %v, %v", found, err)
	}
}

func repairAudit(t *testing.T, r *rig, action string) []audit.Record {
	t.Helper()
	recs, err := r.svc.Audit.Query(context.Background(), audit.Filter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, rec := range recs {
		if rec.Action == action {
			out = append(out, rec)
		}
	}
	return out
}
