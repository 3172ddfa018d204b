package image

import (
	"archive/tar"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/agentwatch/agentwatch/internal/testkit/itest"
)

// TestIntegrationImageReadyz starts ingest, detector and responder from
// the unpacked image (chroot, the image's user, working directory and
// environment) against the real Kafka and ClickHouse, and waits for each
// one's /readyz: what `imagebuild bench` measures, once.
func TestIntegrationImageReadyz(t *testing.T) {
	brokers, ch := itest.KafkaBrokers(t), itest.ClickHouseAddr(t)
	if os.Geteuid() != 0 {
		msg := "the image's services run under chroot(2), which needs root; this test runs as uid " + strconv.Itoa(os.Geteuid())
		if os.Getenv("REQUIRE_INTEGRATION") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	img := testImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var logs strings.Builder
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	rep, err := Bench(ctx, img, rootfs, BenchOptions{
		Brokers: brokers, ClickHouse: ch, Runs: 2, ReadyTimeout: 2 * time.Minute,
	}, slog.New(slog.NewTextHandler(&logs, nil)))
	t.Logf("bench log:\n%s", logs.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", rep)
	for _, s := range Services {
		if len(rep.Ready[s]) != 2 {
			t.Errorf("%s: %d ready times; want 2 (a first start and a restart)", s, len(rep.Ready[s]))
		}
		for _, d := range rep.Ready[s] {
			if d <= 0 {
				t.Errorf("%s: ready after %s", s, d)
			}
		}
	}
	if rep.Sizes.Compressed <= 0 || rep.Sizes.Uncompressed <= rep.Sizes.Compressed {
		t.Errorf("sizes %+v: want 0 < compressed < uncompressed", rep.Sizes)
	}
	checkWritesConfined(t, img, rootfs)
}

// checkWritesConfined checks that the services wrote nothing into the
// image's filesystem outside the responder's state directory and /tmp,
// which is what lets the Helm chart run them with a read-only root
// filesystem and only those two writable mounts.
func checkWritesConfined(t *testing.T, img v1.Image, rootfs string) {
	t.Helper()
	inImage := map[string]bool{"/etc/agentwatch": true, "/etc/agentwatch/agentwatch.yaml": true} // the bench's configuration
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		inImage[path.Clean("/"+h.Name)] = true
	}
	err := filepath.WalkDir(rootfs, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(rootfs, p)
		name := path.Clean("/" + filepath.ToSlash(rel))
		if name == "/" || inImage[name] || strings.HasPrefix(name, StateDir+"/responder") || strings.HasPrefix(name, "/tmp/") {
			return nil
		}
		t.Errorf("a service wrote %s, outside the responder's state directory and /tmp: it would fail on a read-only root filesystem", name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The walk saw the services' writes: the responder's state is there.
	state, err := os.ReadDir(filepath.Join(rootfs, filepath.FromSlash(StateDir), "responder"))
	if err != nil || len(state) == 0 {
		t.Fatalf("responder state dir: %d entries, %v; the services wrote nothing the walk could see", len(state), err)
	}
}
