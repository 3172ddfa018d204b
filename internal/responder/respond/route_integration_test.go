package respond

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/route"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// TestIntegrationApprovalOnOtherInstanceRunsOnce runs two responders that
// share a global table on the test broker and the handled set in
// ClickHouse, as two processes would: each opens its own table reader and
// its own ClickHouse connection. Instance a owns the agent; the approval
// is clicked on b, and Slack's retries of that click reach both, at the
// same time and then again later. The approval runs once, on a.
func TestIntegrationApprovalOnOtherInstanceRunsOnce(t *testing.T) {
	k := itest.PlainKafka(t)
	chAddr := itest.ClickHouseAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	topic := "route-it-" + itest.RandHex(6)
	sec := k.Security(t)
	if err := kafka.EnsureTopics(ctx, k.Brokers, sec, kstate.Spec(topic, 1)); err != nil {
		t.Fatal(err)
	}
	k.DeleteTopicsAfter(t, topic)
	db := "route_it_" + itest.RandHex(6)
	itest.DropDatabaseAfter(t, chAddr, db)
	chCfg := config.ClickHouse{Addr: chAddr, Database: db, Username: "default", DialTimeout: 5 * time.Second}
	migrated, err := chstore.OpenMigrated(ctx, chCfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	migrated.Close()

	start := func(name string, o owns) (*rig, *route.Router) {
		rt, err := route.New(route.Options{Instance: name})
		if err != nil {
			t.Fatal(err)
		}
		mux := kstate.NewMux()
		mux.Handle(route.Prefix, func(r kstate.Record) { rt.Apply(r.Key, r.Value) })
		table, err := kstate.OpenTable(ctx, kstate.Config{Brokers: k.Brokers, Security: sec, Topic: topic}, mux.Apply)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { table.Close() })
		st, err := chstore.OpenMigrated(ctx, chCfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		r := newRigWith(t, func(r *rig) {
			r.deps = func(d *Deps) { d.Router, d.Commands, d.Owners, d.Seen = rt, table, o, chstore.NewSeen(st) }
		})
		return r, rt
	}
	a, ra := start("a", owns{"agent-z": true})
	b, _ := start("b", owns{})
	ra.OnAssigned([]int32{0})

	an := anomaly.Anomaly{V: 1, ID: "z-it", AgentID: "agent-z", CredentialID: "cred-z", Kind: anomaly.ZombieRoute, Severity: "medium", Score: 3,
		WindowStartMs: 1, WindowEndMs: 60_001}
	if _, err := a.svc.Engine.Handle(ctx, an); err != nil {
		t.Fatal(err)
	}
	a.settle()
	codec, _ := slackui.NewActionCodec(testSecret)
	v, err := codec.Encode(slackui.ActionRef{Kind: slackui.Approve, IncidentID: IncidentID(an), AnomalyID: IncidentID(an) + "-gated-1"})
	if err != nil {
		t.Fatal(err)
	}
	deliver := func(to *rig, retry int) (int, time.Duration) {
		q := signed(t, "aw_approve", v, "trig-it", time.Now())
		if retry > 0 {
			q.Header.Set("X-Slack-Retry-Num", strconv.Itoa(retry))
		}
		w := httptest.NewRecorder()
		began := time.Now()
		to.svc.Handler.ServeHTTP(w, q)
		return w.Code, time.Since(began)
	}

	// The click on b; it answers only once a has run it (or 2 s passed).
	if code, took := deliver(b, 0); code != http.StatusOK || took > 3*time.Second {
		t.Fatalf("click on b: status %d after %s; want 200 within Slack's 3 s", code, took)
	} else {
		t.Logf("click forwarded from b to a answered in %s", took)
	}
	// Slack's retries of it, to both instances at once, then once more
	// to each.
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i, to := range []*rig{a, b, a, b} {
		wg.Go(func() { codes[i], _ = deliver(to, i+1) })
		if i == 1 {
			wg.Wait()
		}
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("retry %d: status %d; want 200", i+1, c)
		}
	}
	a.settle()
	b.settle()

	if has, _ := os.ReadFile(filepath.Join(a.cfg.Responder.StateDir, "denylist.txt")); !bytes.Contains(has, []byte("cred-z")) {
		t.Fatalf("the approved revocation did not run on the owner; deny-list:\n%s", has)
	}
	if n := auditCount(t, a, "agent-z", "approve", audit.ResultOK); n != 1 {
		t.Errorf("owner recorded %d approvals; want 1", n)
	}
	if n := auditCount(t, a, "agent-z", "revoke", audit.ResultOK); n != 1 {
		t.Errorf("owner recorded %d revocations; want 1", n)
	}
	if n := auditCount(t, b, "agent-z", "approve", audit.ResultOK) + auditCount(t, b, "agent-z", "revoke", audit.ResultOK); n != 0 {
		t.Errorf("b, which does not own the agent, recorded %d actions", n)
	}
	if has, _ := os.ReadFile(filepath.Join(b.cfg.Responder.StateDir, "denylist.txt")); bytes.Contains(has, []byte("cred-z")) {
		t.Error("b, which does not own the agent, revoked")
	}
	key := slackui.DedupKey("T1", "trig-it", "1700000000.1", v)
	if c, ok := ra.Get(key); !ok || c.From != "b" || c.By != "a" || c.State != route.StateDone {
		t.Errorf("the click's command as a sees it: %+v (found %v); want received by b, done by a", c, ok)
	}
}
