package detect

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// slowStore is a Store whose result inserts take a while, recording what
// was written. Safe for concurrent use.
type slowStore struct {
	mu        sync.Mutex
	delay     time.Duration
	scores    int
	anomalies map[string]bool
	published map[string]bool // filled by its writer()
	errs      []string
}

func (s *slowStore) SaveStates(context.Context, []detstate.State) error           { return nil }
func (s *slowStore) SaveCheckpoints(context.Context, []detstate.Checkpoint) error { return nil }
func (s *slowStore) LoadPartitions(context.Context, string, string, []int32) (map[int32]detstate.Checkpoint, []detstate.State, error) {
	return nil, nil, nil
}

func (s *slowStore) LoadState(context.Context, string, string) (detstate.State, bool, error) {
	return detstate.State{}, false, nil
}

func (s *slowStore) LoadPartitionsCapped(context.Context, string, string, []int32, int, func(string)) (map[int32]detstate.Checkpoint, []detstate.State, error) {
	return nil, nil, nil
}

func (s *slowStore) ExpireAgents(context.Context, string, []int32, int64, int64, func(string) bool) (int, error) {
	return 0, nil
}

func (s *slowStore) AnomalyIDs(context.Context, []int32, int64) (map[string]struct{}, error) {
	return map[string]struct{}{}, nil
}

func (s *slowStore) InsertAnomalies(_ context.Context, as []anomaly.Anomaly) error {
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range as {
		if !s.published[a.ID] {
			s.errs = append(s.errs, "anomaly "+a.ID+" stored before it was published")
		}
		s.anomalies[a.ID] = true
	}
	return nil
}

func (s *slowStore) InsertScores(_ context.Context, ss []anomaly.Score) error {
	time.Sleep(s.delay)
	s.mu.Lock()
	s.scores += len(ss)
	s.mu.Unlock()
	return nil
}

// publishingWriter decodes the anomaly ids it publishes into the store's
// published set.
type publishingWriter struct{ s *slowStore }

func (w publishingWriter) Write(_ context.Context, msgs ...bus.Message) error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	for _, m := range msgs {
		var a anomaly.Anomaly
		if err := json.Unmarshal(m.Value, &a); err != nil {
			return err
		}
		w.s.published[a.ID] = true
	}
	return nil
}

func (publishingWriter) Close() error { return nil }

// onceSource gives gen as the first generation, then none until ctx ends.
func onceSource(gen Generation) SourceFunc {
	given := false
	return func(ctx context.Context) (Generation, error) {
		if given {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		given = true
		return gen, nil
	}
}

// memGeneration delivers canned records on one generation and records each
// commit, checking at that moment that every window closed so far has its
// score in the store.
type memGeneration struct {
	t     *testing.T
	msgs  []bus.Message
	next  int
	done  chan struct{}
	store *slowStore
	proc  *Processor

	commits int
}

func (g *memGeneration) Partitions() []int32 {
	return []int32{0, 1, 2, 3}
}
func (g *memGeneration) Done() <-chan struct{}   { return g.done }
func (g *memGeneration) Seek(int32, int64) error { return nil }
func (g *memGeneration) Close() error            { return nil }

func (g *memGeneration) Fetch(ctx context.Context) (bus.Message, error) {
	if g.next < len(g.msgs) {
		g.next++
		return g.msgs[g.next-1], nil
	}
	<-ctx.Done()
	return bus.Message{}, ctx.Err()
}

// Commit runs on the detector's loop, so it may look at the processor.
func (g *memGeneration) Commit(_ context.Context, _ map[int32]int64) error {
	g.commits++
	windows := g.proc.Stats().Windows
	g.store.mu.Lock()
	written := g.store.scores
	g.store.mu.Unlock()
	if uint64(written) != windows {
		g.t.Errorf("commit %d: %d window scores written, %d windows closed: offsets ran ahead of results", g.commits, written, windows)
	}
	return nil
}

// TestResultsWrittenBeforeCommit: results are written by the writer while
// the loop goes on, but every commit comes after all of them are written,
// anomalies reach the topic before the store, and Counts only reports
// what is written.
func TestResultsWrittenBeforeCommit(t *testing.T) {
	rs, s := simRecords(t, twoDays(5))
	rs = rs[:len(rs)/2]
	store := &slowStore{delay: 3 * time.Millisecond, anomalies: map[string]bool{}, published: map[string]bool{}}
	proc := NewProcessor(testSettings(), simCatalog(t, s), func() int64 { return time.Now().UnixMilli() })
	gen := &memGeneration{t: t, done: make(chan struct{}), store: store, proc: proc}
	for i := range rs {
		gen.msgs = append(gen.msgs, bus.Message{Partition: rs[i].part, Offset: rs[i].off, Value: event.AppendJSON(nil, &rs[i].ev)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d := &Detector{
		Source: onceSource(gen),
		Store:  store, Out: publishingWriter{store}, AnomaliesTopic: "anomalies", Group: "g", EventsTopic: "events",
		Proc: proc, SnapshotEvery: 50 * time.Millisecond, FlushEvery: 10 * time.Millisecond, IdleFlush: 100 * time.Millisecond,
	}
	d.Idle = func() {
		// Idle comes after a snapshot: everything is written and counted.
		c := d.Counts()
		store.mu.Lock()
		written := store.scores
		store.mu.Unlock()
		if uint64(written) != c.Windows {
			t.Errorf("idle: counts say %d windows, %d scores written", c.Windows, written)
		}
		if c.Events == uint64(len(rs)) {
			cancel()
		}
	}
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	for _, e := range store.errs {
		t.Error(e)
	}
	if gen.commits < 2 || store.scores == 0 || len(store.anomalies) == 0 {
		t.Fatalf("%d commits, %d scores, %d anomalies written; want several of each", gen.commits, store.scores, len(store.anomalies))
	}
	if st := proc.Stats(); uint64(store.scores) != st.Windows || len(store.published) != len(store.anomalies) {
		t.Errorf("%d windows closed, %d scores written; %d anomalies published, %d stored", st.Windows, store.scores, len(store.published), len(store.anomalies))
	}
	t.Logf("%d events, %d commits, %d scores, %d anomalies", len(rs), gen.commits, store.scores, len(store.anomalies))
}
