package chstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
)

// MeasureInsert inserts rows synthetic but realistic events into s's events
// table in InsertEvents batches of batch rows, and returns the time spent in
// InsertEvents alone: generating the events is not timed. rows/elapsed is the
// store's insert throughput. The rows stay in the table, so point it at a
// scratch database. The events are deterministic (fixed seed), with distinct
// ids, spread over the hour before the call.
//
// Expect the events table to be about 2.5x slower per row than a narrow
// 12-column table: its rows average ~420 bytes over 25 columns, and both the
// driver and the server pay per column and per byte.
func MeasureInsert(ctx context.Context, s *Store, rows, batch int) (time.Duration, error) {
	if rows <= 0 || batch <= 0 {
		return 0, fmt.Errorf("measure insert: rows and batch must be positive, got %d and %d", rows, batch)
	}
	gen := newSynth(time.Now().Add(-time.Hour).UnixMilli())
	evs := make([]event.Event, 0, min(rows, batch))
	var total time.Duration
	for done := 0; done < rows; {
		n := min(batch, rows-done)
		evs = gen.fill(evs[:0], n)
		start := time.Now()
		if err := s.InsertEvents(ctx, evs); err != nil {
			return total, fmt.Errorf("measure insert after %d of %d rows: %w", done, rows, err)
		}
		total += time.Since(start)
		done += n
	}
	return total, nil
}

// synth makes gateway-like events: a few hundred agents with skewed
// activity, REST routes with ids in the path, and mostly small responses.
type synth struct {
	rng    *rand.Rand
	timeMs int64
	offset int64
	agents []string
	creds  []string
	ips    []string
}

var (
	synthMethods = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE"}
	synthRoutes  = []string{"/v1/customers/{id}", "/v1/customers/{id}/orders", "/v1/orders", "/v1/search", "/v1/invoices/{id}", "/v1/users/{id}/tokens"}
	synthParams  = [][]string{nil, {"page"}, {"page", "limit"}, {"q", "sort", "fields"}}
	synthStatus  = []uint16{200, 200, 200, 200, 201, 204, 304, 400, 401, 403, 404, 429, 500}
	synthUAs     = []string{"python-httpx/0.27.0", "OpenAI-Agents/1.4 (+tool-call)", "langchain/0.2 node-fetch/3.3", "curl/8.5.0"}
	synthFormats = []string{"envoy", "kong", "nginx_json"}
)

func newSynth(startMs int64) *synth {
	g := &synth{rng: rand.New(rand.NewPCG(1, 2)), timeMs: startMs}
	for i := range 500 {
		g.agents = append(g.agents, "agent-"+strconv.Itoa(i))
		g.creds = append(g.creds, "key_"+strconv.FormatUint(g.rng.Uint64(), 36))
		g.ips = append(g.ips, "10.1."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250))
	}
	return g
}

func (g *synth) fill(evs []event.Event, n int) []event.Event {
	const topic = "gateway.access.v1"
	for range n {
		// Zipf-like skew: a few agents make most calls.
		a := int(float64(len(g.agents)) * g.rng.Float64() * g.rng.Float64())
		g.timeMs += int64(g.rng.IntN(3))
		g.offset++
		route := synthRoutes[g.rng.IntN(len(synthRoutes))]
		id := strconv.Itoa(g.rng.IntN(1_000_000))
		ev := event.Event{
			EventID:        event.ID(topic, int32(g.offset%6), g.offset),
			EventTimeMs:    g.timeMs,
			IngestTimeMs:   g.timeMs + 40 + int64(g.rng.IntN(200)),
			AgentID:        g.agents[a],
			IdentitySource: "header",
			CredentialID:   g.creds[a],
			SourceIP:       g.ips[a],
			Method:         synthMethods[g.rng.IntN(len(synthMethods))],
			Route:          route,
			Path:           "/v1/customers/" + id + "/orders",
			QueryParams:    synthParams[g.rng.IntN(len(synthParams))],
			Status:         synthStatus[g.rng.IntN(len(synthStatus))],
			RequestBytes:   uint64(g.rng.IntN(2048)),
			ResponseBytes:  uint64(g.rng.ExpFloat64() * 4096),
			DurationUs:     uint64(g.rng.ExpFloat64() * 30_000),
			UserAgent:      synthUAs[a%len(synthUAs)],
			Gateway:        "envoy-edge-1",
			Upstream:       "orders-svc",
			RequestID:      strconv.FormatUint(g.rng.Uint64(), 16),
			Format:         synthFormats[a%len(synthFormats)],
			Topic:          topic,
			Partition:      int32(g.offset % 6),
			Offset:         g.offset,
		}
		if a%50 == 49 {
			ev.AgentID, ev.IdentitySource, ev.Unattributed = "", "", true
		}
		evs = append(evs, ev)
	}
	return evs
}
