package doccheck

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/agentwatch/agentwatch/internal/platform/config"
)

// TestExampleConfig keeps deploy/agentwatch.example.yaml, the file the
// README's quick start runs every service with, loadable: a renamed or
// removed key fails here, not in a newcomer's terminal. The environment is
// left out so that a developer's AGENTWATCH_* variables cannot mask it.
func TestExampleConfig(t *testing.T) {
	root := moduleRoot(t)
	path := filepath.Join(root, "deploy", "agentwatch.example.yaml")
	cfg, err := config.LoadEnv(path, nil, nil)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	if !cfg.Distributed() {
		t.Errorf("%s: kafka.brokers is empty; the quick start runs the distributed services", path)
	}
	// Relative paths are relative to the repository root, where the
	// quick start runs.
	for key, f := range map[string]string{"detector.registry_file": cfg.Detector.RegistryFile, "detector.routes_file": cfg.Detector.RoutesFile} {
		if f == "" {
			t.Errorf("%s: %s is empty; the quick start's rules need it", path, key)
			continue
		}
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("%s: %s: %v", path, key, err)
		}
	}
}
