package silence

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// clock is a settable clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// open opens the store at path with clk, and closes it when the test ends.
func open(t *testing.T, path string, clk *clock, opts Options) *Store {
	t.Helper()
	opts.Now = clk.Now
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func tempPath(t *testing.T) string { return filepath.Join(t.TempDir(), "silences.jsonl") }

func mustAdd(t *testing.T, s *Store, sil Silence) Silence {
	t.Helper()
	out, err := s.Add(context.Background(), sil)
	if err != nil {
		t.Fatalf("Add(%+v): %v", sil, err)
	}
	return out
}

func ids(ss []Silence) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

func silenceFor(matchers string, now time.Time, d time.Duration) Silence {
	ms, err := ParseMatchers(matchers)
	if err != nil {
		panic(err)
	}
	return Silence{Matchers: ms, StartsAt: now, EndsAt: now.Add(d), CreatedBy: "U123", Comment: "test"}
}
