package invwatch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const interval = 20 * time.Millisecond

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replace writes content next to path and renames it over path, as
// editors and kubectl's ConfigMap updates do.
func replace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	write(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second) // generous: CI machines are busy
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// start runs w until the test ends and checks Run returned nil.
func start(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v; want nil", err)
		}
	})
}

func agents(ids ...string) string {
	var b strings.Builder
	b.WriteString("agents:\n")
	for _, id := range ids {
		b.WriteString("  - id: " + id + "\n    approved_routes: [/a]\n")
	}
	return b.String()
}

func TestWatcherReload(t *testing.T) {
	dir := t.TempDir()
	files := Files{Registry: filepath.Join(dir, "registry.yaml"), Routes: filepath.Join(dir, "routes.yaml")}
	write(t, files.Registry, agents("a"))
	write(t, files.Routes, "routes:\n  - template: /a\n")
	reg := prometheus.NewRegistry()
	w, err := NewWatcher(files, interval, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	first := w.Current()
	if first.Registry.Len() != 1 || first.Routes.Len() != 1 || !first.Registry.Enabled() || !first.Routes.Enabled() {
		t.Fatalf("first snapshot: %d agents, %d routes", first.Registry.Len(), first.Routes.Len())
	}
	m := w.m
	start(t, w)

	// In place, same size: b is as long as a, so only mtime and content
	// tell.
	write(t, files.Registry, agents("b"))
	eventually(t, "agent b", func() bool { _, ok := w.Current().Registry.Lookup("b"); return ok })
	// Rename over.
	replace(t, files.Registry, agents("b", "c"))
	eventually(t, "agent c", func() bool { return w.Current().Registry.Len() == 2 })
	replace(t, files.Routes, "routes:\n  - template: /a\n  - template: /b\n    tags: [deprecated]\n")
	eventually(t, "route /b", func() bool { r, ok := w.Current().Routes.Lookup("/b"); return ok && r.Deprecated })

	s := w.Current()
	if _, ok := s.Registry.Lookup("c"); !ok || s.Routes.Len() != 2 || !s.LoadedAt.After(first.LoadedAt) {
		t.Errorf("snapshot %+v", s)
	}
	if first.Registry.Len() != 1 {
		t.Error("an old snapshot changed")
	}
	if got := testutil.ToFloat64(m.reloads.WithLabelValues("registry")); got != 3 {
		t.Errorf("registry reloads = %v; want 3", got)
	}
	if got := testutil.ToFloat64(m.agents); got != 2 {
		t.Errorf("agents gauge = %v; want 2", got)
	}
	if got := testutil.ToFloat64(m.routes); got != 2 {
		t.Errorf("routes gauge = %v; want 2", got)
	}
	if n, err := testutil.GatherAndCount(reg, "agentwatch_inventory_reload_errors_total"); err != nil || n != 2 {
		t.Errorf("error series: %d, %v; want one per configured file", n, err)
	}
}

func TestWatcherBadFileKeepsSnapshot(t *testing.T) {
	dir := t.TempDir()
	files := Files{Registry: filepath.Join(dir, "registry.yaml")}
	write(t, files.Registry, agents("a"))
	w, err := NewWatcher(files, interval, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	good := w.Current()
	start(t, w)
	errs := w.m.errors.WithLabelValues("registry")

	replace(t, files.Registry, "agents:\n  - id: a\n    rol: x\n")
	eventually(t, "the error counted", func() bool { return testutil.ToFloat64(errs) == 1 })
	time.Sleep(10 * interval) // the same bad content is not counted again
	if got := testutil.ToFloat64(errs); got != 1 {
		t.Errorf("reload errors = %v after more polls; want 1", got)
	}
	if w.Current() != good {
		t.Fatal("a bad file replaced the snapshot")
	}

	// Deleted: still the old snapshot, one more error.
	if err := os.Remove(files.Registry); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the missing file counted", func() bool { return testutil.ToFloat64(errs) == 2 })
	time.Sleep(5 * interval)
	if w.Current() != good || testutil.ToFloat64(errs) != 2 {
		t.Fatal("a missing file replaced the snapshot or was counted again")
	}

	// Fixed.
	write(t, files.Registry, agents("a", "b"))
	eventually(t, "the fixed file", func() bool { return w.Current().Registry.Len() == 2 })
}

func TestWatcherNoFiles(t *testing.T) {
	w, err := NewWatcher(Files{}, 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := w.Current()
	if s == nil || s.Registry == nil || s.Routes == nil || s.Registry.Enabled() || s.Routes.Enabled() {
		t.Fatalf("snapshot without files: %+v", s)
	}
	if a, known := s.Registry.Approved("x", "/a"); a || known {
		t.Error("empty registry approves or knows")
	}
	start(t, w)
}

func TestWatcherStartErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	write(t, bad, "routes:\n  - template: nope\n")
	fail := func(files Files, want ...string) {
		t.Helper()
		_, err := NewWatcher(files, interval, nil, prometheus.NewRegistry())
		if err == nil {
			t.Fatalf("NewWatcher(%+v) = nil error", files)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("NewWatcher(%+v) = %v; want it to contain %q", files, err, w)
			}
		}
	}
	missing := filepath.Join(dir, "missing.yaml")
	fail(Files{Registry: missing}, "load registry file (detector.registry_file): open "+missing)
	fail(Files{Routes: bad}, "load routes file (detector.routes_file): "+bad+":2: routes[0]", "field template")
	fail(Files{OpenAPI: bad}, "load openapi file (detector.openapi_file): "+bad+": parse openapi document: no paths")
	fail(Files{Registry: dir}, "is a directory")
	// All problems at once.
	fail(Files{Registry: missing, Routes: bad}, "registry file", "routes file")
	_, err := NewWatcher(Files{Registry: missing}, interval, nil, nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file error %v is not os.ErrNotExist", err)
	}
}

func TestWatcherSimFiles(t *testing.T) {
	files := Files{
		Registry: "../../../deploy/sim/registry.yaml",
		Routes:   "../../../deploy/sim/routes.yaml",
		OpenAPI:  "../../../deploy/sim/openapi.yaml",
	}
	w, err := NewWatcher(files, interval, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s := w.Current()
	if s.Registry.Len() == 0 || s.Routes.Len() == 0 {
		t.Fatalf("sim: %d agents, %d routes", s.Registry.Len(), s.Routes.Len())
	}
	r, ok := s.Routes.Lookup("/customers/{customerId}/export")
	if !ok || !r.Sensitive || r.Service != "crm" {
		t.Errorf("sim /customers/{id}/export = %+v, %v; want sensitive, service crm", r, ok)
	}
}

func TestWatcherConcurrentReads(t *testing.T) {
	dir := t.TempDir()
	files := Files{Registry: filepath.Join(dir, "registry.yaml")}
	write(t, files.Registry, agents("a"))
	w, err := NewWatcher(files, time.Millisecond, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, w)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				s := w.Current()
				for _, id := range s.Registry.IDs() {
					if ok, known := s.Registry.Approved(id, "/a"); !ok || !known {
						t.Errorf("%s not approved for /a in a snapshot", id)
						return
					}
				}
			}
		})
	}
	ids := []string{"a"}
	for i := range 5 {
		ids = append(ids, "n"+string(rune('0'+i)))
		replace(t, files.Registry, agents(ids...))
		eventually(t, "reload", func() bool { return w.Current().Registry.Len() == len(ids) })
	}
	cancel()
	wg.Wait()
}
