// Package flock takes advisory file locks, which the responder's stores
// use to keep two processes from writing one file: the service and a
// command run by hand beside it. Where flock is missing the locks are
// no-ops, and the operator must not run two writers.
package flock

import "errors"

// ErrLocked is returned, wrapped, by a Lock that does not wait when another
// process holds the lock.
var ErrLocked = errors.New("locked by another process")

// Lock takes an advisory lock on path (created with mode 0600 if needed):
// exclusive or shared. With wait it blocks until the lock is free; without,
// it fails at once with an error wrapping ErrLocked. unlock releases it; the
// kernel releases it too when the process dies, however it dies.
func Lock(path string, exclusive, wait bool) (unlock func(), err error) {
	return lock(path, exclusive, wait)
}
