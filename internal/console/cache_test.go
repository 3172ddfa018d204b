package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// The overview is kept a minute per person: a reload asks nothing, the
// page says when it was computed, another person's first view asks under
// their own name, and an action or the minute passing computes it again.
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

	c := newClient(t, srv)
	csrf := c.signIn(secretAct) // its first overview view computes it
	n := asked()
	if n == 0 {
		t.Fatal("the first overview asked nothing")
	}
	resp, page := c.do("GET", "/console/", nil, nil)
	if resp.StatusCode != 200 || asked() != n {
		t.Fatalf("reload: %d, %d questions asked; want 200 and none (kept)", resp.StatusCode, asked()-n)
	}
	if !strings.Contains(page, "As of 12:00:00 UTC") {
		t.Errorf("overview does not say when it was computed:\n%.600s", page)
	}

	other := newClient(t, srv)
	other.signIn(secretRead)
	if asked() == n {
		t.Fatal("another person's first overview was served from the first person's")
	}
	f.mu.Lock()
	last := f.asked[len(f.asked)-1]
	f.mu.Unlock()
	if last.Name != "auditor" {
		t.Errorf("the second person's overview was asked as %v; want auditor", last)
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
