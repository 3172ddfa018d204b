package detect

import (
	"slices"
	"strconv"
	"testing"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

const capBase = int64(1_800_000_000_000) // a minute boundary

func capEvent(agent string, at int64) *event.Event {
	return &event.Event{AgentID: agent, EventTimeMs: at, Route: "/x", Path: "/x", Method: "GET", Status: 200}
}

// TestCappedRestoreLoadsOnSight: a restore capped at two agents holds the
// two most recently saved, and the others come back from the store with
// their own state when they are seen, through Loader, while an agent the
// store never had is not looked up.
func TestCappedRestoreLoadsOnSight(t *testing.T) {
	cat := StaticCatalog{inventory.EmptyRegistry(), inventory.EmptyInventory()}
	set := testSettings()
	set.StartupHold = -1
	p := NewProcessor(set, cat, nil)
	for i := range 5 {
		p.Add(0, int64(i), capEvent("a"+strconv.Itoa(i), capBase+int64(i)*1000))
	}
	p.FlushAll()
	p.Take()
	cp, states := p.Snapshot(0, "g", "t", 1)
	store, err := detstate.OpenFileStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	// Later saves for a3 and a4 make them the most recent.
	for i := range states {
		if states[i].Key == "a3" || states[i].Key == "a4" {
			states[i].UpdatedMs = 2
		}
	}
	if err := store.SaveStates(t.Context(), states); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for _, st := range states {
		want[st.Key] = st.Blob
	}

	q := NewProcessor(set, cat, nil)
	var looked []string
	q.Loader = func(id string) ([]byte, bool) {
		looked = append(looked, id)
		st, ok, err := store.LoadState(t.Context(), detstate.KindAgent, id)
		if err != nil {
			t.Fatal(err)
		}
		return st.Blob, ok
	}
	_, loaded, err := store.LoadPartitionsCapped(t.Context(), "g", "t", []int32{0}, 2, q.MarkStored)
	if err != nil {
		t.Fatal(err)
	}
	if errs := q.Restore(0, cp, true, loaded); errs != nil {
		t.Fatal(errs)
	}
	if n := q.Agents(); n != 2 {
		t.Fatalf("restore capped at 2 holds %d agents", n)
	}
	for _, id := range []string{"a3", "a4"} {
		if _, ok := q.parts[0].agents[id]; !ok {
			t.Errorf("restore left out %s, one of the two most recently saved", id)
		}
	}
	next := capBase + 10*60_000
	q.Add(0, 10, capEvent("a0", next))
	q.Add(0, 11, capEvent("new", next))
	if !slices.Equal(looked, []string{"a0"}) {
		t.Errorf("Loader asked for %v; want [a0] (stored, not loaded), not the never-stored agent", looked)
	}
	st := q.Stats()
	if st.Restored != 1 || st.NewAgents != 1 {
		t.Errorf("restored %d, new %d; want 1 and 1", st.Restored, st.NewAgents)
	}
	// The event is in a0's open window, not yet in its model.
	stored := &agentState{id: "a0"}
	if err := stored.unmarshal(want["a0"]); err != nil {
		t.Fatal(err)
	}
	if got := q.parts[0].agents["a0"]; !slices.Equal(got.model.AppendBinary(nil), stored.model.AppendBinary(nil)) || got.seen.SinceMs != stored.seen.SinceMs {
		t.Errorf("a0 came back with a model other than the one stored")
	}
}

// TestCapShedsUnregisteredNewcomers: at the cap, new agents the registry
// does not know get no state but still count towards agent_flood, and a
// registered newcomer is admitted.
func TestCapShedsUnregisteredNewcomers(t *testing.T) {
	reg, err := inventory.ParseRegistry("agents.yaml", []byte("agents:\n  - id: known-bot\n    role: finance\n"))
	if err != nil {
		t.Fatal(err)
	}
	set := testSettings()
	set.StartupHold = -1
	set.NewAgentsPerWindow = 5
	p := NewProcessor(set, StaticCatalog{reg, inventory.EmptyInventory()}, nil)
	p.Cap = 3
	for i := range 10 {
		p.Add(0, int64(i), capEvent("fake-"+strconv.Itoa(i), capBase+int64(i)))
	}
	p.Add(0, 10, capEvent("known-bot", capBase+20))
	st := p.Stats()
	if st.Agents != 4 || st.Shed != 7 || st.NewAgents != 4 {
		t.Errorf("agents %d, shed %d, new %d; want 4 (3 + the registered one), 7, 4", st.Agents, st.Shed, st.NewAgents)
	}
	if _, ok := p.parts[0].agents["known-bot"]; !ok {
		t.Error("the registered newcomer was shed")
	}
	p.FlushAll()
	as, _ := p.Take()
	var flood *anomaly.Anomaly
	for i := range as {
		if as[i].Kind == anomaly.AgentFlood {
			flood = &as[i]
		}
	}
	if flood == nil || flood.Count != 11 {
		t.Fatalf("agent_flood %+v; want one counting the 11 new ids, the shed ones included", flood)
	}
}

// TestForget: an agent with an open window is kept; one without is dropped
// with its stored mark, so Loader is not asked for it again.
func TestForget(t *testing.T) {
	cat := StaticCatalog{inventory.EmptyRegistry(), inventory.EmptyInventory()}
	set := testSettings()
	set.StartupHold = -1
	p := NewProcessor(set, cat, nil)
	asked := 0
	p.Loader = func(string) ([]byte, bool) { asked++; return nil, false }
	p.Add(0, 0, capEvent("open", capBase))
	if p.Forget("open") {
		t.Error("Forget dropped an agent with an open window")
	}
	p.FlushAll()
	if !p.Forget("open") || p.Agents() != 0 {
		t.Errorf("Forget kept an idle agent: %d agents", p.Agents())
	}
	p.MarkStored("gone")
	if !p.Forget("gone") {
		t.Error("Forget refused an agent not in memory")
	}
	p.Add(0, 1, capEvent("gone", capBase+5*60_000))
	if asked != 0 {
		t.Errorf("Loader asked %d times for a forgotten agent", asked)
	}
}

// TestUnregisteredNeedsARegistry: without a registry file no agent counts as
// unregistered, so the removal of idle unregistered agents keeps them all.
func TestUnregisteredNeedsARegistry(t *testing.T) {
	reg, err := inventory.ParseRegistry("agents.yaml", []byte("agents:\n  - id: known-bot\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		reg  *inventory.Registry
		id   string
		want bool
	}{
		{"no registry", inventory.EmptyRegistry(), "anyone", false},
		{"registered", reg, "known-bot", false},
		{"unregistered", reg, "fake-1", true},
	} {
		p := NewProcessor(testSettings(), StaticCatalog{tc.reg, inventory.EmptyInventory()}, nil)
		if got := p.Unregistered(tc.id); got != tc.want {
			t.Errorf("%s: Unregistered(%q) = %v, want %v", tc.name, tc.id, got, tc.want)
		}
	}
}

// TestTrimPool: after a minute of many agents, the spare accumulators kept
// are bounded by the windows still open (at least minPool), not by the
// agents that were active.
func TestTrimPool(t *testing.T) {
	cat := StaticCatalog{inventory.EmptyRegistry(), inventory.EmptyInventory()}
	set := testSettings()
	set.StartupHold = -1
	set.NewAgentsPerWindow = 0
	p := NewProcessor(set, cat, nil)
	const agents = 3 * minPool
	for i := range agents {
		p.Add(0, int64(i), capEvent("a"+strconv.Itoa(i), capBase+int64(i%50)*1000))
	}
	// Ten agents open the next window; the first window closes.
	for i := range 10 {
		p.Add(0, int64(agents+i), capEvent("a"+strconv.Itoa(i), capBase+2*60_000))
	}
	p.Take()
	if len(p.pool) < agents-10 {
		t.Fatalf("pool %d after the window closed; want the %d accumulators back", len(p.pool), agents-10)
	}
	p.TrimPool()
	if len(p.pool) != minPool {
		t.Errorf("pool %d after TrimPool; want %d (10 windows open, fewer than minPool)", len(p.pool), minPool)
	}
	// The trimmed pool still serves: another window opens and closes.
	for i := range agents {
		p.Add(0, int64(2*agents+i), capEvent("a"+strconv.Itoa(i), capBase+3*60_000))
	}
	p.FlushAll()
	if _, ss := p.Take(); len(ss) != agents+10 {
		t.Errorf("%d windows scored after the trim; want %d (the ten at 2 min and the %d at 3 min)", len(ss), agents+10, agents)
	}
}
