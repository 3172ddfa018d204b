package event

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/agentwatch/agentwatch/pkg/internal/jsonscan"
)

func sample() Event {
	return Event{
		EventID: ID("gateway.raw", 3, 1207), EventTimeMs: 1770731736123, IngestTimeMs: 1770731736200,
		AgentID: "agent-research-01", IdentitySource: "header", CredentialID: "cli_7f3a9c21", SourceIP: "2001:db8::17",
		Method: "GET", Route: "/v1/customers/{id}/orders", Path: "/v1/customers/8812/orders",
		QueryParams: []string{"limit", "cursor"}, Status: 200, RequestBytes: 312, ResponseBytes: 5234, DurationUs: 23000,
		UserAgent: `agent "sdk" é/1.4` + "\t\x00\u2028", Gateway: "edge-1", Upstream: "orders", RequestID: "r-1",
		Format: "envoy", Topic: "gateway.raw", Partition: 3, Offset: 1207,
	}
}

func TestAppendJSONGolden(t *testing.T) {
	e := Event{EventID: "x", Method: "GET", Path: "/a\"b\\c\n", QueryParams: []string{"q"}, Status: 404, Unattributed: true,
		UserAgent: "bad\xffutf8\x01", Partition: -1, Offset: math.MaxInt64}
	got := string(AppendJSON(nil, &e))
	want := `{"v":1,"event_id":"x","event_time_ms":0,"ingest_time_ms":0,"agent_id":"","identity_source":"","unattributed":true,` +
		`"credential_id":"","source_ip":"","method":"GET","route":"","path":"/a\"b\\c\n","query_params":["q"],"status":404,` +
		`"request_bytes":0,"response_bytes":0,"duration_us":0,"user_agent":"bad\ufffdutf8\u0001","gateway":"","upstream":"",` +
		`"request_id":"","format":"","topic":"","partition":-1,"offset":9223372036854775807}`
	if got != want {
		t.Fatalf("AppendJSON:\n got %s\nwant %s", got, want)
	}
	// Every field of Event has a JSON field: adding one without encoding it fails here.
	if n := reflect.TypeOf(Event{}).NumField(); strings.Count(got, `":`) != n+1 {
		t.Fatalf("Event has %d fields, encoding has %d keys (incl. v)", n, strings.Count(got, `":`))
	}
}

func TestRoundTrip(t *testing.T) {
	var d Decoder
	for _, e := range []Event{{}, sample()} {
		enc := AppendJSON(nil, &e)
		got, err := d.Decode(enc)
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip of %s:\n got %+v, %v\nwant %+v", enc, got, err, e)
		}
	}
}

// TestRoundTripRandom is the property test: random events, including
// control characters, multi-byte runes and extreme numbers, round-trip
// exactly.
func TestRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("aZ09/{}\"\\\n\t\x00\x1f\x7fé€😀\u2028\u2029<>& ")
	str := func() string {
		n := rng.IntN(12)
		var b strings.Builder
		for range n {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	var d Decoder
	for range 2000 {
		e := Event{
			EventID: str(), EventTimeMs: rng.Int64() - math.MaxInt64/2, IngestTimeMs: rng.Int64(), AgentID: str(),
			IdentitySource: str(), Unattributed: rng.IntN(2) == 0, CredentialID: str(), SourceIP: str(), Method: str(),
			Route: str(), Path: str(), Status: uint16(rng.Uint32()), RequestBytes: rng.Uint64(), ResponseBytes: rng.Uint64(),
			DurationUs: rng.Uint64(), UserAgent: str(), Gateway: str(), Upstream: str(), RequestID: str(), Format: str(),
			Topic: str(), Partition: int32(rng.Uint32()), Offset: rng.Int64(),
		}
		for range rng.IntN(4) {
			e.QueryParams = append(e.QueryParams, str())
		}
		enc := AppendJSON(nil, &e)
		got, err := d.Decode(enc)
		if err != nil || !reflect.DeepEqual(got, e) {
			t.Fatalf("round trip of %s:\n got %+v, %v\nwant %+v", enc, got, err, e)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	var d Decoder
	bad := func(in string, target error) {
		t.Helper()
		_, err := d.Decode([]byte(in))
		if err == nil || (target != nil && !errors.Is(err, target)) {
			t.Errorf("Decode(%s) = %v, want error wrapping %v", in, err, target)
		}
	}
	bad(`{"v":1`, ErrSyntax)
	bad(`[1]`, ErrSyntax)
	bad(`{"method":"GET"}`, ErrVersion)
	bad(`{"v":2,"method":"GET"}`, ErrVersion)
	bad(`{"v":"1"}`, ErrVersion)
	bad(`{"v":1,"status":70000}`, nil)
	bad(`{"v":1,"partition":4294967296}`, nil)
	bad(`{"v":1,"request_bytes":-1}`, nil)
	bad(`{"v":1,"method":5}`, nil)
	bad(`{"v":1,"query_params":[1]}`, nil)
	bad(`{"v":1,"unattributed":"yes"}`, nil)
	if e, err := d.Decode([]byte(`{"v":1,"method":"GET","future_field":{"x":1}}`)); err != nil || e.Method != "GET" {
		t.Errorf("unknown field: %+v, %v", e, err)
	}
	// Strict JSON: a raw control character in any string is refused, and
	// so is a field read twice, whatever its type.
	for _, in := range []string{"{\"v\":1,\"method\":\"G\x00T\"}", "{\"v\":1,\"user_agent\":\"a\tb\"}",
		"{\"v\":1,\"x\x01\":1}", "{\"v\":1,\"path\":\"/\\\x1f\"}", "{\"v\":1,\"query_params\":[\"a\nb\"]}"} {
		bad(in, ErrControlChar)
		bad(in, ErrSyntax)
	}
	for _, f := range []string{`"v":1`, `"event_id":"a"`, `"agent_id":"a"`, `"event_time_ms":5`, `"ingest_time_ms":5`, `"unattributed":true`,
		`"query_params":[]`, `"status":200`, `"request_bytes":1`, `"response_bytes":1`, `"duration_us":1`, `"partition":1`,
		`"offset":1`, `"topic":"t"`, `"method":"GET"`} {
		bad(`{"v":1,`+f+`,`+f+`}`, ErrDuplicateField)
	}
	if e, err := d.Decode([]byte(`{"v":1,"method":"GET","user_agent":"a\u0000\u001fb","future":1,"future":2}`)); err != nil || e.UserAgent != "a\x00\x1fb" {
		t.Errorf("escaped control characters or a repeated unknown field: %+v, %v", e, err)
	}
}

func TestAppendID(t *testing.T) {
	for _, c := range []struct {
		topic string
		p     int32
		o     int64
	}{{"", 0, 0}, {"gateway.raw", 3, 1207}, {strings.Repeat("t", 300), -1, math.MinInt64}} {
		if got, want := string(AppendID(nil, c.topic, c.p, c.o)), ID(c.topic, c.p, c.o); got != want {
			t.Errorf("AppendID(%q,%d,%d) = %s, want %s", c.topic, c.p, c.o, got, want)
		}
	}
}

func FuzzDecode(f *testing.F) {
	s := sample()
	f.Add(AppendJSON(nil, &s))
	f.Add([]byte(`{"v":1}`))
	f.Add([]byte("{\"v\":1,\"method\":\"G\x00T\"}"))
	f.Add([]byte(`{"v":1,"method":"GET","method":"PUT"}`))
	f.Add([]byte(`{"v":1,"v":1,"status":200}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var d, dt Decoder
		e, err := d.Decode(data)
		te, terr := dt.DecodeTransient(data)
		if (err == nil) != (terr == nil) || !reflect.DeepEqual(e, te) {
			t.Fatalf("DecodeTransient of %q: %+v, %v; Decode: %+v, %v", data, te, terr, e, err)
		}
		if err != nil {
			return
		}
		if i := jsonscan.ControlChar(data); i >= 0 {
			t.Fatalf("accepted a raw control character at byte %d of %q", i, data)
		}
		// Decoded strings are valid UTF-8, so the encoding is a fixed point.
		for _, s := range []string{e.Method, e.Path, e.UserAgent, e.AgentID} {
			if !utf8.ValidString(s) {
				t.Fatalf("decoded invalid UTF-8 %q", s)
			}
		}
		enc := AppendJSON(nil, &e)
		again, err := d.Decode(enc)
		if err != nil || !reflect.DeepEqual(again, e) {
			t.Fatalf("re-decode of %s: %+v, %v; want %+v", enc, again, err, e)
		}
	})
}

func TestDecodeTransientReusesBuffers(t *testing.T) {
	s := sample()
	data := AppendJSON(nil, &s)
	var d Decoder
	if _, err := d.DecodeTransient(data); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { d.DecodeTransient(data) }); n != 0 {
		t.Errorf("DecodeTransient allocates %v times", n)
	}
	e, err := d.DecodeTransient(data)
	if want := s; err != nil || !reflect.DeepEqual(e, want) {
		t.Errorf("DecodeTransient = %+v, %v; want %+v", e, err, want)
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	e := sample()
	buf := AppendJSON(nil, &e)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], &e)
	}
}

func BenchmarkDecode(b *testing.B) {
	e := sample()
	buf := AppendJSON(nil, &e)
	var d Decoder
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}
