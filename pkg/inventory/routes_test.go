package inventory

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestNormalizeTemplate(t *testing.T) {
	ok := func(in, want string) {
		t.Helper()
		if got := NormalizeTemplate(in); got != want {
			t.Errorf("NormalizeTemplate(%q) = %q; want %q", in, got, want)
		}
		if got := NormalizeTemplate(want); got != want {
			t.Errorf("NormalizeTemplate(%q) = %q; not idempotent", want, got)
		}
	}
	ok("/", "/")
	ok("", "/")
	ok("//", "/")
	ok("/customers", "/customers")
	ok("/customers/", "/customers")
	ok("customers", "/customers")
	ok("/customers/{id}", "/customers/{id}")
	ok("/customers/{customerId}/orders", "/customers/{id}/orders")
	ok("//customers//{x}//orders//", "/customers/{id}/orders")
	ok("/files/{name}.{ext}", "/files/{id}")
	ok("/v{version}/hosts", "/{id}/hosts")
}

func TestParseRoutesErrors(t *testing.T) {
	bad := func(doc string, want ...string) {
		t.Helper()
		inv, err := ParseRoutes("routes.yaml", []byte(doc))
		if err == nil {
			t.Fatalf("ParseRoutes(%q) = %d routes, nil; want an error", doc, inv.Len())
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseRoutes(%q) error\n%v\ndoes not contain %q", doc, err, w)
			}
		}
	}
	bad("", "routes.yaml: empty file")
	bad("routes: [\n", "routes.yaml: yaml: line")
	bad("route:\n  - template: /a\n", `routes.yaml:1: top level: unknown field "route"; did you mean "routes"?`)
	bad("routes: /a\n", "routes.yaml:1: field routes: want a list")
	bad("routes:\n  - /a\n", "routes.yaml:2: routes[0]: must be a mapping with keys template, methods")
	bad("routes:\n  - methods: [GET]\n", "routes.yaml:2: routes[0]: field template: missing or empty")
	bad("routes:\n  - template: a\n", `routes.yaml:2: routes[0] (template "a"): field template: route "a" must start with '/'`)
	bad("routes:\n  - template: '/a/{b'\n", `routes[0] (template "/a/{b"): field template: route "/a/{b": '{' at byte 3 is not closed`)
	bad("routes:\n  - template: /a\n    method: [GET]\n", `routes.yaml:3: routes[0] (template "/a"): unknown field "method"; did you mean "methods"?`)
	bad("routes:\n  - template: /a\n    methods: GET\n", `routes[0] (template "/a"): field methods: want a list of strings`)
	bad("routes:\n  - template: /a\n    methods: [GET, 'PO ST']\n", `routes.yaml:3: routes[0] (template "/a"): field methods[1]: "PO ST" is not an HTTP method`)
	bad("routes:\n  - template: /a\n    service: [crm]\n", `routes[0] (template "/a"): field service: want a string`)
	bad("routes:\n  - template: /a\n    tags: [sensitive, '']\n", `routes[0] (template "/a"): field tags[1]: "": want a non-empty name`)
	bad("routes:\n  - template: /a\n    tags: sensitive\n", `routes[0] (template "/a"): field tags: want a list of strings`)
	bad("routes:\n  - template: /a\n    roles: [' hr']\n", `routes[0] (template "/a"): field roles[0]: " hr": want a non-empty name`)
	bad("routes:\n  - template: '/a/{id}'\n  - template: '/a/{aid}/'\n",
		`routes.yaml:3: routes[1] (template "/a/{aid}/"): field template: same route as routes[0] (templates compare as /a/{id})`)
}

func TestParseRoutes(t *testing.T) {
	inv, err := ParseRoutes("routes.yaml", []byte(`
routes:
  - template: /customers/{customerId}/export
    methods: [get, GET]
    service: crm
    tags: [sensitive, pii, sensitive]
    roles: [support, customer_service]
  - template: /legacy/reports
    tags: [deprecated]
  - template: /customers
`))
	if err != nil {
		t.Fatal(err)
	}
	if !inv.Enabled() || inv.Len() != 3 ||
		!slices.Equal(inv.Templates(), []string{"/customers", "/customers/{customerId}/export", "/legacy/reports"}) {
		t.Fatalf("got enabled=%v len=%d templates=%v", inv.Enabled(), inv.Len(), inv.Templates())
	}
	r, ok := inv.Lookup("/customers/{id}/export")
	want := Route{Template: "/customers/{customerId}/export", Methods: []string{"GET"}, Service: "crm",
		Tags: []string{"pii", "sensitive"}, Roles: []string{"customer_service", "support"}, Sensitive: true}
	if !ok || !routeEqual(r, want) {
		t.Fatalf("Lookup = %+v, %v; want %+v", r, ok, want)
	}
	if r, ok := inv.Lookup("/legacy/reports/"); !ok || !r.Deprecated || r.Sensitive {
		t.Errorf("Lookup(/legacy/reports/) = %+v, %v; want deprecated", r, ok)
	}
	if r, ok := inv.Lookup("/customers"); !ok || r.Deprecated || r.Sensitive || r.Tags != nil {
		t.Errorf("Lookup(/customers) = %+v, %v; want untagged", r, ok)
	}
	if _, ok := inv.Lookup("/customers/{id}"); ok {
		t.Error("Lookup(/customers/{id}) found a route not listed")
	}
	inv, err = ParseRoutes("routes.yaml", []byte("routes: []"))
	if err != nil || !inv.Enabled() || inv.Len() != 0 {
		t.Errorf("routes: [] = %v, %v; want an enabled empty inventory", inv, err)
	}
}

func TestEmptyInventory(t *testing.T) {
	for _, inv := range []*Inventory{EmptyInventory(), nil, Merge(), Merge(nil, EmptyInventory())} {
		if inv.Enabled() || inv.Len() != 0 || len(inv.Templates()) != 0 {
			t.Errorf("%#v: enabled=%v len=%d", inv, inv.Enabled(), inv.Len())
		}
		if _, ok := inv.Lookup("/a"); ok {
			t.Error("Lookup found a route in an empty inventory")
		}
	}
}

func TestParseRoutesJSON(t *testing.T) {
	doc, err := json.MarshalIndent(map[string]any{"routes": []map[string]any{
		{"template": "/a/{id}", "methods": []string{"GET"}, "service": "s", "tags": []string{"sensitive"}, "roles": []string{"hr"}},
	}}, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	inv, err := ParseRoutes("routes.json", doc)
	if err != nil {
		t.Fatalf("ParseRoutes(%s): %v", doc, err)
	}
	if r, ok := inv.Lookup("/a/{id}"); !ok || !r.Sensitive || r.Service != "s" {
		t.Errorf("Lookup = %+v, %v", r, ok)
	}
}

func TestFromOpenAPI(t *testing.T) {
	inv, err := FromOpenAPI("api.yaml", []byte(`
openapi: 3.0.3
info: {title: t, version: "1"}
paths:
  /customers/{customerId}:
    parameters: [{name: customerId, in: path, required: true}]
    get:
      tags: [Customers]
      x-agentwatch-tags: [pii]
    delete:
      tags: [Customers, sensitive]
  /legacy/customers/{id}:
    get:
      deprecated: true
  /reports:
    post:
      tags: [deprecated]
    x-internal: true
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Route{
		"/customers/{id}":        {Template: "/customers/{customerId}", Methods: []string{"DELETE", "GET"}, Tags: []string{"pii", "sensitive"}, Sensitive: true},
		"/legacy/customers/{id}": {Template: "/legacy/customers/{id}", Methods: []string{"GET"}, Tags: []string{"deprecated"}, Deprecated: true},
		"/reports":               {Template: "/reports", Methods: []string{"POST"}, Tags: []string{"deprecated"}, Deprecated: true},
	}
	if inv.Len() != len(want) {
		t.Errorf("Len = %d; want %d", inv.Len(), len(want))
	}
	for tmpl, w := range want {
		if r, ok := inv.Lookup(tmpl); !ok || !routeEqual(r, w) {
			t.Errorf("Lookup(%q) = %+v, %v; want %+v", tmpl, r, ok, w)
		}
	}

	bad := func(doc, want string) {
		t.Helper()
		if _, err := FromOpenAPI("api.yaml", []byte(doc)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("FromOpenAPI(%q) = %v; want an error containing %q", doc, err, want)
		}
	}
	bad("openapi: 3.0.3\n", "api.yaml: parse openapi document: no paths")
	bad("paths: [\n", "api.yaml: parse openapi document")
	bad("paths:\n  customers:\n    get: {}\n", `api.yaml: paths: route "customers" must start with '/'`)
	bad("paths:\n  /a/{x}:\n    get: {}\n  /a/{y}:\n    get: {}\n", `api.yaml: paths: "/a/{x}" and "/a/{y}" are the same route`)
}

// TestSimFiles checks what the simulator writes: routes.yaml has sensitive
// and deprecated routes, and openapi.yaml, imported, gives every template
// the same tags.
func TestSimFiles(t *testing.T) {
	byFile, err := ParseRoutes("deploy/sim/routes.yaml", readSim(t, "routes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	byAPI, err := FromOpenAPI("deploy/sim/openapi.yaml", readSim(t, "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sensitive, deprecated int
	for _, tmpl := range byFile.Templates() {
		r, _ := byFile.Lookup(tmpl)
		if r.Sensitive {
			sensitive++
		}
		if r.Deprecated {
			deprecated++
		}
		if r.Service == "" || len(r.Methods) == 0 {
			t.Errorf("routes.yaml %s lacks service or methods: %+v", tmpl, r)
		}
		o, ok := byAPI.Lookup(tmpl)
		if !ok {
			t.Errorf("openapi.yaml lacks %s", tmpl)
			continue
		}
		if !slices.Equal(o.Tags, r.Tags) || o.Sensitive != r.Sensitive || o.Deprecated != r.Deprecated || !slices.Equal(o.Methods, r.Methods) {
			t.Errorf("%s: openapi.yaml gives %+v, routes.yaml %+v", tmpl, o, r)
		}
	}
	if sensitive == 0 || deprecated == 0 {
		t.Errorf("routes.yaml: %d sensitive and %d deprecated routes; want some of each", sensitive, deprecated)
	}
	if byAPI.Len() != byFile.Len() {
		t.Errorf("openapi.yaml has %d routes, routes.yaml %d", byAPI.Len(), byFile.Len())
	}
	// Merged, the routes file's services and roles survive.
	m := Merge(byFile, byAPI)
	for _, tmpl := range byFile.Templates() {
		want, _ := byFile.Lookup(tmpl)
		if got, _ := m.Lookup(tmpl); !routeEqual(got, want) {
			t.Errorf("Merge: %s = %+v; want %+v", tmpl, got, want)
		}
	}
}

func TestMerge(t *testing.T) {
	a, err := ParseRoutes("a.yaml", []byte(`
routes:
  - {template: '/x/{xid}', methods: [GET], service: s1, roles: [hr]}
  - {template: /only-a}
`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ParseRoutes("b.yaml", []byte(`
routes:
  - {template: '/x/{id}/', methods: [POST, GET], service: s2, tags: [sensitive], roles: [finance]}
  - {template: /only-b, tags: [deprecated]}
`))
	if err != nil {
		t.Fatal(err)
	}
	m := Merge(a, nil, b)
	if !m.Enabled() || m.Len() != 3 || !slices.Equal(m.Templates(), []string{"/only-a", "/only-b", "/x/{xid}"}) {
		t.Fatalf("Merge: enabled=%v len=%d templates=%v", m.Enabled(), m.Len(), m.Templates())
	}
	want := Route{Template: "/x/{xid}", Methods: []string{"GET", "POST"}, Service: "s1", Tags: []string{"sensitive"}, Roles: []string{"finance", "hr"}, Sensitive: true}
	if r, _ := m.Lookup("/x/{id}"); !routeEqual(r, want) {
		t.Errorf("merged /x/{id} = %+v; want %+v", r, want)
	}
	if r, _ := m.Lookup("/only-b"); !r.Deprecated {
		t.Errorf("merged /only-b = %+v; want deprecated", r)
	}
	// The inputs are untouched.
	if r, _ := a.Lookup("/x/{id}"); r.Sensitive || len(r.Methods) != 1 {
		t.Errorf("Merge modified its input: %+v", r)
	}
}

func routeEqual(a, b Route) bool {
	return a.Template == b.Template && slices.Equal(a.Methods, b.Methods) && a.Service == b.Service &&
		slices.Equal(a.Tags, b.Tags) && slices.Equal(a.Roles, b.Roles) && a.Sensitive == b.Sensitive && a.Deprecated == b.Deprecated
}

func TestLookupAllocs(t *testing.T) {
	inv, err := ParseRoutes("routes.yaml", readSim(t, "routes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := ParseRegistry("registry.yaml", readSim(t, "registry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	id := reg.IDs()[0]
	for _, tmpl := range []string{"/customers/{id}/export", "/customers/{customerId}/export/", "/nope/{x}", strings.Repeat("/a", 200)} {
		if n := testing.AllocsPerRun(100, func() {
			inv.Lookup(tmpl)
			reg.Approved(id, tmpl)
			reg.Lookup(id)
		}); n != 0 {
			t.Errorf("Lookup(%.30q…) allocates %v times", tmpl, n)
		}
	}
}

func BenchmarkInventoryLookup(b *testing.B) {
	inv, err := ParseRoutes("routes.yaml", readSim(b, "routes.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, template string }{
		{"normalised", "/customers/{id}/export"},
		{"openapi_spelling", "/customers/{customerId}/export"},
		{"miss", "/customers/{id}/unknown"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := inv.Lookup(bc.template); ok == (bc.name == "miss") {
					b.Fatal("wrong result")
				}
			}
		})
	}
}

func BenchmarkRegistryApproved(b *testing.B) {
	reg, err := ParseRegistry("registry.yaml", readSim(b, "registry.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	id := reg.IDs()[0]
	a, _ := reg.Lookup(id)
	route := a.ApprovedRoutes[0]
	b.ReportAllocs()
	for b.Loop() {
		if ok, known := reg.Approved(id, route); !ok || !known {
			b.Fatal("not approved")
		}
	}
}

func BenchmarkParseRegistry(b *testing.B) {
	data := readSim(b, "registry.yaml")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseRegistry("registry.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
