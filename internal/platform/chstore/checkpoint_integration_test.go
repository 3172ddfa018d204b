package chstore

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// anchoredChain is the distributed mode's evidence: the chain in the
// evidence_chain table, snapshot rows and checkpoints in the audit table.
type anchoredChain struct {
	st    *Store
	chain *Chain
	audit *audit.Logger
	root  string
	key   ed25519.PrivateKey
	cp    *evidence.Checkpointer
}

func (a *anchoredChain) snapshot(t *testing.T, i int, agent string) evidence.Bundle {
	t.Helper()
	ctx := t.Context()
	t0 := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
	an := anomaly.Anomaly{V: anomaly.Version, ID: fmt.Sprintf("an-%d-%s", i, agent), AgentID: agent, Kind: anomaly.Behaviour,
		WindowStartMs: t0.UnixMilli(), WindowEndMs: t0.Add(time.Minute).UnixMilli()}
	b, err := evidence.Snapshot(ctx, evidence.Request{ID: fmt.Sprintf("ev-%d", i), IncidentID: "inc", Anomaly: an},
		&evidence.MemSource{}, a.chain, a.root, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.audit.Append(ctx, audit.Record{Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: evidence.SnapshotAction,
		AgentID: agent, Result: audit.ResultOK, Detail: evidence.SnapshotDetail(b)}); err != nil {
		t.Fatal(err)
	}
	if a.cp != nil {
		if _, _, err := a.cp.AfterAppend(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func (a *anchoredChain) verify(t *testing.T, pub ed25519.PublicKey) (evidence.Report, error) {
	t.Helper()
	an, err := evidence.ReadAnchors(t.Context(), a.audit)
	if err != nil {
		t.Fatal(err)
	}
	return evidence.VerifyAnchored(t.Context(), a.chain, a.root, an, pub)
}

// cutFrom deletes the chain rows from seq on, as someone with write
// access to ClickHouse would, and the bundles they name, and waits for
// the mutation to apply.
func (a *anchoredChain) cutFrom(t *testing.T, seq int64) {
	t.Helper()
	ctx := t.Context()
	for _, r := range records(t, a.chain) {
		if r.Seq < seq {
			continue
		}
		dir := filepath.Join(a.root, r.BundleID)
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
	if err := a.st.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE evidence_chain DELETE WHERE seq >= %d", seq)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_, head, err := a.chain.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if head == seq-1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chain's head is still seq %d two minutes after deleting seq >= %d", head, seq)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func wantFirst(t *testing.T, err error, seq int64, want string) {
	t.Helper()
	first := evidence.FirstDivergence(err)
	if err == nil || first == nil || first.Seq != seq || !strings.Contains(first.Error(), want) {
		t.Fatalf("first divergence = %v; want seq %d mentioning %q\nall: %v", first, seq, want, err)
	}
}

// TestIntegrationVerifyAgainstTheAuditTable: the audit table keeps each
// bundle's hash and the signed checkpoints, so cutting the chain in
// ClickHouse, rewriting it from one point, or re-signing with another key
// fails verify, naming the first divergent record; the untouched chain
// verifies.
func TestIntegrationVerifyAgainstTheAuditTable(t *testing.T) {
	st := newStore(t)
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	a := &anchoredChain{st: st, chain: NewChain(st), audit: audit.NewLogger(NewAudit(st), nil, nil), root: filepath.Join(t.TempDir(), "evidence"), key: key}
	if a.cp, err = evidence.NewCheckpointer(evidence.CheckpointerOptions{Chain: a.chain, Audit: a.audit, Key: key, Every: 1}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		a.snapshot(t, i, "agent-1")
	}

	rep, err := a.verify(t, pub)
	if err != nil || rep.Records != 5 || rep.AuditedBundles != 5 || rep.Checkpoints != 5 || rep.Latest == nil || rep.Latest.Seq != 5 {
		t.Fatalf("untouched chain: %+v, %v", rep, err)
	}
	// Another public key than the one that signed fails.
	_, other, _ := ed25519.GenerateKey(nil)
	_, err = a.verify(t, other.Public().(ed25519.PublicKey))
	wantFirst(t, err, 1, "not by the verifying key")

	// Truncation: the newest bundle and its chain row go.
	a.cutFrom(t, 5)
	if err := evidence.VerifyChain(t.Context(), a.chain, a.root); err != nil {
		t.Fatalf("the cut chain is self-consistent; VerifyChain alone passes it: %v", err)
	}
	_, err = a.verify(t, pub)
	wantFirst(t, err, 5, "ev-5")

	// Rewriting from seq 2, by someone without the key.
	a.cutFrom(t, 2)
	a.cp = nil
	for i := 2; i <= 5; i++ {
		a.snapshot(t, i, "agent-evil")
	}
	if err := evidence.VerifyChain(t.Context(), a.chain, a.root); err != nil {
		t.Fatalf("the rewritten chain is self-consistent; VerifyChain alone passes it: %v", err)
	}
	_, err = a.verify(t, pub)
	wantFirst(t, err, 2, "rewritten")

	// Replacing the key: the forger signs the rewritten head with their
	// own key. With the genuine public key their checkpoint fails; with
	// theirs the genuine ones do.
	_, evil, _ := ed25519.GenerateKey(nil)
	forger, err := evidence.NewCheckpointer(evidence.CheckpointerOptions{Chain: a.chain, Audit: a.audit, Key: evil})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := forger.Checkpoint(context.WithoutCancel(t.Context())); err != nil || !ok {
		t.Fatalf("forged checkpoint: %v", err)
	}
	_, err = a.verify(t, pub)
	wantFirst(t, err, 2, "rewritten")
	if !strings.Contains(err.Error(), "signed by key "+evidence.KeyID(evil.Public().(ed25519.PublicKey))) {
		t.Errorf("the forged checkpoint is not reported: %v", err)
	}
	_, err = a.verify(t, evil.Public().(ed25519.PublicKey))
	wantFirst(t, err, 1, "signed by key "+evidence.KeyID(pub))
}
