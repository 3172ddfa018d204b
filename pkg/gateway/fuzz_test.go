package gateway

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/routes"
)

// fuzzParse checks the invariants every parser must keep on any input:
// a value xor a *ParseError with a known reason, and an accepted event
// survives the canonical encoding unchanged; routes are bounded.
func fuzzParse(f *testing.F, format, seeds string) {
	for _, l := range readLines(f, seeds) {
		f.Add(l)
	}
	f.Add([]byte(""))
	f.Add([]byte("{}"))
	// Raw control characters and repeated keys, in the first line of the
	// format's samples: refused with their own reasons.
	if ls := readLines(f, seeds); len(ls) > 0 {
		l := ls[0]
		if i := bytes.IndexByte(l, ':'); i > 0 && l[0] == '{' {
			f.Add(append([]byte("{\"k\x00\":1,"), l[1:]...))
			f.Add(bytes.Replace(l, []byte(`"GET"`), []byte("\"G\tET\""), 1))
			f.Add(append(append([]byte("{"), l[1:i+1]...), append([]byte(`"x",`), l[1:]...)...))
		}
	}
	p, err := NewParser(Options{Format: format})
	if err != nil {
		f.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, r := range Reasons() {
		reasons[r] = true
	}
	// ref takes the general way (scan the line, then bind the mapping),
	// which binding while scanning must agree with.
	ref, err := NewParser(Options{Format: format})
	if err != nil {
		f.Fatal(err)
	}
	ref.twoPass = true
	var dec event.Decoder
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := p.Parse(line, testSrc, testNow)
		re, rerr := ref.Parse(line, testSrc, testNow)
		if !reflect.DeepEqual(e, re) || reason(err) != reason(rerr) {
			t.Fatalf("parse of %q differs from the two-pass parse:\n got %+v, %v\nwant %+v, %v", line, e, err, re, rerr)
		}
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || !reasons[pe.Reason] {
				t.Fatalf("error %v is not a *ParseError with a known reason", err)
			}
			if !reflect.DeepEqual(e, event.Event{}) {
				t.Fatalf("error %v with a non-zero event %+v", err, e)
			}
			return
		}
		if e.EventID == "" || e.Method == "" || e.Path == "" || e.Route == "" || e.Format == "" {
			t.Fatalf("accepted event lacks a required field: %+v", e)
		}
		if len(e.Route) > routes.MaxPathLen+16 || len(e.QueryParams) > MaxQueryParams {
			t.Fatalf("unbounded route or query: %+v", e)
		}
		if e.Unattributed != (e.AgentID == "") {
			t.Fatalf("Unattributed=%v with AgentID %q", e.Unattributed, e.AgentID)
		}
		enc := event.AppendJSON(nil, &e)
		back, err := dec.Decode(enc)
		if err != nil || !reflect.DeepEqual(back, e) {
			t.Fatalf("canonical round trip of %q:\n got %+v, %v\nwant %+v", line, back, err, e)
		}
		// The canonical line parses again to the same request (its own
		// format and gateway labels aside).
		again, err := p2(t).Parse(enc, testSrc, testNow)
		if err != nil {
			t.Fatalf("canonical re-parse of %s: %v", enc, err)
		}
		again.Format, again.Gateway = e.Format, e.Gateway
		if again.Route != e.Route {
			again.Route = e.Route // a logged template may differ from what heuristics would give the path
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("canonical re-parse differs:\n got %+v\nwant %+v", again, e)
		}
	})
}

func reason(err error) string {
	var pe *ParseError
	if errors.As(err, &pe) {
		return pe.Reason
	}
	return ""
}

var canonicalParser *Parser

func p2(t *testing.T) *Parser {
	if canonicalParser == nil {
		var err error
		if canonicalParser, err = NewParser(Options{Format: FormatCanonical}); err != nil {
			t.Fatal(err)
		}
	}
	return canonicalParser
}

func FuzzParseEnvoy(f *testing.F)         { fuzzParse(f, FormatEnvoy, "envoy/*.log") }
func FuzzParseKong(f *testing.F)          { fuzzParse(f, FormatKong, "kong/*.log") }
func FuzzParseNginxJSON(f *testing.F)     { fuzzParse(f, FormatNginxJSON, "nginx_json/*.log") }
func FuzzParseNginxCombined(f *testing.F) { fuzzParse(f, FormatNginxCombined, "nginx_combined/*.log") }
func FuzzParseAWS(f *testing.F)           { fuzzParse(f, FormatAWS, "aws_apigw/*.log") }
func FuzzParseCanonical(f *testing.F)     { fuzzParse(f, FormatCanonical, "canonical/*.log") }
func FuzzParseAuto(f *testing.F)          { fuzzParse(f, FormatAuto, "*/*.log") }

func FuzzNormalizeRoute(f *testing.F) {
	for _, s := range []string{"/v1/customers/8812/orders", "/", "", "//a//b/", "/a/3fa85f64-5717-4562-b3fc-2c963f66afa6",
		"/users/alice%40example.com", "/x/{id}", "/v1/customers/8812/orders/9/items/1/a/b/c/d/e/f/g/h/i/j/k/l"} {
		f.Add(s)
	}
	n, err := routes.New([]routes.Route{{Template: "/v1/customers/{id}/orders"}, {Template: "/v1/customers/me/orders"}, {Template: "/"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r := n.Normalize(path)
		if r == "" || r[0] != '/' || len(r) > routes.MaxPathLen+16 {
			t.Fatalf("Normalize(%q) = %q", path, r)
		}
		if _, ok := n.Match(path); !ok {
			// Heuristic output is a fixed point: normalising again changes nothing.
			if again := routes.Heuristic(r); again != r {
				t.Fatalf("Heuristic not idempotent: %q → %q → %q", path, r, again)
			}
		}
	})
}
