package ingest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/bus/membus"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/gateway"
)

// flakyStore fails its first failures inserts, then keeps every event by id
// and counts how often each was written.
type flakyStore struct {
	mu       sync.Mutex
	failures int
	writes   map[string]int
}

func (s *flakyStore) InsertEvents(_ context.Context, evs []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		s.failures--
		return errors.New("store down")
	}
	for _, e := range evs {
		s.writes[e.EventID]++
	}
	return nil
}

func (s *flakyStore) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.writes)
}

func testdataLines(t *testing.T) [][]byte {
	t.Helper()
	files, _ := filepath.Glob("../../testdata/*/*.log")
	if len(files) == 0 {
		t.Fatal("no testdata lines found")
	}
	var lines [][]byte
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			if len(sc.Bytes()) > 0 {
				lines = append(lines, append([]byte(nil), sc.Bytes()...))
			}
		}
		fh.Close()
	}
	return lines
}

// The testdata lines carry their own timestamps; parse them with a clock
// that accepts them all so this test is about the pipeline, not the window.
func lenientParser() gateway.Options {
	return gateway.Options{MaxAge: 100 * 365 * 24 * time.Hour, MaxFuture: 100 * 365 * 24 * time.Hour}
}

func TestIngestStoresPublishesDeadLettersAndCommits(t *testing.T) {
	good := testdataLines(t)
	bad := [][]byte{
		[]byte(`{"start_time":"2026-11-25T10:00:00Z","method":`),
		[]byte(`{"hello":"world"}`),
		{0xff, 0xfe, '{', '}'},
	}
	b := membus.New(0)
	for _, name := range []string{"raw", "events", "dlq"} {
		b.CreateTopic(name, 3)
	}
	w := b.Writer("raw")
	ctx := context.Background()
	for _, l := range good {
		_ = w.Write(ctx, bus.Message{Value: l})
	}
	for _, l := range bad {
		_ = w.Write(ctx, bus.Message{Value: l})
	}
	total := len(good) + len(bad)

	reader, _ := b.Reader("ingest", "raw")
	store := &flakyStore{failures: 2, writes: map[string]int{}}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	in, err := New(reader, store, b.Writer(""), b.Writer(""), Options{
		EventsTopic: "events", DeadLetterTopic: "dlq", BatchSize: 7, BatchWait: 20 * time.Millisecond,
		RetryInitial: time.Millisecond, Parser: lenientParser(),
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), m)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(runCtx) }()
	deadline := time.Now().Add(10 * time.Second)
	for in.Stats().Committed < uint64(total) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	st := in.Stats()
	if st.Committed != uint64(total) || st.Events+st.DeadLettered != uint64(total) {
		t.Fatalf("stats %+v, want %d records committed and accounted for", st, total)
	}
	if st.DeadLettered != uint64(len(bad)) {
		t.Fatalf("dead-lettered %d, want %d (%v)", st.DeadLettered, len(bad), st.ByReason)
	}
	if store.distinct() != int(st.Events) {
		t.Fatalf("store has %d distinct events, want %d", store.distinct(), st.Events)
	}
	if got := testutil.ToFloat64(m.Retries.WithLabelValues("store")); got != 2 {
		t.Fatalf("store retries %v, want 2", got)
	}
	if lag := b.Lag("ingest", "raw"); lag != 0 {
		t.Fatalf("uncommitted raw records: %d", lag)
	}

	// Events are on the events topic keyed by agent, decodable, one per stored event.
	er, _ := b.Reader("check", "events")
	var dec event.Decoder
	for range st.Events {
		msg, err := er.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := dec.Decode(msg.Value)
		if err != nil {
			t.Fatalf("events topic record does not decode: %v", err)
		}
		if string(msg.Key) != ev.PartitionKey() {
			t.Fatalf("record key %q, want %q", msg.Key, ev.PartitionKey())
		}
		if store.writes[ev.EventID] == 0 {
			t.Fatalf("published event %s is not in the store", ev.EventID)
		}
	}
	// Every dead letter names its reason and source coordinates.
	dr, _ := b.Reader("check", "dlq")
	reasons := map[string]bool{}
	for range len(bad) {
		msg, _ := dr.Fetch(ctx)
		reasons[string(msg.HeaderValue(HeaderReason))] = true
		if string(msg.HeaderValue(HeaderSourceTopic)) != "raw" || msg.HeaderValue(HeaderSourceOffset) == nil {
			t.Fatalf("dead letter without source coordinates: %+v", msg.Headers)
		}
	}
	for _, want := range []string{gateway.ReasonNotJSON, gateway.ReasonUnknownFormat, gateway.ReasonInvalidUTF8} {
		if !reasons[want] {
			t.Fatalf("no dead letter with reason %s; got %v", want, reasons)
		}
	}
	if got := testutil.ToFloat64(m.Dropped.WithLabelValues(gateway.ReasonNotJSON)); got != 1 {
		t.Fatalf("dropped{not_json} = %v, want 1", got)
	}
}

// blockingStore fails until released, to show that nothing is committed
// while the store is down and that shutdown gives up after the grace period.
type blockingStore struct{ down chan struct{} }

func (s *blockingStore) InsertEvents(ctx context.Context, _ []event.Event) error {
	select {
	case <-s.down:
		return nil
	default:
		return errors.New("connection refused")
	}
}

func TestNothingCommittedWhileStoreIsDown(t *testing.T) {
	b := membus.New(0)
	for _, name := range []string{"raw", "events", "dlq"} {
		b.CreateTopic(name, 1)
	}
	ctx := context.Background()
	lines := testdataLines(t)[:5]
	for _, l := range lines {
		_ = b.Writer("raw").Write(ctx, bus.Message{Value: l})
	}
	reader, _ := b.Reader("ingest", "raw")
	store := &blockingStore{down: make(chan struct{})}
	in, err := New(reader, store, b.Writer(""), b.Writer(""), Options{
		EventsTopic: "events", DeadLetterTopic: "dlq", BatchWait: 10 * time.Millisecond,
		RetryInitial: time.Millisecond, RetryMax: 5 * time.Millisecond, ShutdownGrace: 50 * time.Millisecond,
		Parser: lenientParser(),
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- in.Run(runCtx) }()
	time.Sleep(100 * time.Millisecond)
	if in.Ready(ctx) == nil {
		t.Fatal("ready while the store is down")
	}
	if lag := b.Lag("ingest", "raw"); lag != int64(len(lines)) {
		t.Fatalf("lag %d while store down, want %d (nothing committed)", lag, len(lines))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after grace: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the shutdown grace")
	}
	if lag := b.Lag("ingest", "raw"); lag != int64(len(lines)) {
		t.Fatalf("lag %d after abandoned shutdown, want %d", lag, len(lines))
	}
}
