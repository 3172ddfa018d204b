// Package jsonscan is the hand-written JSON scanner shared by pkg/gateway
// (raw access-log lines) and pkg/event (canonical events). It validates
// and locates values without materialising them, and accepts exactly what
// github.com/valyala/fastjson accepts (checked by gateway's fuzz test).
//
// It is pure and allocation-free except where the caller's slices grow.
//
// Stricter than fastjson in one way, which RFC 8259 requires: a raw
// control character (below 0x20) inside a string, key or value, is an
// error; ControlChar locates it so that callers can say so.
package jsonscan

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// A hand-written JSON scanner for the per-line hot path. It accepts exactly
// what github.com/valyala/fastjson (the parser used before) accepts, so
// which lines are rejected as not_json does not change:
//
//   - whitespace is space, \t, \n, \r;
//   - strings end at the first '"' not preceded by an odd number of
//     backslashes; a raw control character (< 0x20) in them is an error
//     (fastjson lets it through; RFC 8259 does not), the rest of their
//     content is not validated and escapes are decoded best effort
//     (unknown or broken escapes are kept as written);
//   - a number is a run of [0-9.eE+-] (its syntax is not checked), or
//     inf / nan (any case, optionally signed);
//   - true, false, null must be spelled exactly; nesting deeper than 300
//     is refused (Parse's MaxDepth check refuses far less already).
//
// Nothing is materialised: an object is scanned into key/value spans of
// the line (p.kvs), and only the values a mapping needs are ever read.

// Kinds of JSON values.
const (
	None byte = iota
	String
	Number
	Object
	Array
	True
	False
	Null
)

// MaxDepth is fastjson's nesting limit, kept for identical behaviour.
const MaxDepth = 300

// Val is one value of the line: line[Start:End] is its raw text (strings
// with their quotes). Plain says a string is known to hold no backslash,
// so reading it needs no unescaping (false means: look).
type Val struct {
	Start, End int32
	Kind       byte
	Plain      bool
}

// KV is one member of an object: line[KS:KE] is the raw key, without
// quotes; KEsc says it holds a backslash.
type KV struct {
	KS, KE int32
	KEsc   bool
	V      Val
}

func IsWS(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

func SkipWS(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' && IsWS(b[i]) {
		i++
	}
	return i
}

// ScanString returns the index of the closing quote of the string whose
// content starts at b[i], or -1 when it is unterminated or holds a raw
// control character. A backslash escapes the next byte, which is the same
// as fastjson's "a quote after an even number of backslashes".
func ScanString(b []byte, i int) int {
	for {
		i = StringStop(b, i)
		if i >= len(b) || b[i] < ' ' {
			return -1
		}
		if b[i] == '"' {
			return i
		}
		if i+1 < len(b) && b[i+1] < ' ' {
			return -1 // an escaped raw control character is still raw
		}
		i += 2
	}
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// StringStop returns the index of the first '"', '\\' or raw control
// character (< 0x20) in b[i:], or len(b): where a string's plain run ends.
// Eight bytes at a time: most strings of a log line are short, too short
// for bytes.IndexByte's call and setup to pay.
func StringStop(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ ('"' * lsb)
		s := x ^ ('\\' * lsb)
		// (x - 0x20…) &^ x has the top bit of the lowest byte below 0x20
		// set (borrows only mark bytes above a true hit), as the zero-byte
		// tests for q and s do.
		if m := ((q-lsb)&^q | (s-lsb)&^s | (x-' '*lsb)&^x) & msb; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' || c < ' ' {
			return i
		}
	}
	return len(b)
}

// ControlChar returns the index of the first raw control character
// (< 0x20) inside a string of the JSON text b, or -1. It is the slow
// diagnosis run on a line the scanner refused, to tell a control
// character apart from other broken JSON.
func ControlChar(b []byte) int {
	in := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch {
		case !in:
			in = c == '"'
		case c < ' ':
			return i
		case c == '"':
			in = false
		case c == '\\':
			if i+1 < len(b) && b[i+1] < ' ' {
				return i + 1
			}
			i++
		}
	}
	return -1
}

func IsNumChar(c byte) bool {
	return c >= '0' && c <= '9' || c == '.' || c == '-' || c == 'e' || c == 'E' || c == '+'
}

// ScanValue validates the value at b[i] (no leading whitespace) and
// returns its end. Members of objects are not recorded.
func ScanValue(b []byte, i, depth int) (end int, kind byte, ok bool) {
	if i >= len(b) {
		return i, None, false
	}
	depth++
	if depth > MaxDepth {
		return i, None, false
	}
	switch c := b[i]; c {
	case '{':
		i = SkipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, Object, true
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return i, None, false
			}
			q := ScanString(b, i+1)
			if q < 0 {
				return i, None, false
			}
			i = SkipWS(b, q+1)
			if i >= len(b) || b[i] != ':' {
				return i, None, false
			}
			i = SkipWS(b, i+1)
			if i, _, ok = ScanValue(b, i, depth); !ok {
				return i, None, false
			}
			i = SkipWS(b, i)
			if i >= len(b) {
				return i, None, false
			}
			if b[i] == ',' {
				i = SkipWS(b, i+1)
				continue
			}
			if b[i] == '}' {
				return i + 1, Object, true
			}
			return i, None, false
		}
	case '[':
		// The same loop as the object's, without the key: written out twice on
		// purpose, as a shared helper would cost a call per element here.
		i = SkipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, Array, true
		}
		for {
			if i, _, ok = ScanValue(b, i, depth); !ok {
				return i, None, false
			}
			i = SkipWS(b, i)
			if i >= len(b) {
				return i, None, false
			}
			if b[i] == ',' {
				i = SkipWS(b, i+1)
				continue
			}
			if b[i] == ']' {
				return i + 1, Array, true
			}
			return i, None, false
		}
	case '"':
		q := ScanString(b, i+1)
		if q < 0 {
			return i, None, false
		}
		return q + 1, String, true
	case 't':
		if bytes.HasPrefix(b[i:], []byte("true")) {
			return i + 4, True, true
		}
		return i, None, false
	case 'f':
		if bytes.HasPrefix(b[i:], []byte("false")) {
			return i + 5, False, true
		}
		return i, None, false
	case 'n':
		if bytes.HasPrefix(b[i:], []byte("null")) {
			return i + 4, Null, true
		}
		if len(b)-i >= 3 && bytes.EqualFold(b[i:i+3], []byte("nan")) {
			return i + 3, Number, true
		}
		return i, None, false
	}
	start := i
	for ; i < len(b); i++ {
		if IsNumChar(b[i]) {
			continue
		}
		if k := i - start; k == 0 || k == 1 && (b[start] == '-' || b[start] == '+') {
			if len(b)-i >= 3 && (bytes.EqualFold(b[i:i+3], []byte("inf")) || bytes.EqualFold(b[i:i+3], []byte("nan"))) {
				return i + 3, Number, true
			}
			return i, None, false
		}
		return i, Number, true
	}
	return i, Number, true
}

// ScanObject validates the object at b[i] ('{') and appends its members
// to kvs. depth is the nesting depth of the object itself. pkg/gateway's
// scanBind repeats this member loop on purpose (it binds members as it
// scans them; a shared loop would cost a call per member).
func ScanObject(b []byte, i, depth int, kvs []KV) (_ []KV, end int, ok bool) {
	if depth > MaxDepth {
		return kvs, i, false
	}
	i = SkipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return kvs, i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return kvs, i, false
		}
		ks := i + 1
		j := StringStop(b, ks)
		kesc := j < len(b) && b[j] == '\\'
		if kesc {
			j = ScanString(b, j)
		}
		if j < 0 || j >= len(b) || b[j] != '"' {
			return kvs, i, false
		}
		i = SkipWS(b, j+1)
		if i >= len(b) || b[i] != ':' {
			return kvs, i, false
		}
		i = SkipWS(b, i+1)
		vs := i
		var kind byte
		plain := false
		if i < len(b) && b[i] == '"' { // most values are strings: no call
			q := StringStop(b, i+1)
			plain = q < len(b) && b[q] == '"'
			if q < len(b) && b[q] == '\\' {
				q = ScanString(b, q)
			}
			if q < 0 || q >= len(b) || b[q] != '"' {
				return kvs, i, false
			}
			i, kind = q+1, String
		} else if i, kind, ok = ScanValue(b, i, depth); !ok {
			return kvs, i, false
		}
		kvs = append(kvs, KV{KS: int32(ks), KE: int32(j), KEsc: kesc, V: Val{int32(vs), int32(i), kind, plain}})
		if i < len(b) && b[i] == ',' { // no whitespace: the usual case
			i++
			if i < len(b) && b[i] == '"' {
				continue
			}
			i = SkipWS(b, i)
			continue
		}
		i = SkipWS(b, i)
		if i >= len(b) {
			return kvs, i, false
		}
		if b[i] == ',' {
			i = SkipWS(b, i+1)
			continue
		}
		if b[i] == '}' {
			return kvs, i + 1, true
		}
		return kvs, i, false
	}
}

// Unescape appends the best-effort decoding of the JSON string content s
// to dst, exactly like fastjson: \" \\ \/ \b \f \n \r \t and \uXXXX
// (surrogate pairs combined, a lone surrogate kept as written, an invalid
// pair becoming U+FFFD) are decoded; anything else is kept as written.
func Unescape(dst, s []byte) []byte {
	for len(s) > 0 {
		n := bytes.IndexByte(s, '\\')
		if n < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:n]...)
		s = s[n+1:]
		if len(s) == 0 {
			break
		}
		ch := s[0]
		s = s[1:]
		switch ch {
		case '"', '\\', '/':
			dst = append(dst, ch)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			x, ok := Hex4(s)
			if !ok {
				dst = append(dst, '\\', 'u')
				break
			}
			xs := s[:4]
			s = s[4:]
			if !utf16.IsSurrogate(rune(x)) {
				dst = utf8.AppendRune(dst, rune(x))
				break
			}
			x1, ok := uint32(0), false
			if len(s) >= 6 && s[0] == '\\' && s[1] == 'u' {
				x1, ok = Hex4(s[2:])
			}
			if !ok {
				dst = append(dst, '\\', 'u')
				dst = append(dst, xs...)
				break
			}
			dst = utf8.AppendRune(dst, utf16.DecodeRune(rune(x), rune(x1)))
			s = s[6:]
		default:
			dst = append(dst, '\\', ch)
		}
	}
	return dst
}

// Hex4 reads four hex digits, like strconv.ParseUint(s[:4], 16, 16).
func Hex4(s []byte) (uint32, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var x uint32
	for _, c := range s[:4] {
		d, ok := Unhex(c)
		if !ok {
			return 0, false
		}
		x = x<<4 | uint32(d)
	}
	return x, true
}

// Unhex is the value of one hex digit.
func Unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
