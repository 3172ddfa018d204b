//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package revoke

// lockFile is a no-op where flock is missing: there, only one process may
// write the files (the in-process mutexes still apply).
func lockFile(string) (func(), error) { return func() {}, nil }
