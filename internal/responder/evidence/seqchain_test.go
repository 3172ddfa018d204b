package evidence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/agentwatch/agentwatch/internal/platform/kstate"
)

// memLog is a sequencer shared by several chains: each Put is applied to
// every chain, in one order, before it returns (as kstate.Table does for
// its own process; the others follow later, which the fold does not mind).
type memLog struct {
	mu      sync.Mutex
	off     int64
	chains  []*SequencedChain
	history []kstate.Record
	// lost, when set, makes the next put land but lose its answer: lost
	// runs, and the put is retried (as kstate's committer does).
	lost func()
	// failLanded, when set, is the error of the next put, which lands
	// all the same (its answer lost, and not retried).
	failLanded error
}

// replay applies the whole log to c, as a process restoring the table does.
func (l *memLog) replay(c *SequencedChain) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.history {
		c.Apply(r)
	}
}

func (l *memLog) PutRetryAs(ctx context.Context, key string, value []byte, retryKey func(n int) string) (int64, error) {
	l.mu.Lock()
	lost := l.lost
	l.lost = nil
	l.mu.Unlock()
	if lost != nil {
		if _, err := l.put(ctx, key, value); err != nil {
			return 0, err
		}
		lost()
		key = retryKey(1)
	}
	l.mu.Lock()
	fail := l.failLanded
	l.failLanded = nil
	l.mu.Unlock()
	off, err := l.put(ctx, key, value)
	if fail != nil {
		return 0, fail
	}
	return off, err
}

// compacted returns the log as a reader sees it once compaction ran: the
// latest record of each key.
func (l *memLog) compacted() []kstate.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	latest := map[string]int64{}
	for _, r := range l.history {
		latest[r.Key] = r.Offset
	}
	var out []kstate.Record
	for _, r := range l.history {
		if latest[r.Key] == r.Offset {
			out = append(out, r)
		}
	}
	return out
}

func (l *memLog) put(_ context.Context, key string, value []byte) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := kstate.Record{Key: key, Value: value, Offset: l.off}
	l.off++
	l.history = append(l.history, r)
	for _, c := range l.chains {
		c.Apply(r)
	}
	return r.Offset, nil
}

type memMirror struct {
	mu      sync.Mutex
	recs    []Record
	failing int // the next inserts that fail
}

func (m *memMirror) Insert(_ context.Context, r Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failing > 0 {
		m.failing--
		return errors.New("store down")
	}
	m.recs = append(m.recs, r)
	return nil
}

func (m *memMirror) Records(_ context.Context, fn func(Record) error) error {
	m.mu.Lock()
	recs := append([]Record(nil), m.recs...)
	m.mu.Unlock()
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func hashOf(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// appendNext links a new bundle to c's head, retrying on ErrChainMoved as
// Snapshot does.
func appendNext(t *testing.T, c *SequencedChain, id string) int {
	t.Helper()
	for tries := 1; ; tries++ {
		head, seq, _ := c.Head(t.Context())
		rec := Record{Seq: seq + 1, BundleID: id, AgentID: "a", AnomalyID: "x", ManifestSHA256: hashOf(id + fmt.Sprint(tries)), PrevSHA256: head, CreatedMs: 1}
		err := c.Append(t.Context(), rec)
		if err == nil {
			return tries
		}
		if !errors.Is(err, ErrChainMoved) {
			t.Errorf("append %s: %v", id, err)
			return tries
		}
	}
}

func TestSequencedChainDoesNotForkUnderConcurrentWriters(t *testing.T) {
	mirror := &memMirror{}
	log := &memLog{}
	a, b := NewSequencedChain(mirror, nil), NewSequencedChain(mirror, nil)
	log.chains = []*SequencedChain{a, b}
	a.Attach(log)
	b.Attach(log)
	var wg sync.WaitGroup
	var mu sync.Mutex
	moved := 0
	for i := range 100 {
		c := a
		if i%2 == 1 {
			c = b
		}
		wg.Go(func() {
			tries := appendNext(t, c, fmt.Sprintf("bundle-%03d", i))
			mu.Lock()
			moved += tries - 1
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(mirror.recs) != 100 {
		t.Fatalf("mirror holds %d records, want 100", len(mirror.recs))
	}
	bySeq := map[int64]Record{}
	for _, r := range mirror.recs {
		if _, dup := bySeq[r.Seq]; dup {
			t.Fatalf("two records at seq %d: the chain forked", r.Seq)
		}
		bySeq[r.Seq] = r
	}
	prev := ZeroHash
	for s := int64(1); s <= 100; s++ {
		r, ok := bySeq[s]
		if !ok {
			t.Fatalf("no record at seq %d", s)
		}
		if r.PrevSHA256 != prev {
			t.Fatalf("seq %d links to %s, want %s", s, r.PrevSHA256, prev)
		}
		prev = r.ManifestSHA256
	}
	ha, sa, _ := a.Head(t.Context())
	hb, sb, _ := b.Head(t.Context())
	if ha != hb || sa != sb || sa != 100 || ha != prev {
		t.Fatalf("heads disagree: a %d %s, b %d %s, chain ends at %s", sa, ha, sb, hb, prev)
	}
	t.Logf("%d appends were refused and relinked", moved)
}

func TestSequencedChainRetriedPutIsNotRefused(t *testing.T) {
	mirror := &memMirror{}
	log := &memLog{}
	c := NewSequencedChain(mirror, nil)
	log.chains = []*SequencedChain{c}
	c.Attach(log)
	rec := Record{Seq: 1, BundleID: "b1", AgentID: "a", AnomalyID: "x", ManifestSHA256: hashOf("b1"), PrevSHA256: ZeroHash, CreatedMs: 1}
	if err := c.Append(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	// The same record again (a produce retried after a lost answer).
	if err := c.Append(t.Context(), rec); err != nil {
		t.Fatalf("the same record again: %v", err)
	}
	// A different bundle at the taken seq is refused.
	other := rec
	other.BundleID, other.ManifestSHA256 = "b2", hashOf("b2")
	if err := c.Append(t.Context(), other); !errors.Is(err, ErrChainMoved) {
		t.Fatalf("a second record at seq 1: err = %v, want ErrChainMoved", err)
	}
	if _, seq, _ := c.Head(t.Context()); seq != 1 {
		t.Fatalf("head seq = %d, want 1", seq)
	}
	// The same bundle id with another manifest (written again on another
	// host after its first writer died) is never placed twice.
	again := Record{Seq: 2, BundleID: "b1", AgentID: "a", AnomalyID: "x", ManifestSHA256: hashOf("b1 again"), PrevSHA256: rec.ManifestSHA256, CreatedMs: 2}
	if err := c.Append(t.Context(), again); !errors.Is(err, ErrBundlePlaced) {
		t.Fatalf("a placed bundle id with another manifest: err = %v, want ErrBundlePlaced", err)
	}
	if _, seq, _ := c.Head(t.Context()); seq != 1 {
		t.Fatalf("head seq = %d after a refused bundle, want 1", seq)
	}
}

// An instance restoring from the compacted topic places the same records
// as the instances that followed it: a retried put whose first copy was
// placed, with another instance's record linked to it between the two
// copies; the same record appended again later; a bundle linked again
// after the chain moved; the same bundle id written again with another
// manifest (placed once).
func TestSequencedChainSameAfterCompaction(t *testing.T) {
	log := &memLog{}
	a, b := NewSequencedChain(&memMirror{}, nil), NewSequencedChain(&memMirror{}, nil)
	log.chains = []*SequencedChain{a, b}
	a.Attach(log)
	b.Attach(log)
	appendNext(t, a, "b0")
	log.lost = func() { appendNext(t, b, "b2") }
	rec := Record{Seq: 2, BundleID: "b1", AgentID: "a", AnomalyID: "x", ManifestSHA256: hashOf("b1"), PrevSHA256: hashOf("b01"), CreatedMs: 1}
	if err := a.Append(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	if tries := appendNext(t, a, "b3"); tries != 1 {
		t.Fatalf("b3 placed after %d tries", tries)
	}
	// The same record appended again (Resume after a write whose outcome
	// was unknown, before this instance applied it).
	if err := a.Append(t.Context(), rec); err != nil {
		t.Fatalf("b1 appended again: %v", err)
	}
	stale, staleSeq, _ := a.Head(t.Context())
	appendNext(t, b, "b4")
	b5 := Record{Seq: staleSeq + 1, BundleID: "b5", AgentID: "a", AnomalyID: "x", ManifestSHA256: hashOf("b5"), PrevSHA256: stale, CreatedMs: 1}
	if err := a.Append(t.Context(), b5); !errors.Is(err, ErrChainMoved) {
		t.Fatalf("b5 after a stale head: %v, want ErrChainMoved", err)
	}
	if tries := appendNext(t, a, "b5"); tries != 1 {
		t.Fatalf("b5 linked again placed after %d tries", tries)
	}
	again := rec
	again.Seq, again.ManifestSHA256 = 99, hashOf("b1 again")
	if err := a.Append(t.Context(), again); !errors.Is(err, ErrChainMoved) && !errors.Is(err, ErrBundlePlaced) {
		t.Fatalf("b1 again: %v", err)
	}
	head, seq, _ := a.Head(t.Context())
	if seq != 6 {
		t.Fatalf("head seq %d, want 6 (b0 b1 b2 b3 b4 b5)", seq)
	}
	restored := NewSequencedChain(&memMirror{}, nil)
	for _, r := range log.compacted() {
		restored.Apply(r)
	}
	if h, s, _ := restored.Head(t.Context()); h != head || s != seq {
		t.Fatalf("restored from the compacted topic: head seq %d %s; the instances that followed it: seq %d %s", s, h, seq, head)
	}
	for i, r := range a.placed {
		if got := restored.placed[i]; got.BundleID != r.BundleID || got.ManifestSHA256 != r.ManifestSHA256 {
			t.Fatalf("restored chain places %s at seq %d, the others %s", got.BundleID, i+1, r.BundleID)
		}
	}
}

// A snapshot whose put landed though its answer was lost is resumed from
// the fold: the mirror gets the record only at the next CatchUp, and
// until then Resume must not take the bundle for one the chain moved past.
func TestSequencedChainResumesALandedSnapshot(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	mirror := &memMirror{}
	log := &memLog{}
	c := NewSequencedChain(mirror, nil)
	log.chains = []*SequencedChain{c}
	c.Attach(log)
	if _, err := Snapshot(ctx, f.request("ev-0", "a"), f.src, c, f.root, t0); err != nil {
		t.Fatal(err)
	}
	log.failLanded = errors.New("i/o timeout")
	if _, err := Snapshot(ctx, f.request("ev-1", "a"), f.src, c, f.root, t0); !errors.Is(err, ErrUnrecorded) {
		t.Fatalf("snapshot whose answer was lost: %v, want ErrUnrecorded", err)
	}
	b, err := Resume(ctx, c, f.root, "ev-1")
	if err != nil || b.Manifest.Seq != 2 {
		t.Fatalf("Resume = %+v, %v; want the bundle at seq 2", b, err)
	}
	if _, seq, _ := c.Head(ctx); seq != 2 {
		t.Fatalf("head seq %d, want 2 (placed once)", seq)
	}
	if n, err := c.CatchUp(ctx); n != 1 || err != nil {
		t.Fatalf("CatchUp = %d, %v; want the one record the mirror lacked", n, err)
	}
	if err := VerifyChain(ctx, c, f.root); err != nil {
		t.Fatal(err)
	}
}

func TestSequencedChainCatchesTheMirrorUp(t *testing.T) {
	mirror := &memMirror{failing: 2}
	log := &memLog{}
	c := NewSequencedChain(mirror, nil)
	log.chains = []*SequencedChain{c}
	c.Attach(log)
	for i := range 5 {
		// Placed even when the mirror's insert fails.
		appendNext(t, c, fmt.Sprintf("b%d", i))
	}
	if len(mirror.recs) != 3 {
		t.Fatalf("mirror holds %d records, want 3 (two inserts failed)", len(mirror.recs))
	}
	n, err := c.CatchUp(t.Context())
	if err != nil || n != 2 {
		t.Fatalf("CatchUp = %d, %v; want 2 inserted", n, err)
	}
	if len(mirror.recs) != 5 {
		t.Fatalf("mirror holds %d records after catch-up, want 5", len(mirror.recs))
	}
	if n, _ := c.CatchUp(t.Context()); n != 0 {
		t.Fatalf("a second CatchUp inserted %d", n)
	}
	// A process that restores the log later folds the same chain.
	late := NewSequencedChain(mirror, nil)
	log.replay(late)
	h1, s1, _ := c.Head(t.Context())
	h2, s2, _ := late.Head(t.Context())
	if h1 != h2 || s1 != s2 || s1 != 5 {
		t.Fatalf("restored head %d %s, want %d %s", s2, h2, s1, h1)
	}
}

func TestSequencedChainIgnoresGarbageOnTheLog(t *testing.T) {
	c := NewSequencedChain(&memMirror{}, nil)
	c.Apply(kstate.Record{Key: "e/x", Value: []byte("{not json"), Offset: 0})
	c.Apply(kstate.Record{Key: "e/y", Value: []byte(`{"seq":1}`), Offset: 1})
	c.Apply(kstate.Record{Key: "e/z", Offset: 2}) // tombstone
	if h, s, _ := c.Head(t.Context()); s != 0 || h != ZeroHash {
		t.Fatalf("garbage moved the head to %d %s", s, h)
	}
}
