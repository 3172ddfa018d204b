package revoke

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// crashLedger stands for a process that dies at a chosen ledger write:
// from the write that fails on, the process is "dead" and writes nothing.
type crashLedger struct {
	*FileLedger
	crashAt func(r Record) bool
	dead    bool
}

var errCrash = errors.New("simulated crash")

func (c *crashLedger) Put(ctx context.Context, r Record) error {
	if c.dead || c.crashAt(r) {
		c.dead = true
		return errCrash
	}
	return c.FileLedger.Put(ctx, r)
}

// TestCrashBetweenActionAndRecord: the DELETE is made but the process dies
// before recording it. After the restart the revocation is neither
// repeated (no second DELETE) nor lost (Restore puts the key back).
func TestCrashBetweenActionAndRecord(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("bot", "cred-1", "the-key")
	b := mustBudget(t, 1, time.Hour, nil)
	crashing := &crashLedger{FileLedger: env.ledger, crashAt: func(r Record) bool { return r.State == StateRevoked }}
	g1, _ := NewGuard(env.kong(t, fk), Options{Ledger: crashing, Budget: b})
	tg := Target{CredentialID: "cred-1", Consumer: "bot", IncidentID: "inc-1"}
	if _, err := g1.Revoke(t.Context(), tg); !errors.Is(err, errCrash) {
		t.Fatalf("Revoke = %v; want the simulated crash", err)
	}
	if n := fk.count(http.MethodDelete); n != 1 {
		t.Fatalf("%d DELETEs before the crash; want 1", n)
	}

	// Restart: a fresh ledger handle on the same file, a fresh budget
	// seeded from it (the crashed revocation spent the only unit).
	l2, err := OpenFileLedgerWith(env.ledger.Path(), LedgerOptions{Key: testLedgerKey})
	if err != nil {
		t.Fatal(err)
	}
	b2 := mustBudget(t, 1, time.Hour, nil)
	if err := b2.SeedFrom(t.Context(), l2); err != nil {
		t.Fatal(err)
	}
	if b2.Remaining() != 0 {
		t.Fatalf("Remaining after restart = %d; want 0", b2.Remaining())
	}
	g2, _ := NewGuard(env.kong(t, fk), Options{Ledger: l2, Budget: b2})
	// The anomaly is redelivered: the pending revocation is resumed
	// without budget, found done, and recorded as this incident's.
	res, err := g2.Revoke(t.Context(), tg)
	if err != nil || res.Status != StatusRevoked {
		t.Fatalf("Revoke after restart = %+v, %v; want revoked (finished)", res, err)
	}
	if n := fk.count(http.MethodDelete); n != 1 {
		t.Fatalf("%d DELETEs after restart; want still 1", n)
	}
	if res, err := g2.Revoke(t.Context(), tg); err != nil || res.Status != StatusAlreadyRevoked {
		t.Fatalf("third Revoke = %+v, %v; want already_revoked", res, err)
	}
	res, err = g2.Restore(t.Context(), tg)
	if c, _ := fk.has("cred-1"); err != nil || res.Status != StatusRestored || c.Key != "the-key" {
		t.Fatalf("Restore = %+v, %v, kong has %+v; want restored with the-key", res, err, c)
	}
}

// TestCrashBeforeAction: the process dies after keeping the credential
// but before the DELETE. After the restart the DELETE is made once.
func TestCrashBeforeAction(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("bot", "cred-1", "the-key")
	crashing := &crashLedger{FileLedger: env.ledger, crashAt: func(r Record) bool { return r.Saved != nil }}
	g1, _ := NewGuard(env.kong(t, fk), Options{Ledger: crashing})
	tg := manual("cred-1", "bot", "inc-1")
	if _, err := g1.Revoke(t.Context(), tg); !errors.Is(err, errCrash) {
		t.Fatalf("Revoke = %v; want the simulated crash", err)
	}
	if n := fk.count(http.MethodDelete); n != 0 {
		t.Fatalf("%d DELETEs; want 0 (keep failed, so no delete)", n)
	}
	l2, _ := OpenFileLedgerWith(env.ledger.Path(), LedgerOptions{Key: testLedgerKey})
	g2, _ := NewGuard(env.kong(t, fk), Options{Ledger: l2})
	if res, err := g2.Revoke(t.Context(), tg); err != nil || res.Status != StatusRevoked {
		t.Fatalf("Revoke after restart = %+v, %v", res, err)
	}
	if n := fk.count(http.MethodDelete); n != 1 {
		t.Fatalf("%d DELETEs; want 1", n)
	}
}

// TestConcurrentSameKey: many goroutines revoke one credential in one
// incident; exactly one DELETE is made.
func TestConcurrentSameKey(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("bot", "cred-1", "k")
	g := env.guard(t, env.kong(t, fk), mustBudget(t, 100, time.Hour, nil), nil)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[Status]int{}
	for range 20 {
		wg.Go(func() {
			res, err := g.Revoke(t.Context(), Target{CredentialID: "cred-1", Consumer: "bot", IncidentID: "inc-1"})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			statuses[res.Status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if statuses[StatusRevoked] != 1 || statuses[StatusAlreadyRevoked] != 19 || fk.count(http.MethodDelete) != 1 {
		t.Fatalf("statuses %v, %d DELETEs; want 1 revoked, 19 already_revoked, 1 DELETE", statuses, fk.count(http.MethodDelete))
	}
}

func TestTwoAdaptersOneIncident(t *testing.T) {
	env := newEnv(t)
	fk := newFakeKong(t)
	fk.add("bot", "cred-1", "k")
	d, _ := newDenylist(t, DenylistLines)
	kong := env.guard(t, env.kong(t, fk), nil, nil)
	deny := env.guard(t, d, nil, nil)
	tg := manual("cred-1", "bot", "inc-1")
	for _, g := range []*Guard{kong, deny} {
		if res, err := g.Revoke(t.Context(), tg); err != nil || res.Status != StatusRevoked {
			t.Fatalf("%s Revoke = %+v, %v; want revoked (the key includes the adapter)", g.Adapter(), res, err)
		}
	}
}

func TestRestoreWithoutRevocation(t *testing.T) {
	env := newEnv(t)
	d, _ := newDenylist(t, DenylistLines)
	g := env.guard(t, d, nil, nil)
	if _, err := g.Restore(t.Context(), manual("never", "", "inc-1")); !errors.Is(err, ErrNoRevocation) {
		t.Fatalf("Restore of an unknown revocation = %v; want ErrNoRevocation", err)
	}
}

func TestTargetValidation(t *testing.T) {
	env := newEnv(t)
	d, _ := newDenylist(t, DenylistJSON)
	g := env.guard(t, d, nil, nil)
	long := string(make([]byte, maxField+1))
	for _, tg := range []Target{
		{IncidentID: "i", Origin: Manual},
		{CredentialID: "c", Origin: Manual},
		{CredentialID: "c", IncidentID: "i", Origin: "robot"},
		{CredentialID: long, IncidentID: "i", Origin: Manual},
		{CredentialID: ".", IncidentID: "i", Origin: Manual},
	} {
		if _, err := g.Revoke(t.Context(), tg); err == nil {
			t.Errorf("Revoke(%+v) = nil error; want invalid target", tg)
		}
	}
}

func TestFileLedgerSurvivesTornWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	l, err := OpenFileLedgerWith(path, LedgerOptions{Key: testLedgerKey})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	k1 := Key{"kong", "a", "i"}
	if err := l.Put(ctx, Record{Key: k1, State: StateRevoked, Status: StatusRevoked, Saved: []byte(`{"key":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	// A crash cut the next write short.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	fmt.Fprint(f, `{"adapter":"kong","credential_id":"b","inc`)
	f.Close()

	l2, err := OpenFileLedgerWith(path, LedgerOptions{Key: testLedgerKey})
	if err != nil {
		t.Fatalf("reopen with a torn last line: %v", err)
	}
	if r, ok, _ := l2.Get(ctx, k1); !ok || string(r.Saved) != `{"key":"x"}` {
		t.Fatalf("Get(k1) = %+v, %v", r, ok)
	}
	k2 := Key{"kong", "b", "i"}
	if err := l2.Put(ctx, Record{Key: k2, State: StatePending}); err != nil {
		t.Fatal(err)
	}
	// The first handle reads what the second appended.
	if r, ok, err := l.Get(ctx, k2); err != nil || !ok || r.State != StatePending {
		t.Fatalf("other handle Get(k2) = %+v, %v, %v; want the appended record", r, ok, err)
	}
	l3, err := OpenFileLedgerWith(path, LedgerOptions{Key: testLedgerKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := l3.Get(ctx, k2); !ok {
		t.Fatal("record lost after reopen")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("ledger mode %v; want 0600 (it holds kept credentials)", fi.Mode().Perm())
	}
}

func TestRetryable(t *testing.T) {
	ok := func(err error, want bool) {
		t.Helper()
		if got := Retryable(err); got != want {
			t.Errorf("Retryable(%v) = %v; want %v", err, got, want)
		}
	}
	ok(nil, false)
	ok(&ApprovalError{Reason: ReasonBudget}, false)
	ok(fmt.Errorf("x: %w", ErrKillSwitch), false)
	ok(fmt.Errorf("x: %w", &EgressError{Reason: "redirect"}), false)
	ok(fmt.Errorf("x: %w", &StatusError{Code: 403}), false)
	ok(fmt.Errorf("x: %w", &StatusError{Code: 503}), true)
	ok(fmt.Errorf("x: %w", permanent(errors.New("no restore"))), false)
	ok(Target{}.validate(), false)
	ok(context.Canceled, false)
	ok(errors.New("connection refused"), true)
}
