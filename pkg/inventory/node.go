package inventory

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/agentwatch/agentwatch/pkg/internal/strictyaml"
)

// The files are decoded by walking yaml.Node trees rather than by
// yaml.Decoder.KnownFields into structs: that way every error can name the
// file, line, entry (index and id) and field, and all problems are reported
// at once. pkg/internal/strictyaml holds what this shares with
// pkg/playbooks.

// maxNodes bounds the nodes one parse visits beyond one per input byte, so
// aliases (which make sharing approved_routes lists handy) cannot blow up
// the work: `approved_routes: *cs_routes` in every agent is fine, a
// billion laughs is not.
const maxNodes = 1 << 20

// doc is one parse in progress: the file name, the problems found so far
// and the node budget.
type doc struct {
	name    string
	errs    []error
	dropped int
	budget  int
}

// load parses data as a single YAML document and returns its root mapping
// checked against fields, or nil after recording why not.
func load(name string, data []byte, fields ...string) (*doc, []field) {
	d := &doc{name: name, budget: maxNodes + len(data)}
	root, err := strictyaml.Decode(data)
	switch {
	case errors.Is(err, io.EOF):
		d.errs = append(d.errs, fmt.Errorf("%s: empty file; want a mapping with key %q", name, fields[0]))
		return d, nil
	case errors.Is(err, strictyaml.ErrExtraDocument):
		d.errs = append(d.errs, fmt.Errorf("%s: more than one YAML document (a second '---'); keep one", name))
		return d, nil
	case err != nil:
		d.errs = append(d.errs, fmt.Errorf("%s: %w", name, err))
		return d, nil
	}
	fs, unknown := d.mapping(root, "", "top level", fields)
	d.unknown(unknown, "top level", fields)
	return d, fs
}

// err returns every problem recorded, or nil.
func (d *doc) err() error {
	if d.dropped > 0 {
		d.errs = append(d.errs, fmt.Errorf("%s: %d more problems not shown", d.name, d.dropped))
	}
	return errors.Join(d.errs...)
}

// errorf records a problem at node n of entry ctx (e.g. `agents[3] (id
// "cs-1")`) and field path (e.g. `approved_routes[2]`), either of which
// may be empty.
func (d *doc) errorf(n *yaml.Node, ctx, path, format string, args ...any) {
	if len(d.errs) >= maxErrors {
		d.dropped++
		return
	}
	var b strings.Builder
	b.WriteString(d.name)
	if n != nil && n.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(n.Line))
	}
	b.WriteString(": ")
	if ctx != "" {
		b.WriteString(ctx)
		b.WriteString(": ")
	}
	if path != "" {
		b.WriteString("field ")
		b.WriteString(path)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, format, args...)
	d.errs = append(d.errs, errors.New(b.String()))
}

// resolve follows a document node to its content and an alias to its
// anchor, and charges the node to the budget. It returns nil (after
// recording why) when the budget is spent.
func (d *doc) resolve(n *yaml.Node, ctx, path string) *yaml.Node {
	n, ok := strictyaml.Resolve(n, &d.budget)
	if !ok {
		if n != nil {
			d.errorf(n, ctx, path, "aliases expand to more than %d nodes; write the lists out", maxNodes)
		}
		return nil
	}
	return n
}

// field is one key of a mapping and its value node.
type field struct {
	key  string
	node *yaml.Node
}

// mapping returns the fields of mapping n and the keys not in known,
// recording duplicate or non-string keys. what names n in errors when ctx
// is empty. The caller reports unknown keys with d.unknown once it knows
// the entry's id.
func (d *doc) mapping(n *yaml.Node, ctx, what string, known []string) (fs []field, unknown []*yaml.Node) {
	n = d.resolve(n, ctx, "")
	if n == nil {
		return nil, nil
	}
	where := ctx
	if where == "" {
		where = what
	}
	if n.Kind != yaml.MappingNode {
		if ctx == "" {
			d.errorf(n, "", "", "%s must be a mapping with key %q, not %s", what, known[0], strictyaml.KindName(n))
		} else {
			d.errorf(n, ctx, "", "must be a mapping with keys %s, not %s", strings.Join(known, ", "), strictyaml.KindName(n))
		}
		return nil, nil
	}
	out := make([]field, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := d.resolve(n.Content[i], ctx, "")
		if k == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, where, "", "a key is %s; keys are field names", strictyaml.KindName(k))
			continue
		}
		switch {
		case !slices.Contains(known, k.Value):
			unknown = append(unknown, k)
		case slices.ContainsFunc(out, func(f field) bool { return f.key == k.Value }):
			d.errorf(k, where, "", "field %q given twice", k.Value)
		default:
			out = append(out, field{key: k.Value, node: n.Content[i+1]})
		}
	}
	return out, unknown
}

// unknown records each key in keys as an unknown field of ctx, suggesting
// the known field it is closest to.
func (d *doc) unknown(keys []*yaml.Node, ctx string, known []string) {
	for _, k := range keys {
		hint, _ := strictyaml.Hint(k.Value, known)
		d.errorf(k, ctx, "", "unknown field %q; %s", k.Value, hint)
	}
}

// get returns the value of key among fs, or nil.
func get(fs []field, key string) *yaml.Node {
	for _, f := range fs {
		if f.key == key {
			return f.node
		}
	}
	return nil
}

// str decodes a scalar field; null is "". Numbers and booleans are taken
// as written.
func (d *doc) str(n *yaml.Node, ctx, path string) string {
	if strictyaml.IsNull(n) {
		return ""
	}
	if n = d.resolve(n, ctx, path); n == nil {
		return ""
	}
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		if n.Kind != yaml.ScalarNode {
			d.errorf(n, ctx, path, "want a string, not %s", strictyaml.KindName(n))
		}
		return ""
	}
	return n.Value
}

// strs decodes a sequence of scalars, and returns their nodes (for the
// line of a later error). present is false when the field is absent or
// null, true for any sequence, even an empty one.
func (d *doc) strs(n *yaml.Node, ctx, path string) (vals []string, nodes []*yaml.Node, present bool) {
	if strictyaml.IsNull(n) {
		return nil, nil, false
	}
	if n = d.resolve(n, ctx, path); n == nil {
		return nil, nil, false
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, ctx, path, "want a list of strings, not %s", strictyaml.KindName(n))
		return nil, nil, false
	}
	vals = make([]string, 0, len(n.Content))
	nodes = make([]*yaml.Node, 0, len(n.Content))
	for i, c := range n.Content {
		p := path + "[" + strconv.Itoa(i) + "]"
		if c = d.resolve(c, ctx, p); c == nil {
			continue
		}
		if c.Kind != yaml.ScalarNode || c.Tag == "!!null" {
			d.errorf(c, ctx, p, "want a string, not %s", strictyaml.KindName(c))
			continue
		}
		vals = append(vals, c.Value)
		nodes = append(nodes, c)
	}
	return vals, nodes, true
}

// strMap decodes a mapping of scalars to scalars; null is nil.
func (d *doc) strMap(n *yaml.Node, ctx, path string) map[string]string {
	if strictyaml.IsNull(n) {
		return nil
	}
	if n = d.resolve(n, ctx, path); n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, ctx, path, "want a mapping of strings to strings, not %s", strictyaml.KindName(n))
		return nil
	}
	out := make(map[string]string, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := d.resolve(n.Content[i], ctx, path), d.resolve(n.Content[i+1], ctx, path)
		if k == nil || v == nil {
			continue
		}
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			d.errorf(k, ctx, path, "a key is %s; want a non-empty string", strictyaml.KindName(k))
			continue
		}
		p := path + "." + k.Value
		if _, dup := out[k.Value]; dup {
			d.errorf(k, ctx, p, "given twice")
			continue
		}
		if v.Kind != yaml.ScalarNode {
			d.errorf(v, ctx, p, "want a string, not %s", strictyaml.KindName(v))
			continue
		}
		if v.Tag == "!!null" {
			out[k.Value] = ""
		} else {
			out[k.Value] = v.Value
		}
	}
	return out
}

// seq returns the items of a sequence field, or nil after recording why
// not; null is an empty list.
func (d *doc) seq(n *yaml.Node, path string) []*yaml.Node {
	if strictyaml.IsNull(n) {
		return nil
	}
	if n = d.resolve(n, "", path); n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "", path, "want a list, not %s", strictyaml.KindName(n))
		return nil
	}
	return n.Content
}
