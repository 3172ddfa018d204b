// Package keylock holds one mutex per key, for work that must run one at a
// time per key (an incident, a credential) and in parallel across keys.
package keylock

import "sync"

// Map is a set of mutexes by key, each created on first use and dropped
// once nobody holds or waits for it, so the map holds only the keys in use.
// The zero value is ready to use; it must not be copied after first use.
type Map[K comparable] struct {
	mu sync.Mutex
	m  map[K]*entry
}

type entry struct {
	mu   sync.Mutex
	refs int // holders and waiters
}

// Lock locks the mutex of k and returns its unlock, which must be called
// exactly once.
func (l *Map[K]) Lock(k K) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[K]*entry)
	}
	e := l.m[k]
	if e == nil {
		e = &entry{}
		l.m[k] = e
	}
	e.refs++
	l.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, k)
		}
		l.mu.Unlock()
	}
}

// Len returns how many keys are held or waited for.
func (l *Map[K]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
