package routes

import (
	"strings"
	"testing"
)

const openapi = `
openapi: 3.0.3
info: {title: orders, version: "1"}
paths:
  /v1/customers/{customerId}/orders:
    get:
      tags: [orders]
      x-agentwatch-tags: [pii]
    post:
      tags: [orders, write]
  /v1/customers/me/orders:
    get: {tags: [orders]}
  /v1/exports/{id}:
    get:
      deprecated: true
      x-agentwatch-tags: [sensitive, bulk]
    parameters: []
  /:
    get: {}
`

func TestOpenAPI(t *testing.T) {
	rs, err := ParseOpenAPI([]byte(openapi))
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(rs)
	if err != nil {
		t.Fatal(err)
	}
	match := func(path, want string) {
		t.Helper()
		if got := n.Normalize(path); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", path, got, want)
		}
	}
	match("/v1/customers/8812/orders", "/v1/customers/{customerId}/orders")
	match("/v1/customers/me/orders", "/v1/customers/me/orders") // literal beats param
	match("/v1/customers/me/orders/", "/v1/customers/me/orders")
	match("//v1//customers/77/orders", "/v1/customers/{customerId}/orders")
	match("/v1/exports/x", "/v1/exports/{id}")
	match("/", "/")
	match("", "/")
	match("/v1/customers/8812/invoices/9", "/v1/customers/{id}/invoices/{id}") // no template: heuristics
	match("/v1/customers/8812", "/v1/customers/{id}")

	r, ok := n.Lookup("/v1/exports/{id}")
	if !ok || strings.Join(r.Tags, ",") != "bulk,deprecated,sensitive" {
		t.Errorf("Lookup exports = %+v, %v", r, ok)
	}
	r, ok = n.Lookup("/v1/customers/{customerId}/orders")
	if !ok || strings.Join(r.Tags, ",") != "orders,pii,write" {
		t.Errorf("Lookup orders = %+v, %v", r, ok)
	}
	if _, ok := n.Lookup("/nope"); ok {
		t.Error("Lookup of an unknown template succeeded")
	}
	// JSON is YAML too.
	if rs, err := ParseOpenAPI([]byte(`{"openapi":"3.1.0","paths":{"/a/{b}":{"get":{"tags":["t"]}}}}`)); err != nil || len(rs) != 1 || rs[0].Template != "/a/{b}" {
		t.Errorf("JSON document: %+v, %v", rs, err)
	}
	if _, err := ParseOpenAPI([]byte("openapi: 3\n")); err == nil {
		t.Error("document without paths accepted")
	}
}

func TestBacktracking(t *testing.T) {
	n, err := New([]Route{{Template: "/a/b/c"}, {Template: "/a/{x}/d"}})
	if err != nil {
		t.Fatal(err)
	}
	// The literal "b" is tried first, fails at "d", and the param branch matches.
	if got, ok := n.Match("/a/b/d"); !ok || got != "/a/{x}/d" {
		t.Errorf("Match(/a/b/d) = %q, %v", got, ok)
	}
	if _, err := New([]Route{{Template: "no-slash"}}); err == nil {
		t.Error("template without leading slash accepted")
	}
	var nilN *Normalizer
	if got := nilN.Normalize("/u/42"); got != "/u/{id}" {
		t.Errorf("nil Normalizer: %q", got)
	}
}

func TestHeuristic(t *testing.T) {
	cases := map[string]string{
		"/v1/customers/8812/orders":                             "/v1/customers/{id}/orders",
		"/v1/customers/3fa85f64-5717-4562-b3fc-2c963f66afa6":    "/v1/customers/{id}",
		"/v1/sessions/9f86d081884c7d65":                         "/v1/sessions/{id}",
		"/v1/customers/cus_9aF3kLm2pQ7xT1vB0zYw/profile":        "/v1/customers/{id}/profile",
		"/api/v2/users/alice%40example.com/settings":            "/api/v2/users/{id}/settings",
		"/api/v2/users/bob@example.org":                         "/api/v2/users/{id}",
		"/v1/orders/ORD-20260210-000123":                        "/v1/orders/{id}",
		"/v2/oauth2/token":                                      "/v2/oauth2/token",
		"/v1/deadbeef/cafebabe":                                 "/v1/deadbeef/cafebabe", // hex words without digits stay
		"/v1/customers/me":                                      "/v1/customers/me",
		"/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r":                  "/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/{rest}",
		"/" + strings.Repeat("x", MaxPathLen):                   "/{too_long}",
		"":                                                      "/",
		"///":                                                   "/",
		"/reports/2026-02-10":                                   "/reports/{id}",
		"/very-long-resource-name-without-digits-at-all/things": "/very-long-resource-name-without-digits-at-all/things",
	}
	for in, want := range cases {
		if got := Heuristic(in); got != want {
			t.Errorf("Heuristic(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	n, _ := New([]Route{{Template: "/v1/customers/{id}/orders"}})
	if a := testing.AllocsPerRun(100, func() { n.Normalize("/v1/customers/8812/orders") }); a != 0 {
		t.Errorf("template match allocates %v times", a)
	}
	if a := testing.AllocsPerRun(100, func() { Heuristic("/v1/invoices/open") }); a != 0 {
		t.Errorf("clean heuristic path allocates %v times", a)
	}
}

func BenchmarkNormalize(b *testing.B) {
	rs, _ := ParseOpenAPI([]byte(openapi))
	n, _ := New(rs)
	for name, path := range map[string]string{
		"template":  "/v1/customers/8812/orders",
		"heuristic": "/v1/customers/8812/invoices/9",
		"clean":     "/v1/invoices/open",
	} {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(path)))
			b.ReportAllocs()
			for b.Loop() {
				n.Normalize(path)
			}
		})
	}
}
