//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package audit

// lockFile is a no-op where flock is missing: there, only one process may
// write the file (the in-process mutex still applies).
func lockFile(string, bool) (func(), error) { return func() {}, nil }
