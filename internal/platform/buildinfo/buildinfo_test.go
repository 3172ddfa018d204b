package buildinfo

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestGetDefaults(t *testing.T) {
	// The test binary is not stamped, and go test records no VCS revision.
	got := Get()
	if got.Version == "" || got.Commit == "" {
		t.Fatalf("Get() = %+v; want non-empty version and commit", got)
	}
	if got.GoVersion != runtime.Version() {
		t.Fatalf("GoVersion = %q; want %q", got.GoVersion, runtime.Version())
	}
}

func TestLine(t *testing.T) {
	i := Info{Version: "v1.2.3", Commit: "abc", GoVersion: "go1.26.8"}
	if got, want := i.Line("ingest"), "ingest v1.2.3 (commit abc, go1.26.8)"; got != want {
		t.Fatalf("Line = %q; want %q", got, want)
	}
}

// TestLDFlagsStamp builds a service binary with LDFlags and checks that
// its version command prints both values: a renamed variable or package
// would make -X a silent no-op.
func TestLDFlagsStamp(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ingest")
	build := exec.Command("go", "build", "-ldflags", LDFlags("v9.8.7-test", "0123456789abcdef"), "-o", bin, "./cmd/ingest")
	build.Dir = filepath.Join("..", "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("ingest version: %v", err)
	}
	if got, want := strings.TrimSpace(string(out)), "ingest v9.8.7-test (commit 0123456789abcdef, "+runtime.Version()+")"; got != want {
		t.Fatalf("stamped binary prints %q; want %q", got, want)
	}
}
