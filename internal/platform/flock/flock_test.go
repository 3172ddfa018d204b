//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package flock

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := Lock(path, true, false)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file, so a second open conflicts
	// even in one process.
	if _, err := Lock(path, true, false); !errors.Is(err, ErrLocked) {
		t.Fatalf("second exclusive lock: %v, want ErrLocked", err)
	}
	if _, err := Lock(path, false, false); !errors.Is(err, ErrLocked) {
		t.Fatalf("shared lock beside an exclusive one: %v, want ErrLocked", err)
	}
	got := make(chan func(), 1)
	go func() {
		u, err := Lock(path, true, true)
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case <-got:
		t.Fatal("a waiting lock did not wait")
	default:
	}
	unlock()
	(<-got)()
	s1, err := Lock(path, false, false)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := Lock(path, false, false)
	if err != nil {
		t.Fatalf("two shared locks: %v", err)
	}
	s1()
	s2()
}
