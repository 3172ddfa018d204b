package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/flock"
)

// collect returns a replay function that keeps the records, refusing those
// that start with "bad".
func collect(out *[]string) func([]byte) error {
	return func(rec []byte) error {
		if bytes.HasPrefix(rec, []byte("bad")) {
			return errors.New("refused")
		}
		*out = append(*out, string(rec))
		return nil
	}
}

func tempPath(t *testing.T) string { return filepath.Join(t.TempDir(), "j.jsonl") }

func openT(t *testing.T, path string, opts Options) (*Journal, []string) {
	t.Helper()
	var recs []string
	j, err := Open(path, opts, collect(&recs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, recs
}

func TestOpenReplaysAndRepairs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string
		cutBad  bool
		want    []string
		after   string // the file after Open
		torn    int
		errLine int // a CorruptError on this line
	}{
		{name: "empty", file: "", after: ""},
		{name: "records", file: "a\nb\n", want: []string{"a", "b"}, after: "a\nb\n"},
		{name: "blank lines kept", file: "a\n\n  \nb\n", want: []string{"a", "b"}, after: "a\n\n  \nb\n"},
		{name: "torn tail cut", file: "a\nb\n{\"x\":", want: []string{"a", "b"}, after: "a\nb\n", torn: 1},
		{name: "only a torn line", file: "abc", after: "", torn: 1},
		{name: "decodable but no newline", file: "a\nb", want: []string{"a"}, after: "a\n", torn: 1},
		{name: "bad middle line", file: "a\nbad\nb\n", errLine: 2},
		{name: "bad middle line with cut option", file: "a\nbad\nb\n", cutBad: true, errLine: 2},
		{name: "bad last line is an error", file: "a\n\nbad\n", errLine: 3},
		{name: "bad last line cut", file: "a\nbad\n", cutBad: true, want: []string{"a"}, after: "a\n", torn: 1},
		{name: "bad last line and a torn one", file: "a\nbad\nxy", cutBad: true, want: []string{"a"}, after: "a\n", torn: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tempPath(t)
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			var got []string
			j, err := Open(path, Options{Name: "things", CutBadLastLine: tc.cutBad, DamagedFix: "delete that line"}, collect(&got))
			if tc.errLine != 0 {
				var ce *CorruptError
				if !errors.As(err, &ce) || ce.Line != tc.errLine || ce.Path != path ||
					!strings.HasPrefix(err.Error(), fmt.Sprintf("things %s line %d: ", path, tc.errLine)) ||
					!strings.HasSuffix(err.Error(), "; the file is damaged: delete that line") {
					t.Fatalf("Open = %v; want a CorruptError for line %d of %s", err, tc.errLine, path)
				}
				if b, _ := os.ReadFile(path); string(b) != tc.file {
					t.Errorf("a failed Open changed the file to %q", b)
				}
				// A failed Open released the lock.
				j2, err := Open(path, Options{}, func([]byte) error { return nil })
				if err != nil {
					t.Fatalf("open after a failed Open: %v", err)
				}
				j2.Close()
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			if !slices.Equal(got, tc.want) {
				t.Errorf("replayed %q; want %q", got, tc.want)
			}
			if b, _ := os.ReadFile(path); string(b) != tc.after {
				t.Errorf("file after Open = %q; want %q", b, tc.after)
			}
			st := j.Stats()
			if st.TornLines != tc.torn || st.Replayed != len(tc.want) || st.TornBytes != int64(len(tc.file)-len(tc.after)) {
				t.Errorf("Stats = %+v; want %d torn lines, %d bytes, %d replayed", st, tc.torn, len(tc.file)-len(tc.after), len(tc.want))
			}
			if j.Lines() != len(tc.want) {
				t.Errorf("Lines = %d; want %d", j.Lines(), len(tc.want))
			}
		})
	}
}

func TestAppendReopenAndMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "sub")
	path := filepath.Join(dir, "j.jsonl")
	if _, err := Open(path, Options{}, nil); err == nil {
		t.Fatal("Open in a missing directory succeeded without CreateDir")
	}
	j, _ := openT(t, path, Options{CreateDir: true})
	if err := j.Append([]byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := j.Append([]byte("b"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := j.Append(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{nil, []byte(" \t"), []byte("a\nb")} {
		if err := j.Append([]byte("ok"), bad); err == nil {
			t.Errorf("Append(%q) succeeded", bad)
		}
	}
	if j.Lines() != 3 {
		t.Errorf("Lines = %d; want 3", j.Lines())
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Append([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v; want ErrClosed", err)
	}
	if err := j.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	_, recs := openT(t, path, Options{})
	if want := []string{`{"a":1}`, "b", "c"}; !slices.Equal(recs, want) {
		t.Errorf("reopened: %q; want %q", recs, want)
	}
}

func TestLock(t *testing.T) {
	path := tempPath(t)
	j, _ := openT(t, path, Options{})
	_, err := Open(path, Options{}, nil)
	if !errors.Is(err, flock.ErrLocked) || !strings.Contains(err.Error(), path+".lock") ||
		!strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Open = %v; want ErrLocked naming %s.lock", err, path)
	}
	errInUse := errors.New("store in use")
	if _, err := Open(path, Options{InUse: errInUse}, nil); !errors.Is(err, errInUse) || !errors.Is(err, flock.ErrLocked) {
		t.Fatalf("second Open with InUse = %v; want both sentinels", err)
	}
	if err := Read(path, Options{}, func([]byte) error { return nil }); err != nil {
		t.Errorf("Read beside an open journal: %v", err)
	}
	j.Close()
	j2, err := Open(path, Options{}, nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	j2.Close()
}

func TestRead(t *testing.T) {
	path := tempPath(t)
	var got []string
	if err := Read(path, Options{}, collect(&got)); err != nil || got != nil {
		t.Fatalf("Read of a missing file = %q, %v; want nothing", got, err)
	}
	os.WriteFile(path, []byte("a\n\nb\nbad\ntorn"), 0o600)
	var ce *CorruptError
	if err := Read(path, Options{}, collect(&got)); !errors.As(err, &ce) || ce.Line != 4 {
		t.Fatalf("Read = %v; want a CorruptError for line 4", err)
	}
	got = nil
	if err := Read(path, Options{CutBadLastLine: true}, collect(&got)); err != nil || !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Read = %q, %v; want a, b", got, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "a\n\nb\nbad\ntorn" {
		t.Errorf("Read changed the file to %q", b)
	}
}

func TestCompact(t *testing.T) {
	path := tempPath(t)
	j, _ := openT(t, path, Options{})
	for i := range 10 {
		if err := j.Append(fmt.Appendf(nil, "r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// A crash's leftover of an earlier compaction.
	stale := filepath.Join(filepath.Dir(path), ".j.jsonl.tmp-1")
	os.WriteFile(stale, []byte("half"), 0o600)
	if err := j.Compact([][]byte{[]byte("r8"), []byte("r9")}); err != nil {
		t.Fatal(err)
	}
	if err := j.Append([]byte("r10")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "r8\nr9\nr10\n" {
		t.Errorf("file after Compact and Append = %q", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after Compact %v; want 0600", fi.Mode().Perm())
	}
	if j.Lines() != 3 || j.Stats().Compactions != 1 {
		t.Errorf("Lines = %d, Stats = %+v; want 3 lines, 1 compaction", j.Lines(), j.Stats())
	}
	if err := j.Compact([][]byte{[]byte("x\ny")}); err == nil {
		t.Error("Compact with a record holding a newline succeeded")
	}
	// The lock stays with j across the replace.
	if _, err := Open(path, Options{}, nil); !errors.Is(err, flock.ErrLocked) {
		t.Errorf("Open beside a compacted journal = %v; want ErrLocked", err)
	}
	j.Close()
	_, recs := openT(t, path, Options{})
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("open left the stale temporary: %v", err)
	}
	if !slices.Equal(recs, []string{"r8", "r9", "r10"}) {
		t.Errorf("reopened after Compact: %q", recs)
	}
	if err := j.Compact(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Compact after Close = %v; want ErrClosed", err)
	}
}

// TestGroupCommit appends from many goroutines through a slow fsync: every
// record is there after a reopen, in per-goroutine order, and Appends
// shared fsyncs.
func TestGroupCommit(t *testing.T) {
	path := tempPath(t)
	var syncs atomic.Int64
	j, _ := openT(t, path, Options{Sync: func(f *os.File) error {
		syncs.Add(1)
		time.Sleep(2 * time.Millisecond) // a disk, so that Appends pile up
		return f.Sync()
	}})
	const workers, each = 32, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := j.Append(fmt.Appendf(nil, "w%d-%d", w, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st := j.Stats()
	if st.Appends != workers*each || st.Records != workers*each || st.Syncs != syncs.Load() {
		t.Errorf("Stats = %+v (hook saw %d syncs); want %d appends", st, syncs.Load(), workers*each)
	}
	if st.Syncs >= st.Appends/2 {
		t.Errorf("%d fsyncs for %d appends; want group commit to share them", st.Syncs, st.Appends)
	}
	t.Logf("%d appends, %d fsyncs", st.Appends, st.Syncs)
	j.Close()

	_, recs := openT(t, path, Options{})
	if len(recs) != workers*each {
		t.Fatalf("reopened %d records; want %d", len(recs), workers*each)
	}
	next := make([]int, workers)
	for _, r := range recs {
		var w, i int
		if _, err := fmt.Sscanf(r, "w%d-%d", &w, &i); err != nil || next[w] != i {
			t.Fatalf("record %q out of order (want w%d-%d): %v", r, w, next[w], err)
		}
		next[w]++
	}
}

// TestSyncFailureStops: a failed fsync fails every Append of its batch and
// stops the journal; the lock is released so a reopen can see what is
// durable.
func TestSyncFailureStops(t *testing.T) {
	path := tempPath(t)
	var fail atomic.Bool
	j, _ := openT(t, path, Options{Name: "outbox", StoppedFix: "restart the responder", Sync: func(f *os.File) error {
		if fail.Load() {
			return errors.New("injected EIO")
		}
		return f.Sync()
	}})
	if err := j.Append([]byte("a")); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	if err := j.Append([]byte("b")); err == nil || !strings.Contains(err.Error(), "injected EIO") ||
		!strings.HasSuffix(err.Error(), "the outbox stopped: restart the responder") {
		t.Fatalf("Append with a failing fsync = %v", err)
	}
	if !j.Closed() {
		t.Error("a failed fsync did not stop the journal")
	}
	if err := j.Append([]byte("c")); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "injected EIO") ||
		!strings.HasSuffix(err.Error(), "restart the responder") {
		t.Errorf("Append after the failure = %v; want ErrClosed saying why", err)
	}
	if err := j.Compact(nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Compact after the failure = %v; want ErrClosed", err)
	}
	if err := j.Close(); err != nil {
		t.Errorf("Close after the failure = %v", err)
	}
	_, recs := openT(t, path, Options{})
	if len(recs) < 1 || recs[0] != "a" {
		t.Errorf("reopened %q; want a first", recs)
	}
}

// TestCloseDuringAppends closes while Appends wait: each returns nil (it is
// durable) or ErrClosed, and every nil one is in the file.
func TestCloseDuringAppends(t *testing.T) {
	path := tempPath(t)
	j, _ := openT(t, path, Options{Sync: func(f *os.File) error {
		time.Sleep(time.Millisecond)
		return f.Sync()
	}})
	var mu sync.Mutex
	var acked []string
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				rec := fmt.Sprintf("w%d-%d", w, i)
				err := j.Append([]byte(rec))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked = append(acked, rec)
				mu.Unlock()
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	_, recs := openT(t, path, Options{})
	for _, a := range acked {
		if !slices.Contains(recs, a) {
			t.Fatalf("acknowledged %q is not in the file", a)
		}
	}
}

// FuzzReplay opens arbitrary bytes: no panic, and the records returned
// are exactly the non-blank complete lines, with the file cut to the end
// of the last one. A refused line is an error naming it, unless it is the
// last one and CutBadLastLine is set.
func FuzzReplay(f *testing.F) {
	f.Add([]byte("{\"entry\":{\"key\":\"a\"}}\n{\"seen\":{\"id\":\"x\"}}\n"), false)
	f.Add([]byte("a\n\n b\n{\"torn"), false)
	f.Add([]byte("a\nbad\n"), true)
	f.Add([]byte("bad\na\n"), true)
	f.Add([]byte("\n\n\r\n"), false)
	f.Add([]byte{}, false)
	f.Fuzz(func(t *testing.T, data []byte, cutBad bool) {
		path := filepath.Join(t.TempDir(), "j")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		var got []string
		j, err := Open(path, Options{CutBadLastLine: cutBad}, collect(&got))

		// The model: split into complete lines.
		complete := data[:bytes.LastIndexByte(data, '\n')+1]
		lines := strings.SplitAfter(string(complete), "\n")
		lines = lines[:len(lines)-1] // the "" after the last newline
		var want []string
		keep := 0
		badAt := 0
		for i, l := range lines {
			rec := strings.TrimSuffix(l, "\n")
			if strings.TrimSpace(rec) == "" {
				keep += len(l)
				continue
			}
			if strings.HasPrefix(rec, "bad") {
				if i == len(lines)-1 && cutBad {
					break
				}
				badAt = i + 1
				break
			}
			want = append(want, rec)
			keep += len(l)
		}
		if badAt != 0 {
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Line != badAt {
				t.Fatalf("Open(%q) = %v; want a CorruptError for line %d", data, err, badAt)
			}
			return
		}
		if err != nil {
			t.Fatalf("Open(%q) = %v", data, err)
		}
		defer j.Close()
		if !slices.Equal(got, want) {
			t.Fatalf("Open(%q) replayed %q; want %q", data, got, want)
		}
		if b, _ := os.ReadFile(path); !bytes.Equal(b, data[:keep]) {
			t.Fatalf("Open(%q) left %q; want %q", data, b, data[:keep])
		}
		if j.Lines() != len(want) {
			t.Fatalf("Lines = %d; want %d", j.Lines(), len(want))
		}
	})
}

// TestShared appends through two shared journals on one file, standing for
// two processes (flock locks belong to the open file): every record is
// there once, each writer's in order, and a torn tail left by a crash is
// cut before the next write.
func TestShared(t *testing.T) {
	path := tempPath(t)
	os.WriteFile(path, []byte("old\n{\"torn"), 0o600)
	var js [2]*Journal
	for i := range js {
		j, err := OpenShared(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		js[i] = j
	}
	if err := js[0].Compact(nil); err == nil {
		t.Error("Compact of a shared journal succeeded")
	}
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				r := fmt.Appendf(nil, "w%d-%d", w, i)
				if err := js[w%2].Append(r, r); err != nil { // two lines per Append
					t.Error(err)
					return
				}
			}
		})
	}
	// A reader beside the writers sees whole Appends only.
	wg.Go(func() {
		for range 20 {
			var got []string
			if err := ReadShared(t.Context(), path, Options{}, collect(&got)); err != nil {
				t.Error(err)
				return
			}
			if len(got)%2 != 1 {
				t.Errorf("ReadShared saw %d records; want old and pairs", len(got))
				return
			}
		}
	})
	wg.Wait()
	var got []string
	if err := ReadShared(t.Context(), path, Options{}, collect(&got)); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1+2*writers*each || got[0] != "old" {
		t.Fatalf("%d records, first %q; want old and %d more", len(got), got[0], 2*writers*each)
	}
	next := make([]int, writers)
	for k := 1; k < len(got); k += 2 {
		var w, i int
		if _, err := fmt.Sscanf(got[k], "w%d-%d", &w, &i); err != nil || got[k+1] != got[k] || next[w] != i {
			t.Fatalf("records %q, %q out of order (want w%d-%d twice): %v", got[k], got[k+1], w, next[w], err)
		}
		next[w]++
	}
	if b, _ := os.ReadFile(path); bytes.Contains(b, []byte("torn")) {
		t.Error("the torn tail was not cut")
	}
	st := js[0].Stats()
	t.Logf("writer 0: %d appends, %d fsyncs", st.Appends, st.Syncs)
	if err := js[0].Close(); err != nil {
		t.Fatal(err)
	}
	if err := js[0].Append([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v; want ErrClosed", err)
	}
}

func TestReadSharedReportsOffsetAndStops(t *testing.T) {
	path := tempPath(t)
	os.WriteFile(path, []byte("a\nbad\nb\n"), 0o600)
	var got []string
	var ce *CorruptError
	if err := ReadShared(t.Context(), path, Options{}, collect(&got)); !errors.As(err, &ce) || ce.Line != 2 || ce.Offset != 2 {
		t.Fatalf("ReadShared = %v (%+v); want a CorruptError for line 2 at byte 2", err, ce)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	os.WriteFile(path, bytes.Repeat([]byte("x\n"), 10000), 0o600)
	if err := ReadShared(ctx, path, Options{}, func([]byte) error { return nil }); !errors.Is(err, context.Canceled) || errors.As(err, &ce) {
		t.Errorf("ReadShared with a cancelled context = %v; want context.Canceled", err)
	}
}

func TestPerm(t *testing.T) {
	path := tempPath(t)
	j, _ := openT(t, path, Options{Perm: 0o644})
	mode := func(when string) {
		t.Helper()
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, %v; want 0644", when, fi.Mode().Perm(), err)
		}
	}
	mode("created")
	if err := j.Compact([][]byte{[]byte("a")}); err != nil {
		t.Fatal(err)
	}
	mode("compacted")
	shared := filepath.Join(t.TempDir(), "s.jsonl")
	js, err := OpenShared(shared, Options{Perm: 0o640})
	if err != nil {
		t.Fatal(err)
	}
	js.Close()
	if fi, err := os.Stat(shared); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("OpenShared: mode %v, %v; want 0640", fi.Mode().Perm(), err)
	}
}

// TestRecords reads an open journal: what is appended, the file as it was
// at the start of the call, and a CorruptError for an edited line.
func TestRecords(t *testing.T) {
	path := tempPath(t)
	os.WriteFile(path, []byte("a\n\nb\n"), 0o600)
	j, _ := openT(t, path, Options{})
	if err := j.Append([]byte("c")); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := j.Records(t.Context(), collect(&got)); err != nil || !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("Records = %q, %v; want a b c", got, err)
	}
	// A Compact while Records reads leaves it reading the old file.
	got = nil
	err := j.Records(t.Context(), func(rec []byte) error {
		if len(got) == 0 {
			if err := j.Compact([][]byte{[]byte("z")}); err != nil {
				t.Fatal(err)
			}
		}
		got = append(got, string(rec))
		return nil
	})
	if err != nil || !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("Records during Compact = %q, %v; want a b c", got, err)
	}
	got = nil
	if err := j.Records(t.Context(), collect(&got)); err != nil || !slices.Equal(got, []string{"z"}) {
		t.Fatalf("Records after Compact = %q, %v; want z", got, err)
	}
	if err := j.Append([]byte("y")); err != nil {
		t.Fatal(err)
	}
	// Edited under the journal: a refused line, then a file cut short.
	os.WriteFile(path, []byte("bad\ny\n"), 0o600)
	var ce *CorruptError
	if err := j.Records(t.Context(), collect(&got)); !errors.As(err, &ce) || ce.Line != 1 {
		t.Errorf("Records of an edited file = %v; want a CorruptError for line 1", err)
	}
	os.WriteFile(path, []byte("z\n"), 0o600)
	if err := j.Records(t.Context(), collect(&got)); err == nil || !strings.Contains(err.Error(), "line 2: cut short") {
		t.Errorf("Records of a file cut short = %v; want line 2 cut short", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := j.Records(ctx, collect(&got)); !errors.Is(err, context.Canceled) {
		t.Errorf("Records with a cancelled context = %v", err)
	}
	j.Close()
	if err := j.Records(t.Context(), collect(&got)); !errors.Is(err, ErrClosed) {
		t.Errorf("Records after Close = %v; want ErrClosed", err)
	}
	js, err := OpenShared(tempPath(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer js.Close()
	if err := js.Records(t.Context(), collect(&got)); err == nil {
		t.Error("Records of a shared journal succeeded")
	}
}

// TestFollow: two shared journals on one file, standing for two processes.
// Each Follow passes what was appended since the last, by either, in file
// order; a torn tail is not passed, and a refused line is passed again.
func TestFollow(t *testing.T) {
	path := tempPath(t)
	os.WriteFile(path, []byte("old\n"), 0o600)
	a, err := OpenShared(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenShared(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	follow := func(want ...string) {
		t.Helper()
		var got []string
		if err := a.Follow(t.Context(), collect(&got)); err != nil || !slices.Equal(got, want) {
			t.Fatalf("Follow = %q, %v; want %q", got, err, want)
		}
	}
	follow("old")
	follow()
	if err := b.Append([]byte("b1")); err != nil {
		t.Fatal(err)
	}
	if err := a.Append([]byte("a1"), []byte("a2")); err != nil {
		t.Fatal(err)
	}
	follow("b1", "a1", "a2")
	// A crash cut a write short: the line is not passed, and the next
	// Append cuts it and goes on.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"torn`)
	f.Close()
	follow()
	if err := b.Append([]byte("b2")); err != nil {
		t.Fatal(err)
	}
	follow("b2")
	f, _ = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString("bad\n")
	f.Close()
	for range 2 {
		var ce *CorruptError
		if err := a.Follow(t.Context(), collect(new([]string))); !errors.As(err, &ce) || ce.Line != 6 || ce.Offset != 16 {
			t.Fatalf("Follow over a bad line = %v (%+v); want a CorruptError for line 6 at byte 16", err, ce)
		}
	}
	j, _ := openT(t, tempPath(t), Options{})
	if err := j.Follow(t.Context(), collect(new([]string))); err == nil {
		t.Error("Follow of a journal from Open succeeded")
	}
	a.Close()
	if err := a.Follow(t.Context(), collect(new([]string))); !errors.Is(err, ErrClosed) {
		t.Errorf("Follow after Close = %v; want ErrClosed", err)
	}
}
