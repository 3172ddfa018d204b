package gateway

import (
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/routes"
)

// benchLine renders a typical agent call (~450 bytes for the JSON formats)
// so every format is measured on the same request.
func benchLine(format string) []byte {
	e := event.Event{
		EventTimeMs: testNow.Add(-2 * time.Second).UnixMilli(), Method: "GET", Path: "/v1/customers/8812/orders",
		QueryParams: []string{"limit", "cursor"}, Status: 200, RequestBytes: 312, ResponseBytes: 5234, DurationUs: 23000,
		UserAgent: "agent-sdk-python/1.4.2", SourceIP: "203.0.113.7", Gateway: "edge-1", Upstream: "orders",
		RequestID: "3f1d0c52-7e55-9b0a-a1b2-5b7f0d1c9e11", AgentID: "agent-research-01", IdentitySource: "header",
		Route: "/v1/customers/{id}/orders",
	}
	return Render(format, &e, RenderHints{AgentHeader: "agent-research-01"})
}

func benchParse(b *testing.B, format string, opts Options) {
	line := benchLine(format)
	p, err := NewParser(opts)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.Parse(line, testSrc, testNow); err != nil {
		b.Fatalf("%s: %v\n%s", format, err, line)
	}
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	src := testSrc
	for b.Loop() {
		src.Offset++
		if _, err := p.Parse(line, src, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	rn, err := routes.New([]routes.Route{{Template: "/v1/customers/{id}/orders"}, {Template: "/v1/invoices"}})
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range Formats() {
		b.Run(f, func(b *testing.B) { benchParse(b, f, Options{Format: f}) })
		b.Run(f+"/auto+routes", func(b *testing.B) { benchParse(b, f, Options{Routes: rn}) })
	}
}

func BenchmarkParseKongSample(b *testing.B) {
	// A real Kong http-log line is ~2 KB: most of it is service and route
	// metadata we skip.
	line := readLines(b, "kong/http_log.log")[0]
	p, err := NewParser(Options{Format: FormatKong})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(line, testSrc, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRender(b *testing.B) {
	e := event.Event{EventTimeMs: testNow.UnixMilli(), Method: "GET", Path: "/v1/customers/8812/orders", Status: 200}
	for _, f := range Formats() {
		b.Run(f, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Render(f, &e, RenderHints{AgentHeader: "agent-1"})
			}
		})
	}
}
