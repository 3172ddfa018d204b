package gateway

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/identity"
	"github.com/agentwatch/agentwatch/pkg/routes"
)

// testNow is a few minutes after the sample lines in testdata.
var testNow = time.Date(2026, 2, 10, 14, 0, 0, 0, time.UTC)

var testSrc = Source{Topic: "gateway.raw", Partition: 3, Offset: 1207}

func readLines(t testing.TB, pattern string) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", pattern))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata for %s: %v", pattern, err)
	}
	var out [][]byte
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			out = append(out, append([]byte(nil), sc.Bytes()...))
		}
		fh.Close()
	}
	return out
}

// want is the interesting part of an expected event; the rest (ids,
// Kafka coordinates, ingest time) is derived from testSrc and testNow.
type want struct {
	time                    string
	agent, src, cred        string
	ip, method, route, path string
	query                   []string
	status                  uint16
	req, resp, durUs        uint64
	ua, gw, upstream, reqID string
}

func (w want) event(t *testing.T, format string) event.Event {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, w.time)
	if err != nil {
		t.Fatal(err)
	}
	return event.Event{
		EventID: event.ID(testSrc.Topic, testSrc.Partition, testSrc.Offset), EventTimeMs: ts.UnixMilli(),
		IngestTimeMs: testNow.UnixMilli(), AgentID: w.agent, IdentitySource: w.src, Unattributed: w.agent == "",
		CredentialID: w.cred, SourceIP: w.ip, Method: w.method, Route: w.route, Path: w.path, QueryParams: w.query,
		Status: w.status, RequestBytes: w.req, ResponseBytes: w.resp, DurationUs: w.durUs, UserAgent: w.ua,
		Gateway: w.gw, Upstream: w.upstream, RequestID: w.reqID, Format: format,
		Topic: testSrc.Topic, Partition: testSrc.Partition, Offset: testSrc.Offset,
	}
}

func TestParseSamples(t *testing.T) {
	const istio = "istio-ingressgateway-7d9c8b6f5-x2k4p"
	cases := []struct {
		file  string
		wants []want
	}{
		{"envoy/istio_default.log", []want{
			{time: "2026-02-10T13:55:36.123Z", agent: "agent-research-01", src: "header", ip: "203.0.113.7", method: "GET",
				route: "/v1/customers/{id}/orders", path: "/v1/customers/8812/orders", query: []string{"limit", "cursor"},
				status: 200, resp: 5234, durUs: 23000, ua: "agent-sdk-python/1.4.2", gw: istio,
				upstream: "outbound|8080||orders.default.svc.cluster.local", reqID: "3f1d0c52-7e55-9b0a-a1b2-5b7f0d1c9e11"},
			{time: "2026-02-10T13:55:37.004Z", agent: "svc-invoice-bot", src: "jwt", cred: "svc-invoice-bot", ip: "198.51.100.23",
				method: "POST", route: "/v1/invoices", path: "/v1/invoices", status: 201, req: 734, resp: 412, durUs: 87000,
				ua: "python-httpx/0.27.0", gw: istio, upstream: "outbound|8080||billing.default.svc.cluster.local",
				reqID: "8a7c1e02-44d1-9b1f-8c55-1d2e3f4a5b6c"},
			{time: "2026-02-10T13:55:38.512Z", agent: "agent-cleanup-7", src: "mtls", ip: "2001:db8::17", method: "DELETE",
				route: "/v1/customers/{id}", path: "/v1/customers/3fa85f64-5717-4562-b3fc-2c963f66afa6", status: 204, durUs: 12000,
				ua: "Go-http-client/2.0", gw: istio, upstream: "outbound|8080||customers.default.svc.cluster.local",
				reqID: "0c9f4e1a-1b2c-4d3e-8f9a-7b6c5d4e3f2a"},
			{time: "2026-02-10T13:55:39.901Z", ip: "10.8.0.1", method: "GET", route: "/healthz", path: "/healthz", status: 200,
				resp: 2, ua: "kube-probe/1.29", gw: "envoy", upstream: "outbound|8080||orders.default.svc.cluster.local",
				reqID: "9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a"},
			{time: "2026-02-10T13:55:40.250Z", agent: "lc-analyst@tenant-42", src: "header", ip: "203.0.113.45", method: "GET",
				route: "/v1/reports/export", path: "/v1/reports/export", query: []string{"format", "from", "to"}, status: 503,
				resp: 91, durUs: 15003000, ua: "LangChain/0.2.11 (agent)", gw: "istio-ingressgateway-7d9c8b6f5-q8r2m",
				upstream: "outbound|8080||reports.default.svc.cluster.local", reqID: "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"},
		}},
		{"envoy/istio_plain.log", []want{
			{time: "2026-02-10T13:56:01.777Z", ip: "192.0.2.10", method: "PUT", route: "/api/v2/users/{id}/settings",
				path: "/api/v2/users/alice%40example.com/settings", status: 200, req: 188, resp: 64, durUs: 5000, ua: "curl/8.5.0",
				gw: "envoy", upstream: "outbound|9090||users.prod.svc.cluster.local", reqID: "7b3e9d10-0a1b-4c2d-9e8f-1a2b3c4d5e6f"},
			{time: "2026-02-10T13:56:02.100Z", ip: "192.0.2.11", method: "GET", route: "/v1/orders/{id}",
				path: "/v1/orders/ORD-20260210-000123", status: 0, durUs: 30001000, ua: "agent-sdk-node/0.9.1", gw: "envoy",
				upstream: "outbound|8080||orders.default.svc.cluster.local", reqID: "5d6e7f80-91a2-4b3c-8d4e-5f6a7b8c9d0e"},
		}},
		{"kong/http_log.log", []want{
			{time: "2026-02-10T13:55:36.123Z", agent: "agent-research-01", src: "header", ip: "203.0.113.7", method: "GET",
				route: "/v1/customers/{id}/orders", path: "/v1/customers/8812/orders", query: []string{"limit"}, status: 200,
				req: 212, resp: 5480, durUs: 31000, ua: "agent-sdk-python/1.4.2", gw: "kong", upstream: "orders-service",
				reqID: "f0a1b2c3-d4e5-4f60-8a7b-9c0d1e2f3a4b"},
			// Kong redacts Authorization; the consumer is the identity and
			// authenticated_entity the credential.
			{time: "2026-02-10T13:55:37.010Z", agent: "invoice-bot", src: "consumer", cred: "9b8a7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d",
				ip: "198.51.100.23", method: "POST", route: "/v1/invoices", path: "/v1/invoices", status: 201, req: 1034,
				resp: 688, durUs: 92000, ua: "python-httpx/0.27.0", gw: "kong", upstream: "orders-service"},
			{time: "2026-02-10T13:55:38.400Z", ip: "192.0.2.55", method: "GET", route: "/v1/products", path: "/v1/products",
				query: []string{"category", "page", "page"}, status: 200, req: 188, resp: 12040, durUs: 14000,
				ua: "Mozilla/5.0 (compatible; PriceWatcherBot/2.1)", gw: "kong", upstream: "orders-service"},
			{time: "2026-02-10T13:55:39.902Z", agent: "c0ffee00-1111-4222-8333-444455556666", src: "consumer",
				cred: "c0ffee00-1111-4222-8333-444455556666", ip: "203.0.113.99", method: "PATCH", route: "/v1/customers/{id}/profile",
				path: "/v1/customers/cus_9aF3kLm2pQ7xT1vB0zYw/profile", status: 422, req: 356, resp: 301, durUs: 8000,
				ua: "agent-sdk-node/0.9.1", gw: "kong", upstream: "orders-service"},
		}},
		{"nginx_json/agentwatch_json.log", []want{
			{time: "2026-02-10T13:55:36.123Z", agent: "agent-research-01", src: "header", ip: "203.0.113.7", method: "GET",
				route: "/v1/customers/{id}/orders", path: "/v1/customers/8812/orders", query: []string{"limit"}, status: 200,
				req: 412, resp: 5480, durUs: 23000, ua: "agent-sdk-python/1.4.2", gw: "edge-nginx-01", upstream: "10.20.3.4:8080",
				reqID: "6c1e5f0a9b8d7c6e5f4a3b2c1d0e9f8a"},
			{time: "2026-02-10T13:55:37.010Z", agent: "agent-research-01", src: "jwt", cred: "cli_7f3a9c21", ip: "198.51.100.23",
				method: "POST", route: "/v1/invoices", path: "/v1/invoices", status: 201, req: 1034, resp: 688, durUs: 92000,
				ua: "python-httpx/0.27.0", gw: "edge-nginx-01", upstream: "10.20.3.5:8080", reqID: "7d2f6a1b0c9e8d7f6a5b4c3d2e1f0a9b"},
			{time: "2026-02-10T13:55:38.400Z", agent: "agent-cleanup-7", src: "mtls", ip: "192.0.2.80", method: "GET",
				route: "/v1/customers/{id}/invoices/{id}", path: "/v1/customers/2ae3c5d7e9f1/invoices/42", status: 200, req: 300,
				resp: 990, durUs: 4000, ua: "Go-http-client/1.1", gw: "edge-nginx-01", upstream: "10.20.3.4:8080",
				reqID: "8e3a7b2c1d0f9e8a7b6c5d4e3f2a1b0c"},
			{time: "2026-02-10T13:55:39.777Z", agent: "ops-scripts", src: "consumer", ip: "192.0.2.81", method: "HEAD", route: "/",
				path: "/", status: 200, req: 120, ua: "curl/8.5.0", gw: "edge-nginx-01", reqID: "9f4b8c3d2e1a0f9b8c7d6e5f4a3b2c1d"},
			{time: "2026-02-10T13:55:40.500Z", agent: "agent-research-01", src: "header", ip: "203.0.113.45", method: "GET",
				route: "/v1/search", path: "/v1/search", query: []string{"q", "limit"}, status: 499, req: 510, durUs: 30001000,
				ua: "agent-sdk-python/1.4.2", gw: "edge-nginx-01", upstream: "10.20.3.4:8080, 10.20.3.5:8080",
				reqID: "0a5c9d4e3f2b1a0c9d8e7f6a5b4c3d2e"},
		}},
		{"nginx_combined/access.log", []want{
			{time: "2026-02-10T13:55:36Z", ip: "203.0.113.7", method: "GET", route: "/v1/customers/{id}/orders",
				path: "/v1/customers/8812/orders", query: []string{"limit"}, status: 200, resp: 5234,
				ua: "agent-sdk-python/1.4.2", gw: "nginx_combined"},
			{time: "2026-02-10T13:55:37Z", agent: "invoice-bot", src: "consumer", ip: "198.51.100.23", method: "POST",
				route: "/v1/invoices", path: "/v1/invoices", status: 201, resp: 412, ua: "python-httpx/0.27.0", gw: "nginx_combined"},
			{time: "2026-02-10T13:55:38Z", agent: "agent-browser-3", src: "header", ip: "192.0.2.80", method: "GET",
				route: "/v1/customers/{id}/notes", path: "/v1/customers/3fa85f64-5717-4562-b3fc-2c963f66afa6/notes", status: 200,
				req: 318, resp: 990, durUs: 4000, gw: "nginx_combined",
				ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.0.0 Safari/537.36"},
			{time: "2026-02-10T13:55:39Z", ip: "2001:db8::42", method: "DELETE", route: "/v1/sessions/{id}",
				path: "/v1/sessions/9f86d081884c7d65", status: 204, req: 211, durUs: 12000, ua: `agent "quoted" sdk/1.0`, gw: "nginx_combined"},
			{time: "2026-02-10T13:55:40Z", agent: "lc-analyst@tenant-42", src: "header", ip: "192.0.2.99", method: "GET",
				route: "/v1/products", path: "/v1/products", status: 200, resp: 12040, durUs: 250000, gw: "nginx_combined"},
		}},
		{"aws_apigw/access.log", []want{
			{time: "2026-02-10T13:55:36.123Z", agent: "8wdk2y6e1a", src: "consumer", cred: "8wdk2y6e1a", ip: "203.0.113.7",
				method: "GET", route: "/customers/{customerId}/orders", path: "/prod/customers/8812/orders", status: 200,
				resp: 5234, durUs: 23000, ua: "agent-sdk-python/1.4.2", gw: "a1b2c3d4e5", reqID: "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"},
			{time: "2026-02-10T13:55:37Z", agent: "invoice-bot", src: "consumer", ip: "198.51.100.23", method: "POST",
				route: "/invoices", path: "/prod/invoices", status: 201, resp: 412, durUs: 87000, ua: "python-httpx/0.27.0",
				gw: "a1b2c3d4e5", reqID: "d7b0ab07-8c72-12f7-0b52-04f9aeadbeef"},
			// {proxy+} is no template: heuristics take over.
			{time: "2026-02-10T13:55:38Z", ip: "192.0.2.80", method: "GET", route: "/prod/v2/reports/{id}",
				path: "/prod/v2/reports/77", status: 403, resp: 55, durUs: 2000, gw: "a1b2c3d4e5",
				reqID: "e8c1bc18-9d83-13a8-1c63-15a0bfadbeef"},
			{time: "2026-02-10T13:55:39.901Z", agent: "agent-cognito-12", src: "jwt", cred: "3n4b5urk1ft4fl3mg5e3rvd0gp",
				ip: "203.0.113.45", method: "GET", route: "/customers/{customerId}", path: "/prod/customers/42", status: 200,
				resp: 980, durUs: 9000, ua: "agent-sdk-node/0.9.1", gw: "a1b2c3d4e5", reqID: "f9d2cd29-0e94-14b9-2d74-26b1c0adbeef"},
		}},
		{"canonical/events.log", []want{
			{time: "2026-02-10T13:55:36.123Z", agent: "agent-research-01", src: "header", ip: "203.0.113.7", method: "GET",
				route: "/v1/customers/{id}/orders", path: "/v1/customers/8812/orders", query: []string{"limit", "cursor"},
				status: 200, resp: 5234, durUs: 23000, ua: "agent-sdk-python/1.4.2", gw: istio, upstream: "orders", reqID: "3f1d0c52"},
			{time: "2026-02-10T13:55:37.004Z", method: "POST", route: "/v1/invoices", path: "/v1/invoices", status: 201,
				req: 734, resp: 412, durUs: 87000, ua: "python-httpx/0.27.0 é", gw: "canonical"},
			{time: "2026-02-10T13:55:38.512Z", agent: "svc-invoice-bot", src: "jwt", cred: "svc-invoice-bot", ip: "2001:db8::17",
				method: "DELETE", route: "/v1/customers/{customerId}", path: "/v1/customers/3fa85f64-5717-4562-b3fc-2c963f66afa6",
				status: 204, durUs: 12000, gw: "canonical"},
		}},
	}
	for _, tc := range cases {
		format := strings.Split(tc.file, "/")[0]
		lines := readLines(t, tc.file)
		if len(lines) != len(tc.wants) {
			t.Fatalf("%s: %d lines, %d expectations", tc.file, len(lines), len(tc.wants))
		}
		for _, explicit := range []string{"", format} {
			p, err := NewParser(Options{Format: explicit})
			if err != nil {
				t.Fatal(err)
			}
			for i, line := range lines {
				got, err := p.Parse(line, testSrc, testNow)
				want := tc.wants[i].event(t, format)
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("%s:%d (format %q):\n got %+v, %v\nwant %+v", tc.file, i+1, explicit, got, err, want)
				}
			}
		}
	}
}

func TestParseRejects(t *testing.T) {
	p, err := NewParser(Options{MaxLineBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	envoyLine := func(kv ...string) string {
		m := map[string]string{
			"start_time": `"2026-02-10T13:55:36.123Z"`, "method": `"GET"`, "path": `"/v1/x"`, "response_code": "200",
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
				continue
			}
			m[kv[i]] = kv[i+1]
		}
		var b strings.Builder
		b.WriteByte('{')
		first := true
		for _, k := range []string{"start_time", "method", "path", "response_code", "bytes_sent", "duration", "x_agent_id", "authorization", "downstream_peer_subject"} {
			if v, ok := m[k]; ok {
				if !first {
					b.WriteByte(',')
				}
				first = false
				b.WriteString(`"` + k + `":` + v)
			}
		}
		b.WriteByte('}')
		return b.String()
	}
	badJWT := `"Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2F1dGguZXhhbXBsZS5jb20vIiwic3ViIjoiYWdlbnQgPHNjcmlwdD4iLCJpYXQiOjE3NzA3MzEwMDB9.c2ln"`
	bad := func(line, reason string) {
		t.Helper()
		e, err := p.Parse([]byte(line), testSrc, testNow)
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Reason != reason {
			t.Errorf("Parse(%.80q) = %+v, %v; want reason %s", line, e, err, reason)
		}
		if !reflect.DeepEqual(e, event.Event{}) {
			t.Errorf("Parse(%.80q) returned a non-zero event with an error", line)
		}
	}
	bad("", ReasonEmpty)
	bad(" \r\n", ReasonEmpty)
	bad("{"+strings.Repeat(" ", 5000)+"}", ReasonTooLarge)
	bad("{\"method\":\"G\xffT\"}", ReasonInvalidUTF8)
	bad(`{"method":`, ReasonNotJSON)
	bad(strings.Repeat("[", 40)+strings.Repeat("]", 40), ReasonTooDeep)
	bad(`{"a":`+strings.Repeat(`{"a":`, 40)+"1"+strings.Repeat("}", 41), ReasonTooDeep)
	bad(`{"hello":"world"}`, ReasonUnknownFormat)
	bad(`hello world`, ReasonUnknownFormat)
	bad(`{"v":2,"event_time_ms":1}`, ReasonUnknownFormat)
	bad(envoyLine("start_time", ""), ReasonNoTimestamp)
	bad(envoyLine("start_time", `"-"`), ReasonNoTimestamp)
	bad(envoyLine("start_time", `"yesterday"`), ReasonBadTimestamp)
	bad(envoyLine("start_time", `"2026-02-30T10:00:00Z"`), ReasonBadTimestamp)
	bad(envoyLine("start_time", `"2026-01-01T10:00:00Z"`), ReasonTimestampWindow)
	bad(envoyLine("start_time", `"2026-02-10T14:11:00Z"`), ReasonTimestampWindow)
	bad(envoyLine("method", `"G ET"`), ReasonBadField)
	bad(envoyLine("method", `"PROPFINDPROPFINDPROPFIND"`), ReasonBadField)
	bad(envoyLine("method", ""), ReasonBadField)
	bad(envoyLine("path", `"relative/path"`), ReasonBadField)
	bad(envoyLine("path", ""), ReasonBadField)
	bad(envoyLine("response_code", "1000"), ReasonBadField)
	bad(envoyLine("response_code", `"two hundred"`), ReasonBadField)
	bad(envoyLine("bytes_sent", "-5"), ReasonBadField)
	bad(envoyLine("duration", `"soon"`), ReasonBadField)
	bad(envoyLine("x_agent_id", `"agent 7"`), ReasonInvalidAgentID)
	bad(envoyLine("x_agent_id", `"<script>alert(1)</script>"`), ReasonInvalidAgentID)
	bad(envoyLine("x_agent_id", `"agent\n7"`), ReasonInvalidAgentID)
	bad(envoyLine("x_agent_id", `"agent-é"`), ReasonInvalidAgentID)
	bad(envoyLine("x_agent_id", `"`+strings.Repeat("a", 129)+`"`), ReasonInvalidAgentID)
	bad(envoyLine("authorization", badJWT), ReasonInvalidAgentID)
	bad(envoyLine("downstream_peer_subject", `"CN=bad agent,O=x"`), ReasonInvalidAgentID)
	bad(`203.0.113.7 - - [10/Feb/2026:13:55:36 +0000] "GARBAGE" 200 1 "-" "-"`, ReasonBadField)
	bad(`203.0.113.7 - - [10/Feb/2026:13:55:36 +0000] "GET / HTTP/1.1" 20x 1 "-" "-"`, ReasonBadField)
	bad(`203.0.113.7 - - [99/Feb/2026:13:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "-"`, ReasonBadTimestamp)

	// Boundaries that must pass: a 128-byte id, an unknown but
	// well-formed method (upper-cased), a lone-surrogate escape.
	ok := func(line string, check func(e event.Event) bool) {
		t.Helper()
		e, err := p.Parse([]byte(line), testSrc, testNow)
		if err != nil || !check(e) {
			t.Errorf("Parse(%.80q) = %+v, %v", line, e, err)
		}
	}
	long := strings.Repeat("a", 128)
	ok(envoyLine("x_agent_id", `"`+long+`"`), func(e event.Event) bool { return e.AgentID == long && e.IdentitySource == "header" })
	ok(envoyLine("method", `"propfind"`), func(e event.Event) bool { return e.Method == "PROPFIND" })
	ok(envoyLine("path", `"/a\ud800b"`), func(e event.Event) bool { return e.Path == `/a\ud800b` })
	ok(envoyLine("path", `"https://api.example.com/v1/x?y=1#frag"`), func(e event.Event) bool {
		return e.Path == "/v1/x" && reflect.DeepEqual(e.QueryParams, []string{"y"})
	})
}

func TestOptionsValidate(t *testing.T) {
	if err := (Options{}).Validate(); err != nil {
		t.Fatalf("zero Options: %v", err)
	}
	err := Options{
		Format:       "apache",
		Mappings:     map[string]FieldMap{"envoy": {"colour": "x"}, "kong": {"method": "a..b"}, "nginx_combined": {"method": "m"}, "iis": {}},
		Identity:     identity.Rules{{Kind: "header"}},
		MaxLineBytes: -1, MaxDepth: 1000, MaxAge: -time.Second, MaxFuture: -time.Second,
	}.Validate()
	if err == nil {
		t.Fatal("bad options validated")
	}
	for _, field := range []string{"format:", "mappings.envoy.colour", "mappings.kong.method", "mappings.nginx_combined", "mappings.iis",
		"identity[0].header", "max_line_bytes", "max_depth", "max_age", "max_future"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
	if _, err := NewParser(Options{Format: "apache"}); err == nil {
		t.Error("NewParser accepted a bad format")
	}
}

func TestMappingOverride(t *testing.T) {
	// A user-defined Envoy layout: every key renamed, duration in µs.
	line := `{"ts":1770731736123456,"verb":"post","url":"/v2/things/12?x=1","code":"201","in":10,"out":20,"micros":1500,` +
		`"peer":"192.0.2.1:443","ua":"bot/1","svc":"things","rid":"r-1","hdr":{"x-bot":"bot-9"},"node":"edge-7"}`
	rn, err := routes.New([]routes.Route{{Template: "/v2/things/{thingId}", Tags: []string{"pii"}}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewParser(Options{
		Mappings: map[string]FieldMap{FormatEnvoy: {
			"time": "ts", "method": "verb", "path": "url", "status": "code", "request_bytes": "in", "response_bytes": "out",
			"duration_us": "micros", "source_ip": "peer", "user_agent": "ua", "upstream": "svc", "request_id": "rid",
			"gateway": "node", "headers": "hdr",
		}},
		Identity: identity.Rules{{Kind: "header", Header: "X-Bot"}},
		Routes:   rn,
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.Parse([]byte(line), testSrc, testNow)
	want := event.Event{
		EventID: event.ID(testSrc.Topic, testSrc.Partition, testSrc.Offset), EventTimeMs: 1770731736123,
		IngestTimeMs: testNow.UnixMilli(), AgentID: "bot-9", IdentitySource: "header", SourceIP: "192.0.2.1",
		Method: "POST", Route: "/v2/things/{thingId}", Path: "/v2/things/12", QueryParams: []string{"x"}, Status: 201,
		RequestBytes: 10, ResponseBytes: 20, DurationUs: 1500, UserAgent: "bot/1", Gateway: "edge-7", Upstream: "things",
		RequestID: "r-1", Format: FormatEnvoy, Topic: testSrc.Topic, Partition: testSrc.Partition, Offset: testSrc.Offset,
	}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, %v\nwant %+v", got, err, want)
	}
}

func TestRenderParse(t *testing.T) {
	p, err := NewParser(Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := event.Event{
		EventTimeMs: testNow.Add(-time.Minute).UnixMilli() + 123, Method: "PATCH", Path: "/v1/customers/8812/orders",
		QueryParams: []string{"limit", "cursor"}, Status: 207, RequestBytes: 312, ResponseBytes: 2048, DurationUs: 12000,
		UserAgent: `agent "sdk" é/1.4`, SourceIP: "2001:db8::5", Gateway: "gw-1", Upstream: "orders", RequestID: "req-1",
		Route: "/v1/customers/{id}/orders",
	}
	hints := RenderHints{AgentHeader: "agent-7", ConsumerUsername: "billing-bot", ConsumerID: "c-1", APIKeyID: "k-1"}
	for _, f := range Formats() {
		line := Render(f, &e, hints)
		if strings.ContainsAny(string(line), "\n") {
			t.Errorf("%s: rendered line contains a newline", f)
		}
		got, err := p.Parse(line, testSrc, testNow)
		if err != nil {
			t.Errorf("%s: Parse(Render) = %v\n%s", f, err, line)
			continue
		}
		if got.Format != f || got.Method != e.Method || got.Path != e.Path || got.Status != e.Status ||
			got.ResponseBytes != e.ResponseBytes || got.DurationUs != e.DurationUs || got.SourceIP != e.SourceIP ||
			got.Route != e.Route {
			t.Errorf("%s: request fields differ:\n got %+v\nwant %+v\n%s", f, got, e, line)
		}
		wantMs := e.EventTimeMs
		if f == FormatNginxCombined {
			wantMs -= wantMs % 1000
		}
		if got.EventTimeMs != wantMs {
			t.Errorf("%s: time %d, want %d", f, got.EventTimeMs, wantMs)
		}
		if f != FormatAWS && !reflect.DeepEqual(got.QueryParams, e.QueryParams) {
			t.Errorf("%s: query %v, want %v", f, got.QueryParams, e.QueryParams)
		}
		wantAgent := map[string]string{FormatAWS: "billing-bot", FormatCanonical: ""}
		if w, ok := wantAgent[f]; (ok && got.AgentID != w) || (!ok && got.AgentID != "agent-7") {
			t.Errorf("%s: agent %q", f, got.AgentID)
		}
	}
	if Render("iis", &e, hints) != nil {
		t.Error("Render of an unknown format is not nil")
	}
}

func TestEventsDoNotAliasBuffers(t *testing.T) {
	p, err := NewParser(Options{})
	if err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, "*/*.log")
	var first []event.Event
	for _, l := range lines {
		buf := append([]byte(nil), l...)
		e, err := p.Parse(buf, testSrc, testNow)
		if err != nil {
			t.Fatal(err)
		}
		for i := range buf {
			buf[i] = 'X' // a consumer reuses its fetch buffer
		}
		first = append(first, e)
	}
	for i, l := range lines {
		want, err := p.Parse(l, testSrc, testNow)
		if err != nil || !reflect.DeepEqual(first[i], want) {
			t.Errorf("line %d changed after later parses:\n got %+v\nwant %+v", i, first[i], want)
		}
	}
}

func TestReasonsAndFormats(t *testing.T) {
	if len(Reasons()) != 13 || len(Formats()) != 6 {
		t.Fatalf("Reasons %v, Formats %v", Reasons(), Formats())
	}
	seen := map[string]bool{}
	for _, r := range Reasons() {
		if seen[r] || r != strings.ToLower(r) || strings.ContainsAny(r, " -") {
			t.Errorf("reason %q is duplicate or not a snake_case label", r)
		}
		seen[r] = true
	}
}
