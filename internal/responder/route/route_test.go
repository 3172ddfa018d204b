package route

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// fakeTable is the global table shared by every instance of a test: Put
// applies the record to every subscribed Router in offset order before it
// returns, as kstate.Table does for the writer (and soon after for the
// others).
type fakeTable struct {
	mu   sync.Mutex
	subs []*Router
	log  []string
	fail error
}

func (t *fakeTable) Put(_ context.Context, key string, value []byte) (int64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fail != nil {
		return 0, t.fail
	}
	t.log = append(t.log, key)
	for _, r := range t.subs {
		r.Apply(key, value)
	}
	return int64(len(t.log) - 1), nil
}

func (t *fakeTable) Delete(ctx context.Context, key string) (int64, error) {
	return t.Put(ctx, key, nil)
}

// owners says which instance owns each agent; partition = agent's number.
type owners struct {
	mu    sync.Mutex
	owner map[string]string // agent → instance
}

func (o *owners) set(agent, inst string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.owner[agent] = inst
}

type ownership struct {
	o    *owners
	inst string
}

func (w ownership) Owns(agent string) bool {
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	return w.o.owner[agent] == w.inst
}

func (w ownership) Partition(agent string) int32 {
	var p int32
	fmt.Sscanf(agent, "agent-%d", &p)
	return p
}

// seenSet is the shared handled set (ClickHouse's in production).
type seenSet struct {
	mu   sync.Mutex
	keys map[string]bool
}

func (s *seenSet) MarkHandled(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[id] {
		return false, nil
	}
	s.keys[id] = true
	return true, nil
}

func (s *seenSet) Handled(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[id], nil
}

// engine is one instance's executor: it holds the incidents of the agents
// it owns and counts what it runs.
type engine struct {
	mu        sync.Mutex
	incidents map[string]string // incident → agent, as restored
	ran       map[string]int    // command id → executions
	err       error
	block     chan struct{} // when set, Execute waits for it
	started   chan string   // when set, Execute sends the id first
}

func (e *engine) Locate(_ context.Context, c Command) (string, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case c.Click != nil:
		a, ok := e.incidents[c.Click.IncidentID]
		return a, ok
	case c.Run != nil:
		return c.Run.AgentID, true
	case c.FalsePositive != nil:
		a, ok := e.incidents[c.FalsePositive.Incident]
		return a, ok
	}
	return "", false
}

func (e *engine) Execute(_ context.Context, c Command) (json.RawMessage, error) {
	if e.started != nil {
		e.started <- c.ID
	}
	if e.block != nil {
		<-e.block
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ran[c.ID]++
	if e.err != nil {
		return nil, e.err
	}
	return json.RawMessage(`{"ran":"` + c.ID + `"}`), nil
}

func (e *engine) runs(id string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ran[id]
}

type cluster struct {
	t       *testing.T
	table   *fakeTable
	owners  *owners
	seen    *seenSet
	routers map[string]*Router
	engines map[string]*engine
	now     func() time.Time
}

// newCluster starts instances a, b and c; a owns agent-1 (partition 1)
// and holds its incident inc-1.
func newCluster(t *testing.T, run ...string) *cluster {
	t.Helper()
	cl := &cluster{t: t, table: &fakeTable{}, owners: &owners{owner: map[string]string{"agent-1": "a"}},
		seen: &seenSet{keys: map[string]bool{}}, routers: map[string]*Router{}, engines: map[string]*engine{}, now: time.Now}
	for _, inst := range []string{"a", "b", "c"} {
		e := &engine{incidents: map[string]string{}, ran: map[string]int{}}
		r, err := New(Options{Instance: inst, Now: func() time.Time { return cl.now() }, Sweep: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Bind(Deps{Table: cl.table, Owners: ownership{cl.owners, inst}, Exec: e, Seen: cl.seen}); err != nil {
			t.Fatal(err)
		}
		cl.table.subs = append(cl.table.subs, r)
		cl.routers[inst], cl.engines[inst] = r, e
	}
	cl.engines["a"].incidents["inc-1"] = "agent-1"
	cl.routers["a"].OnAssigned([]int32{1})
	for _, inst := range run {
		cl.start(inst)
	}
	return cl
}

func (cl *cluster) start(inst string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = cl.routers[inst].Run(ctx) }()
	cl.t.Cleanup(func() { cancel(); <-done })
}

func (cl *cluster) total(id string) int {
	n := 0
	for _, e := range cl.engines {
		n += e.runs(id)
	}
	return n
}

func click(key string) Command {
	return Command{ID: "slack-action:" + key, Kind: KindClick,
		Click: &slackui.Action{Kind: slackui.Approve, IncidentID: "inc-1", AnomalyID: "req-1", UserID: "U1", Key: "slack-action:" + key}}
}

func wait(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestForeignClickRunsOnceOnTheOwner(t *testing.T) {
	cl := newCluster(t, "a", "b", "c")
	c := click("k1")
	if cl.routers["b"].Local(wait(t), c) {
		t.Fatal("b does not own agent-1 but would run its click")
	}
	if !cl.routers["a"].Local(wait(t), c) {
		t.Fatal("a owns agent-1 and holds inc-1 but would not run its click")
	}
	got, earlier, err := cl.routers["b"].Forward(wait(t), c)
	if err != nil || earlier {
		t.Fatalf("Forward: %v (earlier %v)", err, earlier)
	}
	if got.State != StateDone || got.By != "a" || got.From != "b" || string(got.Result) != `{"ran":"slack-action:k1"}` {
		t.Fatalf("outcome %+v, want done by a for b with a's result", got)
	}
	if n := cl.engines["a"].runs(c.ID); n != 1 || cl.total(c.ID) != 1 {
		t.Fatalf("a ran the click %d times, all instances %d; want 1, 1", n, cl.total(c.ID))
	}
	if ok, _ := cl.seen.Handled(context.Background(), "click:slack-action:k1"); !ok {
		t.Fatal("the owner did not mark the click in the handled set under the interaction handler's key")
	}
}

// TestSlackRetriesRunOnce covers the ways Slack's retries of one click
// (the same payload, so the same key) reach the instances.
func TestSlackRetriesRunOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		// first is delivered first: "owner" runs it on a's handler path
		// (mark, then run), an instance name forwards it from there.
		first, retry string
		// retryBeforeOwnerRuns delivers the retry while the owner is
		// not running commands yet.
		retryBeforeOwnerRuns bool
	}{
		{name: "to b, retry to c", first: "b", retry: "c"},
		{name: "to b, retry to b", first: "b", retry: "b"},
		{name: "to the owner, retry to b", first: "owner", retry: "b"},
		{name: "to b, retry to c before the owner runs", first: "b", retry: "c", retryBeforeOwnerRuns: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCluster(t, "b", "c")
			if !tc.retryBeforeOwnerRuns {
				cl.start("a")
			}
			c := click("k2")
			deliver := func(to string) (Command, error) {
				if to == "owner" {
					if first, _ := cl.seen.MarkHandled(context.Background(), "click:"+c.Click.Key); first {
						_, _ = cl.engines["a"].Execute(context.Background(), c)
					}
					return Command{State: StateDone}, nil
				}
				ctx := wait(t)
				if tc.retryBeforeOwnerRuns {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, 50*time.Millisecond)
					defer cancel()
				}
				got, _, err := cl.routers[to].Forward(ctx, c)
				return got, err
			}
			got1, err1 := deliver(tc.first)
			got2, err2 := deliver(tc.retry)
			if tc.retryBeforeOwnerRuns {
				if !errors.Is(err1, ErrPending) || !errors.Is(err2, ErrPending) {
					t.Fatalf("with the owner not running: %v, %v; want ErrPending twice", err1, err2)
				}
				cl.start("a")
				deadline := time.Now().Add(5 * time.Second)
				for cl.total(c.ID) == 0 && time.Now().Before(deadline) {
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond) // room for a second run, which must not come
			} else if err1 != nil || err2 != nil || !got1.Final() || !got2.Final() {
				t.Fatalf("deliveries: %+v %v; %+v %v", got1, err1, got2, err2)
			}
			if n := cl.total(c.ID); n != 1 {
				t.Fatalf("the click ran %d times; want once", n)
			}
		})
	}
}

func TestRetryOfAnsweredRequestGetsTheFirstOutcome(t *testing.T) {
	cl := newCluster(t, "a")
	c := click("k3")
	if _, _, err := cl.routers["b"].Forward(wait(t), c); err != nil {
		t.Fatal(err)
	}
	// The table reaches each instance in its own time: the retry comes
	// once the outcome has reached c.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if got, _ := cl.routers["c"].Get(c.ID); got.Final() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the outcome did not reach c")
		}
	}
	got, earlier, err := cl.routers["c"].Forward(wait(t), c)
	if err != nil || !earlier || got.State != StateDone || got.By != "a" {
		t.Fatalf("retry: %+v earlier=%v err=%v; want a's done outcome, earlier, nothing written", got, earlier, err)
	}
	if n := len(cl.table.log); n != 2 {
		t.Fatalf("table has %d records; want 2 (the command and its outcome)", n)
	}
}

func TestNewOwnerRunsPendingCommandsWhenAssigned(t *testing.T) {
	cl := newCluster(t, "b", "c")
	// a dies before it runs anything: the click stays pending.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	c := click("k4")
	if _, _, err := cl.routers["b"].Forward(ctx, c); !errors.Is(err, ErrPending) {
		t.Fatalf("Forward with no owner running: %v; want ErrPending", err)
	}
	// c is assigned partition 1: it owns agent-1 and restores inc-1, but
	// runs nothing before OnAssigned says the state is there.
	cl.owners.set("agent-1", "c")
	cl.engines["c"].mu.Lock()
	cl.engines["c"].incidents["inc-1"] = "agent-1"
	cl.engines["c"].mu.Unlock()
	cl.routers["b"].OnAssigned(nil) // wakes b, which must not run it
	time.Sleep(50 * time.Millisecond)
	if n := cl.total(c.ID); n != 0 {
		t.Fatalf("ran %d times before the new owner was assigned", n)
	}
	cl.routers["c"].OnAssigned([]int32{1})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, ok := cl.routers["b"].Get(c.ID); ok && got.Final() {
			if got.State != StateDone || got.By != "c" {
				t.Fatalf("outcome %+v; want done by c", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new owner did not run the pending command")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := cl.engines["c"].runs(c.ID); n != 1 || cl.total(c.ID) != 1 {
		t.Fatalf("c ran it %d times, all %d; want 1, 1", n, cl.total(c.ID))
	}
}

func TestRevokedPartitionStopsRunning(t *testing.T) {
	cl := newCluster(t, "a")
	cl.routers["a"].OnRevoked([]int32{1})
	if cl.routers["a"].Local(wait(t), click("k5")) {
		t.Fatal("a would run a click of a partition it gave up")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := cl.routers["b"].Forward(ctx, click("k5")); !errors.Is(err, ErrPending) {
		t.Fatalf("Forward: %v; want ErrPending", err)
	}
	if n := cl.total(click("k5").ID); n != 0 {
		t.Fatalf("ran %d times on a revoked partition", n)
	}
}

func TestOwnerErrorsReachTheReceiver(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want error
	}{
		{fmt.Errorf("approve by U1: %w", slackui.ErrNotAllowed), slackui.ErrNotAllowed},
		{fmt.Errorf("no incident: %w", respapi.ErrNotFound), respapi.ErrNotFound},
		{fmt.Errorf("agent unknown: %w", respapi.ErrBadRequest), respapi.ErrBadRequest},
		{fmt.Errorf("run: %w", playbooks.ErrUnknownPlaybook), playbooks.ErrUnknownPlaybook},
	} {
		t.Run(tc.want.Error(), func(t *testing.T) {
			cl := newCluster(t, "a")
			cl.engines["a"].err = tc.err
			got, _, err := cl.routers["b"].Forward(wait(t), click("k6"))
			if err != nil || got.State != StateFailed {
				t.Fatalf("Forward: %+v, %v; want failed", got, err)
			}
			if e := got.Err(); !errors.Is(e, tc.want) || e.Error() != tc.err.Error() {
				t.Fatalf("Err() = %v; want %v wrapping %v", e, tc.err, tc.want)
			}
		})
	}
}

func TestRunCommandCarriesTheRequestAndDeadline(t *testing.T) {
	cl := newCluster(t, "a")
	req := respapi.Request{Manual: playbooks.Manual{Playbook: "contain", AgentID: "agent-1", Key: "api:ops:r1"},
		Actor: audit.Actor{Kind: audit.ActorAPI, TokenName: "ops"}, RequestID: "r1"}
	c := Command{ID: "run:api:ops:r1", Kind: KindRun, Run: &req}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, _, err := cl.routers["b"].Forward(ctx, c)
	if err != nil || got.State != StateDone || got.Run == nil || got.Run.Key != "api:ops:r1" || got.Run.Actor.TokenName != "ops" {
		t.Fatalf("outcome %+v, %v", got, err)
	}
	dl, _ := ctx.Deadline()
	if got.DeadlineMs != dl.UnixMilli() {
		t.Fatalf("deadline %d; want the sender's %d", got.DeadlineMs, dl.UnixMilli())
	}
	if d := cl.routers["a"].execTimeout(got); d <= 5*time.Second || d >= 10*time.Second {
		t.Fatalf("owner's run timeout %s; want a little under the sender's 10s", d)
	}
}

func TestExpiryAndCleanup(t *testing.T) {
	cl := newCluster(t)
	now := time.Unix(1_800_000_000, 0)
	cl.now = func() time.Time { return now }
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	c := click("k7")
	if _, _, err := cl.routers["b"].Forward(ctx, c); !errors.Is(err, ErrPending) {
		t.Fatal(err)
	}
	now = now.Add(DefaultTTL + time.Second)
	cl.routers["c"].sweep(context.Background()) // not the receiver: waits for 2×TTL
	if got, _ := cl.routers["a"].Get(c.ID); got.Final() {
		t.Fatalf("c expired b's command after one TTL: %+v", got)
	}
	cl.routers["b"].sweep(context.Background())
	got, _ := cl.routers["a"].Get(c.ID)
	if got.State != StateExpired || !errors.Is(got.Err(), ErrExpired) {
		t.Fatalf("after the TTL: %+v; want expired", got)
	}
	// A retry now gets the expiry, and runs nothing.
	if got, earlier, err := cl.routers["c"].Forward(wait(t), c); err != nil || !earlier || got.State != StateExpired {
		t.Fatalf("retry after expiry: %+v %v %v", got, earlier, err)
	}
	now = now.Add(DefaultRetention + time.Second)
	cl.routers["a"].sweep(context.Background())
	if _, ok := cl.routers["a"].Get(c.ID); !ok {
		t.Fatal("a deleted an outcome b wrote after one retention")
	}
	cl.routers["b"].sweep(context.Background())
	for _, inst := range []string{"a", "b", "c"} {
		if _, ok := cl.routers[inst].Get(c.ID); ok {
			t.Fatalf("%s still holds the command after its retention", inst)
		}
	}
	if cl.total(c.ID) != 0 {
		t.Fatal("an expired command ran")
	}
}

func TestApplyKeepsAnOutcomeOverALateRetry(t *testing.T) {
	cl := newCluster(t)
	c := click("k8")
	c.State, c.By, c.DoneMs = StateDone, "a", 1
	b, _ := json.Marshal(c)
	cl.routers["a"].Apply(Prefix+c.ID, b)
	c.State, c.By, c.DoneMs = StatePending, "", 0
	b, _ = json.Marshal(c)
	cl.routers["a"].Apply(Prefix+c.ID, b)
	if got, _ := cl.routers["a"].Get(c.ID); got.State != StateDone {
		t.Fatalf("a pending retry replaced the outcome: %+v", got)
	}
	cl.routers["a"].Apply(Prefix+"other", []byte("{not json"))
	cl.routers["a"].Apply(Prefix+"mismatch", b)
	cl.routers["a"].Apply("s/silence", b)
	for _, id := range []string{"other", "mismatch", "silence"} {
		if _, ok := cl.routers["a"].Get(id); ok {
			t.Fatalf("Apply kept the bad record %q", id)
		}
	}
}

func TestForwardErrors(t *testing.T) {
	cl := newCluster(t)
	if _, _, err := cl.routers["b"].Forward(wait(t), Command{ID: "x", Kind: KindClick}); err == nil {
		t.Fatal("a click without its action was forwarded")
	}
	cl.table.fail = errors.New("broker down")
	if _, _, err := cl.routers["b"].Forward(wait(t), click("k9")); err == nil || errors.Is(err, ErrPending) {
		t.Fatalf("Forward with the table down: %v; want the write error", err)
	}
	cl.table.fail = nil
	cl.routers["b"].mu.Lock()
	n := len(cl.routers["b"].waiters)
	cl.routers["b"].mu.Unlock()
	if n != 0 {
		t.Fatalf("%d waiters left behind by failed forwards", n)
	}
}

func TestDedupErrorLeavesTheCommandPending(t *testing.T) {
	cl := newCluster(t)
	a := cl.routers["a"]
	// The sweep retries a command whose mark failed; the test's sweep
	// runs hourly, so the failure itself wakes a a moment later.
	a.d.Seen = &flakySeen{seenSet: cl.seen, fail: 1, after: func() { time.Sleep(20 * time.Millisecond); a.OnAssigned(nil) }}
	cl.start("a")
	got, _, err := cl.routers["b"].Forward(wait(t), click("k10"))
	if err != nil || got.State != StateDone {
		t.Fatalf("after one dedup error: %+v %v; want done on a later attempt", got, err)
	}
	if cl.total(got.ID) != 1 {
		t.Fatalf("ran %d times", cl.total(got.ID))
	}
}

type flakySeen struct {
	*seenSet
	mu    sync.Mutex
	fail  int
	after func()
}

func (f *flakySeen) MarkHandled(ctx context.Context, id string) (bool, error) {
	f.mu.Lock()
	if f.fail > 0 {
		f.fail--
		f.mu.Unlock()
		go f.after()
		return false, errors.New("clickhouse down")
	}
	f.mu.Unlock()
	return f.seenSet.MarkHandled(ctx, id)
}

// The group marks a partition owned a moment after its state is restored
// and activated: the pending command runs as soon as both hold, not at the
// next sweep (an hour in these tests).
func TestTakeOverRunsPendingCommandWithoutWaitingForTheSweep(t *testing.T) {
	cl := newCluster(t, "c")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	c := click("k11")
	cl.owners.set("agent-1", "nobody")
	if _, _, err := cl.routers["b"].Forward(ctx, c); !errors.Is(err, ErrPending) {
		t.Fatal(err)
	}
	cl.engines["c"].mu.Lock()
	cl.engines["c"].incidents["inc-1"] = "agent-1"
	cl.engines["c"].mu.Unlock()
	Part{cl.routers["c"]}.Activate(1) // restored, not yet owned
	time.Sleep(30 * time.Millisecond)
	if n := cl.total(c.ID); n != 0 {
		t.Fatalf("ran %d times before the partition was owned", n)
	}
	cl.owners.set("agent-1", "c")
	deadline := time.Now().Add(5 * time.Second)
	for cl.total(c.ID) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the pending command did not run once the partition was owned")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Revoking a partition stops new commands of it and waits for the one
// executing, so its state is not dropped under it.
func TestPartRevokeWaitsForRunningCommand(t *testing.T) {
	cl := newCluster(t, "a")
	block := make(chan struct{})
	cl.engines["a"].block, cl.engines["a"].started = block, make(chan string, 1)
	c := click("k12")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := cl.routers["b"].Forward(ctx, c); !errors.Is(err, ErrPending) {
		t.Fatal(err)
	}
	<-cl.engines["a"].started
	revoked := make(chan error, 1)
	go func() { revoked <- Part{cl.routers["a"]}.Revoke(context.Background(), 1) }()
	select {
	case err := <-revoked:
		t.Fatalf("Revoke returned (%v) while the command was executing", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(block)
	if err := <-revoked; err != nil {
		t.Fatal(err)
	}
	if cl.routers["a"].Local(context.Background(), click("k13")) {
		t.Fatal("a still runs commands of a revoked partition")
	}
	short, cancel2 := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel2()
	cl.routers["a"].mu.Lock()
	cl.routers["a"].running["stuck"] = 1
	cl.routers["a"].mu.Unlock()
	if err := cl.routers["a"].Drain(short, 1); err == nil {
		t.Fatal("Drain returned nil with a command still running and its context ended")
	}
	var pt interface {
		Prefix() string
		Load(int32, string, []byte) error
	} = Part{}
	if pt.Prefix() != PartPrefix || pt.Load(0, "x", nil) != nil {
		t.Fatal("Part's changelog side is not empty")
	}
}

func TestRegisterHandsTheMuxCommandsOnly(t *testing.T) {
	r, err := New(Options{Instance: DefaultInstance()})
	if err != nil {
		t.Fatal(err)
	}
	m := kstate.NewMux()
	r.Register(m)
	c := click("k14")
	b, _ := json.Marshal(c)
	m.Apply(kstate.Record{Key: Prefix + c.ID, Value: b})
	if got, ok := r.Get(c.ID); !ok || got.Click == nil || got.Click.Key != c.Click.Key {
		t.Fatalf("the command did not reach the Router through the Mux: %+v %v", got, ok)
	}
	m.Apply(kstate.Record{Key: Prefix + c.ID})
	if _, ok := r.Get(c.ID); ok {
		t.Fatal("a tombstone did not delete the command")
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without an instance name")
	}
	if err := r.Bind(Deps{}); err == nil {
		t.Fatal("Bind without its dependencies")
	}
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("Run before Bind")
	}
}
