package gateway

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/routes"
)

// TestStrictJSON: every JSON format (and auto detection, and the two-pass
// way) refuses a raw control character inside a string as control_char
// and a key it reads twice in one object as duplicate_key, while escaped
// control characters and repeated keys it never reads are fine.
func TestStrictJSON(t *testing.T) {
	const ua = `"agent-sdk-python/1.4.2"`
	cases := []struct {
		format, file string
		// dup repeats a key the format reads, in the object that holds it.
		dup func(line string) string
	}{
		{FormatEnvoy, "envoy/istio_default.log", func(l string) string { return `{"method":"DELETE",` + l[1:] }},
		{FormatKong, "kong/http_log.log", func(l string) string {
			return strings.Replace(l, `{"request":{"method":"GET",`, `{"request":{"method":"GET","method":"DELETE",`, 1)
		}},
		{FormatNginxJSON, "nginx_json/agentwatch_json.log", func(l string) string { return `{"request_method":"DELETE",` + l[1:] }},
		{FormatAWS, "aws_apigw/access.log", func(l string) string { return `{"httpMethod":"DELETE",` + l[1:] }},
		{FormatCanonical, "canonical/events.log", func(l string) string { return `{"method":"DELETE",` + l[1:] }},
	}
	for _, tc := range cases {
		line := string(readLines(t, tc.file)[0])
		if !strings.Contains(line, ua) {
			t.Fatalf("%s: first line has no user agent %s", tc.file, ua)
		}
		mutations := []struct {
			name, line, reason string
		}{
			{"NUL in a value", strings.Replace(line, ua, "\"agent-sdk\x00python/1.4.2\"", 1), ReasonControlChar},
			{"raw tab in a value", strings.Replace(line, ua, "\"agent-sdk\tpython/1.4.2\"", 1), ReasonControlChar},
			{"escaped NUL after a backslash", strings.Replace(line, ua, "\"agent-sdk\\\x00python\"", 1), ReasonControlChar},
			{"control character in a key", "{\"x\x01y\":1," + line[1:], ReasonControlChar},
			{"raw newline in an unread value", "{\"zz\":\"a\nb\"," + line[1:], ReasonControlChar},
			{"read key twice", tc.dup(line), ReasonDuplicateKey},
			{"escaped control characters", strings.Replace(line, ua, `"agent-sdk\u0009python\u001f"`, 1), ""},
			{"unread key twice", `{"zz_unread":1,"zz_unread":2,` + line[1:], ""},
		}
		for _, format := range []string{tc.format, FormatAuto} {
			for _, twoPass := range []bool{false, true} {
				p, err := NewParser(Options{Format: format})
				if err != nil {
					t.Fatal(err)
				}
				p.twoPass = twoPass
				if _, err := p.Parse([]byte(line), testSrc, testNow); err != nil {
					t.Fatalf("%s (%s): the unchanged line: %v", tc.file, format, err)
				}
				for _, m := range mutations {
					if m.line == line {
						t.Fatalf("%s: mutation %q changed nothing", tc.file, m.name)
					}
					_, err := p.Parse([]byte(m.line), testSrc, testNow)
					var pe *ParseError
					switch {
					case m.reason == "" && err != nil && (reason(err) == ReasonControlChar || reason(err) == ReasonDuplicateKey || reason(err) == ReasonNotJSON):
						t.Errorf("%s (%s, two-pass %v) %s: refused as %v, want accepted", tc.file, format, twoPass, m.name, err)
					case m.reason != "" && (!errors.As(err, &pe) || pe.Reason != m.reason):
						t.Errorf("%s (%s, two-pass %v) %s: %v, want reason %s", tc.file, format, twoPass, m.name, err, m.reason)
					}
				}
			}
		}
	}
}

// TestStrictJSONMessages: the reasons say where and what, without
// echoing more than a bounded key.
func TestStrictJSONMessages(t *testing.T) {
	p, err := NewParser(Options{})
	if err != nil {
		t.Fatal(err)
	}
	line := readLines(t, "envoy/istio_default.log")[0]
	_, err = p.Parse(bytes.Replace(line, []byte(`"GET"`), []byte("\"G\x00T\""), 1), testSrc, testNow)
	if err == nil || !strings.Contains(err.Error(), "0x00") || !strings.Contains(err.Error(), "RFC 8259") {
		t.Errorf("control character error = %v; want the byte and the rule", err)
	}
	dup := append([]byte(`{"method":"PUT",`), line[1:]...)
	_, err = p.Parse(dup, testSrc, testNow)
	if err == nil || !strings.Contains(err.Error(), `"method"`) || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate key error = %v; want the key named", err)
	}
}

// TestReasonsListStrictReasons: the new reasons are pre-created metric
// series like the others.
func TestReasonsListStrictReasons(t *testing.T) {
	for _, r := range []string{ReasonControlChar, ReasonDuplicateKey} {
		if !slices.Contains(Reasons(), r) {
			t.Errorf("Reasons() lacks %s", r)
		}
	}
}

// TestLongPathsAreCounted: a path of any length the line limit lets
// through is kept as an event, cut to MaxPathBytes, with the route
// "/{too_long}" once it is longer than routes.MaxPathLen: a client cannot
// hide calls behind long paths.
func TestLongPathsAreCounted(t *testing.T) {
	p, err := NewParser(Options{MaxLineBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n         int
		route     string
		keptBytes int
	}{
		{routes.MaxPathLen, "", routes.MaxPathLen},
		{routes.MaxPathLen + 1, "/{too_long}", routes.MaxPathLen + 1},
		{MaxPathBytes, "/{too_long}", MaxPathBytes},
		{MaxPathBytes + 1, "/{too_long}", MaxPathBytes},
		{100_000, "/{too_long}", MaxPathBytes},
	} {
		path := "/" + strings.Repeat("a", tc.n-1)
		for _, line := range []string{
			`{"start_time":"2026-02-10T13:55:36.123Z","method":"GET","path":"` + path + `?x=1","response_code":200}`,
			`127.0.0.1 - - [10/Feb/2026:13:55:36 +0000] "GET ` + path + ` HTTP/1.1" 200 5 "-" "ua"`,
		} {
			e, err := p.Parse([]byte(line), testSrc, testNow)
			if err != nil {
				t.Errorf("path of %d bytes (%.20s…): %v, want the event kept", tc.n, line, err)
				continue
			}
			if len(e.Path) != tc.keptBytes || !strings.HasPrefix(path, e.Path) {
				t.Errorf("path of %d bytes: kept %d bytes, want %d", tc.n, len(e.Path), tc.keptBytes)
			}
			if tc.route != "" && e.Route != tc.route {
				t.Errorf("path of %d bytes: route %.40q, want %s", tc.n, e.Route, tc.route)
			}
			if tc.route == "" && e.Route == "/{too_long}" {
				t.Errorf("path of %d bytes: route /{too_long}, want a normal route", tc.n)
			}
		}
	}
	// A multi-byte rune across the cut is not split.
	path := "/" + strings.Repeat("a", MaxPathBytes-2) + "é"
	line := `{"start_time":"2026-02-10T13:55:36.123Z","method":"GET","path":"` + path + `","response_code":200}`
	if e, err := p.Parse([]byte(line), testSrc, testNow); err != nil || len(e.Path) != MaxPathBytes-1 {
		t.Errorf("cut inside a rune: %d bytes kept, %v; want %d", len(e.Path), err, MaxPathBytes-1)
	}
}
