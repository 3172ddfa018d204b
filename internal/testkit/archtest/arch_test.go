package archtest

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/agentwatch/agentwatch/"

// allowed lists, per group (a path prefix), the groups its production code
// may import. The first matching group wins, so nested groups come first.
var allowed = []struct {
	group string
	may   []string
}{
	{"pkg/", []string{"pkg/"}},
	// The one adapter for ClickHouse implements the stores these packages
	// declare, so it imports their record types; they never import it back.
	{"internal/platform/chstore", []string{"internal/platform/", "pkg/",
		"internal/detector/detstate", "internal/responder/audit", "internal/responder/evidence", "internal/responder/outbox"}},
	{"internal/platform/", []string{"internal/platform/", "pkg/", "deploy/"}},
	{"internal/ingest", []string{"internal/ingest", "internal/platform/", "pkg/"}},
	{"internal/detector/", []string{"internal/detector/", "internal/platform/", "pkg/"}},
	// The responder's API asks the visibility questions; the visibility
	// packages read the responder's audit records and the detector's
	// anomalies, and never import a service back.
	{"internal/responder/", []string{"internal/responder/", "internal/platform/", "pkg/", "deploy/", "internal/visibility"}},
	{"internal/visibility", []string{"internal/visibility", "internal/platform/", "pkg/", "internal/responder/audit", "internal/detector/detstate"}},
	{"internal/testkit/", []string{"internal/testkit/", "internal/platform/", "pkg/"}},
	{"internal/tools/", []string{"internal/", "pkg/", "deploy/"}},
	{"deploy/", nil},
	{"cmd/", []string{"internal/", "pkg/", "deploy/"}},
}

// notLinked lists packages a binary must not link: a service's binary
// carries only its own service.
var notLinked = map[string][]string{
	"cmd/responder": {"internal/detector/detect", "internal/ingest"},
	"cmd/ingest":    {"internal/detector/detect", "internal/responder/respond"},
}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func TestImportDirections(t *testing.T) {
	lines := goList(t, "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	if len(lines) < 40 {
		t.Fatalf("go list found %d packages; want the whole module", len(lines))
	}
	for _, line := range lines {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		rule := -1
		for i, a := range allowed {
			if strings.HasPrefix(pkg, a.group) {
				rule = i
				break
			}
		}
		if rule < 0 {
			t.Errorf("%s belongs to no group of docs/architecture.md; add it to a group (and to this test)", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			dep, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			if !slices.ContainsFunc(allowed[rule].may, func(p string) bool { return strings.HasPrefix(dep, p) }) {
				t.Errorf("%s imports %s: %s may import only %v (docs/architecture.md)", pkg, dep, allowed[rule].group, allowed[rule].may)
			}
		}
	}
}

func TestBinariesLinkOnlyTheirService(t *testing.T) {
	for bin, banned := range notLinked {
		deps := goList(t, "-deps", "./"+bin)
		for _, d := range deps {
			for _, b := range banned {
				if d == module+b {
					t.Errorf("%s links %s", bin, b)
				}
			}
		}
	}
}

func TestPackageNamesAreUnique(t *testing.T) {
	seen := map[string]string{}
	for _, line := range goList(t, "-f", "{{.Name}} {{.ImportPath}}", "./...") {
		name, path, _ := strings.Cut(line, " ")
		if name == "main" {
			continue
		}
		if other, ok := seen[name]; ok {
			t.Errorf("package name %s is used by both %s and %s", name, other, path)
		}
		seen[name] = path
	}
}
