package respond

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/route"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// memTable is the global table of a test: every Put is applied to every
// instance's Router, in order, before it returns.
type memTable struct {
	mu   sync.Mutex
	subs []*route.Router
}

func (t *memTable) Put(_ context.Context, key string, value []byte) (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range t.subs {
		r.Apply(key, value)
	}
	return 0, nil
}

func (t *memTable) Delete(ctx context.Context, key string) (int64, error) {
	return t.Put(ctx, key, nil)
}

// owns is an Ownership by a fixed set of agents, all in partition 0.
type owns map[string]bool

func (o owns) Owns(agent string) bool { return o[agent] }
func (o owns) Partition(string) int32 { return 0 }

// sharedSeen is the handled set both instances share (ClickHouse's table
// in the distributed mode).
type sharedSeen struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (s *sharedSeen) Handled(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[id], nil
}

func (s *sharedSeen) MarkHandled(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[id] {
		return false, nil
	}
	s.keys[id] = true
	return true, nil
}

// twoInstances starts responders a and b on one table and handled set; a
// owns the agents in ownedByA and has their partition restored.
func twoInstances(t *testing.T, ownedByA ...string) (a, b *rig) {
	t.Helper()
	table, seen := &memTable{}, &sharedSeen{keys: map[string]bool{}}
	start := func(name string, o owns) *rig {
		rt, err := route.New(route.Options{Instance: name})
		if err != nil {
			t.Fatal(err)
		}
		table.mu.Lock()
		table.subs = append(table.subs, rt)
		table.mu.Unlock()
		r := newRigWith(t, func(r *rig) {
			r.deps = func(d *Deps) { d.Router, d.Commands, d.Owners, d.Seen = rt, table, o, seen }
		})
		if name == "a" {
			rt.OnAssigned([]int32{0})
		}
		return r
	}
	o := owns{}
	for _, ag := range ownedByA {
		o[ag] = true
	}
	return start("a", o), start("b", owns{})
}

// waitCommand waits until rt has the outcome of command id: a forwarded
// click answers Slack after at most 2 s, maybe before the owner ran it.
func waitCommand(t *testing.T, rt *route.Router, id string) route.Command {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, ok := rt.Get(id); ok && c.Final() {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("command %s has no outcome after 20s", id)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func auditCount(t *testing.T, r *rig, agent, action string, res audit.Result) int {
	t.Helper()
	recs, err := r.svc.Audit.Query(context.Background(), audit.Filter{AgentID: agent})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rec := range recs {
		if rec.Action == action && rec.Result == res {
			n++
		}
	}
	return n
}

// An approval clicked on the instance that does not own the agent runs
// once on the owner, including Slack's retries of the click delivered to
// either instance.
func TestApprovalClickedOnAnotherInstanceRunsOnce(t *testing.T) {
	a, b := twoInstances(t, "agent-z")
	ctx := context.Background()
	an := anomaly.Anomaly{V: 1, ID: "z-1", AgentID: "agent-z", CredentialID: "cred-z", Kind: anomaly.ZombieRoute, Severity: "medium", Score: 3,
		WindowStartMs: 1, WindowEndMs: 60_001}
	if _, err := a.svc.Engine.Handle(ctx, an); err != nil {
		t.Fatal(err)
	}
	a.settle()
	codec, _ := slackui.NewActionCodec(testSecret)
	req := IncidentID(an) + "-gated-1"
	v, err := codec.Encode(slackui.ActionRef{Kind: slackui.Approve, IncidentID: IncidentID(an), AnomalyID: req})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(r *rig, retry int) int {
		q := signed(t, "aw_approve", v, "trig-x", time.Now())
		if retry > 0 {
			q.Header.Set("X-Slack-Retry-Num", strconv.Itoa(retry))
		}
		w := httptest.NewRecorder()
		r.svc.Handler.ServeHTTP(w, q)
		return w.Code
	}
	for i, to := range []*rig{b, b, a, b} {
		if c := serve(to, i); c != http.StatusOK {
			t.Fatalf("delivery %d: status %d", i, c)
		}
	}
	key := slackui.DedupKey("T1", "trig-x", "1700000000.1", v)
	if c := waitCommand(t, b.svc.router, key); c.From != "b" || c.By != "a" || c.State != route.StateDone {
		t.Fatalf("command of the click as b sees it: %+v; want received by b, done by a", c)
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
		t.Errorf("the instance that does not own the agent recorded %d actions", n)
	}
	if has, _ := os.ReadFile(filepath.Join(b.cfg.Responder.StateDir, "denylist.txt")); bytes.Contains(has, []byte("cred-z")) {
		t.Error("the instance that does not own the agent revoked")
	}
}

// A click by someone who may not act, on the instance that does not own
// the agent, is refused by the owner: nothing runs, the attempt is
// audited there.
func TestForwardedClickOfOutsiderIsRefused(t *testing.T) {
	a, b := twoInstances(t, "agent-z")
	ctx := context.Background()
	an := anomaly.Anomaly{V: 1, ID: "z-2", AgentID: "agent-z", CredentialID: "cred-z", Kind: anomaly.ZombieRoute, Severity: "medium", Score: 3,
		WindowStartMs: 1, WindowEndMs: 60_001}
	if _, err := a.svc.Engine.Handle(ctx, an); err != nil {
		t.Fatal(err)
	}
	a.settle()
	codec, _ := slackui.NewActionCodec(testSecret)
	v, _ := codec.Encode(slackui.ActionRef{Kind: slackui.Approve, IncidentID: IncidentID(an), AnomalyID: IncidentID(an) + "-gated-1"})
	w := httptest.NewRecorder()
	b.svc.Handler.ServeHTTP(w, signedAs(t, "U0MALLORY", "aw_approve", v, "trig-m", time.Now()))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d; want 200 (Slack shows the refusal as an ephemeral message)", w.Code)
	}
	if c := waitCommand(t, b.svc.router, slackui.DedupKey("T1", "trig-m", "1700000000.1", v)); c.State != route.StateFailed || c.ErrorKind != route.ErrKindNotAllowed {
		t.Fatalf("outcome %+v; want failed, not allowed", c)
	}
	a.settle()
	if n := auditCount(t, a, "agent-z", string(slackui.Approve), audit.ResultRefused); n != 1 {
		t.Errorf("owner audited %d refusals; want 1", n)
	}
	if n := auditCount(t, a, "agent-z", "revoke", audit.ResultOK); n != 0 {
		t.Errorf("an outsider's forwarded approval revoked (%d)", n)
	}
}

// A run-playbook request on the instance that does not own the agent runs
// on the owner; the caller gets the owner's result, and the same request
// again is a duplicate that runs nothing.
func TestAPIRunOnAnotherInstanceRunsOnce(t *testing.T) {
	a, b := twoInstances(t, "agent-r")
	a.kong.Add("agent-r", "cred-r", "k")
	rr := routedRunner{b.svc.Engine, b.svc.router}
	req := respapi.Request{Manual: playbooks.Manual{Playbook: "contain", AgentID: "agent-r",
		Agent: playbooks.AgentInfo{CredentialID: "cred-r"}, Key: "api:ops:r1"}, Actor: audit.Actor{Kind: audit.ActorAPI, TokenName: "ops"}, RequestID: "r1"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := rr.Run(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicate || len(res.Steps) != 2 || res.Steps[1].Status != audit.ResultOK || res.Decision.Target.AgentID != "agent-r" {
		t.Fatalf("forwarded run: %+v; want both steps ok", res)
	}
	again, err := rr.Run(ctx, req)
	if err != nil || !again.Duplicate {
		t.Fatalf("the same request again: duplicate=%v err=%v", again.Duplicate, err)
	}
	a.settle()
	if n := a.kong.Count(http.MethodDelete); n != 1 {
		t.Errorf("owner's Kong got %d revocations; want 1", n)
	}
	if n := b.kong.Count(http.MethodDelete); n != 0 {
		t.Errorf("the receiving instance's Kong got %d revocations; want 0", n)
	}
}

// A verdict for an incident no instance holds waits, then answers queued.
func TestAPIFalsePositiveForUnknownIncidentIsQueued(t *testing.T) {
	_, b := twoInstances(t)
	rv := routedVerdicts{b.svc.Engine, b.svc.router}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := rv.FalsePositive(ctx, "inc-nowhere", "a1", audit.Actor{Kind: audit.ActorAPI, TokenName: "ops"}); !errors.Is(err, respapi.ErrQueued) {
		t.Fatalf("verdict for an incident nobody holds: %v; want ErrQueued", err)
	}
}
