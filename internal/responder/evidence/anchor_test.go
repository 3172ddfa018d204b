package evidence

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// anchored is a fixture whose bundles are audited and checkpointed as the
// responder does it, with the embedded mode's audit file.
type anchored struct {
	*fixture
	audit *audit.FileStore
	key   ed25519.PrivateKey
	cp    *Checkpointer
}

func newAnchored(t *testing.T, n int) *anchored {
	t.Helper()
	f := newFixture(t)
	st, err := audit.OpenFileStore(filepath.Join(t.TempDir(), "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	a := &anchored{fixture: f, audit: st, key: newKey(t)}
	a.cp = a.checkpointer(t, a.key)
	for i := 1; i <= n; i++ {
		a.snapshot(t, bundleName(i), "agent-7")
	}
	return a
}

func newKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func bundleName(i int) string { return "ev-" + string(rune('0'+i/10)) + string(rune('0'+i%10)) }

func (a *anchored) checkpointer(t *testing.T, key ed25519.PrivateKey) *Checkpointer {
	t.Helper()
	n := 0
	cp, err := NewCheckpointer(CheckpointerOptions{Chain: a.chain, Audit: a.audit, Key: key, Every: 1,
		Now: func() time.Time { n++; return t0.Add(time.Duration(n) * time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// snapshot writes a bundle, audits it and checkpoints the head, as the
// responder's snapshot step does.
func (a *anchored) snapshot(t *testing.T, id, agent string) Bundle {
	t.Helper()
	b := a.fixture.snapshot(t, id, agent)
	rec := audit.Record{AtMs: b.Manifest.CreatedMs, Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: SnapshotAction,
		Result: audit.ResultOK, Detail: SnapshotDetail(b)}
	rec.ID = rec.ContentID()
	if err := a.audit.Append(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	if cp, ok, err := a.cp.AfterAppend(context.Background()); err != nil || !ok || cp.Seq != b.Manifest.Seq || cp.HeadSHA256 != b.SHA256 {
		t.Fatalf("AfterAppend = %+v %v %v; want a checkpoint of seq %d %s", cp, ok, err, b.Manifest.Seq, b.SHA256)
	}
	return b
}

func (a *anchored) verify(t *testing.T, pub ed25519.PublicKey) (Report, error) {
	t.Helper()
	an, err := ReadAnchors(context.Background(), a.audit)
	if err != nil {
		t.Fatal(err)
	}
	if pub == nil {
		return VerifyAnchored(context.Background(), a.chain, a.root, an)
	}
	return VerifyAnchored(context.Background(), a.chain, a.root, an, pub)
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// cutChain keeps the first n records of the chain file, as an attacker
// with write access to the state directory would.
func (a *anchored) cutChain(t *testing.T, n int) {
	t.Helper()
	path := a.chain.path
	a.chain.Close()
	lines := bytes.SplitAfter(mustRead(t, path), []byte("\n"))
	if err := os.WriteFile(path, bytes.Join(lines[:n], nil), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := OpenFileChain(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a.chain = c
}

func (a *anchored) removeBundle(t *testing.T, id string) {
	t.Helper()
	dir := filepath.Join(a.root, id)
	makeWritable(dir)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
}

// wantDivergence checks that err holds integrity problems and that the
// first divergent record is seq, with want in its reason.
func wantDivergence(t *testing.T, err error, seq int64, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("verify passed; want it to fail at seq %d", seq)
	}
	first := FirstDivergence(err)
	if first == nil {
		t.Fatalf("verify failed without an integrity error: %v", err)
	}
	if first.Seq != seq || !strings.Contains(first.Error(), want) {
		t.Fatalf("first divergence = %v (seq %d); want seq %d mentioning %q\nall: %v", first, first.Seq, seq, want, err)
	}
}

func TestVerifyAnchoredHappyPath(t *testing.T) {
	a := newAnchored(t, 4)
	rep, err := a.verify(t, pubOf(a.key))
	if err != nil {
		t.Fatalf("an untouched chain does not verify: %v", err)
	}
	if rep.Records != 4 || rep.HeadSeq != 4 || rep.AuditedBundles != 4 || rep.Checkpoints != 4 || rep.Latest == nil ||
		rep.Latest.Seq != 4 || rep.Latest.HeadSHA256 != rep.HeadSHA256 || rep.Unanchored != 0 || len(rep.KeyIDs) != 1 || rep.KeyIDs[0] != KeyID(pubOf(a.key)) {
		t.Fatalf("report = %+v", rep)
	}
	// A fifth bundle without a checkpoint yet is not a problem: it is
	// counted as not yet anchored.
	a.fixture.snapshot(t, bundleName(5), "agent-7")
	if rep, err = a.verify(t, pubOf(a.key)); err != nil || rep.Unanchored != 1 || rep.Latest.Seq != 4 {
		t.Fatalf("after an unanchored bundle: %+v, %v; want 1 unanchored record", rep, err)
	}
}

// TestVerifyCatchesTruncation: deleting the newest bundle and its chain
// record leaves a chain that VerifyChain alone accepts; the audit row and
// the checkpoint of seq 5 remain and name it.
func TestVerifyCatchesTruncation(t *testing.T) {
	a := newAnchored(t, 5)
	a.removeBundle(t, bundleName(5))
	a.cutChain(t, 4)
	if err := VerifyChain(context.Background(), a.chain, a.root); err != nil {
		t.Fatalf("the cut chain is self-consistent, so VerifyChain should pass (the gap this test closes): %v", err)
	}
	_, err := a.verify(t, pubOf(a.key))
	wantDivergence(t, err, 5, "ev-05")
	if !strings.Contains(err.Error(), "records 5 to 5 were cut") {
		t.Errorf("the checkpoint's finding is missing: %v", err)
	}
	// Without a key the audit rows alone still catch it.
	_, err = a.verify(t, nil)
	wantDivergence(t, err, 5, "no record of it")
}

// TestVerifyCatchesRewriting: every bundle and record from seq 3 on is
// rewritten and the chain recomputed, so the chain and bundles agree; the
// hashes in the audit trail and the checkpoints do not.
func TestVerifyCatchesRewriting(t *testing.T) {
	a := newAnchored(t, 6)
	for i := 3; i <= 6; i++ {
		a.removeBundle(t, bundleName(i))
	}
	a.cutChain(t, 2)
	for i := 3; i <= 6; i++ {
		a.fixture.snapshot(t, bundleName(i), "agent-9") // another agent's timeline: other content, other hashes
	}
	if err := VerifyChain(context.Background(), a.chain, a.root); err != nil {
		t.Fatalf("the rewritten chain is self-consistent, so VerifyChain should pass (the gap this test closes): %v", err)
	}
	_, err := a.verify(t, pubOf(a.key))
	wantDivergence(t, err, 3, "rewritten")
	for _, seq := range []int64{3, 4, 5, 6} {
		n := 0
		for _, e := range IntegrityErrors(err) {
			if e.Seq == seq {
				n++
			}
		}
		if n != 2 { // the audit row's hash and the checkpoint's
			t.Errorf("seq %d: %d problems, want 2 (audit row and checkpoint)\n%v", seq, n, err)
		}
	}
}

// TestVerifyCatchesAReplacedKey: after rewriting, the attacker puts their
// own key in the key file and signs a checkpoint of the new head. With the
// genuine public key that checkpoint fails; with the key derived from the
// replaced file the genuine checkpoints fail. Either way verify fails.
func TestVerifyCatchesAReplacedKey(t *testing.T) {
	a := newAnchored(t, 4)
	a.removeBundle(t, bundleName(4))
	a.cutChain(t, 3)
	a.fixture.snapshot(t, bundleName(4), "agent-9")
	forged := newKey(t)
	if _, ok, err := a.checkpointer(t, forged).Checkpoint(context.Background()); err != nil || !ok {
		t.Fatalf("forged checkpoint: %v", err)
	}

	_, err := a.verify(t, pubOf(a.key))
	wantDivergence(t, err, 4, "")
	if !strings.Contains(err.Error(), "signed by key "+KeyID(pubOf(forged))+", not by the verifying key") {
		t.Errorf("the forged checkpoint is not named: %v", err)
	}
	_, err = a.verify(t, pubOf(forged))
	wantDivergence(t, err, 1, "signed by key "+KeyID(pubOf(a.key)))
}

// TestVerifyWithAnotherKeyFails: an untouched chain checked with a public
// key that did not sign its checkpoints fails, naming the first.
func TestVerifyWithAnotherKeyFails(t *testing.T) {
	a := newAnchored(t, 2)
	other := pubOf(newKey(t))
	rep, err := a.verify(t, other)
	wantDivergence(t, err, 1, "not by the verifying key "+KeyID(other))
	if rep.Checkpoints != 0 || !strings.Contains(err.Error(), "holds no checkpoint signed by key "+KeyID(other)) {
		t.Fatalf("report %+v, err %v", rep, err)
	}
}

// TestVerifyAcrossAKeyRotation: after a rotation the chain verifies with
// both public keys given, and not with the new one alone.
func TestVerifyAcrossAKeyRotation(t *testing.T) {
	a := newAnchored(t, 2)
	next := newKey(t)
	a.cp = a.checkpointer(t, next)
	a.snapshot(t, bundleName(3), "agent-7")
	an, err := ReadAnchors(context.Background(), a.audit)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyAnchored(context.Background(), a.chain, a.root, an, pubOf(a.key), pubOf(next))
	if err != nil || rep.Checkpoints != 3 || rep.Latest.Seq != 3 || rep.Latest.KeyID != KeyID(pubOf(next)) {
		t.Fatalf("with both keys: %+v, %v", rep, err)
	}
	_, err = VerifyAnchored(context.Background(), a.chain, a.root, an, pubOf(next))
	wantDivergence(t, err, 1, "signed by key "+KeyID(pubOf(a.key)))
}

// TestAlteredCheckpointFails: a checkpoint row whose fields were edited
// (the key id kept) fails its signature; a row that does not parse is a
// problem too.
func TestAlteredCheckpointFails(t *testing.T) {
	a := newAnchored(t, 2)
	cp, _ := a.cp.Latest()
	cp.Seq = 1
	bad := []audit.Record{
		{AtMs: 1, Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: audit.ActionCheckpoint, Result: audit.ResultOK, Detail: cp.String()},
		{AtMs: 2, Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: audit.ActionCheckpoint, Result: audit.ResultOK, Detail: "checkpoint v1 seq=1"},
	}
	for i := range bad {
		bad[i].ID = bad[i].ContentID()
	}
	if err := a.audit.Append(context.Background(), bad...); err != nil {
		t.Fatal(err)
	}
	_, err := a.verify(t, pubOf(a.key))
	wantDivergence(t, err, 1, "altered after signing")
	if !strings.Contains(err.Error(), "want 5 fields") {
		t.Errorf("the unreadable row is not reported: %v", err)
	}
}

func TestParseCheckpointRoundTrip(t *testing.T) {
	k := newKey(t)
	cp := SignCheckpoint(k, 42, strings.Repeat("ab", 32), t0)
	got, err := ParseCheckpoint(cp.String())
	if err != nil || got.String() != cp.String() || got.Verify(pubOf(k)) != nil {
		t.Fatalf("round trip of %s: %+v, %v", cp, got, err)
	}
	for _, bad := range []string{
		"",
		"checkpoint v2 seq=1",
		strings.Replace(cp.String(), "seq=42", "seq=042", 1),
		strings.Replace(cp.String(), "seq=42", "seq=0", 1),
		strings.Replace(cp.String(), "head=ab", "head=AB", 1),
		strings.Replace(cp.String(), " key=", " kid=", 1),
		cp.String() + " extra=1",
		cp.String()[:len(cp.String())-4],
	} {
		if _, err := ParseCheckpoint(bad); err == nil {
			t.Errorf("ParseCheckpoint(%q) accepted", bad)
		}
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	_, k, _ := ed25519.GenerateKey(nil)
	f.Add(SignCheckpoint(k, 7, strings.Repeat("0f", 32), t0).String())
	f.Add("checkpoint v1 seq=1 head=x at_ms=1 key=0 sig=")
	f.Fuzz(func(t *testing.T, s string) {
		cp, err := ParseCheckpoint(s)
		if err != nil {
			return
		}
		if cp.String() != s {
			t.Fatalf("ParseCheckpoint(%q) = %+v, which prints as %q", s, cp, cp.String())
		}
	})
}

// TestCheckpointerRunAnchorsAtStartAndShutdown: Run signs the head it
// finds, and once more when its context ends, covering what was written
// meanwhile; it does not sign an unchanged head twice.
func TestCheckpointerRunAnchorsAtStartAndShutdown(t *testing.T) {
	a := newAnchored(t, 0)
	a.fixture.snapshot(t, bundleName(1), "agent-7")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cp := a.checkpointer(t, a.key)
	go func() { done <- cp.Run(ctx) }()
	for {
		if c, ok := cp.Latest(); ok && c.Seq == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	a.fixture.snapshot(t, bundleName(2), "agent-7")
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c, ok := cp.Latest(); !ok || c.Seq != 2 {
		t.Fatalf("after shutdown the latest checkpoint is %+v; want seq 2", c)
	}
	rep, err := a.verify(t, pubOf(a.key))
	if err != nil || rep.Checkpoints != 2 || rep.Unanchored != 0 {
		t.Fatalf("report %+v, %v; want 2 checkpoints (start, shutdown) and none unanchored", rep, err)
	}
}
