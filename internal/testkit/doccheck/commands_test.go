package doccheck

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestDocCommands runs the cheap blocks of the docs, those marked
// <!-- tested: TestDocCommands -->: commands that need no Kafka, ClickHouse
// or network (help, the config reference, the simulator). The four
// binaries are built once into a temporary directory at the front of PATH,
// so the blocks call them by name as an operator would.
func TestDocCommands(t *testing.T) {
	root := moduleRoot(t)
	bin := buildCommands(t, root, "./cmd/ingest", "./cmd/detector", "./cmd/responder", "./cmd/agentwatch")
	out := Run(t, root, 2*time.Minute,
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		// The blocks must not depend on the developer's configuration.
		"AGENTWATCH_CONFIG_FILE=")
	t.Logf("output:\n%s", out)
}

// buildCommands builds the packages pkgs of the module at root into a
// temporary directory and returns it, for the front of the blocks' PATH.
func buildCommands(t *testing.T, root string, pkgs ...string) string {
	t.Helper()
	bin := t.TempDir()
	build := exec.Command("go", append([]string{"build", "-o", bin + string(filepath.Separator)}, pkgs...)...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}
