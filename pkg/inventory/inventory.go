// Package inventory holds what agentwatch is told about the fleet rather
// than what it learns: the agent registry (which agents exist, their role,
// owner, credential and approved routes) and the route inventory (which
// route templates exist and which are tagged sensitive or deprecated).
// The detector's rules that need no statistics read them: shadow agent,
// unapproved route, zombie API and first call to a sensitive route.
//
// Both are parsed from YAML or JSON (JSON is YAML) bytes; routes can also
// be imported from an OpenAPI 3 document. The schema is documented in
// docs/registry.md. A parsed *Registry or *Inventory is immutable and safe
// for concurrent reads; loading files and reloading them on change is
// internal/platform/invwatch's job.
//
// Route templates are compared in normalised form (see NormalizeTemplate),
// so /customers/{customerId} in an OpenAPI document, /customers/{id} in the
// registry and the ingest's heuristic /customers/{id} are the same route.
//
// The package is pure: no I/O besides parsing the bytes given to it, no
// globals, no logging.
package inventory

import (
	"errors"
	"fmt"
	"strings"

	"github.com/agentwatch/agentwatch/pkg/routes"
)

// Tags the detector's rules read. Other tags are kept but mean nothing to
// agentwatch yet.
const (
	// TagSensitive marks a route exposing bulk or personal data: the first
	// call to it by an agent is a finding.
	TagSensitive = "sensitive"
	// TagDeprecated marks a route kept only for old clients: any call to
	// it is a zombie-API finding.
	TagDeprecated = routes.TagDeprecated
)

// maxErrors bounds how many problems one parse reports; the rest are
// counted.
const maxErrors = 20

// NormalizeTemplate returns the form in which templates are compared:
// empty segments dropped ("/" when none is left) and every segment holding
// a parameter ('{') replaced by "{id}", the ingest heuristic's spelling.
// So "/customers/{customerId}/orders/" becomes "/customers/{id}/orders".
// It returns template itself, without allocating, when it is already
// normalised. It does not validate; see the parsers for what a template
// may contain.
func NormalizeTemplate(template string) string {
	if isNormal(template) {
		return template
	}
	return string(appendNormal(make([]byte, 0, len(template)+4), template))
}

// isNormal reports whether appendNormal would return template unchanged.
func isNormal(t string) bool {
	if t == "/" {
		return true
	}
	if t == "" || t[0] != '/' {
		return false
	}
	for rest := t[1:]; ; {
		i := strings.IndexByte(rest, '/')
		seg := rest
		if i >= 0 {
			seg = rest[:i]
		}
		if seg == "" || strings.IndexByte(seg, '{') >= 0 && seg != "{id}" {
			return false
		}
		if i < 0 {
			return true
		}
		rest = rest[i+1:]
	}
}

// appendNormal appends the normalised form of t to dst. Its loop looks
// like routes.AppendHeuristic's but differs in what a parameter is (any
// {…} here, IsID there) and has no segment cap; sharing it would put a
// call per segment on AppendHeuristic's hot path.
func appendNormal(dst []byte, t string) []byte {
	start := len(dst)
	for seg := range routes.Segments(t) {
		dst = append(dst, '/')
		if strings.IndexByte(seg, '{') >= 0 {
			dst = append(dst, "{id}"...)
		} else {
			dst = append(dst, seg...)
		}
	}
	if len(dst) == start {
		dst = append(dst, '/')
	}
	return dst
}

// lookup finds template in m, whose keys are normalised, without
// allocating: a normalised template is looked up as is, any other is
// normalised into a stack buffer first.
func lookup[V any](m map[string]V, template string) (V, bool) {
	if v, ok := m[template]; ok || isNormal(template) {
		return v, ok
	}
	var zero V
	if len(template) > routes.MaxPathLen {
		return zero, false // no valid template is this long
	}
	var buf [256]byte
	b := appendNormal(buf[:0], template) // escapes to the heap only past 256 bytes
	v, ok := m[string(b)]                // the compiler does not copy b here
	return v, ok
}

// checkTemplate reports why t cannot be a route template, or nil. It is
// stricter than pkg/routes: no spaces, control bytes, query or fragment,
// and every '{' closed by a '}' in the same segment with a name between.
func checkTemplate(t string) error {
	const hint = "; write the path template as the gateway sees it, e.g. /customers/{id}/orders"
	switch {
	case t == "":
		return errors.New("empty route template" + hint)
	case t[0] != '/':
		return fmt.Errorf("route %q must start with '/'%s", t, hint)
	case len(t) > routes.MaxPathLen:
		return fmt.Errorf("route %.40q… is longer than %d bytes", t, routes.MaxPathLen)
	}
	segs := 0
	open := -1
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c <= ' ' || c == 0x7f:
			return fmt.Errorf("route %q has a space or control character at byte %d%s", t, i, hint)
		case c == '?' || c == '#':
			return fmt.Errorf("route %q has a query or fragment; give the path only%s", t, hint)
		case c == '/':
			if open >= 0 {
				return fmt.Errorf("route %q: '{' at byte %d is not closed in its segment%s", t, open, hint)
			}
			if i+1 < len(t) && t[i+1] != '/' {
				segs++
			}
		case c == '{':
			if open >= 0 {
				return fmt.Errorf("route %q: nested '{' at byte %d%s", t, i, hint)
			}
			open = i
		case c == '}':
			if open < 0 {
				return fmt.Errorf("route %q: '}' at byte %d without '{'%s", t, i, hint)
			}
			if i == open+1 {
				return fmt.Errorf("route %q: empty parameter name at byte %d%s", t, open, hint)
			}
			open = -1
		}
	}
	if open >= 0 {
		return fmt.Errorf("route %q: '{' at byte %d is not closed%s", t, open, hint)
	}
	if segs > routes.MaxSegments {
		return fmt.Errorf("route %q has %d segments, at most %d are supported", t, segs, routes.MaxSegments)
	}
	return nil
}
