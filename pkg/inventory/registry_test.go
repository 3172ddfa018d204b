package inventory

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func readSim(t testing.TB, file string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../deploy/sim/" + file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRegistryErrors(t *testing.T) {
	// bad: the registry must be rejected with an error holding every one of
	// want (file, line, entry, field).
	bad := func(doc string, want ...string) {
		t.Helper()
		r, err := ParseRegistry("reg.yaml", []byte(doc))
		if err == nil {
			t.Fatalf("ParseRegistry(%q) = %d agents, nil; want an error", doc, r.Len())
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("ParseRegistry(%q) error\n%v\ndoes not contain %q", doc, err, w)
			}
		}
	}
	bad("", "reg.yaml: empty file")
	bad("agents: [", "reg.yaml: yaml: line 1")
	bad("a: 1\n---\nb: 2\n", "reg.yaml: more than one YAML document")
	bad("- id: a\n", "reg.yaml:1: top level must be a mapping")
	bad("agent:\n  - id: a\n", `reg.yaml:1: top level: unknown field "agent"; did you mean "agents"?`)
	bad("agents: {id: a}\n", "reg.yaml:1: field agents: want a list")
	bad("agents:\n  - x\n", "reg.yaml:2: agents[0]: must be a mapping")
	bad("agents:\n  - role: hr\n", "reg.yaml:2: agents[0]: field id: missing or empty")
	bad("agents:\n  - id: ''\n", "agents[0]: field id: missing or empty")
	bad("agents:\n  - id: [a]\n", "reg.yaml:2: agents[0]: field id: want a string, not a list")
	bad("agents:\n  - id: ' a'\n", `reg.yaml:2: agents[0] (id " a"): field id: has leading or trailing spaces`)
	bad("agents:\n  - id: a\n  - id: b\n  - id: a\n", `reg.yaml:4: agents[2] (id "a"): field id: duplicate of agents[0]`)
	bad("agents:\n  - id: a\n    rol: hr\n", `reg.yaml:3: agents[0] (id "a"): unknown field "rol"; did you mean "role"?`)
	bad("agents:\n  - id: a\n    colour: red\n", `agents[0] (id "a"): unknown field "colour"; known fields are id, role`)
	bad("agents:\n  - id: a\n    role: x\n    role: y\n", `reg.yaml:4: agents[0]: field "role" given twice`)
	bad("agents:\n  - id: a\n    owner: {x: 1}\n", `agents[0] (id "a"): field owner: want a string, not a mapping`)
	bad("agents:\n  - id: a\n    credential_id: [k]\n", `agents[0] (id "a"): field credential_id: want a string`)
	bad("agents:\n  - id: a\n    labels: [x]\n", `agents[0] (id "a"): field labels: want a mapping`)
	bad("agents:\n  - id: a\n    labels: {team: [x]}\n", `agents[0] (id "a"): field labels.team: want a string`)
	bad("agents:\n  - id: a\n    approved_routes: /x\n", `agents[0] (id "a"): field approved_routes: want a list of strings`)
	bad("agents:\n  - id: a\n    approved_routes: [/x, [y]]\n", `agents[0] (id "a"): field approved_routes[1]: want a string, not a list`)
	bad("agents:\n  - id: a\n    approved_routes:\n      - /ok\n      - customers\n", `reg.yaml:5: agents[0] (id "a"): field approved_routes[1]: route "customers" must start with '/'`)
	bad("agents:\n  - id: a\n    approved_routes: ['/a/{b']\n", `field approved_routes[0]: route "/a/{b": '{' at byte 3 is not closed`)
	bad("agents:\n  - id: a\n    approved_routes: ['/a/{}']\n", `approved_routes[0]: route "/a/{}": empty parameter name`)
	bad("agents:\n  - id: a\n    approved_routes: ['/a?x=1']\n", `has a query or fragment`)
	bad("agents:\n  - id: a\n    approved_routes: ['/a b']\n", `has a space or control character`)
	bad("agents:\n  - id: a\n    approved_routes: ['/a/b}']\n", `'}' at byte 4 without '{'`)
	bad("agents:\n  - id: a\n    approved_routes: ['/"+strings.Repeat("a/", 17)+"']\n", "17 segments, at most 16")
	bad("agents:\n  - id: a\n    review_by: 30/06/2026\n", `reg.yaml:3: agents[0] (id "a"): field review_by: "30/06/2026" is not a date; write YYYY-MM-DD`)
	bad("agents:\n  - id: a\n    credential_expires: 2026-02-30\n", `field credential_expires: "2026-02-30" is not a date`)
	bad("agents:\n  - id: a\n    credential_issued: [2026-01-01]\n", `field credential_issued: want a string, not a list`)
	bad("agents:\n  - id: a\n    credential_issued: 2026-01-01\n    credential_max_age_days: 0\n", `field credential_max_age_days: "0": want a whole number of days from 1 to 3650`)
	bad("agents:\n  - id: a\n    credential_issued: 2026-01-01\n    credential_max_age_days: 9.5\n", `field credential_max_age_days: "9.5": want a whole number`)
	bad("agents:\n  - id: a\n    credential_max_age_days: 90\n", `reg.yaml:3: agents[0] (id "a"): field credential_max_age_days: needs credential_issued`)
	// Every problem at once.
	bad("agents:\n  - id: a\n    rol: x\n  - id: a\n  - {}\n",
		`reg.yaml:3: agents[0] (id "a"): unknown field "rol"`,
		`reg.yaml:4: agents[1] (id "a"): field id: duplicate of agents[0]`,
		`reg.yaml:5: agents[2]: field id: missing or empty`)
	// Many problems are capped.
	bad("agents:\n"+strings.Repeat("  - {}\n", 50), "30 more problems not shown")
}

func TestParseRegistry(t *testing.T) {
	r, err := ParseRegistry("reg.yaml", []byte(`
agents:
  - id: a
    role: hr
    owner: people@example.com
    credential_id: 12345
    labels: {team: people, tier: 1}
    approved_routes:
      - /employees/{employeeId}
      - /employees/{id}/
      - /positions
  - id: b          # no list: the unapproved-route rule is off for b
    role: finance
  - id: c
    role: hr
    approved_routes: []   # approved for nothing
`))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Enabled() || r.Len() != 3 || !slices.Equal(r.Roles(), []string{"finance", "hr"}) || !slices.Equal(r.IDs(), []string{"a", "b", "c"}) {
		t.Fatalf("got enabled=%v len=%d roles=%v ids=%v", r.Enabled(), r.Len(), r.Roles(), r.IDs())
	}
	a, ok := r.Lookup("a")
	if !ok || a.ID != "a" || a.Role != "hr" || a.Owner != "people@example.com" || a.CredentialID != "12345" ||
		a.Labels["team"] != "people" || a.Labels["tier"] != "1" ||
		!slices.Equal(a.ApprovedRoutes, []string{"/employees/{employeeId}", "/positions"}) {
		t.Fatalf("Lookup(a) = %+v, %v", a, ok)
	}
	if _, ok := r.Lookup("z"); ok {
		t.Error("Lookup(z) found an unregistered agent")
	}
	if b, _ := r.Lookup("b"); b.ApprovedRoutes != nil {
		t.Errorf("b.ApprovedRoutes = %#v; want nil (no list)", b.ApprovedRoutes)
	}
	if c, _ := r.Lookup("c"); c.ApprovedRoutes == nil || len(c.ApprovedRoutes) != 0 {
		t.Errorf("c.ApprovedRoutes = %#v; want empty, not nil", c.ApprovedRoutes)
	}
	approved := func(agent, route string, wantApproved, wantKnown bool) {
		t.Helper()
		if a, k := r.Approved(agent, route); a != wantApproved || k != wantKnown {
			t.Errorf("Approved(%q, %q) = %v, %v; want %v, %v", agent, route, a, k, wantApproved, wantKnown)
		}
	}
	approved("a", "/employees/{id}", true, true)
	approved("a", "/employees/{employeeId}", true, true)
	approved("a", "//employees/{x}/", true, true)
	approved("a", "/positions", true, true)
	approved("a", "/payroll", false, true)
	approved("a", "/employees/{id}/payroll", false, true)
	approved("b", "/payroll", false, false) // no list
	approved("c", "/positions", false, true)
	approved("z", "/positions", false, false) // not registered
}

func TestParseRegistryDates(t *testing.T) {
	day := func(s string) time.Time {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, tc := range []struct {
		name, entry             string
		review, expires, issued string
		maxAge                  int
		deadline                string // "" when none
	}{
		{name: "none", entry: "{id: a}"},
		{name: "null fields", entry: "{id: a, review_by: null, credential_expires: ~, credential_max_age_days: null}"},
		{name: "review only", entry: "{id: a, review_by: 2026-06-30}", review: "2026-06-30"},
		{name: "expires", entry: "{id: a, credential_expires: '2026-04-01'}", expires: "2026-04-01", deadline: "2026-04-01"},
		{name: "issued without max age", entry: "{id: a, credential_issued: 2026-01-01}", issued: "2026-01-01"},
		{name: "90 days", entry: "{id: a, credential_issued: 2026-01-01, credential_max_age_days: 90}",
			issued: "2026-01-01", maxAge: 90, deadline: "2026-04-01"},
		{name: "earlier of both", entry: "{id: a, credential_expires: 2026-03-01, credential_issued: 2026-01-01, credential_max_age_days: 90}",
			expires: "2026-03-01", issued: "2026-01-01", maxAge: 90, deadline: "2026-03-01"},
		{name: "max age earlier", entry: "{id: a, credential_expires: 2027-01-01, credential_issued: 2026-01-01, credential_max_age_days: 30}",
			expires: "2027-01-01", issued: "2026-01-01", maxAge: 30, deadline: "2026-01-31"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRegistry("reg.yaml", []byte("agents:\n  - "+tc.entry+"\n"))
			if err != nil {
				t.Fatal(err)
			}
			a, _ := r.Lookup("a")
			opt := func(s string) time.Time {
				if s == "" {
					return time.Time{}
				}
				return day(s)
			}
			if !a.ReviewBy.Equal(opt(tc.review)) || !a.CredentialExpires.Equal(opt(tc.expires)) ||
				!a.CredentialIssued.Equal(opt(tc.issued)) || a.CredentialMaxAgeDays != tc.maxAge {
				t.Fatalf("got review %v expires %v issued %v max age %d", a.ReviewBy, a.CredentialExpires, a.CredentialIssued, a.CredentialMaxAgeDays)
			}
			d, ok := a.CredentialDeadline()
			if ok != (tc.deadline != "") || ok && !d.Equal(day(tc.deadline)) {
				t.Fatalf("CredentialDeadline() = %v, %v; want %q", d, ok, tc.deadline)
			}
			if !a.ReviewBy.IsZero() && a.ReviewBy.Location() != time.UTC {
				t.Fatalf("review_by in %v; want UTC", a.ReviewBy.Location())
			}
		})
	}
}

func TestEmptyRegistry(t *testing.T) {
	for _, r := range []*Registry{EmptyRegistry(), nil} {
		if r.Enabled() || r.Len() != 0 || r.Roles() != nil || r.IDs() != nil {
			t.Errorf("%#v: enabled=%v len=%d", r, r.Enabled(), r.Len())
		}
		if _, ok := r.Lookup("a"); ok {
			t.Error("Lookup found an agent in an empty registry")
		}
		if a, k := r.Approved("a", "/x"); a || k {
			t.Errorf("Approved = %v, %v; want false, false", a, k)
		}
	}
	r, err := ParseRegistry("reg.yaml", []byte("agents: []\n"))
	if err != nil || !r.Enabled() || r.Len() != 0 {
		t.Fatalf("agents: [] = %v, %v; want an enabled registry without agents", r, err)
	}
}

func TestParseRegistryJSON(t *testing.T) {
	doc, err := json.MarshalIndent(map[string]any{"agents": []map[string]any{
		{"id": "a", "role": "hr", "approved_routes": []string{"/x/{id}"}, "labels": map[string]string{"k": "v"}},
		{"id": "b", "owner": "o"},
	}}, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ParseRegistry("reg.json", doc)
	if err != nil {
		t.Fatalf("ParseRegistry(%s): %v", doc, err)
	}
	if a, k := r.Approved("a", "/x/{xid}"); !a || !k || r.Len() != 2 {
		t.Fatalf("got len %d, Approved = %v, %v", r.Len(), a, k)
	}
	if _, err := ParseRegistry("reg.json", []byte(`{"agents": [{"id": "a", "roles": "x"}]}`)); err == nil ||
		!strings.Contains(err.Error(), `reg.json:1: agents[0] (id "a"): unknown field "roles"; did you mean "role"?`) {
		t.Fatalf("unknown JSON field: %v", err)
	}
}

func TestParseRegistryAliases(t *testing.T) {
	r, err := ParseRegistry("reg.yaml", []byte(`
agents:
  - id: a
    approved_routes: &cs ['/customers/{id}', /tickets]
  - id: b
    approved_routes: *cs
`))
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := r.Approved("b", "/tickets"); !a {
		t.Error("b does not share a's aliased list")
	}
	// A cycle through an alias is rejected, not followed forever.
	if _, err := ParseRegistry("reg.yaml", []byte("agents: &a [*a]\n")); err == nil {
		t.Error("cyclic alias accepted")
	}
	// Aliases cannot multiply the work without bound.
	var b strings.Builder
	b.WriteString("agents:\n  - id: first\n    approved_routes: &r [")
	for i := range 2000 {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("/r")
	}
	b.WriteString("]\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "  - {id: a%d, approved_routes: *r}\n", i)
	}
	if _, err := ParseRegistry("reg.yaml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), "aliases expand to more than") {
		t.Errorf("alias bomb: %v", err)
	}
}

func TestParseRegistrySim(t *testing.T) {
	r, err := ParseRegistry("deploy/sim/registry.yaml", readSim(t, "registry.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() < 10 || len(r.Roles()) < 3 {
		t.Fatalf("sim registry: %d agents, roles %v", r.Len(), r.Roles())
	}
	inv, err := ParseRoutes("deploy/sim/routes.yaml", readSim(t, "routes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range r.IDs() {
		a, _ := r.Lookup(id)
		if a.Role == "" || a.Owner == "" || a.CredentialID == "" || len(a.ApprovedRoutes) == 0 {
			t.Errorf("sim agent %+v lacks a field", a)
		}
		for _, rt := range a.ApprovedRoutes {
			if ok, known := r.Approved(id, rt); !ok || !known {
				t.Errorf("Approved(%q, %q) = %v, %v", id, rt, ok, known)
			}
		}
	}
	if u := r.UnknownRoutes(inv); len(u) != 0 {
		t.Errorf("sim agents approved for routes the sim inventory lacks: %v", u)
	}
	if u := r.UnknownRoutes(EmptyInventory()); u != nil {
		t.Errorf("UnknownRoutes(empty) = %v; want nil", u)
	}
}

func TestUnknownRoutes(t *testing.T) {
	r, err := ParseRegistry("reg.yaml", []byte("agents: [{id: a, approved_routes: ['/x/{xid}', /y, /z]}, {id: b, approved_routes: [/z]}]"))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := ParseRoutes("routes.yaml", []byte("routes: [{template: '/x/{id}'}]"))
	if err != nil {
		t.Fatal(err)
	}
	if got := r.UnknownRoutes(inv); !slices.Equal(got, []string{"/y", "/z"}) {
		t.Errorf("UnknownRoutes = %v; want [/y /z]", got)
	}
}
