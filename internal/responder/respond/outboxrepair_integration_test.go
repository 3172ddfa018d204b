package respond

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/route"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
)

// TestIntegrationOutboxRepairThroughAnotherInstance runs two responders as
// two processes would: each with its own reader of a state topic and a
// global table on the test broker, and its own ClickHouse connection to
// the shared handled set. Instance a owns every anomaly partition and
// holds two parked revocations; b owns none. An operator requeues one and
// dismisses the other through b's HTTP API: b finds the entries'
// partitions in the state topic and hands the repairs to a, which runs
// the requeued revocation once and notes the dismissal's reason.
func TestIntegrationOutboxRepairThroughAnotherInstance(t *testing.T) {
	k := itest.PlainKafka(t)
	chAddr := itest.ClickHouseAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	began := time.Now()
	global, state := "orepair-global-"+itest.RandHex(6), "orepair-state-"+itest.RandHex(6)
	sec := k.Security(t)
	if err := kafka.EnsureTopics(ctx, k.Brokers, sec, kstate.Spec(global, 1), kstate.Spec(state, 3)); err != nil {
		t.Fatal(err)
	}
	k.DeleteTopicsAfter(t, global, state)
	db := "orepair_it_" + itest.RandHex(6)
	itest.DropDatabaseAfter(t, chAddr, db)
	chCfg := config.ClickHouse{Addr: chAddr, Database: db, Username: "default", DialTimeout: 5 * time.Second}
	migrated, err := chstore.OpenMigrated(ctx, chCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	migrated.Close()

	const secret = "ops-0123456789abcdef0123456789abcdef"
	start := func(name string) (*rig, *partstate.Owner, *route.Router) {
		rt, err := route.New(route.Options{Instance: name})
		if err != nil {
			t.Fatal(err)
		}
		mux := kstate.NewMux()
		rt.Register(mux)
		table, err := kstate.OpenTable(ctx, kstate.Config{Brokers: k.Brokers, Security: sec, Topic: global}, mux.Apply)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { table.Close() })
		cl, err := kstate.OpenChangelog(ctx, kstate.Config{Brokers: k.Brokers, Security: sec, Topic: state})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		st, err := chstore.OpenMigrated(ctx, chCfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		owner := partstate.NewOwner(cl, nil, route.Part{R: rt})
		r := newRigWith(t, func(r *rig) {
			r.deps = func(d *Deps) {
				d.Owner, d.Seen = owner, chstore.NewSeen(st)
				d.Router, d.Commands, d.Owners = rt, table, owner
			}
			r.cfg.Responder.Tokens = []config.APIToken{{Name: "ops", SHA256: respapi.HashSecret(secret), CanRepairOutbox: true}}
		})
		return r, owner, rt
	}
	a, aOwner, _ := start("a")
	if err := aOwner.Assign(ctx, []int32{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	b, _, rb := start("b")
	keys := parkedRevocations(t, a, "agent-q1", "agent-q2", "agent-q3")
	requeued, dismissed := keys["agent-q1"], keys["agent-q2"]
	before, _, _ := a.svc.Worker.Store.Get(ctx, requeued)

	api := func(op, body string) (int, respapi.OutboxEntryResponse, time.Duration) {
		q := httptest.NewRequest(http.MethodPost, "/v1/outbox/"+op, strings.NewReader(body))
		q.Header.Set("Authorization", "Bearer "+secret)
		w := httptest.NewRecorder()
		t0 := time.Now()
		b.svc.Handler.ServeHTTP(w, q)
		var out respapi.OutboxEntryResponse
		_ = json.Unmarshal(w.Body.Bytes(), &out)
		return w.Code, out, time.Since(t0)
	}
	body := func(key, reason, id string) string {
		b, _ := json.Marshal(map[string]string{"key": key, "reason": reason, "request_id": id})
		return string(b)
	}

	code, out, took := api("requeue", body(requeued, "kong is back", "it-1"))
	if code != http.StatusOK || out.State != outbox.StatePending || out.Duplicate {
		t.Fatalf("requeue through b: %d %+v; want 200 pending", code, out)
	}
	t.Logf("requeue through b answered by a in %s", took)
	id := "outbox:" + repairID(respapi.OutboxRepair{Op: respapi.OutboxRequeue, Key: requeued, RequestID: "api:ops:it-1"})
	if c, ok := rb.Get(id); !ok || c.From != "b" || c.By != "a" || c.State != route.StateDone || c.OutboxRepair.Partition != before.Partition {
		t.Fatalf("the requeue's command as b sees it: %+v (found %v); want received by b, done by a, in partition %d", c, ok, before.Partition)
	}
	var after outbox.Entry
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		after, _, _ = a.svc.Worker.Store.Get(ctx, requeued)
		if after.State == outbox.StateDone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the requeued revocation is %s on a after 20s; want done", after.State)
		}
	}
	if n := after.Attempts - before.Attempts; n != 1 {
		t.Fatalf("the requeued revocation ran %d times on a; want once", n)
	}
	// The same request again (a client's retry) acts no more.
	code, out, _ = api("requeue", body(requeued, "kong is back", "it-1"))
	if code != http.StatusOK || !out.Duplicate {
		t.Fatalf("retried requeue: %d %+v; want 200, duplicate", code, out)
	}
	a.settle()
	if again, _, _ := a.svc.Worker.Store.Get(ctx, requeued); again.Attempts != after.Attempts || again.State != outbox.StateDone {
		t.Fatalf("after the retry the entry is %s with %d attempts; want done with %d", again.State, again.Attempts, after.Attempts)
	}

	code, out, _ = api("dismiss", body(dismissed, "agent retired", "it-2"))
	if code != http.StatusOK || out.State != outbox.StateFailed || !strings.Contains(out.LastError, "dismissed by api:ops: agent retired") {
		t.Fatalf("dismiss through b: %d %+v; want 200 failed, noting who and why", code, out)
	}
	if en, _, _ := a.svc.Worker.Store.Get(ctx, dismissed); en.State != outbox.StateFailed {
		t.Fatalf("dismissed entry on a: %s", en.State)
	}
	if code, _, _ = api("dismiss", body(dismissed, "again", "it-3")); code != http.StatusConflict {
		t.Fatalf("dismiss of a failed entry through b: %d; want 409", code)
	}
	if code, _, _ = api("requeue", body("no-such-key", "", "it-4")); code != http.StatusNotFound {
		t.Fatalf("requeue of an unknown key through b: %d; want 404", code)
	}

	// a ran and audited the repairs; b, which holds no entry, none.
	for _, c := range []struct {
		agent, action string
		want          int
	}{{"agent-q1", respapi.ActionOutboxRequeue, 1}, {"agent-q2", respapi.ActionOutboxDismiss, 1}, {"agent-q3", respapi.ActionOutboxDismiss, 0}} {
		if n := auditCount(t, a, c.agent, c.action, audit.ResultOK); n != c.want {
			t.Errorf("a audited %d %s of %s; want %d", n, c.action, c.agent, c.want)
		}
	}
	if recs := repairAudit(t, b, respapi.ActionOutboxRequeue); len(recs) != 1 || recs[0].Result != audit.ResultRefused {
		t.Errorf("b's requeue records %+v; want only the refusal of the unknown key", recs)
	}
	if en, _, _ := b.svc.Worker.Store.Get(ctx, requeued); en.Key != "" {
		t.Errorf("b holds the entry %+v; it owns no partition", en)
	}
	t.Logf("test took %s", time.Since(began))
}
