package respond

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
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

	// start runs an instance; stateDir "" gives it a fresh one, else it
	// is a restart of the instance whose state that is.
	start := func(name string, o owns, stateDir string) (*rig, *route.Router) {
		rt, err := route.New(route.Options{Instance: name})
		if err != nil {
			t.Fatal(err)
		}
		mux := kstate.NewMux()
		rt.Register(mux)
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
			if stateDir != "" {
				r.cfg.Responder.StateDir = stateDir
			}
			// The fifty acknowledgements below post fifty notes in a
			// minute; the channel cap would hold the next approval
			// request back to the next minute.
			r.cfg.Responder.Slack.MaxMessagesPerMinute = 0
		})
		return r, rt
	}
	aOwns := owns{"agent-z": true, "agent-y": true}
	a, ra := start("a", aOwns, "")
	b, _ := start("b", owns{}, "")
	route.Part{R: ra}.Activate(0)

	codec, _ := slackui.NewActionCodec(testSecret)
	approval := func(id, agent, cred string) string {
		an := anomaly.Anomaly{V: 1, ID: id, AgentID: agent, CredentialID: cred, Kind: anomaly.ZombieRoute, Severity: "medium", Score: 3,
			WindowStartMs: 1, WindowEndMs: 60_001}
		if _, err := a.svc.Engine.Handle(ctx, an); err != nil {
			t.Fatal(err)
		}
		v, err := codec.Encode(slackui.ActionRef{Kind: slackui.Approve, IncidentID: IncidentID(an), AnomalyID: IncidentID(an) + "-gated-1"})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v := approval("z-it", "agent-z", "cred-z")
	a.settle()
	click := func(to *rig, value, trigger string, retry int) (int, time.Duration) {
		q := signed(t, "aw_approve", value, trigger, time.Now())
		if retry > 0 {
			q.Header.Set("X-Slack-Retry-Num", strconv.Itoa(retry))
		}
		w := httptest.NewRecorder()
		began := time.Now()
		to.svc.Handler.ServeHTTP(w, q)
		return w.Code, time.Since(began)
	}
	deliver := func(to *rig, retry int) (int, time.Duration) { return click(to, v, "trig-it", retry) }

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
	key := slackui.DedupKey("T1", "trig-it", "1700000000.1", v)
	waitCommand(t, ra, key)
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
	if c, ok := ra.Get(key); !ok || c.From != "b" || c.By != "a" || c.State != route.StateDone {
		t.Errorf("the click's command as a sees it: %+v (found %v); want received by b, done by a", c, ok)
	}

	// Fifty acknowledgements clicked on b by fifty analysts: each answers
	// within Slack's 3 s and runs once on a.
	ack, err := codec.Encode(slackui.ActionRef{Kind: slackui.Acknowledge, IncidentID: IncidentID(anomaly.Anomaly{ID: "z-it", AgentID: "agent-z"}), AnomalyID: "z-it"})
	if err != nil {
		t.Fatal(err)
	}
	const acks = 50
	took := make([]time.Duration, 0, acks)
	for i := range acks {
		q := signedAs(t, "U0ACK"+strconv.Itoa(i), "aw_ack", ack, "trig-ack-"+strconv.Itoa(i), time.Now()) // one user each: each user has a rate limit
		w := httptest.NewRecorder()
		began := time.Now()
		b.svc.Handler.ServeHTTP(w, q)
		d := time.Since(began)
		if w.Code != http.StatusOK || d > 3*time.Second {
			t.Fatalf("acknowledge %d on b: status %d after %s; want 200 within 3 s", i, w.Code, d)
		}
		took = append(took, d)
	}
	slices.Sort(took)
	t.Logf("%d clicks forwarded from b to a: p50 %s, p99 %s, max %s", acks, took[acks/2], took[acks*99/100], took[acks-1])
	for deadline := time.Now().Add(20 * time.Second); auditCount(t, a, "agent-z", "acknowledge", audit.ResultOK) < acks; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			break
		}
	}
	if n := auditCount(t, a, "agent-z", "acknowledge", audit.ResultOK); n != acks {
		t.Errorf("a recorded %d acknowledgements; want %d", n, acks)
	}

	// A second approval request (after the first was answered, so it is
	// not grouped with it); a stops before its click: b hands the click
	// on, and answers Slack once its wait is over, the command pending.
	vy := approval("y-it", "agent-y", "cred-y")
	a.settle()
	aDir := a.cfg.Responder.StateDir
	a.stop()
	if code, took := click(b, vy, "trig-y", 0); code != http.StatusOK || took > 3*time.Second {
		t.Fatalf("click on b with no owner running: status %d after %s; want 200 within 3 s", code, took)
	}
	if has, _ := os.ReadFile(filepath.Join(aDir, "denylist.txt")); bytes.Contains(has, []byte("cred-y")) {
		t.Fatal("revoked with no owner running")
	}
	// a's successor (the same state, a new process that reads the table
	// anew) runs the pending click when its partition is activated.
	a2, ra2 := start("a2", aOwns, aDir)
	if c, ok := ra2.Get(slackui.DedupKey("T1", "trig-y", "1700000000.1", vy)); !ok || c.Final() {
		t.Fatalf("the successor's first read of the table: %+v (found %v); want the click pending", c, ok)
	}
	route.Part{R: ra2}.Activate(0)
	deadline := time.Now().Add(30 * time.Second)
	for auditCount(t, a2, "agent-y", "revoke", audit.ResultOK) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the successor did not run the pending approval")
		}
		time.Sleep(20 * time.Millisecond)
	}
	a2.settle()
	if n := auditCount(t, a2, "agent-y", "approve", audit.ResultOK); n != 1 {
		t.Errorf("approvals of agent-y: %d; want 1", n)
	}
	if has, _ := os.ReadFile(filepath.Join(aDir, "denylist.txt")); !bytes.Contains(has, []byte("cred-y")) {
		t.Errorf("the pending approval's revocation is not in the deny-list:\n%s", has)
	}
	if n := auditCount(t, a2, "agent-z", "revoke", audit.ResultOK); n != 1 {
		t.Errorf("agent-z revoked %d times after the restart; want still 1", n)
	}
}
