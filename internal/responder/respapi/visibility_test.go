package respapi

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

const (
	secretAuditor = "auditor-0123456789abcdef0123456789abcdef" // reads the inventory
	hostileAgent  = "evil\x1b]0;owned\x07<script>alert(1)</script>"
)

// visFixture serves a visibility.Service on a MemSource, auditing to the
// handler's store; the token auditor may ask, ci may not.
func visFixture(t *testing.T, rec visibility.Recorder) *fixture {
	t.Helper()
	day := t0.Truncate(24 * time.Hour)
	evs := []event.Event{
		{EventID: "e1", AgentID: "cs-1", Route: "/customers/{id}", EventTimeMs: day.Add(time.Hour).UnixMilli(), Status: 200, RequestID: "req-1"},
		{EventID: "e2", AgentID: "cs-1", Route: "/tickets", EventTimeMs: day.Add(2 * time.Hour).UnixMilli(), Status: 403, RequestID: "req-2"},
		{EventID: "e3", AgentID: hostileAgent, Route: "/customers/{id}", EventTimeMs: day.Add(3 * time.Hour).UnixMilli(), Status: 200, RequestID: "=HYPERLINK(\"x\")"},
	}
	reg, err := inventory.ParseRegistry("agents.yaml", []byte("agents:\n  - id: cs-1\n    owner: cx\n    approved_routes: ['/customers/{id}']\n"))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.ParseRoutes("routes.yaml", []byte("routes:\n  - template: /customers/{id}\n    tags: [pii]\n  - template: /tickets\n"))
	if err != nil {
		t.Fatal(err)
	}
	var fx *fixture
	fx = newFixture(t, func(o *Options) {
		o.Tokens = append(o.Tokens, Token{Name: "auditor", Secret: secretAuditor, CanReadInventory: true})
		r := rec
		if r == nil {
			r = o.Audit
		}
		o.Visibility = visibility.New(visibility.NewMemSource(evs, nil, nil, nil), func() *inventory.Registry { return reg },
			func() *inventory.Inventory { return inv }, r, visibility.Config{}, func() time.Time { return t0 })
	})
	return fx
}

func (fx *fixture) ask(t *testing.T, path, secret string, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, fx.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := fx.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return response{code: resp.StatusCode, hdr: resp.Header, body: b.Bytes()}
}

func TestVisibilityEndpoints(t *testing.T) {
	fx := visFixture(t, nil)
	day := "2025-03-04"
	for _, tc := range []struct {
		path string
		want []string // substrings of the JSON body
	}{
		{"/v1/inventory/agents?from=" + day + "&to=" + day, []string{`"AgentID":"cs-1"`, `"Lifecycle":"shadow"`, `"Owner":"cx"`}},
		{"/v1/inventory/routes", []string{`"Route":"/customers/{id}"`, `"CallerCount":2`, `"Tags":["pii"]`}},
		{"/v1/inventory/agent-routes?agent=cs-1", []string{`"Route":"/tickets"`, `"Approved":false,"Known":true`}},
		{"/v1/findings", []string{`"Kind":"shadow_agent"`, `"Kind":"unapproved_route"`}},
		{"/v1/access?tag=pii&from=" + day + "&to=" + day, []string{`"Routes":["/customers/{id}"]`, `"SampleRequestIDs":["req-1"]`}},
		{"/v1/access?template=/customers/*&agent=cs-1&samples=1", []string{`"AgentID":"cs-1"`}},
		{"/v1/agents/cs-1", []string{`"Kind":"calls"`, `"Routes":[`}},
		{"/v1/agents/" + url.PathEscape(hostileAgent), []string{`"Lifecycle":"shadow"`, `\u003cscript\u003e`}},
		{"/v1/routes?route=" + url.QueryEscape("/customers/{id}"), []string{`"Daily":[`, `"Documented":true`}},
		{"/v1/events?agent=cs-1&route=/tickets&route=/customers/{id}&limit=1", []string{`"EventID":"e2"`}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			n := len(fx.store.All())
			r := fx.ask(t, tc.path, secretAuditor)
			wantCode(t, r, http.StatusOK)
			if ct := r.hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			if bytes.ContainsAny(r.body, "\x1b\x07") {
				t.Errorf("JSON holds raw control characters: %s", r.body)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(r.body), w) {
					t.Errorf("body lacks %s:\n%s", w, r.body)
				}
			}
			if !json.Valid(r.body) {
				t.Fatalf("invalid JSON: %s", r.body)
			}
			// One audit record per question, under the token's name.
			all := fx.store.All()
			if len(all) != n+1 {
				t.Fatalf("%d audit records written; want 1", len(all)-n)
			}
			if a := all[n]; a.Action != audit.ActionAsk || a.Actor != (audit.Actor{Kind: audit.ActorAPI, TokenName: "auditor"}) || a.Result != audit.ResultOK {
				t.Errorf("audit record %+v", a)
			}
		})
	}
	// The access question's span: a day alone is the whole day.
	if a := fx.store.All(); !strings.Contains(a[4].Detail, "access tag=\"pii\" span=2025-03-04..2025-03-05") {
		t.Errorf("access question %q", a[4].Detail)
	}
	if a := fx.store.All(); a[7].AgentID != hostileAgent {
		t.Errorf("agent question's agent %q", a[7].AgentID)
	}
}

func TestVisibilityCSV(t *testing.T) {
	fx := visFixture(t, nil)
	for _, tc := range []struct {
		path string
		hdr  []string
		file string
	}{
		{"/v1/access?tag=pii&format=csv", nil, "access.csv"},
		{"/v1/access?tag=pii", []string{"Accept", "text/csv"}, "access.csv"},
		{"/v1/findings", []string{"Accept", "text/csv, application/json;q=0.5"}, "findings.csv"},
		{"/v1/inventory/agents?format=csv", []string{"Accept", "application/json"}, "agents.csv"},
	} {
		r := fx.ask(t, tc.path, secretAuditor, tc.hdr...)
		wantCode(t, r, http.StatusOK)
		if ct := r.hdr.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", tc.path, ct)
		}
		if cd := r.hdr.Get("Content-Disposition"); !strings.Contains(cd, tc.file) {
			t.Errorf("%s: Content-Disposition %q", tc.path, cd)
		}
		recs, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
		if err != nil || len(recs) < 2 {
			t.Fatalf("%s: CSV %q, %v", tc.path, r.body, err)
		}
		for _, rec := range recs {
			for _, c := range rec {
				if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
					t.Errorf("%s: cell %q could run as a formula", tc.path, c)
				}
			}
		}
	}
	r := fx.ask(t, "/v1/access?tag=pii&format=csv", secretAuditor)
	if !strings.Contains(string(r.body), `'=HYPERLINK(""x"")`) {
		t.Errorf("the hostile request id is not defused:\n%s", r.body)
	}
	// JSON unless CSV is asked for.
	if r := fx.ask(t, "/v1/findings", secretAuditor, "Accept", "application/json, text/csv"); r.hdr.Get("Content-Type") != "application/json" {
		t.Errorf("Accept JSON first: %q", r.hdr.Get("Content-Type"))
	}
}

func TestVisibilityAuth(t *testing.T) {
	fx := visFixture(t, nil)
	// No token: 401, no answer.
	r := fx.ask(t, "/v1/findings", "")
	wantCode(t, r, http.StatusUnauthorized)
	r = fx.ask(t, "/v1/findings", "wrong-0123456789abcdef0123456789abcdef")
	wantCode(t, r, http.StatusUnauthorized)
	for _, path := range []string{"/v1/inventory/agents", "/v1/inventory/routes", "/v1/inventory/agent-routes", "/v1/findings",
		"/v1/access?tag=pii", "/v1/agents/cs-1", "/v1/routes?route=/tickets", "/v1/events"} {
		n := len(fx.store.All())
		r := fx.ask(t, path, secretCI)
		wantCode(t, r, http.StatusForbidden)
		if !strings.Contains(string(r.body), "can_read_inventory") {
			t.Errorf("%s: body %s", path, r.body)
		}
		all := fx.store.All()
		if len(all) != n+1 {
			t.Fatalf("%s: %d audit records; want the refusal", path, len(all)-n)
		}
		if a := all[n]; a.Action != audit.ActionAsk || a.Result != audit.ResultRefused || a.Actor.TokenName != "ci" || !strings.Contains(a.Detail, "can_read_inventory") {
			t.Errorf("%s: refusal audited as %+v", path, a)
		}
	}
	mfs, err := fx.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				found = found || l.GetName() == "route" && l.GetValue() == "visibility"
			}
		}
	}
	if !found {
		t.Error("no request counted under route=visibility")
	}
}

func TestVisibilityBadParameters(t *testing.T) {
	fx := visFixture(t, nil)
	for _, tc := range []struct{ path, want string }{
		{"/v1/access?tag=pii&frm=2025-03-01", `{"error":"\"frm\": unknown parameter; use format, from, to, tag, template, agent, samples"}`},
		{"/v1/access?tag=pii&tag=x", "tag: given 2 times"},
		{"/v1/access?from=yesterday", `from: \"yesterday\" is neither RFC 3339 nor YYYY-MM-DD`},
		{"/v1/access?from=2025-03-04&to=2025-03-01", "is not after from"},
		{"/v1/access?samples=many", `samples: \"many\" is not a number`},
		{"/v1/access?tag=p%20ii", `tag: \"p ii\"`},
		{"/v1/access?template=customers", "must start with '/'"},
		{"/v1/findings?format=xml", `format: \"xml\"; want json or csv`},
		{"/v1/findings?from=2025-03-01", `\"from\": unknown parameter`},
		{"/v1/events?limit=-1", "limit: -1"},
		{"/v1/events?limit=x", `limit: \"x\" is not a number`},
		{"/v1/routes", "route: required"},
		{"/v1/access?%zz", "query string"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			n := len(fx.store.All())
			r := fx.ask(t, tc.path, secretAuditor)
			wantCode(t, r, http.StatusBadRequest)
			if !strings.Contains(string(r.body), tc.want) {
				t.Errorf("body %s lacks %s", r.body, tc.want)
			}
			all := fx.store.All()
			if len(all) != n+1 {
				t.Fatalf("%d audit records; want one refusal", len(all)-n)
			}
			if a := all[n]; a.Action != audit.ActionAsk || a.Result != audit.ResultRefused || a.Actor.TokenName != "auditor" {
				t.Errorf("refusal audited as %+v", a)
			}
		})
	}
	r := fx.ask(t, "/v1/agents/nobody", secretAuditor)
	wantCode(t, r, http.StatusNotFound)
	if !strings.Contains(string(r.body), "neither registered nor seen") {
		t.Errorf("404 body %s", r.body)
	}
}

type brokenRecorder struct{}

func (brokenRecorder) Record(context.Context, audit.Record) error { return errors.New("disk full") }

func TestVisibilityAuditFailureRefuses(t *testing.T) {
	fx := visFixture(t, brokenRecorder{})
	r := fx.ask(t, "/v1/access?tag=pii", secretAuditor)
	wantCode(t, r, http.StatusServiceUnavailable)
	if strings.Contains(string(r.body), "cs-1") || !strings.Contains(string(r.body), "audit trail") {
		t.Errorf("body %s: want a refusal without an answer", r.body)
	}
}

func TestVisibilityNotServedWithoutService(t *testing.T) {
	fx := newFixture(t, func(o *Options) {
		o.Tokens = append(o.Tokens, Token{Name: "auditor", Secret: secretAuditor, CanReadInventory: true})
	})
	wantCode(t, fx.ask(t, "/v1/findings", secretAuditor), http.StatusNotFound)
}
