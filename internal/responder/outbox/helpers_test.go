package outbox

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// openT opens a FileStore at path and closes it at the end of the test.
func openT(t *testing.T, path string, opts FileOptions) *FileStore {
	t.Helper()
	s, err := OpenFile(path, opts)
	if err != nil {
		t.Fatalf("OpenFile: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// tempStore opens a FileStore in a new temporary directory and returns it
// with its path.
func tempStore(t *testing.T, opts FileOptions) (*FileStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outbox.jsonl")
	return openT(t, path, opts), path
}

func enqueue(t testing.TB, s Store, key, kind string, opts ...EnqueueOption) Entry {
	t.Helper()
	e, created, err := s.Enqueue(t.Context(), key, kind, []byte("payload of "+key), opts...)
	if err != nil || !created {
		t.Fatalf("Enqueue(%q) = %v, %v; want a new entry", key, created, err)
	}
	return e
}

func get(t *testing.T, s Store, key string) Entry {
	t.Helper()
	e, found, err := s.Get(t.Context(), key)
	if err != nil || !found {
		t.Fatalf("Get(%q) = %v, %v; want the entry", key, found, err)
	}
	return e
}

// startWorker runs w until the returned stop is called; stop fails the test
// if Run returned an error.
func startWorker(t *testing.T, w *Worker) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Worker.Run: %v", err)
		}
	}
}

// calls records handler calls: the entry as handed over and when.
type calls struct {
	mu  sync.Mutex
	got []call1
}

type call1 struct {
	key       string
	at        time.Time
	recovered bool
	attempts  int
}

func (c *calls) add(e Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, call1{key: e.Key, at: time.Now(), recovered: e.Recovered, attempts: e.Attempts})
}

// of returns the calls of key.
func (c *calls) of(key string) []call1 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []call1
	for _, g := range c.got {
		if g.key == key {
			out = append(out, g)
		}
	}
	return out
}

// keys returns the keys called, in call order.
func (c *calls) keys() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, g := range c.got {
		out = append(out, g.key)
	}
	return out
}

// logBuf is a logger writing text lines into a buffer.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuf) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }
