package gateway

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// A hand-written JSON scanner for the per-line hot path. It accepts exactly
// what github.com/valyala/fastjson (the parser used before) accepts, so
// which lines are rejected as not_json does not change:
//
//   - whitespace is space, \t, \n, \r;
//   - strings end at the first '"' not preceded by an odd number of
//     backslashes; their content is not validated and escapes are decoded
//     best effort (unknown or broken escapes are kept as written);
//   - a number is a run of [0-9.eE+-] (its syntax is not checked), or
//     inf / nan (any case, optionally signed);
//   - true, false, null must be spelled exactly; nesting deeper than 300
//     is refused (Parse's MaxDepth check refuses far less already).
//
// Nothing is materialised: an object is scanned into key/value spans of
// the line (p.kvs), and only the values a mapping needs are ever read.

// Kinds of JSON values.
const (
	jNone byte = iota
	jString
	jNumber
	jObject
	jArray
	jTrue
	jFalse
	jNull
)

// jsonMaxDepth is fastjson's nesting limit, kept for identical behaviour.
const jsonMaxDepth = 300

// jval is one value of the line: line[start:end] is its raw text (strings
// with their quotes). plain says a string is known to hold no backslash,
// so reading it needs no unescaping (false means: look).
type jval struct {
	start, end int32
	kind       byte
	plain      bool
}

// jkv is one member of an object: line[ks:ke] is the raw key, without
// quotes; kesc says it holds a backslash.
type jkv struct {
	ks, ke int32
	kesc   bool
	v      jval
}

func isWS(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' && isWS(b[i]) {
		i++
	}
	return i
}

// scanString returns the index of the closing quote of the string whose
// content starts at b[i], or -1. A backslash escapes the next byte, which
// is the same as fastjson's "a quote after an even number of backslashes".
func scanString(b []byte, i int) int {
	for {
		i = quoteOrBackslash(b, i)
		if i >= len(b) {
			return -1
		}
		if b[i] == '"' {
			return i
		}
		i += 2
	}
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// quoteOrBackslash returns the index of the first '"' or '\\' in b[i:], or
// len(b). Eight bytes at a time: most strings of a log line are short, too
// short for bytes.IndexByte's call and setup to pay.
func quoteOrBackslash(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		q := x ^ ('"' * lsb)
		s := x ^ ('\\' * lsb)
		if m := ((q-lsb)&^q | (s-lsb)&^s) & msb; m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' {
			return i
		}
	}
	return len(b)
}

func isNumChar(c byte) bool {
	return c >= '0' && c <= '9' || c == '.' || c == '-' || c == 'e' || c == 'E' || c == '+'
}

// scanValue validates the value at b[i] (no leading whitespace) and
// returns its end. Members of objects are not recorded.
func scanValue(b []byte, i, depth int) (end int, kind byte, ok bool) {
	if i >= len(b) {
		return i, jNone, false
	}
	depth++
	if depth > jsonMaxDepth {
		return i, jNone, false
	}
	switch c := b[i]; c {
	case '{':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			return i + 1, jObject, true
		}
		for {
			if i >= len(b) || b[i] != '"' {
				return i, jNone, false
			}
			q := scanString(b, i+1)
			if q < 0 {
				return i, jNone, false
			}
			i = skipWS(b, q+1)
			if i >= len(b) || b[i] != ':' {
				return i, jNone, false
			}
			i = skipWS(b, i+1)
			if i, _, ok = scanValue(b, i, depth); !ok {
				return i, jNone, false
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return i, jNone, false
			}
			if b[i] == ',' {
				i = skipWS(b, i+1)
				continue
			}
			if b[i] == '}' {
				return i + 1, jObject, true
			}
			return i, jNone, false
		}
	case '[':
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			return i + 1, jArray, true
		}
		for {
			if i, _, ok = scanValue(b, i, depth); !ok {
				return i, jNone, false
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return i, jNone, false
			}
			if b[i] == ',' {
				i = skipWS(b, i+1)
				continue
			}
			if b[i] == ']' {
				return i + 1, jArray, true
			}
			return i, jNone, false
		}
	case '"':
		q := scanString(b, i+1)
		if q < 0 {
			return i, jNone, false
		}
		return q + 1, jString, true
	case 't':
		if bytes.HasPrefix(b[i:], []byte("true")) {
			return i + 4, jTrue, true
		}
		return i, jNone, false
	case 'f':
		if bytes.HasPrefix(b[i:], []byte("false")) {
			return i + 5, jFalse, true
		}
		return i, jNone, false
	case 'n':
		if bytes.HasPrefix(b[i:], []byte("null")) {
			return i + 4, jNull, true
		}
		if len(b)-i >= 3 && bytes.EqualFold(b[i:i+3], []byte("nan")) {
			return i + 3, jNumber, true
		}
		return i, jNone, false
	}
	start := i
	for ; i < len(b); i++ {
		if isNumChar(b[i]) {
			continue
		}
		if k := i - start; k == 0 || k == 1 && (b[start] == '-' || b[start] == '+') {
			if len(b)-i >= 3 && (bytes.EqualFold(b[i:i+3], []byte("inf")) || bytes.EqualFold(b[i:i+3], []byte("nan"))) {
				return i + 3, jNumber, true
			}
			return i, jNone, false
		}
		return i, jNumber, true
	}
	return i, jNumber, true
}

// scanObject validates the object at b[i] ('{') and appends its members
// to kvs. depth is the nesting depth of the object itself.
func scanObject(b []byte, i, depth int, kvs []jkv) (_ []jkv, end int, ok bool) {
	if depth > jsonMaxDepth {
		return kvs, i, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return kvs, i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return kvs, i, false
		}
		ks := i + 1
		j := quoteOrBackslash(b, ks)
		kesc := j < len(b) && b[j] == '\\'
		if kesc {
			j = scanString(b, j)
		}
		if j < 0 || j >= len(b) {
			return kvs, i, false
		}
		i = skipWS(b, j+1)
		if i >= len(b) || b[i] != ':' {
			return kvs, i, false
		}
		i = skipWS(b, i+1)
		vs := i
		var kind byte
		plain := false
		if i < len(b) && b[i] == '"' { // most values are strings: no call
			q := quoteOrBackslash(b, i+1)
			plain = q < len(b) && b[q] == '"'
			if q < len(b) && b[q] == '\\' {
				q = scanString(b, q)
			}
			if q < 0 || q >= len(b) {
				return kvs, i, false
			}
			i, kind = q+1, jString
		} else if i, kind, ok = scanValue(b, i, depth); !ok {
			return kvs, i, false
		}
		kvs = append(kvs, jkv{ks: int32(ks), ke: int32(j), kesc: kesc, v: jval{int32(vs), int32(i), kind, plain}})
		if i < len(b) && b[i] == ',' { // no whitespace: the usual case
			i++
			if i < len(b) && b[i] == '"' {
				continue
			}
			i = skipWS(b, i)
			continue
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return kvs, i, false
		}
		if b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if b[i] == '}' {
			return kvs, i + 1, true
		}
		return kvs, i, false
	}
}

// scanBind validates the object at b[i] ('{'), like scanObject, and binds
// its members to the kids of trie node n of c as it goes (see bind): the
// objects some path goes through are bound while they are scanned, so no
// member list is built and no object is scanned twice. depth is the
// nesting depth of the object itself.
func (p *Parser) scanBind(c *compiled, n int32, b []byte, i, depth int) (end int, ok bool) {
	if depth > jsonMaxDepth {
		return i, false
	}
	leaf := len(c.nodes[n].kids) == 0
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return i, false
		}
		ks := i + 1
		j := quoteOrBackslash(b, ks)
		kesc := j < len(b) && b[j] == '\\'
		if kesc {
			j = scanString(b, j)
		}
		if j < 0 || j >= len(b) {
			return i, false
		}
		kid := int32(-1)
		if !leaf {
			k := b[ks:j]
			if kesc {
				p.keyBuf = unescape(p.keyBuf[:0], k)
				k = p.keyBuf
			}
			if kid = c.child(n, k); kid >= 0 && p.bound[kid].kind != jNone {
				kid = -1 // the first of duplicate keys wins
			}
		}
		i = skipWS(b, j+1)
		if i >= len(b) || b[i] != ':' {
			return i, false
		}
		i = skipWS(b, i+1)
		vs := i
		var kind byte
		plain := false
		switch {
		case i < len(b) && b[i] == '"': // most values are strings: no call
			q := quoteOrBackslash(b, i+1)
			plain = q < len(b) && b[q] == '"'
			if q < len(b) && b[q] == '\\' {
				q = scanString(b, q)
			}
			if q < 0 || q >= len(b) {
				return i, false
			}
			i, kind = q+1, jString
		case kid >= 0 && i < len(b) && b[i] == '{' && len(c.nodes[kid].kids) > 0:
			if i, ok = p.scanBind(c, kid, b, i, depth+1); !ok {
				return i, false
			}
			kind = jObject
		default:
			if i, kind, ok = scanValue(b, i, depth); !ok {
				return i, false
			}
		}
		if depth == 1 && p.recordTop {
			p.kvs = append(p.kvs, jkv{ks: int32(ks), ke: int32(j), kesc: kesc, v: jval{int32(vs), int32(i), kind, plain}})
		}
		if kid >= 0 {
			p.bound[kid] = jval{int32(vs), int32(i), kind, plain}
			if kind == jArray {
				p.descend(c, kid)
			}
		}
		if i < len(b) && b[i] == ',' { // no whitespace: the usual case
			i++
			if i < len(b) && b[i] == '"' {
				continue
			}
			i = skipWS(b, i)
			continue
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return i, false
		}
		if b[i] == ',' {
			i = skipWS(b, i+1)
			continue
		}
		if b[i] == '}' {
			return i + 1, true
		}
		return i, false
	}
}

// arrayElem returns element n of the (already validated) array v.
func arrayElem(b []byte, v jval, n int) (jval, bool) {
	i := skipWS(b, int(v.start)+1)
	if b[i] == ']' {
		return jval{}, false
	}
	for k := 0; ; k++ {
		end, kind, ok := scanValue(b, i, 0)
		if !ok {
			return jval{}, false
		}
		if k == n {
			return jval{start: int32(i), end: int32(end), kind: kind}, true
		}
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ',' {
			return jval{}, false
		}
		i = skipWS(b, i+1)
	}
}

// unescape appends the best-effort decoding of the JSON string content s
// to dst, exactly like fastjson: \" \\ \/ \b \f \n \r \t and \uXXXX
// (surrogate pairs combined, a lone surrogate kept as written, an invalid
// pair becoming U+FFFD) are decoded; anything else is kept as written.
func unescape(dst, s []byte) []byte {
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
			x, ok := hex4(s)
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
				x1, ok = hex4(s[2:])
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

// hex4 reads four hex digits, like strconv.ParseUint(s[:4], 16, 16).
func hex4(s []byte) (uint32, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var x uint32
	for _, c := range s[:4] {
		d, ok := unhex(c)
		if !ok {
			return 0, false
		}
		x = x<<4 | uint32(d)
	}
	return x, true
}

// keyIndex is the array index a path key stands for (fastjson's Get
// reads decimal keys as indexes into arrays), or -1.
func keyIndex(k string) int {
	n, err := strconv.Atoi(k)
	if err != nil || n < 0 {
		return -1
	}
	return n
}
