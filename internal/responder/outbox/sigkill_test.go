//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package outbox

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// act appends key to the actions file, durably: the outside world.
func act(t *testing.T, actions, key string) {
	f, err := os.OpenFile(actions, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(key + "\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestSIGKILLBetweenActionAndRecord kills a real process with SIGKILL
// right after its handler acted and before the outcome was recorded. After
// the restart the action is not repeated, and the entry the kill kept from
// running is done: nothing repeated, nothing lost.
func TestSIGKILLBetweenActionAndRecord(t *testing.T) {
	if dir := os.Getenv("OUTBOX_SIGKILL_CHILD"); dir != "" {
		sigkillChild(t, dir)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILLBetweenActionAndRecord$", "-test.count=1")
	cmd.Env = append(os.Environ(), "OUTBOX_SIGKILL_CHILD="+dir)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child = %v; want it killed\n%s", err, out)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v; want SIGKILL\n%s", err, out)
	}
	actions := filepath.Join(dir, "actions")
	if b, _ := os.ReadFile(actions); string(b) != "e1\n" {
		t.Fatalf("before the restart the actions are %q; want e1 only", b)
	}

	s := openT(t, filepath.Join(dir, "outbox.jsonl"), FileOptions{})
	if e := get(t, s, "e1"); e.State != StateInFlight {
		t.Fatalf("e1 = %+v after the kill; want in flight", e)
	}
	c := &calls{}
	h := func(_ context.Context, e Entry) ([]byte, error) {
		c.add(e)
		if e.Recovered {
			b, err := os.ReadFile(actions)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, err
			}
			if strings.Contains(string(b), e.Key+"\n") {
				return []byte("found done"), nil
			}
		}
		act(t, actions, e.Key)
		return []byte("acted"), nil
	}
	stop := startWorker(t, &Worker{Store: s, Kinds: map[string]Kind{"act": {Handler: h}}})
	defer stop()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		open, _ := s.List(t.Context(), StatePending, StateInFlight)
		if len(open) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("entries still open after 10s: %+v", open)
		}
	}
	if b, _ := os.ReadFile(actions); string(b) != "e1\ne2\n" {
		t.Fatalf("actions after the restart: %q; want e1 and e2 once each", b)
	}
	if got := c.of("e1"); len(got) != 1 || !got[0].recovered {
		t.Fatalf("e1 calls after the restart: %+v; want one, recovered", got)
	}
	for key, want := range map[string]string{"e1": "found done", "e2": "acted"} {
		if e := get(t, s, key); e.State != StateDone || string(e.Result) != want {
			t.Fatalf("%s = %+v; want done, %s", key, e, want)
		}
	}
}

// sigkillChild enqueues two entries and runs a Worker whose handler acts
// on e1 and then kills its own process.
func sigkillChild(t *testing.T, dir string) {
	s := openT(t, filepath.Join(dir, "outbox.jsonl"), FileOptions{})
	enqueue(t, s, "e1", "act")
	enqueue(t, s, "e2", "act")
	h := func(_ context.Context, e Entry) ([]byte, error) {
		act(t, filepath.Join(dir, "actions"), e.Key)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	w := &Worker{Store: s, Kinds: map[string]Kind{"act": {Handler: h}}}
	w.Run(t.Context())
	t.Fatal("the worker returned; want the process killed")
}
