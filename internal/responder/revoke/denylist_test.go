package revoke

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func newDenylist(t *testing.T, format string) (*Denylist, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "deny.txt")
	d, err := NewDenylist(DenylistOptions{Path: path, Format: format, Now: func() time.Time { return time.Unix(1700000000, 0) }})
	if err != nil {
		t.Fatal(err)
	}
	return d, path
}

func TestDenylistLines(t *testing.T) {
	env := newEnv(t)
	d, path := newDenylist(t, DenylistLines)
	if err := os.WriteFile(path, []byte("# managed by ops\nmanual-block\n\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	g := env.guard(t, d, nil, nil)

	if res, err := g.Revoke(t.Context(), manual("cred-1", "", "inc-1")); err != nil || res.Status != StatusRevoked {
		t.Fatalf("Revoke = %+v, %v", res, err)
	}
	if res, err := g.Revoke(t.Context(), manual("cred-1", "", "inc-1")); err != nil || res.Status != StatusAlreadyRevoked {
		t.Fatalf("second Revoke = %+v, %v; want already_revoked", res, err)
	}
	// Another incident finds it listed: already revoked, and its restore
	// leaves the line.
	if res, err := g.Revoke(t.Context(), manual("cred-1", "", "inc-2")); err != nil || res.Status != StatusAlreadyRevoked {
		t.Fatalf("Revoke in another incident = %+v, %v; want already_revoked", res, err)
	}
	if res, err := g.Restore(t.Context(), manual("cred-1", "", "inc-2")); err != nil || res.Status != StatusLeftRevoked {
		t.Fatalf("Restore in the other incident = %+v, %v; want left_revoked", res, err)
	}
	want := "# managed by ops\nmanual-block\n\ncred-1\n"
	if b, _ := os.ReadFile(path); string(b) != want {
		t.Fatalf("file %q; want %q", b, want)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v; want the file's own 0640 kept", fi.Mode().Perm())
	}

	if res, err := g.Restore(t.Context(), manual("cred-1", "", "inc-1")); err != nil || res.Status != StatusRestored {
		t.Fatalf("Restore = %+v, %v", res, err)
	}
	if b, _ := os.ReadFile(path); string(b) != "# managed by ops\nmanual-block\n\n" {
		t.Fatalf("file after restore %q; want the other lines kept", b)
	}
	if res, err := g.Restore(t.Context(), manual("cred-1", "", "inc-1")); err != nil || res.Status != StatusAlreadyRestored {
		t.Fatalf("second Restore = %+v, %v; want already_restored", res, err)
	}

	for _, id := range []string{"a\nb", " padded", "#comment", "nul\x00"} {
		if _, err := g.Revoke(t.Context(), manual(id, "", "inc-1")); err == nil {
			t.Errorf("Revoke(%q) into a lines file = nil error; want refused", id)
		}
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 2 { // the file and its lock
		t.Errorf("directory holds %d entries; want the file and its lock, no temporary leftovers", len(entries))
	}
}

func TestDenylistJSON(t *testing.T) {
	env := newEnv(t)
	d, path := newDenylist(t, DenylistJSON)
	g := env.guard(t, d, nil, nil)
	odd := "line\nbreak\"quote"
	for _, id := range []string{"cred-1", odd} {
		if res, err := g.Revoke(t.Context(), Target{CredentialID: id, AgentID: "ag", IncidentID: "inc", Origin: Manual}); err != nil || res.Status != StatusRevoked {
			t.Fatalf("Revoke(%q) = %+v, %v", id, res, err)
		}
	}
	var entries []DenyEntry
	b, _ := os.ReadFile(path)
	if err := json.Unmarshal(b, &entries); err != nil || len(entries) != 2 || entries[1].CredentialID != odd || entries[0].AgentID != "ag" {
		t.Fatalf("file %s = %+v, %v", b, entries, err)
	}
	if _, err := g.Restore(t.Context(), manual(odd, "", "inc")); err != nil {
		t.Fatal(err)
	}
	if ok, _ := d.Contains(odd); ok {
		t.Fatal("restored id still listed")
	}
	if ok, _ := d.Contains("cred-1"); !ok {
		t.Fatal("cred-1 no longer listed")
	}
}

// TestDenylistConcurrent revokes and restores from many goroutines and
// two adapter instances on one file (two processes, as far as the file
// lock is concerned), while a reader keeps parsing the file: every read
// sees a whole file, and the end state is exact.
func TestDenylistConcurrent(t *testing.T) {
	for _, format := range []string{DenylistLines, DenylistJSON} {
		t.Run(format, func(t *testing.T) {
			d1, path := newDenylist(t, format)
			d2, err := NewDenylist(DenylistOptions{Path: path, Format: format})
			if err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var reader sync.WaitGroup
			reader.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					b, err := os.ReadFile(path)
					if err != nil {
						continue // not created yet
					}
					if format == DenylistJSON {
						var e []DenyEntry
						if len(b) > 0 && json.Unmarshal(b, &e) != nil {
							t.Errorf("reader saw a partial JSON file: %q", b)
							return
						}
					} else if len(b) > 0 && !strings.HasSuffix(string(b), "\n") {
						t.Errorf("reader saw a partial line: %q", b)
						return
					}
				}
			})
			const n = 40
			var wg sync.WaitGroup
			for i := range n {
				d := d1
				if i%2 == 1 {
					d = d2
				}
				wg.Go(func() {
					id := fmt.Sprintf("cred-%02d", i)
					tg := Target{CredentialID: id, IncidentID: "i"}
					keep := func([]byte) error { return nil }
					if _, err := d.Revoke(t.Context(), tg, keep); err != nil {
						t.Error(err)
					}
					if _, err := d.Revoke(t.Context(), tg, keep); err != nil { // idempotent
						t.Error(err)
					}
					if i%4 == 0 {
						if _, err := d.Restore(t.Context(), tg, nil); err != nil {
							t.Error(err)
						}
					}
				})
			}
			wg.Wait()
			close(stop)
			reader.Wait()
			var want, got []string
			for i := range n {
				id := fmt.Sprintf("cred-%02d", i)
				if i%4 != 0 {
					want = append(want, id)
				}
				if ok, err := d1.Contains(id); err != nil {
					t.Fatal(err)
				} else if ok {
					got = append(got, id)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("listed %q; want %q", got, want)
			}
			if format == DenylistLines {
				b, _ := os.ReadFile(path)
				if lines := strings.Count(string(b), "\n"); lines != len(want) {
					t.Fatalf("%d lines; want %d (no duplicates)", lines, len(want))
				}
			}
		})
	}
}
