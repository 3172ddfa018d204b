package inventory

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/agentwatch/agentwatch/pkg/routes"
)

// Route is one route template of the inventory. Its slices are shared by
// every copy: callers must not modify them.
type Route struct {
	// Template is the template as first written, e.g.
	// /customers/{customerId}/orders. Lookups compare its normalised form.
	Template string
	// Methods are the HTTP methods served, upper case, sorted; empty when
	// not known.
	Methods []string
	// Service is the upstream service that serves it; may be empty.
	Service string
	// Tags are sorted and deduplicated. TagSensitive and TagDeprecated
	// drive rules; others are kept for reference.
	Tags []string
	// Roles are the agent roles whose normal work uses it, sorted.
	Roles []string
	// Sensitive and Deprecated say whether Tags hold TagSensitive and
	// TagDeprecated.
	Sensitive, Deprecated bool
}

// Inventory is the route inventory. It is immutable after construction
// and safe for concurrent reads. A nil *Inventory behaves like
// EmptyInventory().
type Inventory struct {
	enabled   bool
	routes    map[string]Route // by normalised template
	templates []string         // Route.Template of each, sorted
}

// EmptyInventory returns an inventory that is not enabled: no file is
// configured, so no route is sensitive or deprecated and the zombie-API
// and sensitive-route rules never fire.
func EmptyInventory() *Inventory { return &Inventory{} }

var routesFields = []string{"routes"}

var routeFields = []string{"template", "methods", "service", "tags", "roles"}

// ParseRoutes parses a route inventory (YAML or JSON; schema in
// docs/registry.md), the format internal/tools/sim writes to
// deploy/sim/routes.yaml:
//
//	routes:
//	  - template: /customers/{id}/export
//	    methods: [GET]
//	    service: crm
//	    tags: [sensitive]          # sensitive, deprecated, or your own
//	    roles: [customer_service]
//
// name is the file name errors start with. Every problem is reported at
// once, each naming the line, the entry (index and template) and the
// field: unknown fields, bad or duplicate templates (two templates that
// normalise alike are duplicates), bad methods, empty tags or roles,
// wrong types. An empty file is an error; `routes: []` is an enabled
// inventory without routes.
func ParseRoutes(name string, data []byte) (*Inventory, error) {
	d, top := load(name, data, routesFields...)
	inv := &Inventory{enabled: true, routes: map[string]Route{}}
	firstAt := map[string]int{}
	for i, n := range d.seq(get(top, "routes"), "routes") {
		ctx := "routes[" + strconv.Itoa(i) + "]"
		fs, unknown := d.mapping(n, ctx, "", routeFields)
		if fs == nil {
			continue
		}
		tn := get(fs, "template")
		t := d.str(tn, ctx, "template")
		if t != "" {
			ctx += fmt.Sprintf(" (template %q)", t)
		}
		d.unknown(unknown, ctx, routeFields)
		if t == "" {
			d.errorf(n, ctx, "template", "missing or empty; every route needs its path template, e.g. /customers/{id}")
			continue
		}
		if err := checkTemplate(t); err != nil {
			d.errorf(tn, ctx, "template", "%v", err)
			continue
		}
		key := NormalizeTemplate(t)
		if j, dup := firstAt[key]; dup {
			d.errorf(tn, ctx, "template", "same route as routes[%d] (templates compare as %s); merge the two entries", j, key)
			continue
		}
		firstAt[key] = i
		r := Route{Template: t, Service: d.str(get(fs, "service"), ctx, "service")}
		methods, mnodes, _ := d.strs(get(fs, "methods"), ctx, "methods")
		for j, m := range methods {
			if !isToken(m) {
				d.errorf(mnodes[j], ctx, "methods["+strconv.Itoa(j)+"]", "%q is not an HTTP method; want e.g. GET or POST", m)
				continue
			}
			r.Methods = append(r.Methods, strings.ToUpper(m))
		}
		r.Tags = d.names(get(fs, "tags"), ctx, "tags")
		r.Roles = d.names(get(fs, "roles"), ctx, "roles")
		inv.add(key, r)
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	inv.finish()
	return inv, nil
}

// names decodes a list of non-empty names without surrounding spaces.
func (d *doc) names(n *yaml.Node, ctx, path string) []string {
	vals, nodes, _ := d.strs(n, ctx, path)
	out := vals[:0]
	for j, v := range vals {
		if v == "" || strings.TrimSpace(v) != v {
			d.errorf(nodes[j], ctx, path+"["+strconv.Itoa(j)+"]", "%q: want a non-empty name without surrounding spaces", v)
			continue
		}
		out = append(out, v)
	}
	return out
}

// isToken reports whether m is an HTTP method token (RFC 9110: letters,
// digits and a few symbols; we take letters only, which every method in
// use is).
func isToken(m string) bool {
	if m == "" || len(m) > 32 {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i] | 0x20; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// FromOpenAPI imports the routes of an OpenAPI 3 document (YAML or JSON)
// through routes.ParseOpenAPI, so its templates are the ones the ingest
// normalises paths to. Per path:
//
//   - Methods are the operations present (get, put, post, delete,
//     options, head, patch, trace).
//   - An operation with `deprecated: true` tags the route deprecated.
//   - An operation's `x-agentwatch-tags` are all kept as tags.
//   - Of an operation's ordinary `tags`, only "sensitive" and
//     "deprecated" are kept: the rest (crm, Customers, …) are the API's
//     own grouping and mean nothing to agentwatch.
//
// Tags belong to the template, so one deprecated or sensitive operation
// tags every method of its path. Service and roles are not read: give them
// in a routes file and Merge. name is the file name errors start with.
func FromOpenAPI(name string, doc []byte) (*Inventory, error) {
	parsed, err := routes.ParseOpenAPI(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// routes.ParseOpenAPI merges tags and x-agentwatch-tags and gives no
	// methods, so read those again.
	var d struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("%s: parse openapi document: %w", name, err)
	}
	inv := &Inventory{enabled: true, routes: make(map[string]Route, len(parsed))}
	var errs []error
	for _, p := range parsed {
		if err := checkTemplate(p.Template); err != nil {
			errs = append(errs, fmt.Errorf("%s: paths: %w", name, err))
			continue
		}
		r := Route{Template: p.Template}
		var own []string
		for method, op := range d.Paths[p.Template] {
			if !isOperation(method) || op.Kind != yaml.MappingNode {
				continue
			}
			r.Methods = append(r.Methods, strings.ToUpper(method))
			var o struct {
				AWTags []string `yaml:"x-agentwatch-tags"`
			}
			if err := op.Decode(&o); err == nil { // routes.ParseOpenAPI decoded it already
				own = append(own, o.AWTags...)
			}
		}
		for _, t := range p.Tags {
			if t == TagSensitive || t == TagDeprecated || slices.Contains(own, t) {
				r.Tags = append(r.Tags, t)
			}
		}
		key := NormalizeTemplate(p.Template)
		if prev, dup := inv.routes[key]; dup {
			errs = append(errs, fmt.Errorf("%s: paths: %q and %q are the same route (they compare as %s); merge them", name, prev.Template, p.Template, key))
			continue
		}
		inv.add(key, r)
	}
	if len(errs) > 0 {
		return nil, joinCapped(name, errs)
	}
	inv.finish()
	return inv, nil
}

func joinCapped(name string, errs []error) error {
	if len(errs) > maxErrors {
		n := len(errs) - maxErrors
		errs = append(errs[:maxErrors:maxErrors], fmt.Errorf("%s: %d more problems not shown", name, n))
	}
	return errors.Join(errs...)
}

func isOperation(m string) bool {
	switch m {
	case "get", "put", "post", "delete", "options", "head", "patch", "trace":
		return true
	}
	return false
}

// Merge returns one inventory holding the routes of all of invs (nil and
// not-enabled ones are skipped). Routes whose templates normalise alike
// are one route: methods, tags and roles are unioned, and the template's
// spelling and the service come from the first inventory that has them.
// So Merge(fromRoutesFile, fromOpenAPI) lets the routes file name services
// and roles while OpenAPI adds paths and tags. The result is enabled when
// any of invs is.
func Merge(invs ...*Inventory) *Inventory {
	out := &Inventory{routes: map[string]Route{}}
	for _, inv := range invs {
		if !inv.Enabled() {
			continue
		}
		out.enabled = true
		for key, r := range inv.routes {
			prev, ok := out.routes[key]
			if !ok {
				out.routes[key] = r
				continue
			}
			if prev.Service == "" {
				prev.Service = r.Service
			}
			prev.Methods = union(prev.Methods, r.Methods)
			prev.Tags = union(prev.Tags, r.Tags)
			prev.Roles = union(prev.Roles, r.Roles)
			out.add(key, prev)
		}
	}
	out.finish()
	return out
}

// union returns the sorted, deduplicated union of a and b in a new slice.
func union(a, b []string) []string {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := append(slices.Clip(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// add stores r under key with its lists sorted and its flags set.
func (inv *Inventory) add(key string, r Route) {
	r.Methods = union(nil, r.Methods)
	r.Tags = union(nil, r.Tags)
	r.Roles = union(nil, r.Roles)
	r.Sensitive = slices.Contains(r.Tags, TagSensitive)
	r.Deprecated = slices.Contains(r.Tags, TagDeprecated)
	inv.routes[key] = r
}

// finish builds the sorted template list.
func (inv *Inventory) finish() {
	inv.templates = make([]string, 0, len(inv.routes))
	for _, r := range inv.routes {
		inv.templates = append(inv.templates, r.Template)
	}
	slices.Sort(inv.templates)
}

// Enabled reports whether the inventory came from at least one file.
func (inv *Inventory) Enabled() bool { return inv != nil && inv.enabled }

// Lookup returns the route for template, compared in normalised form (see
// NormalizeTemplate), so both an OpenAPI template and the ingest's
// heuristic {id} spelling find it. It is one map lookup and does not
// allocate for templates up to 256 bytes; the detector calls it per event.
func (inv *Inventory) Lookup(template string) (Route, bool) {
	if inv == nil {
		return Route{}, false
	}
	return lookup(inv.routes, template)
}

// Len returns the number of routes. Len and Templates look like
// Registry's Len and IDs: nil-safe getters of a different type.
func (inv *Inventory) Len() int {
	if inv == nil {
		return 0
	}
	return len(inv.routes)
}

// Templates returns the routes' templates as first written, sorted. The
// slice is shared: callers must not modify it.
func (inv *Inventory) Templates() []string {
	if inv == nil {
		return nil
	}
	return inv.templates
}
