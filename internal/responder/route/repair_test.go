package route

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
)

// partOwners owns anomaly partitions, not agents: what an outbox repair
// is located by.
type partOwners struct {
	mu    sync.Mutex
	owner map[int32]string
	inst  string
}

func (o *partOwners) Owns(string) bool       { return false }
func (o *partOwners) Partition(string) int32 { return -1 }
func (o *partOwners) OwnsPartition(p int32) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.owner[p] == o.inst
}

// agentOnly is an Ownership that cannot answer for a partition.
type agentOnly struct{}

func (agentOnly) Owns(string) bool       { return true }
func (agentOnly) Partition(string) int32 { return 0 }

// repairer is one instance's outbox: the entries of the partitions it
// holds, by key. A requeue of a parked entry makes it pending; of any
// other, a conflict.
type repairer struct {
	mu      sync.Mutex
	entries map[string]int32  // key → partition
	state   map[string]string // key → state
	ran     int
}

func (e *repairer) Locate(context.Context, Command) (string, bool) { return "", false }

func (e *repairer) LocatePartition(_ context.Context, c Command) (int32, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p, ok := e.entries[c.OutboxRepair.Key]; ok {
		return p, true
	}
	return c.OutboxRepair.Partition, c.OutboxRepair.Partition >= 0
}

func (e *repairer) Execute(_ context.Context, c Command) (json.RawMessage, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ran++
	k := c.OutboxRepair.Key
	switch st, ok := e.state[k]; {
	case !ok:
		return nil, fmt.Errorf("no entry %q: %w", k, respapi.ErrNotFound)
	case st != "parked":
		return nil, fmt.Errorf("it is %s: %w", st, respapi.ErrConflict)
	}
	e.state[k] = "pending"
	return json.RawMessage(`{"state":"pending"}`), nil
}

func (e *repairer) runs() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ran
}

func repair(key string, hint int32) Command {
	return Command{ID: "outbox:requeue:" + key, Kind: KindOutboxRepair,
		OutboxRepair: &OutboxRepair{OutboxRepair: respapi.OutboxRepair{Op: respapi.OutboxRequeue, Key: key, Actor: audit.Actor{Kind: audit.ActorAPI, TokenName: "ops"}}, Partition: hint}}
}

// repairCluster: a owns partition 3 and holds the parked entry "k" (and
// the pending "busy") there; b owns partition 5 and holds nothing.
func repairCluster(t *testing.T, owners func(inst string) Ownership) (map[string]*Router, map[string]*repairer) {
	t.Helper()
	table := &fakeTable{}
	routers, engines := map[string]*Router{}, map[string]*repairer{}
	for _, inst := range []string{"a", "b", "c"} {
		e := &repairer{entries: map[string]int32{}, state: map[string]string{}}
		r, err := New(Options{Instance: inst, Sweep: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Bind(Deps{Table: table, Owners: owners(inst), Exec: e, Seen: &seenSet{keys: map[string]bool{}}}); err != nil {
			t.Fatal(err)
		}
		table.subs = append(table.subs, r)
		routers[inst], engines[inst] = r, e
	}
	engines["a"].entries["k"], engines["a"].state["k"] = 3, "parked"
	engines["a"].entries["busy"], engines["a"].state["busy"] = 3, "pending"
	routers["a"].OnAssigned([]int32{3})
	routers["b"].OnAssigned([]int32{5})
	for _, inst := range []string{"a", "b", "c"} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = routers[inst].Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	return routers, engines
}

func byPartition(inst string) Ownership {
	return &partOwners{owner: map[int32]string{3: "a", 5: "b"}, inst: inst}
}

func TestOutboxRepairIsLocatedByPartition(t *testing.T) {
	for _, tc := range []struct {
		name   string
		owners func(string) Ownership
		cmd    Command
		// local: the instances that would run it here.
		local []string
		// from forwards it (with a short wait when wantErr is ErrPending).
		from    string
		wantErr error
		// runsOnA: executions on a afterwards.
		runsOnA int
	}{
		{name: "held by its partition's owner", owners: byPartition, cmd: repair("k", -1), local: []string{"a"}, from: "b", runsOnA: 1},
		{name: "forwarded from an instance owning no partition", owners: byPartition, cmd: repair("k", -1), local: []string{"a"}, from: "c", runsOnA: 1},
		{name: "hinted partition, entry gone: the owner answers not found", owners: byPartition, cmd: repair("gone", 3), local: []string{"a"},
			from: "b", wantErr: respapi.ErrNotFound, runsOnA: 1},
		{name: "not in a state requeue applies to", owners: byPartition, cmd: repair("busy", -1), local: []string{"a"}, from: "c",
			wantErr: respapi.ErrConflict, runsOnA: 1},
		{name: "unknown key, no hint: nobody runs it", owners: byPartition, cmd: repair("nowhere", -1), from: "b", wantErr: ErrPending},
		{name: "an Ownership that cannot answer for partitions runs none", owners: func(string) Ownership { return agentOnly{} },
			cmd: repair("k", 3), from: "b", wantErr: ErrPending},
	} {
		t.Run(tc.name, func(t *testing.T) {
			routers, engines := repairCluster(t, tc.owners)
			for _, inst := range []string{"a", "b", "c"} {
				want := false
				for _, l := range tc.local {
					want = want || l == inst
				}
				if got := routers[inst].Local(wait(t), tc.cmd); got != want {
					t.Errorf("%s.Local = %v, want %v", inst, got, want)
				}
			}
			ctx := wait(t)
			if errors.Is(tc.wantErr, ErrPending) {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
				defer cancel()
			}
			got, _, err := routers[tc.from].Forward(ctx, tc.cmd)
			if err == nil {
				err = got.Err()
			}
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Forward: %v", err)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("Forward: %v, want %v", err, tc.wantErr)
			case tc.wantErr == nil && (got.State != StateDone || got.By != "a"):
				t.Fatalf("outcome %+v, want done by a", got)
			}
			if n := engines["a"].runs(); n != tc.runsOnA {
				t.Fatalf("a ran %d repairs, want %d", n, tc.runsOnA)
			}
			if n := engines["b"].runs() + engines["c"].runs(); n != 0 {
				t.Fatalf("instances that do not own partition 3 ran %d repairs", n)
			}
		})
	}
}

// TestOutboxRepairRetryActsOnce: the same command id sent again, to any
// instance, after the entry ran and was parked again, answers the first
// outcome and requeues nothing.
func TestOutboxRepairRetryActsOnce(t *testing.T) {
	for _, retryFrom := range []string{"b", "c"} {
		t.Run("retry from "+retryFrom, func(t *testing.T) {
			routers, engines := repairCluster(t, byPartition)
			c := repair("k", 3)
			if _, _, err := routers["b"].Forward(wait(t), c); err != nil {
				t.Fatal(err)
			}
			// The entry runs, fails again and is parked again.
			engines["a"].mu.Lock()
			engines["a"].state["k"] = "parked"
			engines["a"].mu.Unlock()
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
				if got, _ := routers[retryFrom].Get(c.ID); got.Final() {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the outcome did not reach " + retryFrom)
				}
			}
			got, earlier, err := routers[retryFrom].Forward(wait(t), c)
			if err != nil || !earlier || got.State != StateDone {
				t.Fatalf("retry: %+v earlier=%v err=%v; want the first outcome", got, earlier, err)
			}
			if n := engines["a"].runs(); n != 1 {
				t.Fatalf("the repair ran %d times; want once", n)
			}
			if engines["a"].state["k"] != "parked" {
				t.Fatal("the retry requeued the entry again")
			}
		})
	}
}
