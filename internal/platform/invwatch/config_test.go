package invwatch

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/internal/platform/config"
)

func TestFromConfig(t *testing.T) {
	dir := t.TempDir()
	reg := filepath.Join(dir, "agents.yaml")
	write(t, reg, agents("a", "b", "c"))

	var cfg config.Config
	cfg.Detector.RegistryFile = reg
	w, err := FromConfig(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := w.Current().Registry.Len(); n != 3 {
		t.Fatalf("registry of detector.registry_file has %d agents; want 3", n)
	}

	cfg.Detector.RoutesFile = filepath.Join(dir, "missing.yaml")
	_, err = FromConfig(cfg, nil, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "detector registry/routes: load routes file (detector.routes_file): ") {
		t.Fatalf("FromConfig with a missing routes file: %v", err)
	}
}
