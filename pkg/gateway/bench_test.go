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

// lines460 are typical agent calls in each JSON format's layout trimmed to
// about 460 bytes, the size FACTS.md's decoder comparison was measured on
// (the rendered lines of BenchmarkParse are 515-873 bytes). The canonical
// line carries every schema field, so it cannot be much shorter.
var lines460 = map[string]string{
	FormatEnvoy: `{"start_time":"2026-02-10T13:59:58.000Z","method":"GET","path":"/v1/customers/8812/orders?limit=1&cursor=1",` +
		`"protocol":"HTTP/1.1","response_code":200,"response_flags":"-","bytes_received":312,"bytes_sent":5234,"duration":23,` +
		`"upstream_service_time":"20","x_forwarded_for":"203.0.113.7","user_agent":"agent-sdk-python/1.4.2",` +
		`"request_id":"3f1d0c52-7e55-9b0a-a1b2-5b7f0d1c9e11","authority":"api.example.com","upstream_cluster":"orders",` +
		`"downstream_remote_address":"203.0.113.7:32768","x_agent_id":"agent-research-01"}`,
	FormatKong: `{"request":{"method":"GET","uri":"/v1/customers/8812/orders?limit=1&cursor=1","size":312,` +
		`"querystring":{"limit":"1","cursor":"1"},"headers":{"host":"api.example.com","user-agent":"agent-sdk-python/1.4.2",` +
		`"x-agent-id":"agent-research-01"},"id":"3f1d0c52-7e55-9b0a-a1b2-5b7f0d1c9e11"},"response":{"status":200,"size":5234},` +
		`"latencies":{"request":23,"proxy":20,"kong":2},"client_ip":"203.0.113.7","started_at":1770731998000,` +
		`"service":{"name":"orders","host":"orders.internal"}}`,
	FormatNginxJSON: `{"time_iso8601":"2026-02-10T13:59:58+00:00","msec":"1770731998.000","remote_addr":"203.0.113.7",` +
		`"remote_user":"","request_method":"GET","request_uri":"/v1/customers/8812/orders?limit=1&cursor=1","status":200,` +
		`"request_length":312,"bytes_sent":5234,"request_time":0.023,"http_user_agent":"agent-sdk-python/1.4.2",` +
		`"http_x_agent_id":"agent-research-01","ssl_client_s_dn":"","upstream_addr":"orders",` +
		`"request_id":"3f1d0c52-7e55-9b0a-a1b2-5b7f0d1c9e11","hostname":"edge-1"}`,
	FormatAWS: `{"requestId":"3f1d0c52-7e55-9b0a-a1b2-5b7f0d1c9e11","ip":"203.0.113.7","requestTime":"10/Feb/2026:13:59:58 +0000",` +
		`"requestTimeEpoch":"1770731998000","httpMethod":"GET","resourcePath":"/v1/customers/{id}/orders",` +
		`"path":"/v1/customers/8812/orders","status":"200","protocol":"HTTP/1.1","responseLength":"5234","responseLatency":"23",` +
		`"userAgent":"agent-sdk-python/1.4.2","apiKeyId":"-","principalId":"agent-research-01","apiId":"edge-1"}`,
	FormatCanonical: `{"v":1,"event_id":"","event_time_ms":1770731998000,"ingest_time_ms":0,"agent_id":"agent-research-01",` +
		`"identity_source":"header","unattributed":false,"credential_id":"","source_ip":"203.0.113.7","method":"GET","route":"",` +
		`"path":"/v1/customers/8812/orders","query_params":["limit","cursor"],"status":200,"request_bytes":312,` +
		`"response_bytes":5234,"duration_us":23000,"user_agent":"agent-sdk-python/1.4.2","gateway":"edge-1","upstream":"orders",` +
		`"request_id":"3f1d0c52","format":"","topic":"","partition":0,"offset":0}`,
}

// BenchmarkParse460 measures Parse + normalize of a ~460-byte line per JSON
// format, explicit format and auto-detected, on one goroutine.
func BenchmarkParse460(b *testing.B) {
	for _, f := range []string{FormatEnvoy, FormatKong, FormatNginxJSON, FormatAWS, FormatCanonical} {
		for _, format := range []string{f, FormatAuto} {
			name := f
			if format == FormatAuto {
				name += "/auto"
			}
			b.Run(name, func(b *testing.B) {
				line := []byte(lines460[f])
				p, err := NewParser(Options{Format: format})
				if err != nil {
					b.Fatal(err)
				}
				if e, err := p.Parse(line, testSrc, testNow); err != nil || e.Format != f || e.AgentID == "" {
					b.Fatalf("%s: %+v, %v", f, e, err)
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
			})
		}
	}
}
