package gateway

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/valyala/fastjson"

	"github.com/agentwatch/agentwatch/pkg/internal/jsonscan"
)

// FuzzScanMatchesFastjson checks the hand-written scanner against the
// fastjson parser it replaced: the same lines are JSON objects, with the
// same members, and every member reads as the same text; except that a
// raw control character inside a string, which fastjson lets through, is
// refused (RFC 8259).
func FuzzScanMatchesFastjson(f *testing.F) {
	for _, l := range readLines(f, "*/*.log") {
		f.Add(l)
	}
	for _, s := range []string{`{}`, `{"a":1}`, `{"a":-}`, `{"a":--}`, `{"a":+inf,"b":-NaN}`, `{"a":nan}`, `{"a":"\ud800\u0041"}`,
		`{"a\u0062":"x\\y\/z\q\u12"}`, `{"a":[["x"],1]}`, `{"a":tru}`, `{"a":"\\"}`, `{"a":"\\\""}`, `{"a":1} x`, `{"a" :  {"b" : [ ] } }`,
		`{"a":1,}`, `{,}`, "{\"a\":\"\x00\"}", `{"a":1e+-.5}`, `{"a":"-"}`,
		"{\"a\x1f\":1}", "{\"a\":\"x\ty\"}", "{\"a\":\"\\\x00\"}", "{\"a\":[\"\x01\"]}", "{\"a\":{\"b\":\"\n\"}}",
		"{\"a\":\"0123456\x007\"}", `{"a":"\u0000\u001f"}`, `{"a":1,"a":2}`, `{"a":{"b":1,"b":2}}`} {
		f.Add([]byte(s))
	}
	var fj fastjson.Parser
	p, err := NewParser(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		line = trimSpace(line)
		if len(line) == 0 || line[0] != '{' || bytes.Count(line, []byte("{"))+bytes.Count(line, []byte("["))+1 > jsonMaxDepth {
			return
		}
		v, ferr := fj.ParseBytes(line)
		kvs, end, ok := scanObject(line, 0, 1, nil)
		ok = ok && skipWS(line, end) == len(line)
		ctl := jsonscan.ControlChar(line)
		if ok != (ferr == nil && ctl < 0) {
			t.Fatalf("scan ok=%v, fastjson err=%v, raw control character at %d on %q", ok, ferr, ctl, line)
		}
		if !ok {
			return
		}
		o, _ := v.Object()
		if o.Len() != len(kvs) {
			t.Fatalf("%d members, fastjson %d: %q", len(kvs), o.Len(), line)
		}
		p.line, p.nums = line, p.nums[:0]
		i := 0
		o.Visit(func(k []byte, fv *fastjson.Value) {
			if got := p.key(&kvs[i]); !bytes.Equal(got, k) {
				t.Fatalf("key %d: %q, fastjson %q in %q", i, got, k, line)
			}
			if got, want := p.text(kvs[i].V), fastText(fv); !bytes.Equal(got, want) {
				t.Fatalf("value of %q: %q, fastjson %q in %q", k, got, want, line)
			}
			i++
		})
	})
}

// fastText is the text() of the fastjson-based parser.
func fastText(x *fastjson.Value) []byte {
	switch x.Type() {
	case fastjson.TypeString:
		b, _ := x.StringBytes()
		if len(b) == 1 && b[0] == '-' {
			return nil
		}
		return b
	case fastjson.TypeNumber:
		return x.MarshalTo(nil)
	case fastjson.TypeArray:
		a, _ := x.Array()
		if len(a) > 0 {
			return fastText(a[0])
		}
	}
	return nil
}

// FuzzCleanIP checks cleanIP's IPv4 fast path against netip alone.
func FuzzCleanIP(f *testing.F) {
	for _, s := range []string{"203.0.113.7", "203.0.113.7:32768", "01.2.3.4", "1.2.3.4:65536", "1.2.3.4:", "[::1]:80", "::1",
		"1.2.3.4:0080", "256.1.1.1", "1.2.3", "1.2.3.4.5", "1..3.4", "0.0.0.0:0", " 1.2.3.4 , 5.6.7.8", "fe80::1%eth0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := cleanIP(b), cleanIPNetip(b); !bytes.Equal(got, want) {
			t.Fatalf("cleanIP(%q) = %q, netip says %q", b, got, want)
		}
	})
}

// cleanIPNetip is cleanIP without the fast path.
func cleanIPNetip(b []byte) []byte {
	if i := bytes.IndexByte(b, ','); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || len(b) > 64 {
		return nil
	}
	if _, err := netip.ParseAddr(string(b)); err == nil {
		return b
	}
	if ap, err := netip.ParseAddrPort(string(b)); err == nil {
		if b[0] == '[' {
			end := bytes.IndexByte(b, ']')
			b = b[1:end]
			if i := bytes.IndexByte(b, '%'); i >= 0 && !ap.Addr().Is6() {
				return nil
			}
			return b
		}
		return b[:bytes.LastIndexByte(b, ':')]
	}
	return nil
}
