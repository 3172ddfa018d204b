//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package outbox

// lockFile is a no-op where flock is missing: there, nothing stops two
// processes from opening one outbox file, and the operator must not.
func lockFile(string) (func(), error) { return func() {}, nil }
