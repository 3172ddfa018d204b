package respctl

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// writeAnchoredChain writes n bundles into cfg's state directory as the
// responder's snapshot step does in the embedded mode: chain file, audit
// file row, checkpoint signed with keyFile.
func writeAnchoredChain(t *testing.T, cfg config.Config, keyFile string, from, to int, agent string) {
	t.Helper()
	ctx := context.Background()
	if err := os.MkdirAll(cfg.Responder.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	chain, err := evidence.OpenFileChain(filepath.Join(cfg.Responder.StateDir, respond.ChainFile))
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	st, err := audit.OpenFileStore(filepath.Join(cfg.Responder.StateDir, respond.AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	al := audit.NewLogger(st, nil, nil)
	key, err := evidence.LoadPrivateKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := evidence.NewCheckpointer(evidence.CheckpointerOptions{Chain: chain, Audit: al, Key: key, Every: 1})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	for i := from; i <= to; i++ {
		a := anomaly.Anomaly{V: 1, ID: "an-" + string(rune('a'+i)), AgentID: agent, Kind: anomaly.Behaviour,
			WindowStartMs: start.UnixMilli(), WindowEndMs: start.Add(time.Minute).UnixMilli()}
		b, err := evidence.Snapshot(ctx, evidence.Request{ID: "ev-" + string(rune('a'+i)), IncidentID: "inc", Anomaly: a},
			&evidence.MemSource{}, chain, cfg.Responder.EvidenceRoot(), start.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if err := al.Append(ctx, audit.Record{Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: evidence.SnapshotAction,
			AgentID: agent, Result: audit.ResultOK, Detail: evidence.SnapshotDetail(b)}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := cp.AfterAppend(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// cutState keeps the first n records of the chain file and removes the
// bundles after them.
func cutState(t *testing.T, cfg config.Config, n int) {
	t.Helper()
	path := filepath.Join(cfg.Responder.StateDir, respond.ChainFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	for _, l := range lines[n:] {
		if len(l) == 0 {
			continue
		}
		r, err := evidence.ParseRecord(bytes.TrimSpace(l))
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(cfg.Responder.EvidenceRoot(), r.BundleID)
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o700)
			}
			return nil
		})
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, bytes.Join(lines[:n], nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyCommandAgainstTheAuditFile(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "checkpoint.key")
	if err := Keygen(KeygenOptions{Out: keyFile}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	verify := func(cfg config.Config, pub string) (string, error) {
		var out bytes.Buffer
		o := VerifyOptions{}
		if pub != "" {
			o.PublicKeys = []string{pub}
		}
		err := Verify(t.Context(), cfg, nil, o, &out)
		return out.String(), err
	}
	fresh := func(t *testing.T) config.Config {
		cfg := embeddedConfig(t)
		cfg.Responder.Evidence.CheckpointKeyFile = keyFile
		writeAnchoredChain(t, cfg, keyFile, 1, 4, "agent-1")
		return cfg
	}
	wantFail := func(t *testing.T, out string, err error, first string) {
		t.Helper()
		if err == nil {
			t.Fatalf("verify passed:\n%s", out)
		}
		if !strings.Contains(err.Error(), "first divergent record: "+first) {
			t.Fatalf("verify error does not start with the first divergent record %q:\n%v", first, err)
		}
	}

	t.Run("happy path", func(t *testing.T) {
		cfg := fresh(t)
		out, err := verify(cfg, keyFile+".pub")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"evidence chain verifies: 4 records", "audit trail: 4 bundle hashes", "checkpoints: 4 signed by key", "anchors seq 4", "0 records written since"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("newest bundle and its record deleted", func(t *testing.T) {
		cfg := fresh(t)
		cutState(t, cfg, 3)
		out, err := verify(cfg, "")
		wantFail(t, out, err, "seq 4: evidence bundle ev-e (seq 4)")
	})
	t.Run("rewritten from seq 2", func(t *testing.T) {
		cfg := fresh(t)
		cutState(t, cfg, 1)
		// The attacker has no key: they rewrite the bundles and the chain,
		// but the checkpoints and audit rows stay as they were.
		evil := filepath.Join(t.TempDir(), "evil.key")
		if err := Keygen(KeygenOptions{Out: evil}, &bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
		writeAnchoredChain(t, cfg, evil, 2, 4, "agent-2")
		out, err := verify(cfg, keyFile+".pub")
		wantFail(t, out, err, "seq 2: evidence bundle ev-c (seq 2)")
		// And with the attacker's key in the key file, the genuine
		// checkpoints fail instead.
		out, err = verify(cfg, evil)
		wantFail(t, out, err, "seq 1: evidence bundle ev-b (seq 1): checkpoint of seq 1")
	})
}
