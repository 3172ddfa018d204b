package kstate

import (
	"strings"
	"sync"
)

// Mux hands each record of a Table to the handler registered for the
// longest prefix of its key, so one table can carry the state of several
// parts of a service (silences under "s/", budget claims under "b/").
// Register every handler before OpenTable: the restore applies the whole
// table at once. Records with no handler are counted and dropped, so a
// newer version's records do not stop an older one.
type Mux struct {
	mu        sync.Mutex
	prefixes  []string
	handlers  map[string]func(Record)
	unhandled int64
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{handlers: make(map[string]func(Record))} }

// Handle registers fn for keys starting with prefix. A second handler for
// one prefix panics: that is a programming error.
func (m *Mux) Handle(prefix string, fn func(Record)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.handlers[prefix]; dup {
		panic("kstate: two handlers for prefix " + prefix)
	}
	m.handlers[prefix] = fn
	m.prefixes = append(m.prefixes, prefix)
}

// Apply is the Table's apply function.
func (m *Mux) Apply(r Record) {
	m.mu.Lock()
	best := ""
	for _, p := range m.prefixes {
		if strings.HasPrefix(r.Key, p) && len(p) >= len(best) {
			best = p
		}
	}
	fn, ok := m.handlers[best]
	if !ok {
		m.unhandled++
	}
	m.mu.Unlock()
	if ok {
		fn(r)
	}
}

// Unhandled returns how many records had no handler.
func (m *Mux) Unhandled() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unhandled
}
