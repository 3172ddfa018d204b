package console

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// The overview is kept a minute per scope: a reload asks nothing, the page
// says when it was computed, another person of the same scope is served
// the copy with the view recorded under their own name, another scope
// asks under its own name, and an action or the minute passing computes
// it again.
func TestOverviewCached(t *testing.T) {
	f := newFixture()
	h, err := newTestHandler(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	clock := time.Date(2026, 3, 16, 12, 0, 0, 0, time.UTC)
	h.overview.clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	mux := http.NewServeMux()
	mux.Handle("/console/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	asked := func() int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.asked) }
	lastAsker := func() string { f.mu.Lock(); defer f.mu.Unlock(); return f.asked[len(f.asked)-1].Name }
	bob := h.sessions.open(audit.Actor{Kind: audit.ActorAPI, Name: "bob"}, scopeAct, "token")
	carol := h.sessions.open(audit.Actor{Kind: audit.ActorAPI, Name: "carol"}, scopeRead, "token")
	viewAs := func(s *session) string {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/console/", nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: s.id})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("overview as %v: %d", s.actor, resp.StatusCode)
		}
		return b.String()
	}

	c := newClient(t, srv)
	csrf := c.signIn(secretAct) // "analyst", act scope: its first view computes it
	n := asked()
	if n == 0 || lastAsker() != "analyst" {
		t.Fatalf("the first overview asked %d questions; want some, as analyst", n)
	}
	resp, page := c.do("GET", "/console/", nil, nil)
	if resp.StatusCode != 200 || asked() != n {
		t.Fatalf("reload: %d, %d questions asked; want 200 and none (kept)", resp.StatusCode, asked()-n)
	}
	if !strings.Contains(page, "As of 12:00:00 UTC") {
		t.Errorf("overview does not say when it was computed:\n%.600s", page)
	}

	viewAs(bob)
	if asked() != n {
		t.Errorf("bob, of the same scope, was not served the kept copy")
	}
	recs, err := f.audit.Query(context.Background(), audit.Filter{Action: audit.ActionAsk})
	if err != nil {
		t.Fatal(err)
	}
	var bobs []string
	for _, r := range recs {
		if r.Actor.Name == "bob" {
			bobs = append(bobs, r.Detail)
		}
	}
	if len(bobs) != 1 || !strings.Contains(bobs[0], "asked by") || !strings.Contains(bobs[0], "analyst") {
		t.Errorf("bob's view of the kept copy recorded as %q; want one record naming whose copy", bobs)
	}

	viewAs(carol)
	if asked() == n || lastAsker() != "carol" {
		t.Errorf("carol, of another scope, was served another scope's copy")
	}

	n = asked()
	advance(59 * time.Second)
	c.do("GET", "/console/", nil, nil)
	if asked() != n {
		t.Errorf("overview computed again after 59 s; want it kept a minute")
	}
	advance(2 * time.Second)
	c.do("GET", "/console/", nil, nil)
	if asked() == n {
		t.Errorf("overview kept after 61 s; want it computed again")
	}

	n = asked()
	fp := url.Values{"csrf": {csrf}, "incident": {"inc-1"}, "anomaly": {"an-1"}}
	if resp, body := c.do("POST", "/console/actions/false-positive", fp, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("false positive: %d %.300s", resp.StatusCode, body)
	}
	c.do("GET", "/console/", nil, nil)
	if asked() == n {
		t.Errorf("overview kept after an action; want it computed again")
	}
}

type failingAppender struct{}

func (failingAppender) Append(context.Context, ...audit.Record) error {
	return errors.New("audit store down")
}

// copyRefusing fails only the records of views of a kept copy.
type copyRefusing struct{ next Recorder }

func (c copyRefusing) Append(ctx context.Context, recs ...audit.Record) error {
	for _, r := range recs {
		if strings.HasPrefix(r.Detail, "overview: the copy") {
			return errors.New("audit store down")
		}
	}
	return c.next.Append(ctx, recs...)
}

// A view that cannot be recorded is not served another person's copy: the
// overview is asked again, under the viewer's name.
func TestOverviewCopyNotServedUnaudited(t *testing.T) {
	f := newFixture()
	h, err := newTestHandler(f, func(o *Options) { o.Audit = copyRefusing{o.Audit} })
	if err != nil {
		t.Fatal(err)
	}
	view := func(name string) {
		t.Helper()
		s := h.sessions.open(audit.Actor{Kind: audit.ActorAPI, Name: name}, scopeRead, "token")
		r := httptest.NewRequest("GET", "/console/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: s.id})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("overview as %s: %d", name, w.Code)
		}
	}
	view("alice")
	f.mu.Lock()
	n := len(f.asked)
	f.mu.Unlock()
	view("bob")
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.asked) == n || f.asked[len(f.asked)-1].Name != "bob" {
		t.Errorf("bob was served alice's copy without an audit record")
	}
}
