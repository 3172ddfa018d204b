package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/agentwatch/agentwatch/internal/platform/buildinfo"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
)

// The stamp every test image carries, so what the binaries print can be
// compared with what was put in.
const (
	testVersion = "v0.0.0-imagetest.1"
	testCommit  = "0123456789abcdef0123456789abcdef01234567"
)

var testCreated = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testOptions(t *testing.T) Options {
	t.Helper()
	o, err := Defaults(context.Background(), Options{
		Root: itest.ModuleRoot(t), Version: testVersion, Commit: testCommit, Created: testCreated,
	})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

var (
	buildOnce sync.Once
	builtDir  string
	builtBins map[string]string
	buildErr  error
)

// builtBinaries builds the four binaries once per test process: the
// build is the slow part (a minute or two from a cold cache).
func builtBinaries(t *testing.T) map[string]string {
	t.Helper()
	o := testOptions(t)
	buildOnce.Do(func() {
		builtDir, buildErr = os.MkdirTemp("", "imagetest-bin-")
		if buildErr == nil {
			builtBins, buildErr = BuildBinaries(context.Background(), o, builtDir)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBins
}

var (
	assembleOnce sync.Once
	assembled    v1.Image
	assembleErr  error
)

// testImage is the image of builtBinaries, assembled once per test
// process: compressing 130 MB under the race detector takes seconds.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	bins := builtBinaries(t)
	assembleOnce.Do(func() {
		assembled, assembleErr = Assemble(testOptions(t), bins)
		if assembleErr == nil {
			_, assembleErr = assembled.Digest()
		}
	})
	if assembleErr != nil {
		t.Fatal(assembleErr)
	}
	return assembled
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// TestReproducible builds the image twice, from two go builds into two
// directories whose binaries carry different file times, and writes both
// as archives: the digests and the archives' bytes must be the same.
func TestReproducible(t *testing.T) {
	o := testOptions(t)
	first := builtBinaries(t)
	second, err := BuildBinaries(context.Background(), o, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range second {
		if err := os.Chtimes(p, time.Now(), time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	var digests [2]v1.Hash
	var sums [2][sha256.Size]byte
	for i, bins := range []map[string]string{first, second} {
		img := testImage(t)
		if i == 1 {
			if img, err = Assemble(o, bins); err != nil {
				t.Fatal(err)
			}
		}
		if digests[i], err = img.Digest(); err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, fmt.Sprintf("%d.oci.tar", i))
		if err := Write(img, file, "oci", "agentwatch:"+Tag(o.Version)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		sums[i] = sha256.Sum256(b)
	}
	if digests[0] != digests[1] {
		t.Fatalf("two builds of one commit: digests %s and %s differ", digests[0], digests[1])
	}
	if sums[0] != sums[1] {
		t.Fatalf("two builds of one commit: digests equal (%s) but archives differ", digests[0])
	}
	t.Logf("both builds: %s", digests[0])

}

// TestInputsChangeDigest checks the other side of reproducibility: each
// input reaches the digest, so TestReproducible cannot pass for a builder
// that ignores its inputs. Small stand-in files keep it fast.
func TestInputsChangeDigest(t *testing.T) {
	dir := t.TempDir()
	bins := map[string]string{}
	for _, b := range Binaries {
		bins[b] = filepath.Join(dir, b)
		if err := os.WriteFile(bins[b], []byte("#!/bin/false "+b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	o := testOptions(t)
	digest := func(o Options) v1.Hash {
		t.Helper()
		img, err := Assemble(o, bins)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	base := digest(o)
	if again := digest(o); again != base {
		t.Fatalf("same inputs, digests %s and %s", base, again)
	}
	for name, change := range map[string]func(*Options){
		"created": func(o *Options) { o.Created = o.Created.Add(time.Second) },
		"version": func(o *Options) { o.Version += "x" },
		"commit":  func(o *Options) { o.Commit = strings.Repeat("f", 40) },
		"arch":    func(o *Options) { o.Arch = "arm64" },
	} {
		o2 := o
		change(&o2)
		if d := digest(o2); d == base {
			t.Errorf("another %s gave the same digest %s", name, d)
		}
	}
	if err := os.WriteFile(bins["ingest"], []byte("changed"), 0o755); err != nil {
		t.Fatal(err)
	}
	if d := digest(o); d == base {
		t.Errorf("another ingest binary gave the same digest %s", d)
	}
}

// TestImageRuns writes the image, reads it back from the archive as a
// runtime would, checks its config and files, unpacks it and runs every
// binary's version command from the unpacked root: under chroot as the
// image's user, and (so a missing chroot cannot hide a broken binary)
// directly from the unpacked files.
func TestImageRuns(t *testing.T) {
	o := testOptions(t)
	built := testImage(t)
	for _, format := range Formats {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "image.tar")
			if err := Write(built, file, format, "agentwatch:"+Tag(o.Version)); err != nil {
				t.Fatal(err)
			}
			img, err := Read(file, filepath.Join(dir, "layout"))
			if err != nil {
				t.Fatal(err)
			}
			// A docker save archive keeps the config and the layers but
			// not the manifest (docker load writes its own), so the config
			// digest is what must survive both formats.
			want, _ := built.ConfigName()
			if got, err := img.ConfigName(); err != nil || got != want {
				t.Fatalf("config digest read back = %v, %v; want %s", got, err, want)
			}
			if format == "oci" {
				want, _ := built.Digest()
				if got, err := img.Digest(); err != nil || got != want {
					t.Fatalf("digest read back = %v, %v; want %s", got, err, want)
				}
			}
			checkConfig(t, img, o)
			rootfs := filepath.Join(dir, "rootfs")
			if err := Extract(img, rootfs); err != nil {
				t.Fatal(err)
			}
			checkFiles(t, rootfs, o)
			runVersions(t, img, rootfs)
			if format == "oci" {
				runEntrypoint(t, img, rootfs)
			}
		})
	}
}

func checkConfig(t *testing.T, img v1.Image, o Options) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	uid, gid, err := parseUser(cf.Config.User)
	if err != nil {
		t.Fatal(err)
	}
	if uid == 0 || gid == 0 || uid != UID || gid != GID {
		t.Errorf("config user = %q; want the non-root %d:%d", cf.Config.User, UID, GID)
	}
	if got := strings.Join(cf.Config.Entrypoint, " "); got != Entrypoint {
		t.Errorf("entrypoint = %q; want %q", got, Entrypoint)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform = %s/%s; want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if !cf.Created.Time.Equal(testCreated) {
		t.Errorf("created = %s; want %s", cf.Created.Time, testCreated)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version":  testVersion,
		"org.opencontainers.image.revision": testCommit,
		"org.opencontainers.image.source":   DefaultSource,
		"org.opencontainers.image.created":  "2026-01-02T03:04:05Z",
	} {
		if got := cf.Config.Labels[k]; got != v {
			t.Errorf("label %s = %q; want %q", k, got, v)
		}
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Annotations["org.opencontainers.image.revision"]; m.MediaType == "application/vnd.oci.image.manifest.v1+json" && got != testCommit {
		t.Errorf("manifest annotation revision = %q; want %q", got, testCommit)
	}
	if len(m.Layers) != 2 {
		t.Errorf("%d layers; want 2 (base files, binaries)", len(m.Layers))
	}
}

func checkFiles(t *testing.T, rootfs string, o Options) {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(rootfs, CACertsPath))
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.ReadFile(o.CACerts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca, host) {
		t.Errorf("image's CA bundle differs from %s", o.CACerts)
	}
	passwd, err := os.ReadFile(filepath.Join(rootfs, "etc", "passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(passwd), fmt.Sprintf("nonroot:x:%d:%d:", UID, GID)) {
		t.Errorf("/etc/passwd has no nonroot user %d:\n%s", UID, passwd)
	}
	entries, err := os.ReadDir(filepath.Join(rootfs, filepath.FromSlash(BinDir)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != strings.Join(Binaries, " ") {
		t.Errorf("%s holds %v; want exactly %v", BinDir, names, Binaries)
	}
	if st, err := os.Stat(filepath.Join(rootfs, filepath.FromSlash(StateDir))); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("state dir %s: %v, %v; want a directory of mode 0700", StateDir, st, err)
	}
}

func runVersions(t *testing.T, img v1.Image, rootfs string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	uid, gid, err := parseUser(cf.Config.User)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range Binaries {
		want := fmt.Sprintf("%s %s (commit %s, %s)", b, testVersion, testCommit, runtime.Version())
		// Straight from the unpacked files: static binaries need no loader.
		out, err := exec.Command(filepath.Join(rootfs, filepath.FromSlash(BinDir), b), "version").CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != want {
			t.Errorf("unpacked %s version = %q, %v; want %q", b, got, err, want)
		}
		if os.Geteuid() != 0 {
			continue // reported once below
		}
		cmd := Command(rootfs, cf.Config, uid, gid, b, "version")
		out, err = cmd.CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != want {
			t.Errorf("chroot %s, user %s: %s version = %q, %v; want %q", rootfs, cf.Config.User, b, got, err, want)
		}
	}
	if os.Geteuid() != 0 {
		t.Skipf("the binaries ran from the unpacked image, but not under chroot: chroot(2) needs root (CAP_SYS_CHROOT) and this test runs as uid %d", os.Geteuid())
	}
}

// runEntrypoint runs the image's entrypoint with its default arguments
// exactly as the config gives them: help on stdout, exit 0.
func runEntrypoint(t *testing.T, img v1.Image, rootfs string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return // runVersions skips the test with the reason
	}
	cf, _ := img.ConfigFile()
	uid, gid, _ := parseUser(cf.Config.User)
	ep := cf.Config.Entrypoint
	cmd := Command(rootfs, cf.Config, uid, gid, filepath.Base(ep[0]), append(ep[1:], cf.Config.Cmd...)...)
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), "agentwatch is the one-process entry point") {
		t.Fatalf("entrypoint %v: %v\n%s", ep, err, out)
	}
	// The working directory exists and belongs to the image's user, who
	// can write there (the responder's state_dir goes below it).
	cmd = Command(rootfs, cf.Config, uid, gid, "agentwatch", "simulate", "--help")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("agentwatch simulate --help as %s in %s: %v\n%s", cf.Config.User, cf.Config.WorkingDir, err, out)
	}
	st, err := os.Stat(filepath.Join(rootfs, filepath.FromSlash(cf.Config.WorkingDir)))
	if err != nil {
		t.Fatal(err)
	}
	if sys, ok := st.Sys().(interface{ Uid() uint32 }); ok && sys.Uid() != uid {
		t.Fatalf("working dir owned by %d; want %d", sys.Uid(), uid)
	}
}

func TestTag(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":                 "v1.2.3",
		"v1.2.3+meta":            "v1.2.3-meta",
		"abc1234-dirty":          "abc1234-dirty",
		"feature/x":              "feature-x",
		"":                       "dev",
		".hidden":                "hidden",
		strings.Repeat("a", 200): strings.Repeat("a", 128),
	} {
		if got := Tag(in); got != want {
			t.Errorf("Tag(%q) = %q; want %q", in, got, want)
		}
	}
}

func FuzzTag(f *testing.F) {
	f.Add("v1.2.3+meta")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		tag := Tag(v)
		if tag == "" || len(tag) > 128 || invalidTag.MatchString(tag) || strings.HasPrefix(tag, ".") || strings.HasPrefix(tag, "-") {
			t.Fatalf("Tag(%q) = %q: not a valid tag", v, tag)
		}
	})
}

// TestProductBinariesDoNotLinkImageBuilder keeps go-containerregistry
// out of what ships: only the image builder may link it.
func TestProductBinariesDoNotLinkImageBuilder(t *testing.T) {
	args := []string{"list", "-deps"}
	for _, b := range Binaries {
		args = append(args, "./cmd/"+b)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = itest.ModuleRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, bad := range []string{"github.com/google/go-containerregistry", "github.com/agentwatch/agentwatch/internal/tools/image"} {
		if strings.Contains(string(out), bad) {
			t.Errorf("a product binary links %s; keep it in cmd/imagebuild", bad)
		}
	}
	if !strings.Contains(string(out), "github.com/agentwatch/agentwatch/internal/platform/buildinfo") {
		t.Error("the product binaries do not link internal/platform/buildinfo: go list found the wrong packages")
	}
}

func TestSourceDate(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1767323045")
	got, err := SourceDate(context.Background(), ".")
	if err != nil || !got.Equal(time.Unix(1767323045, 0)) {
		t.Fatalf("SourceDate = %s, %v; want %s", got, err, time.Unix(1767323045, 0).UTC())
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := SourceDate(context.Background(), "."); err == nil {
		t.Fatal("SOURCE_DATE_EPOCH=yesterday accepted")
	}
	t.Setenv("SOURCE_DATE_EPOCH", "")
	got, err = SourceDate(context.Background(), itest.ModuleRoot(t))
	if err != nil || got.Before(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("commit time = %s, %v; want HEAD's time", got, err)
	}
}

// TestDockerfile keeps the Dockerfile, which cannot be built here (no
// Docker daemon), in step with the image builder: the same binaries, go
// build flags, user, files, entrypoint and labels.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(itest.ModuleRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	var cmds []string
	for _, bin := range Binaries {
		cmds = append(cmds, "./cmd/"+bin)
	}
	esc := func(s string) string { return strings.ReplaceAll(s, "\n", `\n`) }
	for what, want := range map[string]string{
		"static build": "CGO_ENABLED=0 go build -trimpath -buildvcs=false",
		"ldflags":      `-ldflags "` + buildinfo.LDFlags("${VERSION}", "${COMMIT}") + `"`,
		"binaries":     "-o /out/ " + strings.Join(cmds, " ") + "\n",
		"binary dir":   "COPY --from=build /out/ " + BinDir + "/\n",
		"passwd":       "printf '" + esc(Passwd) + "' > /rootfs/etc/passwd",
		"group":        "printf '" + esc(Group) + "' > /rootfs/etc/group",
		"CA bundle":    "cp " + CACertsPath + " /rootfs" + path.Dir(CACertsPath) + "/",
		"state dir":    fmt.Sprintf("chown %d:%d /rootfs/home/nonroot /rootfs%s", UID, GID, StateDir),
		"user":         "\nUSER " + User + "\n",
		"workdir":      "\nWORKDIR " + StateDir + "\n",
		"entrypoint":   `ENTRYPOINT ["` + Entrypoint + `"]`,
		"env":          "ENV PATH=" + BinDir + ":/usr/bin:/bin SSL_CERT_FILE=" + CACertsPath + "\n",
		"final base":   "\nFROM scratch\n",
		"go version":   "ARG GO_VERSION=" + strings.TrimPrefix(runtime.Version(), "go") + "\n",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile: %s: want %q in it", what, want)
		}
	}
	for k := range Labels(testOptions(t)) {
		if !strings.Contains(df, k+`="`) {
			t.Errorf("Dockerfile: no LABEL %s", k)
		}
	}
}
