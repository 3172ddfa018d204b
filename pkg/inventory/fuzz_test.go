package inventory

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"
)

func FuzzParseRegistry(f *testing.F) {
	f.Add(readSim(f, "registry.yaml"))
	f.Add([]byte("agents:\n  - id: a\n    labels: {k: v}\n    approved_routes: &r ['/x/{id}', /y]\n  - id: b\n    approved_routes: *r\n  - id: c\n    approved_routes: []\n"))
	f.Add([]byte(`{"agents": [{"id": "a", "role": "hr", "approved_routes": ["/a//{b}/"]}]}`))
	f.Add([]byte("agents: &a [*a]\n"))
	f.Add([]byte("agents:\n  - {id: a, rol: x}\n  - {id: a}\n"))
	f.Add([]byte("agents:\n  - {id: a, review_by: 2026-06-30, credential_expires: '2026-04-01', credential_issued: 2026-01-01, credential_max_age_days: 90}\n"))
	f.Add([]byte("agents:\n  - {id: a, credential_max_age_days: 90}\n  - {id: b, review_by: 2026-13-01}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRegistry("f.yaml", data)
		if err != nil {
			if r != nil {
				t.Fatalf("ParseRegistry returned a registry and %v", err)
			}
			return
		}
		checkRegistry(t, r)
		// Round trip: what was parsed, written as JSON, parses the same.
		type agent struct {
			ID             string            `json:"id"`
			Role           string            `json:"role"`
			Owner          string            `json:"owner"`
			CredentialID   string            `json:"credential_id"`
			Labels         map[string]string `json:"labels"`
			ApprovedRoutes []string          `json:"approved_routes"`
			ReviewBy       string            `json:"review_by,omitempty"`
			Expires        string            `json:"credential_expires,omitempty"`
			Issued         string            `json:"credential_issued,omitempty"`
			MaxAgeDays     int               `json:"credential_max_age_days,omitempty"`
		}
		date := func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.Format(DateLayout)
		}
		var doc struct {
			Agents []agent `json:"agents"`
		}
		doc.Agents = []agent{}
		for _, id := range r.IDs() {
			a, _ := r.Lookup(id)
			doc.Agents = append(doc.Agents, agent{ID: a.ID, Role: a.Role, Owner: a.Owner, CredentialID: a.CredentialID,
				Labels: a.Labels, ApprovedRoutes: a.ApprovedRoutes, ReviewBy: date(a.ReviewBy), Expires: date(a.CredentialExpires),
				Issued: date(a.CredentialIssued), MaxAgeDays: a.CredentialMaxAgeDays})
		}
		js, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseRegistry("f.json", js)
		if err != nil {
			t.Fatalf("reparse of %s: %v", js, err)
		}
		if !slices.Equal(again.IDs(), r.IDs()) || !slices.Equal(again.Roles(), r.Roles()) {
			t.Fatalf("round trip: ids %v roles %v; want %v %v", again.IDs(), again.Roles(), r.IDs(), r.Roles())
		}
		for _, id := range r.IDs() {
			a, _ := r.Lookup(id)
			b, _ := again.Lookup(id)
			if a.Role != b.Role || a.Owner != b.Owner || a.CredentialID != b.CredentialID || !maps.Equal(a.Labels, b.Labels) ||
				!slices.Equal(a.ApprovedRoutes, b.ApprovedRoutes) || (a.ApprovedRoutes == nil) != (b.ApprovedRoutes == nil) ||
				!a.ReviewBy.Equal(b.ReviewBy) || !a.CredentialExpires.Equal(b.CredentialExpires) ||
				!a.CredentialIssued.Equal(b.CredentialIssued) || a.CredentialMaxAgeDays != b.CredentialMaxAgeDays {
				t.Fatalf("round trip of %q: %+v; want %+v", id, b, a)
			}
		}
	})
}

func checkRegistry(t *testing.T, r *Registry) {
	t.Helper()
	if !r.Enabled() || r.Len() != len(r.IDs()) {
		t.Fatalf("enabled=%v len=%d ids=%d", r.Enabled(), r.Len(), len(r.IDs()))
	}
	for _, id := range r.IDs() {
		a, ok := r.Lookup(id)
		if !ok || a.ID != id || id == "" {
			t.Fatalf("Lookup(%q) = %+v, %v", id, a, ok)
		}
		if a.Role != "" && !slices.Contains(r.Roles(), a.Role) {
			t.Fatalf("role %q of %q missing from Roles %v", a.Role, id, r.Roles())
		}
		for _, rt := range a.ApprovedRoutes {
			if ok, known := r.Approved(id, rt); !ok || !known {
				t.Fatalf("Approved(%q, %q) = %v, %v", id, rt, ok, known)
			}
		}
		if _, known := r.Approved(id, "/"); known != (a.ApprovedRoutes != nil) {
			t.Fatalf("Approved(%q) known = %v with routes %#v", id, known, a.ApprovedRoutes)
		}
	}
}

func FuzzParseRoutes(f *testing.F) {
	f.Add(readSim(f, "routes.yaml"))
	f.Add([]byte("routes:\n  - template: '/a/{x}'\n    methods: [get]\n    tags: [sensitive, deprecated]\n    roles: [hr]\n  - template: /b\n"))
	f.Add([]byte(`{"routes": [{"template": "/a", "service": "s"}]}`))
	f.Add([]byte("routes:\n  - template: '/a/{x}'\n  - template: '/a/{y}'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := ParseRoutes("f.yaml", data)
		if err != nil {
			if inv != nil {
				t.Fatalf("ParseRoutes returned an inventory and %v", err)
			}
			return
		}
		checkInventory(t, inv)
		if m := Merge(inv, inv); m.Len() != inv.Len() {
			t.Fatalf("Merge(inv, inv) has %d routes; want %d", m.Len(), inv.Len())
		}
	})
}

func FuzzFromOpenAPI(f *testing.F) {
	f.Add(readSim(f, "openapi.yaml"))
	f.Add([]byte("paths:\n  '/a/{x}':\n    get: {deprecated: true, tags: [x, sensitive], x-agentwatch-tags: [pii]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := FromOpenAPI("f.yaml", data)
		if err != nil {
			if inv != nil {
				t.Fatalf("FromOpenAPI returned an inventory and %v", err)
			}
			return
		}
		checkInventory(t, inv)
	})
}

func checkInventory(t *testing.T, inv *Inventory) {
	t.Helper()
	if !inv.Enabled() || inv.Len() != len(inv.Templates()) {
		t.Fatalf("enabled=%v len=%d templates=%d", inv.Enabled(), inv.Len(), len(inv.Templates()))
	}
	for _, tmpl := range inv.Templates() {
		r, ok := inv.Lookup(tmpl)
		if !ok || r.Template != tmpl || checkTemplate(tmpl) != nil {
			t.Fatalf("Lookup(%q) = %+v, %v", tmpl, r, ok)
		}
		n := NormalizeTemplate(tmpl)
		if NormalizeTemplate(n) != n {
			t.Fatalf("NormalizeTemplate not idempotent on %q", tmpl)
		}
		if r2, ok := inv.Lookup(n); !ok || r2.Template != tmpl {
			t.Fatalf("Lookup(%q) (normalised %q) = %+v, %v", n, tmpl, r2, ok)
		}
		if r.Sensitive != slices.Contains(r.Tags, TagSensitive) || r.Deprecated != slices.Contains(r.Tags, TagDeprecated) ||
			!slices.IsSorted(r.Tags) || !slices.IsSorted(r.Methods) || !slices.IsSorted(r.Roles) {
			t.Fatalf("route %+v: flags or order wrong", r)
		}
	}
}
