package detect

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// chunkStore records the rows of each state and score insert.
type chunkStore struct {
	slowStore
	mu          sync.Mutex
	stateCalls  [][]detstate.State
	scoreCalls  []int
	agentsSaved map[string]bool
}

func (s *chunkStore) SaveStates(_ context.Context, st []detstate.State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stateCalls = append(s.stateCalls, st)
	for _, x := range st {
		if x.Kind == detstate.KindAgent {
			s.agentsSaved[x.Key] = true
		}
	}
	return nil
}

func (s *chunkStore) InsertScores(_ context.Context, ss []anomaly.Score) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scoreCalls = append(s.scoreCalls, len(ss))
	return s.slowStore.InsertScores(context.Background(), ss)
}

// TestFloodSavedInChunks: a flood of new agents, each with one event,
// is saved and scored in inserts of at most insertChunk rows, and nothing
// is left out: what a snapshot or a flush holds at once stays bounded by
// the chunk, not by the flood, while a small snapshot stays one insert.
func TestFloodSavedInChunks(t *testing.T) {
	const perPart, parts = insertChunk + insertChunk/2, 2
	cat := StaticCatalog{inventory.EmptyRegistry(), inventory.EmptyInventory()}
	set := testSettings()
	set.StartupHold = -1
	proc := NewProcessor(set, cat, nil)
	store := &chunkStore{slowStore: slowStore{anomalies: map[string]bool{}, published: map[string]bool{}}, agentsSaved: map[string]bool{}}
	gen := &memGeneration{t: t, done: make(chan struct{}), store: &store.slowStore, proc: proc}
	for p := range parts {
		for i := range perPart {
			id := "flood-" + strconv.Itoa(p) + "-" + strconv.Itoa(i)
			gen.msgs = append(gen.msgs, bus.Message{Partition: int32(p), Offset: int64(i), Value: event.AppendJSON(nil, capEvent(id, capBase+int64(i%50)*1000))})
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	d := &Detector{
		Source: onceSource(gen),
		Store:  store, Out: publishingWriter{&store.slowStore}, AnomaliesTopic: "anomalies", Group: "g", EventsTopic: "events",
		Proc: proc, SnapshotEvery: time.Hour, FlushEvery: 10 * time.Millisecond, IdleFlush: time.Second, // long enough for a slow flush (-race) not to pass for idle
		ReplayIdleFlush: true, // the events are in the future: close their windows anyway
	}
	d.Idle = func() {
		// The first idle comes after every record, the flush of every
		// window and a snapshot of every agent.
		if c := d.Counts(); c.Events != uint64(len(gen.msgs)) || c.Windows != uint64(len(gen.msgs)) {
			t.Errorf("idle after %d events and %d windows, want %d of each", c.Events, c.Windows, len(gen.msgs))
		}
		cancel()
	}
	if err := d.Run(ctx); err != nil && ctx.Err() == nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.agentsSaved) != parts*perPart {
		t.Errorf("%d agents saved, want %d", len(store.agentsSaved), parts*perPart)
	}
	for i, call := range store.stateCalls {
		if len(call) > insertChunk {
			t.Errorf("state insert %d has %d rows, over %d", i, len(call), insertChunk)
		}
	}
	// The last snapshot (at the stop, no agent changed) holds only the
	// partitions' rows: a small snapshot is one insert, not one per
	// partition, so a crash between the states and the checkpoints stays
	// unlikely.
	if last := store.stateCalls[len(store.stateCalls)-1]; len(last) != len(gen.Partitions()) {
		t.Errorf("the last snapshot saved %d rows in its last insert, want every partition's row (%d) in one", len(last), len(gen.Partitions()))
	}
	scores := 0
	for i, n := range store.scoreCalls {
		if n > insertChunk {
			t.Errorf("score insert %d has %d rows, over %d", i, n, insertChunk)
		}
		scores += n
	}
	if scores != parts*perPart {
		t.Errorf("%d window scores inserted, want %d (one per agent)", scores, parts*perPart)
	}
	t.Logf("%d state inserts, %d score inserts", len(store.stateCalls), len(store.scoreCalls))
}
