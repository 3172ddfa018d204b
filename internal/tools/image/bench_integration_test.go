package image

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
	rep, err := Bench(ctx, img, filepath.Join(t.TempDir(), "rootfs"), BenchOptions{
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
}
