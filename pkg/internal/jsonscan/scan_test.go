package jsonscan

import (
	"bytes"
	"testing"
)

// stringStopSlow is StringStop one byte at a time: the reference for the
// eight-bytes-at-a-time version.
func stringStopSlow(b []byte, i int) int {
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' || c < ' ' {
			return i
		}
	}
	return len(b)
}

// FuzzStringStop: the word-at-a-time scan stops exactly where the
// byte-at-a-time one does, from every start, on any bytes; a borrow in
// the control-character test must never move the first stop.
func FuzzStringStop(f *testing.F) {
	for _, s := range []string{"", "abc", `abcdefgh"`, "abcdefg\x00", "\x1f\x20\x21", "ab\\cdefghijk\"", "\x80\x9f\xff\x00",
		"aaaaaaa\x01aaaaaaaa", "\x20\x20\x20\x20\x20\x20\x20\x1f", "é\x00\"", "\x00\x00\x00\x00\x00\x00\x00\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for i := 0; i <= len(b); i++ {
			if got, want := StringStop(b, i), stringStopSlow(b, i); got != want {
				t.Fatalf("StringStop(%q, %d) = %d, want %d", b, i, got, want)
			}
		}
	})
}

// TestControlChar: the diagnosis finds raw control characters inside
// strings (after a backslash too) and nowhere else.
func TestControlChar(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{`{"a":"b"}`, -1},
		{"{\"a\":\"b\x00\"}", 7},
		{"{\"a\x1f\":1}", 3},
		{"{\n\t\"a\":\r\n1}", -1}, // whitespace between tokens is fine
		{"{\"a\":\"\\\x00\"}", 7},
		{`{"a":"\u0000\n"}`, -1}, // escaped
		{"{\"a\":\"\\\\\",\"b\":\"\x7f\t\"}", 16},
		{"{\"a\":[\"x\",\"\x01\"]}", 11},
	} {
		if got := ControlChar([]byte(c.in)); got != c.want {
			t.Errorf("ControlChar(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

// TestScanRefusesControlChars: ScanObject and ScanValue refuse a raw
// control character in any string, key or value, nested or not, and keep
// accepting the escaped form.
func TestScanRefusesControlChars(t *testing.T) {
	for _, in := range []string{"{\"a\":\"\x00\"}", "{\"a\x01\":1}", "{\"a\":\"xx\\\x02\"}", "{\"a\":[\"\x03\"]}",
		"{\"a\":{\"b\":\"\x1f\"}}", "{\"a\":{\"b\x0a\":1}}", "{\"abcdefghij\":\"0123456789\x0b012345\"}"} {
		if _, end, ok := ScanObject([]byte(in), 0, 1, nil); ok {
			t.Errorf("ScanObject(%q) accepted it (end %d)", in, end)
		}
		if _, _, ok := ScanValue([]byte(in), 0, 0); ok {
			t.Errorf("ScanValue(%q) accepted it", in)
		}
		if ControlChar([]byte(in)) < 0 {
			t.Errorf("ControlChar(%q) found nothing", in)
		}
	}
	in := []byte(`{"a":"\u0000\u001f","b":{"c":["\t"]}}`)
	kvs, end, ok := ScanObject(in, 0, 1, nil)
	if !ok || end != len(in) || len(kvs) != 2 {
		t.Fatalf("escaped control characters refused: %v %d %d", ok, end, len(kvs))
	}
	if got := Unescape(nil, in[kvs[0].V.Start+1:kvs[0].V.End-1]); !bytes.Equal(got, []byte{0, 0x1f}) {
		t.Errorf("Unescape = %q", got)
	}
}
