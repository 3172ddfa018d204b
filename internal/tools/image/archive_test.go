package image

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
)

func tarOf(t testing.TB, entries ...*tar.Header) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range entries {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(h.Name))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(h.Name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestUntarRefusesEscapes(t *testing.T) {
	for _, h := range []*tar.Header{
		{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "a/../../evil", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "/etc/evil", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc"},
	} {
		parent := t.TempDir()
		file := filepath.Join(parent, "in.tar")
		if err := os.WriteFile(file, tarOf(t, h), 0o644); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(parent, "out")
		err := untar(file, dir)
		if err == nil {
			t.Errorf("untar accepted %q (%c)", h.Name, h.Typeflag)
		}
		assertOnly(t, parent, file, dir)
	}
}

// assertOnly fails if parent holds anything but the archive and what is
// inside dir.
func assertOnly(t testing.TB, parent, file, dir string) {
	t.Helper()
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(parent, e.Name())
		if p != file && p != dir {
			t.Fatalf("untar wrote %s, outside %s", p, dir)
		}
	}
}

// FuzzUntar: whatever the archive, untar either fails or writes only
// below its directory.
func FuzzUntar(f *testing.F) {
	f.Add(tarOf(f, &tar.Header{Name: "oci-layout", Typeflag: tar.TypeReg, Mode: 0o644}, &tar.Header{Name: "blobs/", Typeflag: tar.TypeDir, Mode: 0o755}))
	f.Add(tarOf(f, &tar.Header{Name: "../x", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add([]byte("not a tar"))
	// One directory for the whole run, emptied after each input: a
	// t.TempDir per input made the fuzzer crawl.
	base := f.TempDir()
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := filepath.Join(base, strconv.FormatInt(n.Add(1), 10))
		if err := os.Mkdir(parent, 0o755); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(parent)
		file := filepath.Join(parent, "in.tar")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(parent, "out")
		_ = untar(file, dir)
		assertOnly(t, parent, file, dir)
	})
}
