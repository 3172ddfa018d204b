package ingest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/ingest"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/gateway"
)

// TestIntegrationIngestStrictJSONAndLongPaths runs the ingest service
// in-process on real Kafka and ClickHouse with the lines a hostile tester
// sends: a raw NUL or tab inside a JSON string is dead-lettered as
// control_char, a key ingest reads given twice as duplicate_key, while
// escaped control characters, a repeated key ingest never reads and a
// path far over 4 KiB (even over 8 KiB) become events, the long path
// counted under the route /{too_long}.
func TestIntegrationIngestStrictJSONAndLongPaths(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	s := newSetup(t, ctx, "strict", 2, 1)

	at := time.Now().Add(-time.Minute).UTC().Format("2006-01-02T15:04:05.000Z")
	line := func(id, extra, path, ua string) string {
		return `{"start_time":"` + at + `",` + extra + `"method":"GET","path":"` + path + `","response_code":200,` +
			`"user_agent":` + ua + `,"request_id":"` + id + `","x_agent_id":"agent-strict"}`
	}
	long := "/v1/export/" + strings.Repeat("a", 10_000)
	cases := []struct {
		id, line, reason, route string
	}{
		{"r-plain", line("r-plain", "", "/v1/ok", `"ua"`), "", "/v1/ok"},
		{"r-nul", line("r-nul", "", "/v1/ok", "\"u\x00a\""), gateway.ReasonControlChar, ""},
		{"r-tab", line("r-tab", "", "/v1/ok", "\"u\ta\""), gateway.ReasonControlChar, ""},
		{"r-dup", line("r-dup", `"method":"DELETE",`, "/v1/ok", `"ua"`), gateway.ReasonDuplicateKey, ""},
		{"r-dup-unread", line("r-dup-unread", `"zz":1,"zz":2,`, "/v1/ok", `"ua"`), "", "/v1/ok"},
		{"r-esc", line("r-esc", "", "/v1/ok", `"u\u0000\ta"`), "", "/v1/ok"},
		{"r-long", line("r-long", "", long, `"ua"`), "", "/{too_long}"},
	}
	var msgs []bus.Message
	// bad maps a dead-lettered line to its reason, good a request id to
	// its event's route.
	bad, good := map[string]string{}, map[string]string{}
	for _, c := range cases {
		msgs = append(msgs, bus.Message{Value: []byte(c.line)})
		if c.reason != "" {
			bad[c.line] = c.reason
		} else {
			good[c.id] = c.route
		}
	}
	w := newRawWriter(t, s.kc, s.raw[0])
	if err := w.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	svc, _ := ingestAll(t, ctx, s, uint64(len(msgs)))
	st := svc.Ingester.Stats()
	if st.ByReason[gateway.ReasonControlChar] != 2 || st.ByReason[gateway.ReasonDuplicateKey] != 1 || st.Events != uint64(len(good)) {
		t.Errorf("stats %+v; want 2 control_char, 1 duplicate_key, %d events", st, len(good))
	}

	readTopic(t, ctx, s.kc, s.dlq, len(bad), 2*time.Second, func(m bus.Message) {
		want, ok := bad[string(m.Value)]
		got := string(m.HeaderValue(ingest.HeaderReason))
		if !ok || got != want {
			t.Errorf("dead letter %.60q: reason %s (%s), want %q", m.Value, got, m.HeaderValue(ingest.HeaderError), want)
		}
		delete(bad, string(m.Value))
	})
	if len(bad) != 0 {
		t.Errorf("lines never dead-lettered: %v", bad)
	}
	var dec event.Decoder
	readTopic(t, ctx, s.kc, s.events, len(good), 2*time.Second, func(m bus.Message) {
		e, err := dec.Decode(m.Value)
		if err != nil {
			t.Errorf("event %.60q: %v", m.Value, err)
			return
		}
		route, ok := good[e.RequestID]
		if !ok || e.Route != route {
			t.Errorf("event %s: route %.40q, want %q", e.RequestID, e.Route, route)
		}
		if e.RequestID == "r-long" && (len(e.Path) != gateway.MaxPathBytes || !strings.HasPrefix(long, e.Path)) {
			t.Errorf("long path kept as %d bytes, want its first %d", len(e.Path), gateway.MaxPathBytes)
		}
		delete(good, e.RequestID)
	})
	if len(good) != 0 {
		t.Errorf("lines that never became events: %v", good)
	}
	var stored uint64
	if err := s.rawDB.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM `%s`.events WHERE route = '/{too_long}'", s.db)).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != 1 {
		t.Errorf("ClickHouse holds %d events with route /{too_long}, want 1", stored)
	}
}
