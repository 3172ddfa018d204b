package console

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// Without Run, the overview is kept a minute: a reload asks nothing, the
// page says when it was computed, another person (of any scope) is served
// the copy with the view recorded under their own name, and an action or
// the minute passing computes it again.
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
	if asked() != n {
		t.Errorf("carol, of another scope, was not served the kept copy")
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

// Run keeps the overview computed: it computes it at once (asked by
// automatic), a view is then served the copy with the view recorded under
// the viewer's name, the copy is computed again before it is a minute old
// while people look at it, not when nobody has for keepWarm, a view of
// an old copy (or one from before an action) is served it marked as
// updating while a newer one is computed; without Run, a view after an
// action waits for a new one.
func TestOverviewKeptWarm(t *testing.T) {
	f := newFixture()
	h, err := newTestHandler(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	clock := time.Date(2026, 3, 16, 12, 0, 0, 0, time.UTC)
	h.overview.clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	h.overview.tick = 5 * time.Millisecond
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	asked := func() []audit.Actor { f.mu.Lock(); defer f.mu.Unlock(); return slices.Clone(f.asked) }
	// waitAsked waits for questions asked by automatic beyond n.
	waitAsked := func(n int, what string) int {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			a := asked()
			if len(a) > n {
				for _, who := range a[n:] {
					if who.Kind != audit.ActorAutomatic {
						t.Fatalf("%s: a question asked by %v; want automatic", what, who)
					}
				}
				time.Sleep(50 * time.Millisecond) // the rest of its questions
				return len(asked())
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: nothing computed in the background", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	n := waitAsked(0, "start")

	view := func(name string) string {
		t.Helper()
		s := h.sessions.open(audit.Actor{Kind: audit.ActorAPI, Name: name}, scopeRead, "token")
		r := httptest.NewRequest("GET", "/console/", nil)
		r.AddCookie(&http.Cookie{Name: sessionCookie, Value: s.id})
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != 200 {
			t.Fatalf("overview as %s: %d", name, w.Code)
		}
		return w.Body.String()
	}
	page := view("alice")
	if got := len(asked()); got != n {
		t.Fatalf("alice's view asked %d questions; want the copy", got-n)
	}
	if !strings.Contains(page, "As of ") || strings.Contains(page, "being computed") {
		t.Errorf("overview does not say when it was computed, or says it is updating:\n%.600s", page)
	}
	recs, err := f.audit.Query(context.Background(), audit.Filter{Action: audit.ActionAsk})
	if err != nil {
		t.Fatal(err)
	}
	var alices []string
	for _, r := range recs {
		if r.Actor.Name == "alice" {
			alices = append(alices, r.Detail)
		}
	}
	if len(alices) != 1 || !strings.Contains(alices[0], "asked by automatic") {
		t.Errorf("alice's view recorded as %q; want one record naming the automatic copy", alices)
	}

	advance(refreshAfter)
	n = waitAsked(n, "refresh of a viewed copy")
	page = view("alice")
	if got := len(asked()); got != n || strings.Contains(page, "being computed") {
		t.Errorf("after the refresh: %d questions for the view, updating=%v; want none and the new copy", got-n, strings.Contains(page, "being computed"))
	}

	advance(keepWarm + time.Minute)
	time.Sleep(100 * time.Millisecond) // twenty ticks
	if got := len(asked()); got != n {
		t.Errorf("%d questions asked in the background with nobody looking for %v; want none", got-n, keepWarm)
	}
	page = view("bob")
	if a := asked(); slices.ContainsFunc(a[n:], func(who audit.Actor) bool { return who.Name == "bob" }) {
		t.Errorf("bob's view of an old copy asked questions; want the old copy served")
	}
	if !strings.Contains(page, "newer numbers are being computed") {
		t.Errorf("an old copy served without saying so:\n%.600s", page)
	}
	n = waitAsked(n, "refresh after a view of an old copy")

	h.overview.clear() // what an action does; Run may compute the new copy before carol's view
	page = view("carol")
	if a := asked(); slices.ContainsFunc(a[n:], func(who audit.Actor) bool { return who.Name == "carol" }) {
		t.Errorf("carol's view after an action asked questions; want the old copy served")
	}
	if !strings.Contains(page, "newer numbers are being computed") && len(asked()) == n {
		t.Errorf("the copy from before an action served without saying so:\n%.600s", page)
	}
	waitAsked(n, "refresh after an action")
	cancel()
	<-done
	done <- nil // for the cleanup
	// Without Run, a view after an action waits for a new copy.
	n = len(asked())
	h.overview.clear()
	page = view("dave")
	if a := asked(); !slices.ContainsFunc(a[n:], func(who audit.Actor) bool { return who.Name == "dave" }) || strings.Contains(page, "being computed") {
		t.Errorf("without Run, the view after an action was served the old copy")
	}
}

// When Run fails to compute the overview, views stop being served the
// old copy and compute it themselves, and Run waits refreshBackoff before
// it tries again; a hung computation is cut at refreshTimeout.
func TestOverviewRefreshFailing(t *testing.T) {
	clock := time.Date(2026, 3, 16, 12, 0, 0, 0, time.UTC)
	c := newOverviewCache(func() time.Time { return clock })
	c.running.Store(true)
	alice, bob := audit.Actor{Kind: audit.ActorAPI, Name: "alice"}, audit.Actor{Kind: audit.ActorAPI, Name: "bob"}
	auto := audit.Actor{Kind: audit.ActorAutomatic}
	var computedBy []audit.Actor
	computeAs := func(who audit.Actor) func(context.Context) (overviewData, error) {
		return func(context.Context) (overviewData, error) {
			computedBy = append(computedBy, who)
			return overviewData{Month: who.String()}, nil
		}
	}
	served := func(audit.Actor, overviewData) bool { return true }
	ctx := context.Background()
	if _, _, err := c.get(ctx, "overview", alice, served, computeAs(alice)); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * time.Minute)
	did, err := c.refresh(ctx, "overview", auto, false, func(ctx context.Context) (overviewData, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("background computation without a deadline")
		}
		return overviewData{}, errors.New("clickhouse down")
	})
	if !did || err == nil {
		t.Fatalf("refresh: did %v err %v; want a failed computation", did, err)
	}
	d, old, err := c.get(ctx, "overview", bob, served, computeAs(bob))
	if err != nil || old || d.Month != bob.String() {
		t.Fatalf("view after a failed refresh: %q old=%v err=%v; want computed by the view", d.Month, old, err)
	}
	clock = clock.Add(refreshAfter)
	if did, _ := c.refresh(ctx, "overview", auto, false, computeAs(auto)); did {
		t.Errorf("refresh within %v of a failure", refreshBackoff)
	}
	clock = clock.Add(refreshBackoff)
	if did, err := c.refresh(ctx, "overview", auto, false, computeAs(auto)); !did || err != nil {
		t.Errorf("refresh after the backoff: did %v err %v", did, err)
	}
	if want := []audit.Actor{alice, bob, auto}; !slices.Equal(computedBy, want) {
		t.Errorf("computed by %v; want %v", computedBy, want)
	}
}
