package revoke

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/prometheus/client_golang/prometheus"
)

// fastRetry keeps retry tests quick.
var fastRetry = Retry{Attempts: 4, Base: time.Millisecond, Max: 2 * time.Millisecond, AttemptTimeout: 2 * time.Second}

// fakeKong is a Kong Admin API for key-auth credentials that records the
// requests it gets.
type fakeKong struct {
	srv *httptest.Server

	mu    sync.Mutex
	creds map[string]kongCredential // by id
	owner map[string]string         // credential id → consumer
	reqs  []string                  // "METHOD escaped-path"
	// deleteCodes are answered to the next DELETEs, in order, instead of
	// acting.
	deleteCodes []int
	// getCodes are answered to the next GETs, in order, instead of
	// reading.
	getCodes []int
	tokens   []string
}

func newFakeKong(t *testing.T) *fakeKong {
	t.Helper()
	fk := &fakeKong{creds: make(map[string]kongCredential), owner: make(map[string]string)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /consumers/{c}/key-auth/{id}", fk.get)
	mux.HandleFunc("DELETE /consumers/{c}/key-auth/{id}", fk.delete)
	mux.HandleFunc("PUT /consumers/{c}/key-auth/{id}", fk.put)
	mux.HandleFunc("GET /key-auths/{id}", fk.get)
	mux.HandleFunc("DELETE /key-auths/{id}", fk.delete)
	mux.HandleFunc("PUT /key-auths/{id}", fk.put)
	fk.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fk.mu.Lock()
		fk.reqs = append(fk.reqs, r.Method+" "+r.URL.EscapedPath())
		fk.tokens = append(fk.tokens, r.Header.Get("Kong-Admin-Token"))
		fk.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(fk.srv.Close)
	return fk
}

func (fk *fakeKong) addr() string { return fk.srv.Listener.Addr().String() }

func (fk *fakeKong) add(consumer, id, key string, tags ...string) {
	fk.mu.Lock()
	defer fk.mu.Unlock()
	fk.creds[id] = kongCredential{ID: id, Key: key, Tags: tags, Consumer: &kongConsumer{ID: "uuid-" + consumer}}
	fk.owner[id] = consumer
}

func (fk *fakeKong) has(id string) (kongCredential, bool) {
	fk.mu.Lock()
	defer fk.mu.Unlock()
	c, ok := fk.creds[id]
	return c, ok
}

// count returns how many requests had the method.
func (fk *fakeKong) count(method string) int {
	fk.mu.Lock()
	defer fk.mu.Unlock()
	n := 0
	for _, r := range fk.reqs {
		if len(r) > len(method) && r[:len(method)+1] == method+" " {
			n++
		}
	}
	return n
}

func (fk *fakeKong) requests() []string {
	fk.mu.Lock()
	defer fk.mu.Unlock()
	return append([]string(nil), fk.reqs...)
}

// lookup finds the credential of the request, honouring the consumer in
// the path as Kong does.
func (fk *fakeKong) lookup(r *http.Request) (kongCredential, bool) {
	id := r.PathValue("id")
	c, ok := fk.creds[id]
	if !ok {
		return c, false
	}
	if cons := r.PathValue("c"); cons != "" && cons != fk.owner[id] {
		return c, false
	}
	return c, true
}

func (fk *fakeKong) get(w http.ResponseWriter, r *http.Request) {
	fk.mu.Lock()
	if len(fk.getCodes) > 0 {
		code := fk.getCodes[0]
		fk.getCodes = fk.getCodes[1:]
		fk.mu.Unlock()
		w.WriteHeader(code)
		return
	}
	c, ok := fk.lookup(r)
	fk.mu.Unlock()
	if !ok {
		http.Error(w, `{"message":"Not found"}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"id": c.ID, "key": c.Key, "tags": c.Tags, "consumer": c.Consumer, "created_at": 1700000000})
}

func (fk *fakeKong) delete(w http.ResponseWriter, r *http.Request) {
	fk.mu.Lock()
	defer fk.mu.Unlock()
	if len(fk.deleteCodes) > 0 {
		code := fk.deleteCodes[0]
		fk.deleteCodes = fk.deleteCodes[1:]
		w.WriteHeader(code)
		return
	}
	c, ok := fk.lookup(r)
	if !ok {
		w.WriteHeader(http.StatusNoContent) // Kong answers 204 for a missing credential too
		return
	}
	delete(fk.creds, c.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (fk *fakeKong) put(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Key      string        `json:"key"`
		Tags     []string      `json:"tags"`
		Consumer *kongConsumer `json:"consumer"`
	}
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &body); err != nil || body.Key == "" {
		http.Error(w, `{"message":"schema violation"}`, http.StatusBadRequest)
		return
	}
	fk.mu.Lock()
	defer fk.mu.Unlock()
	id := r.PathValue("id")
	cons := r.PathValue("c")
	if cons == "" && body.Consumer != nil {
		cons = body.Consumer.ID[len("uuid-"):]
	}
	fk.creds[id] = kongCredential{ID: id, Key: body.Key, Tags: body.Tags, Consumer: &kongConsumer{ID: "uuid-" + cons}}
	fk.owner[id] = cons
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// canary is a listener that must never be connected to.
type canary struct {
	ln    net.Listener
	conns atomic.Int32
	seen  chan struct{}
}

func newCanary(t *testing.T) *canary {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &canary{ln: ln, seen: make(chan struct{}, 1024)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			c.conns.Add(1)
			c.seen <- struct{}{}
			conn.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return c
}

func (c *canary) addr() string { return c.ln.Addr().String() }

func (c *canary) port() string {
	_, p, _ := net.SplitHostPort(c.addr())
	return p
}

// assertUntouched connects once itself and checks that this is the only
// connection the canary ever accepted: accept order is FIFO, so any
// earlier connection would have been counted first.
func (c *canary) assertUntouched(t *testing.T) {
	t.Helper()
	conn, err := net.Dial("tcp", c.addr())
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	select {
	case <-c.seen:
	case <-time.After(5 * time.Second):
		t.Fatal("canary did not see its own probe")
	}
	if n := c.conns.Load(); n != 1 {
		t.Fatalf("canary accepted %d connections; want none but the probe", n-1)
	}
	c.conns.Store(0)
}

// testLedgerKey encrypts the test ledgers' restore material.
var testLedgerKey = func() *age.X25519Identity {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		panic(err)
	}
	return id
}()

type testEnv struct {
	reg    *prometheus.Registry
	m      *Metrics
	ledger *FileLedger
	dir    string
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	l, err := OpenFileLedgerWith(filepath.Join(dir, "ledger.jsonl"), LedgerOptions{Key: testLedgerKey})
	if err != nil {
		t.Fatal(err)
	}
	return &testEnv{reg: reg, m: NewMetrics(reg), ledger: l, dir: dir}
}

func (e *testEnv) egress(t *testing.T, allow ...string) *Egress {
	t.Helper()
	eg, err := NewEgress(EgressOptions{Allow: allow, Metrics: e.m})
	if err != nil {
		t.Fatal(err)
	}
	return eg
}

func (e *testEnv) kong(t *testing.T, fk *fakeKong) *Kong {
	t.Helper()
	k, err := NewKong(KongOptions{AdminURL: fk.srv.URL, Token: "s3cret", Egress: e.egress(t, fk.addr()), Retry: fastRetry, Metrics: e.m})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (e *testEnv) guard(t *testing.T, gw Gateway, b *Budget, kill KillSwitch) *Guard {
	t.Helper()
	g, err := NewGuard(gw, Options{Ledger: e.ledger, Budget: b, Kill: kill, Metrics: e.m})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func mustBudget(t *testing.T, n int, every time.Duration, now func() time.Time) *Budget {
	t.Helper()
	b, err := NewBudget(n, every, now)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
