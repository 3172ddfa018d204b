package respond

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// TestSnapshotIsCheckpointedBeforeTheAlert: with a checkpoint key, the
// snapshot step signs the chain's head, the alert and the incident carry
// the checkpoint's reference, and the chain verifies against the audit
// trail and the checkpoint.
func TestSnapshotIsCheckpointedBeforeTheAlert(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "checkpoint.key")
	pub, err := evidence.GenerateKey(keyFile, keyFile+".pub")
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, func(c *config.Config) {
		c.Responder.Evidence.CheckpointKeyFile = keyFile
		c.Responder.Evidence.CheckpointInterval = 0
	})
	ctx := context.Background()
	r.kong.Add("agent-1", "cred-1", "secret-key")
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()
	for i := range 5 {
		r.events.Add(event.Event{EventID: fmt.Sprintf("e%d", i), EventTimeMs: start + int64(i)*1000, AgentID: "agent-1", Method: "GET", Route: "/a", Path: "/a", Status: 200})
	}
	a := exfil("an-1", "agent-1", "cred-1", start)
	if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
		t.Fatal(err)
	}
	r.settle()
	in, ok := r.svc.Engine.Incident(IncidentID(a))
	if !ok || len(in.Snapshots) != 1 {
		t.Fatalf("incident %+v: want one bundle", in)
	}
	cp, ok := r.svc.Checkpoints.Latest()
	if !ok || cp.Seq != 1 || in.Checkpoint != cp.Ref() {
		t.Fatalf("latest checkpoint %+v (%v), incident's %q; want seq 1 and its reference", cp, ok, in.Checkpoint)
	}
	var posted bool
	for _, p := range r.slack.Posts() {
		posted = posted || strings.Contains(p.Blocks, cp.Ref())
	}
	if !posted {
		t.Errorf("no Slack post carries the checkpoint reference %q: %+v", cp.Ref(), r.slack.Posts())
	}
	an, err := evidence.ReadAnchors(ctx, r.svc.Audit)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := evidence.VerifyAnchored(ctx, r.svc.Chain, r.svc.Evidence, an, pub)
	if err != nil || rep.AuditedBundles != 1 || rep.Latest == nil || rep.Latest.Seq != 1 || rep.Unanchored != 0 {
		t.Fatalf("VerifyAnchored = %+v, %v", rep, err)
	}
}

// TestBuildRefusesAnOpenKeyFile: a checkpoint key others may read would
// let them forge checkpoints, so the responder does not start with it.
func TestBuildRefusesAnOpenKeyFile(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "checkpoint.key")
	if _, err := evidence.GenerateKey(keyFile, keyFile+".pub"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadEnv("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Responder.StateDir = t.TempDir()
	cfg.Responder.Evidence.CheckpointKeyFile = keyFile
	_, err = Build(cfg, Deps{Getenv: func(string) string { return "" }}, nil, prometheus.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), "responder.evidence.checkpoint_key_file") || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Build with a 0644 key = %v; want refused, naming the key and the fix", err)
	}
}

// TestStartSaysWhenEvidenceIsOpen: bundles written with the old modes
// (0444 files, 0555 directories, a 0755 root) are reported at start, with
// the command that fixes them, and counted in a metric.
func TestStartSaysWhenEvidenceIsOpen(t *testing.T) {
	cfg, err := config.LoadEnv("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Responder.StateDir = t.TempDir()
	root := cfg.Responder.EvidenceRoot()
	old := filepath.Join(root, "ev-old")
	if err := os.MkdirAll(old, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(old, "events.jsonl"), []byte("{}\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(old, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(old, 0o700) })
	var logs strings.Builder
	reg := prometheus.NewRegistry()
	svc, err := Build(cfg, Deps{Getenv: func(string) string { return "" }}, slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if got := logs.String(); !strings.Contains(got, "evidence readable by other users") || !strings.Contains(got, "chmod -R go-rwx "+root) {
		t.Fatalf("start logs do not report the open evidence:\n%s", got)
	}
	if n := gauge(t, reg, "agentwatch_responder_evidence_open_mode_paths"); n != 3 {
		t.Fatalf("open mode paths = %v; want 3 (the root, the bundle, its file)", n)
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
