package outbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestEnqueueIdempotent(t *testing.T) {
	s, path := tempStore(t, FileOptions{})
	ctx := t.Context()
	first, created, err := s.Enqueue(ctx, "d1-0", "revoke", []byte("one"))
	if err != nil || !created {
		t.Fatalf("first Enqueue = %v, %v", created, err)
	}
	again, created, err := s.Enqueue(ctx, "d1-0", "slack.post", []byte("two"), WithOrderKey("x"))
	if err != nil || created {
		t.Fatalf("second Enqueue = %v, %v; want the existing entry", created, err)
	}
	if again.Kind != "revoke" || string(again.Payload) != "one" || again.OrderKey != "" || again.Seq != first.Seq {
		t.Fatalf("second Enqueue returned %+v; want the first entry unchanged", again)
	}
	enqueue(t, s, "d1-1", "slack.post", WithOrderKey("slack:inc"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, path, FileOptions{})
	if _, created, err := s.Enqueue(ctx, "d1-0", "revoke", []byte("three")); err != nil || created {
		t.Fatalf("Enqueue after reopen = %v, %v; want the existing entry", created, err)
	}
	all, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all[0].Key != "d1-0" || all[1].Key != "d1-1" || all[1].OrderKey != "slack:inc" || all[0].Seq >= all[1].Seq {
		t.Fatalf("List after reopen = %+v; want d1-0 then d1-1 with its order key", all)
	}
	if e := get(t, s, "d1-0"); e.State != StatePending || string(e.Payload) != "one" || !e.Created.Equal(first.Created) {
		t.Fatalf("Get(d1-0) after reopen = %+v; want %+v", e, first)
	}
}

func TestEnqueueRefusesBadInput(t *testing.T) {
	s, _ := tempStore(t, FileOptions{})
	bad := func(key, kind string, payload []byte, opts ...EnqueueOption) {
		t.Helper()
		if _, _, err := s.Enqueue(t.Context(), key, kind, payload, opts...); err == nil {
			t.Fatalf("Enqueue(%.20q, %.20q, %d bytes) = nil error; want a refusal", key, kind, len(payload))
		}
	}
	bad("", "k", nil)
	bad("k", "", nil)
	bad(strings.Repeat("k", MaxKeyLen+1), "k", nil)
	bad("k", strings.Repeat("k", MaxKindLen+1), nil)
	bad("k", "k", make([]byte, MaxPayloadLen+1))
	bad("k", "k", nil, WithOrderKey(strings.Repeat("o", MaxKeyLen+1)))
	if all, _ := s.List(t.Context()); len(all) != 0 {
		t.Fatalf("refused entries were stored: %+v", all)
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	_, path := tempStore(t, FileOptions{})
	if _, err := OpenFile(path, FileOptions{}); !errors.Is(err, ErrInUse) {
		t.Fatalf("second OpenFile = %v; want ErrInUse", err)
	}
}

func TestClosedStoreFails(t *testing.T) {
	s, _ := tempStore(t, FileOptions{})
	s.Close()
	if _, _, err := s.Enqueue(t.Context(), "k", "k", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Enqueue after Close = %v; want ErrClosed", err)
	}
	if _, err := s.MarkHandled(t.Context(), "a"); !errors.Is(err, ErrClosed) {
		t.Fatalf("MarkHandled after Close = %v; want ErrClosed", err)
	}
}

func TestUpdateUnknownKey(t *testing.T) {
	s, _ := tempStore(t, FileOptions{})
	if _, err := s.Update(t.Context(), Entry{Key: "nope", State: StateDone}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Update(unknown) = %v; want ErrNotFound", err)
	}
}

func TestMarkHandled(t *testing.T) {
	s, path := tempStore(t, FileOptions{})
	ctx := t.Context()
	mark := func(id string, want bool) {
		t.Helper()
		first, err := s.MarkHandled(ctx, id)
		if err != nil || first != want {
			t.Fatalf("MarkHandled(%q) = %v, %v; want %v", id, first, err, want)
		}
	}
	mark("anomaly-1", true)
	mark("anomaly-1", false)
	mark("anomaly-2", true)
	s.Close()
	s = openT(t, path, FileOptions{})
	mark("anomaly-1", false)
	mark("anomaly-3", true)
	if ok, err := s.Handled(ctx, "anomaly-2"); err != nil || !ok {
		t.Fatalf("Handled(anomaly-2) = %v, %v after reopen; want true", ok, err)
	}
	if ok, _ := s.Handled(ctx, "anomaly-4"); ok {
		t.Fatal("Handled(anomaly-4) = true; want false")
	}
	if _, err := s.MarkHandled(ctx, ""); err == nil {
		t.Fatal("MarkHandled(\"\") = nil error")
	}
}

// TestMarkHandledConcurrent: of many goroutines marking one id, exactly
// one is first.
func TestMarkHandledConcurrent(t *testing.T) {
	s, _ := tempStore(t, FileOptions{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	firsts := 0
	for range 16 {
		wg.Go(func() {
			first, err := s.MarkHandled(t.Context(), "a")
			if err != nil {
				t.Error(err)
			}
			if first {
				mu.Lock()
				firsts++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firsts != 1 {
		t.Fatalf("%d callers were first; want 1", firsts)
	}
}

func TestConcurrentEnqueue(t *testing.T) {
	s, path := tempStore(t, FileOptions{CompactMinLines: 50})
	const goroutines, keys = 16, 100
	var mu sync.Mutex
	created := make(map[string]int)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range keys {
				key := fmt.Sprintf("step-%d", (i*7+g)%keys)
				_, isNew, err := s.Enqueue(t.Context(), key, "k", []byte(key))
				if err != nil {
					t.Error(err)
					return
				}
				if isNew {
					mu.Lock()
					created[key]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(created) != keys {
		t.Fatalf("%d keys created; want %d", len(created), keys)
	}
	for k, n := range created {
		if n != 1 {
			t.Fatalf("key %s created %d times; want once", k, n)
		}
	}
	s.Close()
	s = openT(t, path, FileOptions{})
	all, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	seqs := make(map[int64]bool)
	for _, e := range all {
		if seqs[e.Seq] {
			t.Fatalf("seq %d given twice", e.Seq)
		}
		seqs[e.Seq] = true
	}
	if len(all) != keys {
		t.Fatalf("%d entries after reopen; want %d", len(all), keys)
	}
}

func TestTornLastLine(t *testing.T) {
	s, path := tempStore(t, FileOptions{})
	enqueue(t, s, "a", "k")
	enqueue(t, s, "b", "k")
	s.Close()
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A crash in the middle of the next append.
	torn := append(bytes.Clone(good), `{"entry":{"key":"c","kind":"k","se`...)
	if err := os.WriteFile(path, torn, 0o600); err != nil {
		t.Fatal(err)
	}

	s = openT(t, path, FileOptions{})
	if got, _ := os.ReadFile(path); !bytes.Equal(got, good) {
		t.Fatalf("after open the file is %q; want the torn line cut off: %q", got, good)
	}
	enqueue(t, s, "c", "k")
	s.Close()
	s = openT(t, path, FileOptions{})
	all, _ := s.List(t.Context())
	if len(all) != 3 {
		t.Fatalf("List = %+v; want a, b, c", all)
	}
	assertLinesParse(t, path)
}

func TestDamagedLineIsAnError(t *testing.T) {
	s, path := tempStore(t, FileOptions{})
	enqueue(t, s, "a", "k")
	enqueue(t, s, "b", "k")
	s.Close()
	b, _ := os.ReadFile(path)
	lines := bytes.SplitAfter(b, []byte("\n"))
	damaged := append(append(bytes.Clone(lines[0]), "{not json}\n"...), lines[1]...)
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenFile(path, FileOptions{})
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("OpenFile of a damaged file = %v; want an error naming line 2", err)
	}
}

// assertLinesParse checks every line of the file parses.
func assertLinesParse(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	n := 0
	for sc.Scan() {
		n++
		if _, err := parseLine(sc.Bytes()); err != nil {
			t.Fatalf("%s line %d: %v", path, n, err)
		}
	}
	return n
}

func TestCompaction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := FileOptions{CompactMinLines: 1 << 20, DoneRetention: time.Hour, SeenRetention: time.Hour}
		s, path := tempStore(t, opts)
		ctx := t.Context()
		set := func(key string, st State) {
			t.Helper()
			e := get(t, s, key)
			e.State = st
			if st != StatePending {
				e.Attempts, e.Failures = 1, 1
			}
			if _, err := s.Update(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 10 {
			enqueue(t, s, fmt.Sprintf("done-%d", i), "k")
			set(fmt.Sprintf("done-%d", i), StateInFlight)
			set(fmt.Sprintf("done-%d", i), StateDone)
		}
		enqueue(t, s, "failed", "k")
		set("failed", StateFailed)
		enqueue(t, s, "parked", "k")
		set("parked", StateParked)
		enqueue(t, s, "inflight", "k", WithOrderKey("o"))
		set("inflight", StateInFlight)
		enqueue(t, s, "pending", "k", WithOrderKey("o"))
		s.MarkHandled(ctx, "old-anomaly")

		time.Sleep(2 * time.Hour) // past both retentions
		enqueue(t, s, "done-recent", "k")
		set("done-recent", StateDone)
		s.MarkHandled(ctx, "new-anomaly")

		before, _ := s.List(ctx, StatePending, StateInFlight, StateParked)
		if err := s.Compact(ctx); err != nil {
			t.Fatal(err)
		}
		check := func(s *FileStore) {
			t.Helper()
			all, _ := s.List(ctx)
			var keys []string
			for _, e := range all {
				keys = append(keys, e.Key)
			}
			if want := "parked inflight pending done-recent"; strings.Join(keys, " ") != want {
				t.Fatalf("entries after compaction: %v; want %s", keys, want)
			}
			open, _ := s.List(ctx, StatePending, StateInFlight, StateParked)
			for i := range open {
				if !equalEntries(open[i], before[i]) {
					t.Fatalf("entry changed by compaction: %+v; want %+v", open[i], before[i])
				}
			}
			if ok, _ := s.Handled(ctx, "old-anomaly"); ok {
				t.Fatal("old handled id kept past its retention")
			}
			if ok, _ := s.Handled(ctx, "new-anomaly"); !ok {
				t.Fatal("recent handled id dropped")
			}
		}
		check(s)
		if n := assertLinesParse(t, path); n != 5 {
			t.Fatalf("compacted file has %d lines; want 4 entries and 1 handled id", n)
		}
		s.Close()
		s = openT(t, path, opts)
		check(s)
		// A key dropped with its done entry is new again: why the
		// retention must exceed the replay horizon.
		if _, created, _ := s.Enqueue(ctx, "done-1", "k", nil); !created {
			t.Fatal("Enqueue of a dropped key did not create it")
		}
		if e := get(t, s, "done-1"); e.Seq <= get(t, s, "done-recent").Seq {
			t.Fatalf("new entry has seq %d, not after the live ones", e.Seq)
		}
	})
}

// TestAutoCompaction: a file that is mostly superseded lines is compacted
// on its own, and nothing open is lost.
func TestAutoCompaction(t *testing.T) {
	s, path := tempStore(t, FileOptions{CompactMinLines: 20})
	ctx := t.Context()
	enqueue(t, s, "keep", "k")
	e := enqueue(t, s, "busy", "k")
	for range 500 {
		e.Attempts++
		var err error
		if e, err = s.Update(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if n := assertLinesParse(t, path); n > 40 {
		t.Fatalf("file has %d lines after 500 updates of 2 entries; want it compacted", n)
	}
	s.Close()
	s = openT(t, path, FileOptions{})
	if got := get(t, s, "busy"); got.Attempts != 500 {
		t.Fatalf("busy has %d attempts after reopen; want 500", got.Attempts)
	}
	get(t, s, "keep")
}

func equalEntries(a, b Entry) bool {
	return a.Key == b.Key && a.Kind == b.Kind && a.OrderKey == b.OrderKey && a.Seq == b.Seq &&
		bytes.Equal(a.Payload, b.Payload) && a.State == b.State && a.Attempts == b.Attempts &&
		a.Failures == b.Failures && a.RetryAfterWaits == b.RetryAfterWaits && a.NextAttempt.Equal(b.NextAttempt) &&
		a.LastError == b.LastError && bytes.Equal(a.Result, b.Result) && a.Created.Equal(b.Created) && a.Updated.Equal(b.Updated)
}
