package chstore

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/pkg/event"
)

func testEvent(agent string, i int, atMs int64) event.Event {
	return event.Event{
		EventID: event.ID("raw-"+agent, 3, int64(i)), EventTimeMs: atMs, IngestTimeMs: atMs + 7,
		AgentID: agent, IdentitySource: "header", CredentialID: "cred-" + agent, SourceIP: "10.0.0.1",
		Method: "POST", Route: "/customers/{id}", Path: fmt.Sprintf("/customers/%d", i),
		QueryParams: []string{"expand", "a,b"}, Status: 201, RequestBytes: 17, ResponseBytes: 1 << 40,
		DurationUs: 1500, UserAgent: "sdk/1.0", Gateway: "kong", Upstream: "crm", RequestID: "req-" + strconv.Itoa(i),
		Format: "kong", Topic: "raw-" + agent, Partition: 3, Offset: int64(i),
	}
}

func collect(t *testing.T, src evidence.EventSource, agent string, from, to int64) []event.Event {
	t.Helper()
	var out []event.Event
	err := src.Events(t.Context(), agent, from, to, func(e *event.Event) error {
		c := *e
		if len(c.QueryParams) == 0 {
			c.QueryParams = nil // stored empty either way
		} else {
			c.QueryParams = slices.Clone(c.QueryParams)
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestIntegrationEvents compares Events with evidence.MemSource (the
// reference) over events inserted out of order, partly twice, spread over
// day partitions, with hostile strings.
func TestIntegrationEvents(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	day := int64(24 * 3600 * 1000)
	base := int64(1_740_000_000_000)
	var evs []event.Event
	for i := range 300 {
		agent := "agent-a"
		if i%3 == 0 {
			agent = "agent-b"
		}
		// 7-hour steps: about 87 days, so many day partitions; distinct
		// times per agent so both sources agree on the order.
		evs = append(evs, testEvent(agent, i, base+int64(i)*7*3600*1000+int64(i%5)))
	}
	evs[4].UserAgent, evs[4].Path, evs[4].Gateway = "Mozilla \"x\"\n\r\x1b[2J", "/a'b`c\\d", "bad\xffutf8"
	evs[5].QueryParams, evs[7].Unattributed = nil, true
	evs[8].EventTimeMs = -5 // clamped to the first partition, kept exact
	shuffled := slices.Clone(evs)
	slices.Reverse(shuffled)
	if err := st.InsertEvents(ctx, shuffled[:150]); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertEvents(ctx, shuffled[100:]); err != nil { // 50 events twice
		t.Fatal(err)
	}
	ref := &evidence.MemSource{}
	ref.Add(evs...)
	src := NewEvents(st)
	ranges := [][2]int64{
		{-10, base + 100*day},
		{evs[10].EventTimeMs, evs[20].EventTimeMs}, // from inclusive, to exclusive
		{evs[10].EventTimeMs + 1, evs[10].EventTimeMs + 2},
		{base + 10*day, base + 10*day},
		{base + 10*day, base},
	}
	for _, agent := range []string{"agent-a", "agent-b", "agent-c"} {
		for _, r := range ranges {
			got, want := collect(t, src, agent, r[0], r[1]), collect(t, ref, agent, r[0], r[1])
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Events(%s, %d, %d): %d events, MemSource %d; first difference at %d", agent, r[0], r[1], len(got), len(want),
					firstDiff(got, want))
			}
		}
	}
	if n := len(collect(t, src, "agent-b", -10, base+100*day)); n != 100 {
		t.Fatalf("agent-b has %d events; want 100, each once", n)
	}

	stop := errors.New("stop")
	n := 0
	err := src.Events(ctx, "agent-a", -10, base+100*day, func(*event.Event) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("Events = %v after %d calls; want fn's error, unchanged, after 1", err, n)
	}
}

func firstDiff(a, b []event.Event) int {
	for i := range min(len(a), len(b)) {
		if !reflect.DeepEqual(a[i], b[i]) {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestIntegrationEventsMeasure streams one agent's events out of a table
// that holds another agent's too, and reports the rate and how much the
// heap grew: Events must not hold the window in memory. Size with
// TEST_CHRESP_MEASURE_EVENTS (default 200000 per agent). The rate includes
// a forced GC every 20000 events, to sample the live heap.
func TestIntegrationEventsMeasure(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	per := 200_000
	if v := os.Getenv("TEST_CHRESP_MEASURE_EVENTS"); v != "" {
		var err error
		if per, err = strconv.Atoi(v); err != nil || per <= 0 {
			t.Fatalf("TEST_CHRESP_MEASURE_EVENTS=%q: want a positive integer", v)
		}
	}
	base := int64(1_740_000_000_000)
	batch := make([]event.Event, 0, 50_000)
	for _, agent := range []string{"agent-a", "agent-b"} {
		for i := range per {
			batch = append(batch, testEvent(agent, i, base+int64(i)*100))
			if len(batch) == cap(batch) || i == per-1 {
				if err := st.InsertEvents(ctx, batch); err != nil {
					t.Fatal(err)
				}
				batch = batch[:0]
			}
		}
	}
	batch = nil
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap0, peak := ms.HeapAlloc, ms.HeapAlloc
	start := time.Now()
	var n int
	last := int64(-1)
	err := NewEvents(st).Events(ctx, "agent-a", base, base+int64(per)*100, func(e *event.Event) error {
		if e.EventTimeMs < last || e.AgentID != "agent-a" {
			return fmt.Errorf("event %d out of order or of another agent: %+v", n, e)
		}
		last = e.EventTimeMs
		n++
		if n%20_000 == 0 {
			runtime.GC() // live heap, not garbage awaiting collection
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	if n != per {
		t.Fatalf("streamed %d events; want %d", n, per)
	}
	growth := int64(peak) - int64(heap0)
	t.Logf("streamed %d of %d events in %v: %.0f events/s; heap grew at most %.1f MiB (%.0f B/event if it had been held)",
		n, 2*per, el.Round(time.Millisecond), float64(n)/el.Seconds(), float64(growth)/(1<<20), float64(growth)/float64(n))
	// The driver holds at most four blocks of eventsBlockRows rows, a few
	// hundred bytes each; holding the window would grow with n.
	if limit := int64(4 * eventsBlockRows * 1024); growth > limit {
		t.Errorf("heap grew %d MiB while streaming %d events, more than four blocks (%d MiB); Events seems to buffer the window",
			growth>>20, n, limit>>20)
	}
}
