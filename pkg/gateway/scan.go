package gateway

import (
	"strconv"

	"github.com/agentwatch/agentwatch/pkg/internal/jsonscan"
)

// A hand-written JSON scanner for the per-line hot path. It accepts exactly
// what github.com/valyala/fastjson (the parser used before) accepts, so
// which lines are rejected as not_json does not change:
//
//   - whitespace is space, \t, \n, \r;
//   - strings end at the first '"' not preceded by an odd number of
//     backslashes; a raw control character (< 0x20) in them is refused
//     (RFC 8259; fastjson lets it through), the rest of their content is
//     not validated and escapes are decoded best effort (unknown or
//     broken escapes are kept as written);
//   - a number is a run of [0-9.eE+-] (its syntax is not checked), or
//     inf / nan (any case, optionally signed);
//   - true, false, null must be spelled exactly; nesting deeper than 300
//     is refused (Parse's MaxDepth check refuses far less already).
//
// Nothing is materialised: an object is scanned into key/value spans of
// the line (p.kvs), and only the values a mapping needs are ever read. A
// key a mapping reads that appears twice in one object refuses the line
// (duplicate_key) rather than letting the first or the last win.

// The scanner itself lives in pkg/internal/jsonscan, shared with
// pkg/event's canonical decoder; these names keep the parser's code short.
type (
	jval = jsonscan.Val
	jkv  = jsonscan.KV
)

const (
	jNone   = jsonscan.None
	jString = jsonscan.String
	jNumber = jsonscan.Number
	jObject = jsonscan.Object
	jArray  = jsonscan.Array
	jTrue   = jsonscan.True
	jFalse  = jsonscan.False
	jNull   = jsonscan.Null

	jsonMaxDepth = jsonscan.MaxDepth
)

func skipWS(b []byte, i int) int     { return jsonscan.SkipWS(b, i) }
func scanString(b []byte, i int) int { return jsonscan.ScanString(b, i) }
func stringStop(b []byte, i int) int { return jsonscan.StringStop(b, i) }
func unescape(dst, s []byte) []byte  { return jsonscan.Unescape(dst, s) }
func scanValue(b []byte, i, depth int) (int, byte, bool) {
	return jsonscan.ScanValue(b, i, depth)
}
func scanObject(b []byte, i, depth int, kvs []jkv) ([]jkv, int, bool) {
	return jsonscan.ScanObject(b, i, depth, kvs)
}

// scanBind validates the object at b[i] ('{'), like scanObject, and binds
// its members to the kids of trie node n of c as it goes (see bind): the
// objects some path goes through are bound while they are scanned, so no
// member list is built and no object is scanned twice. depth is the
// nesting depth of the object itself. Its member loop is deliberately
// parallel to jsonscan.ScanObject's rather than built on it: binding
// while scanning needs the parser's trie at every member, and a shared
// loop with a callback would cost a call per member on the hot path.
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
		j := stringStop(b, ks)
		kesc := j < len(b) && b[j] == '\\'
		if kesc {
			j = scanString(b, j)
		}
		if j < 0 || j >= len(b) || b[j] != '"' {
			return i, false
		}
		kid := int32(-1)
		if !leaf {
			k := b[ks:j]
			if kesc {
				p.keyBuf = unescape(p.keyBuf[:0], k)
				k = p.keyBuf
			}
			if kid = c.child(n, k); kid >= 0 && p.bound[kid].Kind != jNone {
				// A repeated key: fields refuses the line if it is JSON
				// and of this mapping's format.
				if p.dupAt < 0 {
					p.dupAt = int32(ks)
				}
				kid = -1
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
			q := stringStop(b, i+1)
			plain = q < len(b) && b[q] == '"'
			if q < len(b) && b[q] == '\\' {
				q = scanString(b, q)
			}
			if q < 0 || q >= len(b) || b[q] != '"' {
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
			p.kvs = append(p.kvs, jkv{KS: int32(ks), KE: int32(j), KEsc: kesc, V: jval{Start: int32(vs), End: int32(i), Kind: kind, Plain: plain}})
		}
		if kid >= 0 {
			p.bound[kid] = jval{Start: int32(vs), End: int32(i), Kind: kind, Plain: plain}
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
	i := skipWS(b, int(v.Start)+1)
	if b[i] == ']' {
		return jval{}, false
	}
	for k := 0; ; k++ {
		end, kind, ok := scanValue(b, i, 0)
		if !ok {
			return jval{}, false
		}
		if k == n {
			return jval{Start: int32(i), End: int32(end), Kind: kind}, true
		}
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ',' {
			return jval{}, false
		}
		i = skipWS(b, i+1)
	}
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
