// Package routes turns raw request paths into route templates
// (/customers/8812/orders → /customers/{id}/orders), so per-route features
// have bounded cardinality. Templates come from an OpenAPI 3 document
// and/or an explicit list; paths no template matches are normalised by
// heuristics (see Heuristic).
//
// The package is pure: no I/O, no globals, no logging.
package routes

import (
	"errors"
	"fmt"
	"iter"
	"slices"
	"sort"
	"strings"
	"unsafe"

	"gopkg.in/yaml.v3"
)

// Limits that keep routes (and the work to find them) bounded whatever a
// client sends.
const (
	// MaxSegments is the number of path segments kept; deeper paths end
	// in "/{rest}".
	MaxSegments = 16
	// MaxPathLen is the longest path normalised; longer paths become
	// "/{too_long}".
	MaxPathLen = 4096
	// MaxRoutes bounds the number of templates a Normalizer accepts.
	MaxRoutes = 10000
)

// TagDeprecated is added to the tags of OpenAPI operations marked
// `deprecated: true`.
const TagDeprecated = "deprecated"

// Route is a path template and the tags of its operations.
type Route struct {
	// Template is a path with "{param}" segments, e.g.
	// /customers/{customerId}/orders. A segment containing '{' matches
	// any single segment.
	Template string
	// Tags are the union of the operations' tags and x-agentwatch-tags
	// (plus "deprecated" when an operation is), sorted, deduplicated.
	Tags []string
}

type node struct {
	literal  map[string]*node
	param    *node
	template string // non-empty when a route ends here
}

// Normalizer maps paths to templates. It is immutable after New and safe
// for concurrent use. A nil *Normalizer applies heuristics only.
type Normalizer struct {
	root   node
	routes map[string]Route
}

// New builds a Normalizer from routes. Duplicate templates merge their tags.
func New(routes []Route) (*Normalizer, error) {
	if len(routes) > MaxRoutes {
		return nil, fmt.Errorf("routes: %d templates, at most %d are supported", len(routes), MaxRoutes)
	}
	n := &Normalizer{routes: make(map[string]Route, len(routes))}
	var errs []error
	for _, r := range routes {
		if err := checkTemplate(r.Template); err != nil {
			errs = append(errs, err)
			continue
		}
		if prev, ok := n.routes[r.Template]; ok {
			r.Tags = append(slices.Clone(prev.Tags), r.Tags...)
		}
		r.Tags = normTags(r.Tags)
		n.routes[r.Template] = r
		n.insert(r.Template)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return n, nil
}

func checkTemplate(t string) error {
	if t == "" || t[0] != '/' {
		return fmt.Errorf("route %q: template must start with '/'", t)
	}
	if len(t) > MaxPathLen {
		return fmt.Errorf("route %.40q…: template longer than %d bytes", t, MaxPathLen)
	}
	if segs := strings.Count(t, "/"); segs > MaxSegments {
		return fmt.Errorf("route %q: %d segments, at most %d are supported", t, segs, MaxSegments)
	}
	return nil
}

func normTags(tags []string) []string {
	if len(tags) == 0 {
		return nil
	}
	out := slices.Clone(tags)
	sort.Strings(out)
	return slices.Compact(out)
}

func (n *Normalizer) insert(template string) {
	cur := &n.root
	for seg := range Segments(template) {
		if strings.IndexByte(seg, '{') >= 0 {
			if cur.param == nil {
				cur.param = &node{}
			}
			cur = cur.param
			continue
		}
		if cur.literal == nil {
			cur.literal = map[string]*node{}
		}
		next := cur.literal[seg]
		if next == nil {
			next = &node{}
			cur.literal[seg] = next
		}
		cur = next
	}
	if cur.template == "" {
		cur.template = template
	}
}

// Segments yields the non-empty segments of p: "//a/b/" has a and b. It
// does not allocate; every path walk here and in pkg/inventory uses it.
func Segments(p string) iter.Seq[string] {
	return func(yield func(string) bool) {
		for len(p) > 0 {
			i := strings.IndexByte(p, '/')
			var seg string
			if i < 0 {
				seg, p = p, ""
			} else {
				seg, p = p[:i], p[i+1:]
			}
			if seg != "" && !yield(seg) {
				return
			}
		}
	}
}

// Lookup returns the route with exactly this template.
func (n *Normalizer) Lookup(template string) (Route, bool) {
	if n == nil {
		return Route{}, false
	}
	r, ok := n.routes[template]
	return r, ok
}

// Match returns the template matching path (no query string), preferring
// a literal segment over a parameter at each level (with backtracking), or
// false. Empty segments are ignored, so /a//b/ matches /a/b. It does not
// allocate.
func (n *Normalizer) Match(path string) (string, bool) {
	if n == nil || len(n.routes) == 0 || len(path) > MaxPathLen {
		return "", false
	}
	t := match(&n.root, path, 0)
	return t, t != ""
}

func match(cur *node, rest string, depth int) string {
	for len(rest) > 0 && rest[0] == '/' {
		rest = rest[1:]
	}
	if rest == "" {
		return cur.template
	}
	if depth >= MaxSegments {
		return ""
	}
	i := strings.IndexByte(rest, '/')
	seg, tail := rest, ""
	if i >= 0 {
		seg, tail = rest[:i], rest[i:]
	}
	if next := cur.literal[seg]; next != nil {
		if t := match(next, tail, depth+1); t != "" {
			return t
		}
	}
	if cur.param != nil {
		return match(cur.param, tail, depth+1)
	}
	return ""
}

// Normalize returns the route for path (no query string): the matching
// template if any, else Heuristic(path).
func (n *Normalizer) Normalize(path string) string {
	if t, ok := n.Match(path); ok {
		return t
	}
	return Heuristic(path)
}

// Heuristic normalises a path without templates. Empty segments are
// dropped ("/" for none); each segment that looks like an identifier
// becomes "{id}" (see IsID); segments beyond MaxSegments collapse into a
// final "{rest}"; a path longer than MaxPathLen becomes "/{too_long}". When
// nothing changes, path itself is returned without allocating.
func Heuristic(path string) string {
	if len(path) > MaxPathLen {
		return "/{too_long}"
	}
	if clean(path) {
		return path
	}
	b := AppendHeuristic(make([]byte, 0, len(path)+8), path)
	return unsafe.String(unsafe.SliceData(b), len(b)) // b is never written again
}

// AppendHeuristic appends Heuristic(path) to dst and returns the extended
// slice, for callers that keep their strings in one buffer. It makes one
// pass over path and does not allocate beyond growing dst. Its loop is
// repeated, not shared, in inventory's appendNormal (see there).
func AppendHeuristic(dst []byte, path string) []byte {
	if len(path) > MaxPathLen {
		return append(dst, "/{too_long}"...)
	}
	start := len(dst)
	n := 0
	for seg := range Segments(path) {
		dst = append(dst, '/')
		if n == MaxSegments {
			dst = append(dst, "{rest}"...)
			break
		}
		n++
		if IsID(seg) {
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

// clean reports whether Heuristic would return path unchanged.
func clean(path string) bool {
	if path == "" || path[0] != '/' {
		return false
	}
	if path == "/" {
		return true
	}
	n := 0
	for len(path) > 0 {
		path = path[1:] // the leading '/'
		i := strings.IndexByte(path, '/')
		seg := path
		if i >= 0 {
			seg, path = path[:i], path[i:]
		} else {
			path = ""
		}
		n++
		if seg == "" || n > MaxSegments || IsID(seg) {
			return false
		}
	}
	return true
}

// IsID reports whether a path segment looks like an identifier rather than
// a resource name:
//   - all decimal digits (8812);
//   - a UUID, 8-4-4-4-12 hex digits;
//   - 8 or more hex digits with at least one decimal digit (9f86d081);
//   - 20 or more bytes containing at least one digit (cus_9aF3kLm2pQ7xT1vB0z);
//   - 8 or more bytes of which at least half are digits (ORD-20260210-000123);
//   - an e-mail address: something@something.something, '@' possibly
//     percent-encoded as %40.
func IsID(seg string) bool {
	if seg == "" {
		return false
	}
	digits, hex, at := 0, 0, false
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c >= '0' && c <= '9':
			digits++
			hex++
		case c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F':
			hex++
		case c == '@' || c == '%':
			at = true
		}
	}
	switch {
	case digits == len(seg):
		return true
	case hex == len(seg) && len(seg) >= 8 && digits > 0:
		return true
	case len(seg) == 36 && isUUID(seg):
		return true
	case len(seg) >= 20 && digits > 0:
		return true
	case len(seg) >= 8 && digits*2 >= len(seg):
		return true
	}
	return at && isEmail(seg) // an e-mail address has '@' or "%40"
}

func isUUID(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func isEmail(s string) bool {
	at, w := strings.IndexByte(s, '@'), 1
	if at < 0 {
		if at = strings.Index(s, "%40"); at < 0 {
			return false
		}
		w = 3
	}
	domain := s[at+w:]
	dot := strings.LastIndexByte(domain, '.')
	return at > 0 && dot > 0 && dot < len(domain)-1
}

// ParseOpenAPI reads the routes of an OpenAPI 3 document (YAML or JSON):
// the keys of `paths`, with each operation's `tags`, `x-agentwatch-tags`
// and `deprecated`. Nothing else is read or validated. Server URL path
// prefixes are not applied: list prefixed templates yourself if your
// gateway logs them.
func ParseOpenAPI(doc []byte) ([]Route, error) {
	var d struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("parse openapi document: %w", err)
	}
	if len(d.Paths) == 0 {
		return nil, errors.New("parse openapi document: no paths")
	}
	out := make([]Route, 0, len(d.Paths))
	for tmpl, item := range d.Paths {
		r := Route{Template: tmpl}
		for method, op := range item {
			if !isOperation(method) || op.Kind != yaml.MappingNode {
				continue
			}
			var o struct {
				Tags       []string `yaml:"tags"`
				AWTags     []string `yaml:"x-agentwatch-tags"`
				Deprecated bool     `yaml:"deprecated"`
			}
			if err := op.Decode(&o); err != nil {
				return nil, fmt.Errorf("parse openapi document: paths.%s.%s: %w", tmpl, method, err)
			}
			r.Tags = append(r.Tags, o.Tags...)
			r.Tags = append(r.Tags, o.AWTags...)
			if o.Deprecated {
				r.Tags = append(r.Tags, TagDeprecated)
			}
		}
		r.Tags = normTags(r.Tags)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Template < out[j].Template })
	return out, nil
}

func isOperation(m string) bool {
	switch m {
	case "get", "put", "post", "delete", "options", "head", "patch", "trace":
		return true
	}
	return false
}
