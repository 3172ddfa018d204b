package chstore

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// TestIntegrationChainConformance runs the evidence.ChainStore table that
// evidence.FileChain passes (TestFileChainConformance) against Chain.
func TestIntegrationChainConformance(t *testing.T) {
	checkChainStore(t, func(t *testing.T) evidence.ChainStore { return NewChain(newStore(t)) })
}

// TestIntegrationChainTwoWriters: a second process that appends after the
// first one's Append returned is refused with ErrChainMoved; a fork made
// by two truly simultaneous appends is reported and stays visible.
func TestIntegrationChainTwoWriters(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	a, b := NewChain(st), NewChain(openSecond(t, st))
	a.now, b.now = fixedClock(time.UnixMilli(1_000_000)), fixedClock(time.UnixMilli(2_000_000))

	// b read the empty head, then a appended: b's append must fail.
	r1 := chainRecord(1, evidence.ZeroHash)
	if err := a.Append(ctx, r1); err != nil {
		t.Fatal(err)
	}
	stale := chainRecord(1, evidence.ZeroHash)
	stale.BundleID, stale.ManifestSHA256 = "ev-stale", hashOf("ev-stale")
	if err := b.Append(ctx, stale); !errors.Is(err, evidence.ErrChainMoved) {
		t.Fatalf("stale writer's Append = %v; want ErrChainMoved", err)
	}
	// b re-reads the head and extends it.
	h, seq, err := b.Head(ctx)
	if err != nil || seq != 1 || h != r1.ManifestSHA256 {
		t.Fatalf("b.Head = %s, %d, %v", h, seq, err)
	}
	r2 := chainRecord(2, h)
	if err := b.Append(ctx, r2); err != nil {
		t.Fatal(err)
	}

	// A fork: a and b both read head 2 and both insert at 3. a inserts
	// first (earlier appended_ms), b's insert lands before a checks.
	r3a := chainRecord(3, r2.ManifestSHA256)
	r3b := chainRecord(3, r2.ManifestSHA256)
	r3b.BundleID, r3b.ManifestSHA256 = "ev-3-fork", hashOf("ev-3-fork")
	if err := a.Append(ctx, r3a); err != nil {
		t.Fatal(err)
	}
	row := []any{r3b.Seq, r3b.BundleID, r3b.AgentID, r3b.AnomalyID, r3b.IncidentID, r3b.Path,
		r3b.ManifestSHA256, r3b.PrevSHA256, r3b.CreatedMs, b.now().UnixMilli()}
	if err := b.st.insertRows(ctx, "evidence_chain", chainColumns, row); err != nil {
		t.Fatal(err)
	}
	if err := b.checkFork(ctx, r3b); err == nil || errors.Is(err, evidence.ErrChainMoved) || !strings.Contains(err.Error(), "forked at seq 3") {
		t.Fatalf("fork check = %v; want a fork error", err)
	}
	// The chain goes on from the first appended record of seq 3.
	if h, seq, err := a.Head(ctx); err != nil || seq != 3 || h != r3a.ManifestSHA256 {
		t.Fatalf("Head after the fork = %s, %d, %v; want a's record", h, seq, err)
	}
	if err := a.Append(ctx, chainRecord(4, r3a.ManifestSHA256)); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range records(t, a) {
		got = append(got, r.BundleID)
	}
	if want := []string{r1.BundleID, r2.BundleID, r3a.BundleID, r3b.BundleID, chainRecord(4, r3a.ManifestSHA256).BundleID}; !slices.Equal(got, want) {
		t.Fatalf("Records = %v; want both branches of the fork %v", got, want)
	}

	// A retried insert's identical copy is yielded too, and is no fork.
	if err := a.st.insertRows(ctx, "evidence_chain", chainColumns, []any{r1.Seq, r1.BundleID, r1.AgentID, r1.AnomalyID,
		r1.IncidentID, r1.Path, r1.ManifestSHA256, r1.PrevSHA256, r1.CreatedMs, a.now().UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	if err := a.checkFork(ctx, r1); err != nil {
		t.Fatalf("an identical copy counted as a fork: %v", err)
	}
	if n := len(records(t, a)); n != 6 {
		t.Fatalf("Records yielded %d rows; want 6 with the copy", n)
	}

	// An edited row stops Records with an error naming it.
	if err := a.st.insertRows(ctx, "evidence_chain", chainColumns, []any{int64(9), "../x", "", "", "", "", "zz", "zz", int64(0), int64(0)}); err != nil {
		t.Fatal(err)
	}
	err = a.Records(ctx, func(evidence.Record) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "seq 9") {
		t.Fatalf("Records over an edited row = %v", err)
	}
}

// TestIntegrationSnapshotAndVerify takes evidence bundles the way the
// responder does in distributed mode, events from ClickHouse and the chain
// in ClickHouse, and verifies them.
func TestIntegrationSnapshotAndVerify(t *testing.T) {
	st := newStore(t)
	ctx := t.Context()
	t0 := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
	var evs []event.Event
	for i := range 50 {
		at := t0.Add(time.Duration(i-25) * 30 * time.Second).UnixMilli()
		evs = append(evs, event.Event{
			EventID: event.ID("raw", 0, int64(i)), EventTimeMs: at, IngestTimeMs: at + 5, AgentID: "agent-1",
			Method: "GET", Route: "/customers/{id}", Path: "/customers/1", Status: 200, ResponseBytes: 1000,
			UserAgent: "sdk,\"quoted\"\nnewline", Topic: "raw", Offset: int64(i),
		})
	}
	if err := st.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := st.InsertEvents(ctx, evs[:10]); err != nil { // a retried batch
		t.Fatal(err)
	}
	a := anomaly.Anomaly{
		V: anomaly.Version, ID: anomaly.ID("agent-1", t0.UnixMilli(), anomaly.Behaviour), AgentID: "agent-1",
		Kind: anomaly.Behaviour, WindowStartMs: t0.UnixMilli(), WindowEndMs: t0.Add(5 * time.Minute).UnixMilli(),
		Score: 12, Severity: "high", Summary: "test", DetectedMs: t0.Add(6 * time.Minute).UnixMilli(),
	}
	root := filepath.Join(t.TempDir(), "evidence")
	chain, src := NewChain(st), NewEvents(st)
	var bundles []evidence.Bundle
	for _, inc := range []string{"inc-1", "inc-2"} {
		b, err := evidence.Snapshot(ctx, evidence.Request{
			ID: evidence.BundleID(inc), IncidentID: inc, Anomaly: a,
			Before: 15 * time.Minute, After: 5 * time.Minute,
		}, src, chain, root, t0.Add(7*time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		bundles = append(bundles, b)
	}
	// The evidence window is [t0-15m, t0+10m).
	want := 0
	for _, e := range evs {
		if e.EventTimeMs >= t0.Add(-15*time.Minute).UnixMilli() && e.EventTimeMs < t0.Add(10*time.Minute).UnixMilli() {
			want++
		}
	}
	if got := bundles[0].Manifest.Events; got != int64(want) || bundles[1].Manifest.Seq != 2 {
		t.Fatalf("bundle 1 holds %d events (want %d, each once); bundle 2 is seq %d", got, want, bundles[1].Manifest.Seq)
	}
	if err := evidence.VerifyChain(ctx, chain, root); err != nil {
		t.Fatal(err)
	}
	if b, err := evidence.Resume(ctx, chain, root, bundles[0].Manifest.BundleID); err != nil || b.SHA256 != bundles[0].SHA256 {
		t.Fatalf("Resume = %+v, %v", b, err)
	}
	// Tampering with a bundle is found through the ClickHouse chain.
	p := filepath.Join(bundles[1].Path, evidence.SummaryTXT)
	if err := os.Chmod(bundles[1].Path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("nothing to see"), 0o644); err != nil {
		t.Fatal(err)
	}
	if ies := evidence.IntegrityErrors(evidence.VerifyChain(ctx, chain, root)); len(ies) == 0 {
		t.Fatal("VerifyChain did not notice an edited summary")
	}
}
