// Package image builds agentwatch's container image without a Docker
// daemon: the four binaries, built static for Linux, on an empty base with
// only the CA bundle and a non-root user, written as an OCI image layout
// archive (podman load, skopeo copy oci-archive:, docker load on Docker 25
// and later) or as a `docker save` tarball.
//
// The image is reproducible: every file time and the creation time are
// one fixed instant (SOURCE_DATE_EPOCH, else the commit's time), layers
// are written in a fixed order with fixed owners, and the Go builds are
// -trimpath with fixed -ldflags, so one commit gives one digest.
//
// go-containerregistry is imported here and by cmd/imagebuild only; the
// product binaries never link it (a test checks with go list -deps).
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/agentwatch/agentwatch/internal/platform/buildinfo"
)

// The image's layout, which the Dockerfile, the Helm chart and the docs
// repeat (tests check the Dockerfile and the chart against these).
const (
	// UID and GID of the nonroot user every process of the image runs as.
	UID = 65532
	GID = 65532
	// User is the config's User: numeric, so that Kubernetes'
	// runAsNonRoot can check it without reading /etc/passwd.
	User = "65532:65532"
	// BinDir holds the binaries; it is on PATH.
	BinDir = "/usr/local/bin"
	// Entrypoint is the toolbox binary; the chart and the systemd units
	// run the service binaries by their paths instead.
	Entrypoint = BinDir + "/agentwatch"
	// StateDir is the working directory, writable by the nonroot user:
	// the responder's state_dir belongs on a volume mounted here.
	StateDir = "/var/lib/agentwatch"
	// CACertsPath is where Go's crypto/x509 looks first on Linux.
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// DefaultSource is the org.opencontainers.image.source label.
	DefaultSource = "https://github.com/agentwatch/agentwatch"
)

// Binaries are the commands the image carries, in the order of the layer.
// kafkawait and imagebuild are development tools and stay out.
var Binaries = []string{"agentwatch", "detector", "ingest", "responder"}

// Options say what to build. Zero values are filled by Defaults.
type Options struct {
	// Root is the module's root directory (where go.mod is).
	Root string
	// Version and Commit are stamped into the binaries and the labels.
	Version, Commit string
	// Source is the repository URL of the source label.
	Source string
	// Created is the image's creation time and every file's time.
	Created time.Time
	// Arch is the GOARCH to build for (amd64, arm64, ...); Linux only.
	Arch string
	// CACerts is the CA bundle to copy in: Debian's ca-certificates.
	CACerts string
	// GoCmd is the go command; "go" when empty.
	GoCmd string
}

// Defaults fills what o leaves empty: version and commit from git, the
// creation time from SOURCE_DATE_EPOCH or the commit's time, the host's
// architecture and the host's CA bundle.
func Defaults(ctx context.Context, o Options) (Options, error) {
	if o.Root == "" {
		o.Root = "."
	}
	if o.GoCmd == "" {
		o.GoCmd = "go"
	}
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = o.Root
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	var err error
	if o.Commit == "" {
		if o.Commit, err = git("rev-parse", "HEAD"); err != nil {
			return o, fmt.Errorf("commit: %w; pass --commit", err)
		}
	}
	if o.Version == "" {
		if o.Version, err = git("describe", "--tags", "--always", "--dirty"); err != nil {
			return o, fmt.Errorf("version: %w; pass --version", err)
		}
	}
	if o.Created.IsZero() {
		if o.Created, err = SourceDate(ctx, o.Root); err != nil {
			return o, err
		}
	}
	o.Created = o.Created.UTC().Truncate(time.Second)
	if o.Source == "" {
		o.Source = DefaultSource
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.CACerts == "" {
		o.CACerts = CACertsPath
	}
	return o, nil
}

// SourceDate is the reproducible build time: SOURCE_DATE_EPOCH (the
// reproducible-builds.org convention) when set, else the committer time
// of HEAD in root.
func SourceDate(ctx context.Context, root string) (time.Time, error) {
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		var sec int64
		if _, err := fmt.Sscan(v, &sec); err != nil || sec < 0 {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", v)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	cmd := exec.CommandContext(ctx, "git", "log", "-1", "--format=%ct")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return time.Time{}, fmt.Errorf("commit time (git log): %w; set SOURCE_DATE_EPOCH", err)
	}
	var sec int64
	if _, err := fmt.Sscan(string(out), &sec); err != nil {
		return time.Time{}, fmt.Errorf("commit time %q: %w", out, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// GoBuildArgs are the arguments of the go build of the image's binaries
// into dir: static (with CGO_ENABLED=0 in the environment), -trimpath,
// stamped. The Dockerfile repeats them.
func GoBuildArgs(o Options, dir string) []string {
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", buildinfo.LDFlags(o.Version, o.Commit), "-o", dir + string(filepath.Separator)}
	for _, b := range Binaries {
		args = append(args, "./cmd/"+b)
	}
	return args
}

// BuildBinaries builds the image's binaries into dir and returns their
// paths by name.
func BuildBinaries(ctx context.Context, o Options, dir string) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, o.GoCmd, GoBuildArgs(o, dir)...)
	cmd.Dir = o.Root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.Arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build for linux/%s: %w\n%s", o.Arch, err, out)
	}
	bins := make(map[string]string, len(Binaries))
	for _, b := range Binaries {
		bins[b] = filepath.Join(dir, b)
	}
	return bins, nil
}

// Labels are the image's OCI labels (config) and annotations (manifest).
func Labels(o Options) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "agentwatch",
		"org.opencontainers.image.description": "Watches AI agents as they call APIs, and stops the ones that misbehave",
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.revision":    o.Commit,
		"org.opencontainers.image.source":      o.Source,
		"org.opencontainers.image.created":     o.Created.Format(time.RFC3339),
	}
}

// Passwd and Group are the image's /etc/passwd and /etc/group: root (the
// owner of the files) and nonroot, who runs everything.
var (
	Passwd = fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID)
	Group  = fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID)
)

// entry is one file or directory of a layer.
type entry struct {
	name     string // absolute, in the image
	mode     int64
	uid, gid int
	dir      bool
	data     []byte
	src      string // a file to copy instead of data
}

// Assemble builds the image from built binaries (name → path): the empty
// base, a layer of the base files, a layer of the binaries, and the
// config (non-root user, entrypoint, labels).
func Assemble(o Options, bins map[string]string) (v1.Image, error) {
	ca, err := os.ReadFile(o.CACerts)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w; install Debian's ca-certificates or pass --ca-certs", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", o.CACerts)
	}
	base := []entry{
		{name: "/etc", mode: 0o755, dir: true},
		{name: "/etc/group", mode: 0o644, data: []byte(Group)},
		{name: "/etc/passwd", mode: 0o644, data: []byte(Passwd)},
		{name: "/etc/ssl", mode: 0o755, dir: true},
		{name: "/etc/ssl/certs", mode: 0o755, dir: true},
		{name: CACertsPath, mode: 0o644, data: ca},
		{name: "/home", mode: 0o755, dir: true},
		{name: "/home/nonroot", mode: 0o700, uid: UID, gid: GID, dir: true},
		{name: "/tmp", mode: 0o1777, dir: true},
		{name: "/var", mode: 0o755, dir: true},
		{name: "/var/lib", mode: 0o755, dir: true},
		{name: StateDir, mode: 0o700, uid: UID, gid: GID, dir: true},
	}
	app := []entry{
		{name: "/usr", mode: 0o755, dir: true},
		{name: "/usr/local", mode: 0o755, dir: true},
		{name: BinDir, mode: 0o755, dir: true},
	}
	for _, b := range Binaries {
		p, ok := bins[b]
		if !ok {
			return nil, fmt.Errorf("binary %s not built", b)
		}
		app = append(app, entry{name: path.Join(BinDir, b), mode: 0o755, src: p})
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range []struct {
		what    string
		entries []entry
	}{{"base files: CA certificates, nonroot user", base}, {"agentwatch binaries: " + strings.Join(Binaries, " "), app}} {
		layer, err := tarLayer(l.entries, o.Created)
		if err != nil {
			return nil, fmt.Errorf("layer of %s: %w", l.what, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     layer,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: o.Created}, CreatedBy: "imagebuild: " + l.what, Comment: "agentwatch " + o.Version},
		})
		if err != nil {
			return nil, fmt.Errorf("append layer of %s: %w", l.what, err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.Arch
	cf.Created = v1.Time{Time: o.Created}
	cf.Author = ""
	cf.Config = v1.Config{
		User:       User,
		Entrypoint: []string{Entrypoint},
		WorkingDir: StateDir,
		Env: []string{
			"PATH=" + BinDir + ":/usr/bin:/bin",
			"SSL_CERT_FILE=" + CACertsPath,
		},
		Labels: Labels(o),
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return mutate.Annotations(img, Labels(o)).(v1.Image), nil
}

// tarLayer writes entries as one gzip-compressed layer; every header has
// the time t, numeric owners and no user or group names, so the bytes
// depend on the contents only.
func tarLayer(entries []entry, t time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: strings.TrimPrefix(e.name, "/"), Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: t, Format: tar.FormatPAX,
		}
		var r io.Reader
		switch {
		case e.dir:
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		case e.src != "":
			f, err := os.Open(e.src)
			if err != nil {
				return nil, err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return nil, err
			}
			h.Typeflag, h.Size, r = tar.TypeReg, st.Size(), f
		default:
			h.Typeflag, h.Size, r = tar.TypeReg, int64(len(e.data)), bytes.NewReader(e.data)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		if r != nil {
			if _, err := io.Copy(tw, r); err != nil {
				return nil, fmt.Errorf("%s: %w", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// Extract unpacks img's layers into dir, the root of a filesystem that a
// chroot can run the binaries from. Owners are kept when running as root.
// Only what the image builder writes is accepted: directories and regular
// files, with no path that leaves dir.
func Extract(img v1.Image, dir string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	asRoot := os.Geteuid() == 0
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read layers: %w", err)
		}
		name := path.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		mode := os.FileMode(h.Mode & 0o777)
		if h.Mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("extract %s: %w", name, err)
			}
		default:
			return fmt.Errorf("extract %s: unexpected tar entry type %q", name, h.Typeflag)
		}
		if err := os.Chmod(target, mode); err != nil {
			return err
		}
		if asRoot {
			if err := os.Lchown(target, h.Uid, h.Gid); err != nil {
				return err
			}
		}
	}
}

// Formats are the archive formats Write can produce.
var Formats = []string{"oci", "docker"}

// Write writes img to file as an archive of format (oci or docker), named
// ref (e.g. agentwatch:v1.2.3) inside the archive.
func Write(img v1.Image, file, format, ref string) error {
	if !slices.Contains(Formats, format) {
		return fmt.Errorf("format %q: want one of %v", format, Formats)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp := file + ".tmp"
	var err error
	if format == "docker" {
		err = writeDocker(img, tmp, ref)
	} else {
		err = writeOCI(img, tmp, ref)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s archive %s: %w", format, file, err)
	}
	return os.Rename(tmp, file)
}
