package outbox

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
)

// gateway is the outside world of a revocation: it knows which credentials
// are revoked and counts the DELETEs it got.
type gateway struct {
	mu      sync.Mutex
	revoked map[string]bool
	deletes int
}

// revokeHandler revokes the credential named by the payload, looking first
// when the entry is recovered, as the responder's handlers must.
func (g *gateway) revokeHandler(c *calls) Handler {
	return func(_ context.Context, e Entry) ([]byte, error) {
		c.add(e)
		g.mu.Lock()
		defer g.mu.Unlock()
		cred := string(e.Payload)
		if e.Recovered && g.revoked[cred] { // GET before DELETE
			return []byte("already_revoked"), nil
		}
		g.deletes++
		g.revoked[cred] = true
		return []byte("revoked"), nil
	}
}

// TestCrashBetweenActionAndRecord is the SIGKILL between "action done" and
// "recorded", in process: after the restart the action is not repeated,
// and an entry the crash kept from running is not lost.
func TestCrashBetweenActionAndRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, path := tempStore(t, FileOptions{})
		ctx := t.Context()
		g := &gateway{revoked: make(map[string]bool)}
		c := &calls{}
		if _, _, err := s.Enqueue(ctx, "d1-0", "revoke", []byte("cred-1")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Enqueue(ctx, "d1-1", "revoke", []byte("cred-2")); err != nil {
			t.Fatal(err)
		}
		res, err := RunOnceThenCrash(ctx, s, "d1-0", g.revokeHandler(c))
		if err != nil || string(res) != "revoked" || g.deletes != 1 {
			t.Fatalf("the run before the crash = %q, %v with %d DELETEs; want it to revoke", res, err, g.deletes)
		}
		s.Close() // the crash: nothing more reaches the file

		s = openT(t, path, FileOptions{})
		if e := get(t, s, "d1-0"); e.State != StateInFlight || e.Attempts != 1 {
			t.Fatalf("after the crash d1-0 = %+v; want in flight", e)
		}
		stop := startWorker(t, &Worker{Store: s, Kinds: map[string]Kind{"revoke": {Handler: g.revokeHandler(c)}}})
		synctest.Wait()
		stop()

		got := c.of("d1-0")
		if len(got) != 2 || got[0].recovered || !got[1].recovered {
			t.Fatalf("d1-0 calls %+v; want a second, recovered", got)
		}
		if g.deletes != 2 || !g.revoked["cred-2"] {
			t.Fatalf("%d DELETEs, revoked %v; want one per credential", g.deletes, g.revoked)
		}
		for key, want := range map[string]string{"d1-0": "already_revoked", "d1-1": "revoked"} {
			if e := get(t, s, key); e.State != StateDone || string(e.Result) != want {
				t.Fatalf("%s = %+v; want done with %s", key, e, want)
			}
		}
	})
}

// TestCrashBeforeAction: the crash came after the entry was marked in
// flight but before the handler acted. The recovered run finds nothing
// done and acts: nothing is lost.
func TestCrashBeforeAction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, path := tempStore(t, FileOptions{})
		g := &gateway{revoked: make(map[string]bool)}
		c := &calls{}
		enqueue(t, s, "d1-0", "revoke")
		if _, err := RunOnceThenCrash(t.Context(), s, "d1-0", func(context.Context, Entry) ([]byte, error) { return nil, nil }); err != nil {
			t.Fatal(err)
		}
		s.Close()
		s = openT(t, path, FileOptions{})
		stop := startWorker(t, &Worker{Store: s, Kinds: map[string]Kind{"revoke": {Handler: g.revokeHandler(c)}}})
		synctest.Wait()
		stop()
		if got := c.of("d1-0"); len(got) != 1 || !got[0].recovered || g.deletes != 1 {
			t.Fatalf("calls %+v, %d DELETEs; want one recovered run that revokes", got, g.deletes)
		}
	})
}

// TestCrashLoopIsParked: an entry whose every run is cut short is parked
// after MaxAttempts runs instead of crash-looping the responder, and not
// handed to the handler again.
func TestCrashLoopIsParked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, path := tempStore(t, FileOptions{})
		enqueue(t, s, "poison", "k")
		for range 3 {
			if _, err := RunOnceThenCrash(t.Context(), s, "poison", func(context.Context, Entry) ([]byte, error) { return nil, nil }); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s = openT(t, path, FileOptions{})
		}
		c := &calls{}
		stop := startWorker(t, &Worker{Store: s, Backoff: Backoff{MaxAttempts: 3}, Kinds: map[string]Kind{"k": {Handler: ok(c)}}})
		synctest.Wait()
		stop()
		e := get(t, s, "poison")
		if e.State != StateParked || len(c.keys()) != 0 || !strings.Contains(e.LastError, "cut short") {
			t.Fatalf("poison = %+v after %d calls; want parked without a call", e, len(c.keys()))
		}
	})
}

// TestStopLeavesFailedRunInFlight: a handler cancelled by the Worker's
// stop is not counted as done or failed; the next Run resumes it,
// Recovered. One that finished is recorded done.
func TestStopLeavesFailedRunInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := tempStore(t, FileOptions{})
		c := &calls{}
		h := func(ctx context.Context, e Entry) ([]byte, error) {
			c.add(e)
			if e.Key == "slow" && !e.Recovered {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return nil, nil
		}
		w := &Worker{Store: s, Kinds: map[string]Kind{"k": {Handler: h}, "k2": {Handler: h}}}
		stop := startWorker(t, w)
		enqueue(t, s, "slow", "k")
		synctest.Wait()
		stop()
		if e := get(t, s, "slow"); e.State != StateInFlight {
			t.Fatalf("slow = %+v after stop; want in flight", e)
		}
		stop = startWorker(t, w)
		synctest.Wait()
		stop()
		got := c.of("slow")
		if len(got) != 2 || !got[1].recovered {
			t.Fatalf("slow calls %+v; want a second, recovered", got)
		}
		if e := get(t, s, "slow"); e.State != StateDone {
			t.Fatalf("slow = %+v; want done", e)
		}
	})
}

func TestRunOnceThenCrashRefusesClosedEntries(t *testing.T) {
	s, _ := tempStore(t, FileOptions{})
	if _, err := RunOnceThenCrash(t.Context(), s, "missing", nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RunOnceThenCrash(missing) = %v; want ErrNotFound", err)
	}
	e := enqueue(t, s, "a", "k")
	e.State, e.Attempts = StateDone, 1
	s.Update(t.Context(), e)
	if _, err := RunOnceThenCrash(t.Context(), s, "a", nil); err == nil {
		t.Fatal("RunOnceThenCrash of a done entry = nil error")
	}
}
