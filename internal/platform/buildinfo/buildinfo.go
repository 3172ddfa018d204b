// Package buildinfo holds the version and commit a binary was built from.
// Release builds stamp them with the linker (make build, make image, the
// Dockerfile):
//
//	go build -ldflags "-X github.com/agentwatch/agentwatch/internal/platform/buildinfo.version=v1.2.3 \
//	  -X github.com/agentwatch/agentwatch/internal/platform/buildinfo.commit=$(git rev-parse HEAD)"
//
// A plain `go build` or `go run` leaves them unstamped; then the module
// version and VCS revision the Go toolchain recorded are used, if any.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by -ldflags -X; strings because the linker can only set strings.
var (
	version string
	commit  string
)

// Package is the import path the -X flags name.
const Package = "github.com/agentwatch/agentwatch/internal/platform/buildinfo"

// Info is what a binary knows about its build. It is a plain value, safe
// to copy and share.
type Info struct {
	Version   string // a release tag, a git describe, or "dev"
	Commit    string // full commit hash, or "unknown"
	GoVersion string
}

// Get returns the build's Info: the stamped values first, then what the
// toolchain recorded, then "dev" and "unknown".
func Get() Info {
	info := Info{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && info.Commit == "" {
				info.Commit = s.Value
			}
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// Line is the one line `X version` prints: "NAME VERSION (commit C, GO)".
func (i Info) Line(name string) string {
	return fmt.Sprintf("%s %s (commit %s, %s)", name, i.Version, i.Commit, i.GoVersion)
}

// LDFlags returns the -ldflags value that stamps version and commit, as
// make build, the image builder and the Dockerfile pass it. -s -w drop the
// symbol table and DWARF: the release binaries are a third smaller and
// panics still print their stack traces.
func LDFlags(version, commit string) string {
	return fmt.Sprintf("-s -w -X %s.version=%s -X %s.commit=%s", Package, version, Package, commit)
}
