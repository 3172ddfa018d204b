package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// invalidTag matches what a tag may not hold ([A-Za-z0-9_.-], 128 at most).
var invalidTag = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// Tag turns a version into a valid image tag: a `git describe` may hold a
// '+' or '/', which a tag may not.
func Tag(version string) string {
	t := invalidTag.ReplaceAllString(version, "-")
	t = strings.TrimLeft(t, ".-")
	if t == "" {
		t = "dev"
	}
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}

// writeOCI writes an OCI image layout (oci-layout, index.json, blobs) as
// a tar with fixed times and owners. It is written here rather than with
// layout.Write plus a tar of the directory, so nothing of the host's
// filesystem (times, owners, order) reaches the archive.
func writeOCI(img v1.Image, file, ref string) error {
	repo, tag, _ := strings.Cut(ref, ":")
	manifest, err := img.RawManifest()
	if err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1,
			Digest:    digest,
			Size:      int64(len(manifest)),
			Platform:  &v1.Platform{OS: cf.OS, Architecture: cf.Architecture},
			Annotations: map[string]string{
				// The tag, as the image-spec defines the annotation;
				// containerd (docker load) reads the full name from its own.
				"org.opencontainers.image.ref.name": tag,
				"io.containerd.image.name":          repo + ":" + tag,
			},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	configName, err := img.ConfigName()
	if err != nil {
		return err
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}

	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	t := cf.Created.Time
	put := func(name string, size int64, r io.Reader) error {
		h := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: t, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if r == nil {
			h = &tar.Header{Name: name, Mode: 0o755, ModTime: t, Typeflag: tar.TypeDir, Format: tar.FormatPAX}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if r == nil {
			return nil
		}
		n, err := io.Copy(tw, r)
		if err == nil && n != size {
			err = fmt.Errorf("%s: wrote %d bytes, want %d", name, n, size)
		}
		return err
	}
	putBytes := func(name string, b []byte) error { return put(name, int64(len(b)), bytes.NewReader(b)) }
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	if err := errors.Join(
		putBytes("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)),
		putBytes("index.json", indexJSON),
		put("blobs/", 0, nil),
		put("blobs/sha256/", 0, nil),
		putBytes(blob(digest), manifest),
		putBytes(blob(configName), rawConfig),
	); err != nil {
		return err
	}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return err
		}
		size, err := l.Size()
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		err = put(blob(d), size, rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// writeDocker writes a `docker save` tarball, for Docker before 25.
func writeDocker(img v1.Image, file, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(file, tag, img)
}

// Read reads the image of an archive written by Write, in either format.
// An OCI archive is unpacked into tmp first (a directory the caller
// owns and removes).
func Read(file, tmp string) (v1.Image, error) {
	kind, err := archiveKind(file)
	if err != nil {
		return nil, err
	}
	if kind == "docker" {
		return tarball.ImageFromPath(file, nil)
	}
	if err := untar(file, tmp); err != nil {
		return nil, fmt.Errorf("unpack %s: %w", file, err)
	}
	idx, err := layout.ImageIndexFromPath(tmp)
	if err != nil {
		return nil, fmt.Errorf("read OCI layout of %s: %w", file, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("%s holds %d images; want 1", file, len(im.Manifests))
	}
	return idx.Image(im.Manifests[0].Digest)
}

// archiveKind tells an OCI layout archive (it has oci-layout) from a
// docker save one (it has manifest.json).
func archiveKind(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%s is neither an OCI layout (no oci-layout) nor a docker save archive (no manifest.json)", file)
		}
		if err != nil {
			return "", fmt.Errorf("read %s: %w", file, err)
		}
		switch h.Name {
		case "oci-layout":
			return "oci", nil
		case "manifest.json":
			return "docker", nil
		}
	}
}

// maxEntry bounds one file of an archive: a blob of an agentwatch image
// is tens of MiB, and a sparse entry could otherwise claim terabytes.
const maxEntry = 1 << 30

// untar unpacks the regular files and directories of an archive into dir.
func untar(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		rel := filepath.Clean(filepath.FromSlash(h.Name))
		if rel == "." || filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return fmt.Errorf("entry %q leaves the archive's root", h.Name)
		}
		target := filepath.Join(dir, rel)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			if h.Size > maxEntry {
				return fmt.Errorf("entry %q: %d bytes, more than an image blob can be", h.Name, h.Size)
			}
			for k := range h.PAXRecords {
				if strings.HasPrefix(k, "GNU.sparse.") {
					return fmt.Errorf("entry %q: a sparse file, which an image layout never holds", h.Name)
				}
			}
			if err = os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			var out *os.File
			if out, err = os.Create(target); err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		default:
			err = fmt.Errorf("entry %q: unexpected type %q", h.Name, h.Typeflag)
		}
		if err != nil {
			return err
		}
	}
}

// Sizes are an image's sizes in bytes: compressed is what a registry
// stores and a node pulls (layers, config and manifest); uncompressed is
// what the layers unpack to.
type Sizes struct {
	Compressed, Uncompressed int64
}

// Size measures img.
func Size(img v1.Image) (Sizes, error) {
	var s Sizes
	m, err := img.RawManifest()
	if err != nil {
		return s, err
	}
	c, err := img.RawConfigFile()
	if err != nil {
		return s, err
	}
	s.Compressed = int64(len(m) + len(c))
	layers, err := img.Layers()
	if err != nil {
		return s, err
	}
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			return s, err
		}
		s.Compressed += n
		rc, err := l.Uncompressed()
		if err != nil {
			return s, err
		}
		u, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return s, err
		}
		s.Uncompressed += u
	}
	return s, nil
}
