package obs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadyGaugeFollowsReadyz: agentwatch_ready on /metrics says what
// /readyz says, check by check, so an alert needs no probe of its own.
func TestReadyGaugeFollowsReadyz(t *testing.T) {
	var broken atomic.Bool
	r := &Readiness{}
	r.Add("store", func(context.Context) error {
		if broken.Load() {
			return errors.New("ping: connection refused")
		}
		return nil
	})
	s := &Server{Addr: "127.0.0.1:0", Registry: NewRegistry(), Readiness: r, Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for s.BoundAddr() == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.BoundAddr() == nil {
		t.Fatal("server did not bind")
	}
	base := "http://" + s.BoundAddr().String()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		broken    bool
		readyz    int
		gaugeLine string
	}{
		{false, http.StatusOK, "agentwatch_ready 1"},
		{true, http.StatusServiceUnavailable, "agentwatch_ready 0"},
		{false, http.StatusOK, "agentwatch_ready 1"},
	} {
		broken.Store(tc.broken)
		if code, body := get("/readyz"); code != tc.readyz {
			t.Errorf("broken=%v: /readyz %d %q, want %d", tc.broken, code, body, tc.readyz)
		}
		if _, body := get("/metrics"); !strings.Contains(body, "\n"+tc.gaugeLine+"\n") || !strings.Contains(body, "go_goroutines") {
			t.Errorf("broken=%v: /metrics lacks %q (or the registry's own metrics)", tc.broken, tc.gaugeLine)
		}
	}
}
