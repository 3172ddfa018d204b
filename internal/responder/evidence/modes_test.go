package evidence

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestGenerateAndLoadKeys(t *testing.T) {
	dir := t.TempDir()
	priv, pubPath := filepath.Join(dir, "checkpoint.key"), filepath.Join(dir, "checkpoint.pub")
	pub, err := GenerateKey(priv, pubPath)
	if err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{priv: 0o600, pubPath: 0o644} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: mode %v, %v; want %v", path, fi.Mode().Perm(), err, mode)
		}
	}
	k, err := LoadPrivateKey(priv)
	if err != nil || !pubOf(k).Equal(pub) {
		t.Fatalf("LoadPrivateKey: %v", err)
	}
	for _, path := range []string{pubPath, priv} {
		got, err := LoadPublicKey(path)
		if err != nil || !got.Equal(pub) {
			t.Fatalf("LoadPublicKey(%s) = %x, %v; want %x", path, got, err, pub)
		}
	}
	if _, err := GenerateKey(priv, pubPath+"2"); err == nil || !strings.Contains(err.Error(), "never overwritten") {
		t.Fatalf("GenerateKey over an existing key = %v; want refused", err)
	}
}

// TestKeyFileReadableByOthersIsRefused: a private key any other user may
// read could sign forged checkpoints, so it is refused with the fix.
func TestKeyFileReadableByOthersIsRefused(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "k")
	if _, err := GenerateKey(priv, priv+".pub"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		if err := os.Chmod(priv, mode); err != nil {
			t.Fatal(err)
		}
		for name, load := range map[string]func(string) error{
			"private": func(p string) error { _, err := LoadPrivateKey(p); return err },
			"public":  func(p string) error { _, err := LoadPublicKey(p); return err },
		} {
			if err := load(priv); err == nil || !strings.Contains(err.Error(), "chmod 600") {
				t.Errorf("mode %04o, %s: %v; want refused with the fix", mode, name, err)
			}
		}
	}
	if err := os.Chmod(priv, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadPrivateKey(priv); err != nil {
		t.Errorf("mode 0400: %v", err)
	}
}

// TestOpenSSLKeys: keys made by openssl, as docs/responder.md shows, load.
func TestOpenSSLKeys(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	priv, pubPath := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub")
	for _, args := range [][]string{
		{"genpkey", "-algorithm", "ed25519", "-out", priv},
		{"pkey", "-in", priv, "-pubout", "-out", pubPath},
	} {
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	if err := os.Chmod(priv, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(pubPath)
	if err != nil || !pub.Equal(pubOf(k)) {
		t.Fatalf("LoadPublicKey = %x, %v; want %x", pub, err, pubOf(k))
	}
}

// TestBundlesAreOwnerOnly: a fresh bundle passes OpenModes; one written
// with the old modes (0444 files, 0555 directories) is listed, as is a
// root others may enter.
func TestBundlesAreOwnerOnly(t *testing.T) {
	f := newFixture(t)
	b := f.snapshot(t, "ev-1", "agent-7")
	if fi, err := os.Stat(f.root); err != nil || fi.Mode().Perm() != RootMode {
		t.Fatalf("root mode %v, %v; want %v", fi.Mode().Perm(), err, RootMode)
	}
	if paths, n, err := OpenModes(f.root, 0); err != nil || n != 0 {
		t.Fatalf("OpenModes of a fresh root = %v %d, %v; want none", paths, n, err)
	}
	old := filepath.Join(b.Path, EventsJSONL)
	if err := os.Chmod(old, 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f.root, 0o755); err != nil {
		t.Fatal(err)
	}
	paths, n, err := OpenModes(f.root, 1)
	if err != nil || n != 2 || len(paths) != 1 {
		t.Fatalf("OpenModes = %v %d, %v; want 2 found, 1 listed", paths, n, err)
	}
	all, _, _ := OpenModes(f.root, 0)
	if !slices.Equal(all, []string{f.root, old}) {
		t.Fatalf("OpenModes = %v; want the root and %s", all, old)
	}
	msg := OpenModesError(f.root, paths, n).Error()
	if !strings.Contains(msg, "chmod -R go-rwx "+f.root) || !strings.Contains(msg, "2 evidence paths") {
		t.Fatalf("OpenModesError = %q", msg)
	}
	if _, n, err := OpenModes(filepath.Join(f.root, "missing"), 0); err != nil || n != 0 {
		t.Fatalf("OpenModes of a missing root = %d, %v", n, err)
	}
}
