package evidence

import (
	"context"
	"os"
	"strings"
	"testing"
)

// TestFileChainBesideItsWriter: a second FileChain on a chain another one
// has open (`responder verify` beside the responder) reads it and cannot
// append; the file keeps mode 0600.
func TestFileChainBesideItsWriter(t *testing.T) {
	f := newFixture(t)
	b := f.snapshot(t, "ev-1", "agent-7")
	ctx := context.Background()
	ro, err := OpenFileChain(f.chain.path)
	if err != nil {
		t.Fatalf("open beside the writer: %v", err)
	}
	defer ro.Close()
	if hash, seq, err := ro.Head(ctx); err != nil || hash != b.SHA256 || seq != 1 {
		t.Fatalf("read-only Head = %s %d, %v; want %s 1", hash, seq, err, b.SHA256)
	}
	f.snapshot(t, "ev-2", "agent-7")
	n := 0
	if err := ro.Records(ctx, func(Record) error { n++; return nil }); err != nil || n != 2 {
		t.Fatalf("read-only Records: %d records, %v; want 2", n, err)
	}
	if err := VerifyChain(ctx, ro, f.root); err != nil {
		t.Fatalf("VerifyChain through the read-only chain: %v", err)
	}
	var last Record
	f.chain.Records(ctx, func(r Record) error { last = r; return nil })
	next := last
	next.Seq, next.PrevSHA256, next.BundleID = 3, last.ManifestSHA256, "ev-3"
	if err := ro.Append(ctx, next); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("read-only Append = %v; want refused", err)
	}
	if fi, err := os.Stat(f.chain.path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("chain file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}
