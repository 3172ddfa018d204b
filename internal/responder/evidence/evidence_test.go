package evidence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/features"
)

var t0 = time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)

const window = 5 * time.Minute

func ms(d time.Duration) int64 { return t0.Add(d).UnixMilli() }

func testAnomaly(agent string) anomaly.Anomaly {
	ws := t0.UnixMilli()
	return anomaly.Anomaly{
		V: anomaly.Version, ID: anomaly.ID(agent, ws, anomaly.Behaviour), AgentID: agent,
		Role: "etl", Owner: "team-a", CredentialID: "cred-" + agent, Kind: anomaly.Behaviour,
		WindowStartMs: ws, WindowEndMs: ms(window), Score: 12.5, Severity: "high",
		Summary: "agent " + agent + " downloaded 500x its usual response bytes",
		Explanation: []anomaly.Feature{
			{Name: "response_bytes", Observed: 5e7, Expected: 1e5, Surprise: 30, Contribution: 0.8},
			{Name: "calls", Observed: 900, Expected: 100, Surprise: 7, Contribution: 0.2},
		},
		DetectedMs: ms(window + time.Second),
	}
}

// testEvents returns n events of agent spread evenly over [from, to).
func testEvents(agent string, n int, from, to time.Duration) []event.Event {
	evs := make([]event.Event, n)
	for i := range evs {
		at := from + time.Duration(int64(to-from)*int64(i)/int64(n))
		evs[i] = event.Event{
			EventID: event.ID("raw", 0, int64(i)), EventTimeMs: ms(at), IngestTimeMs: ms(at) + 5,
			AgentID: agent, IdentitySource: "header", CredentialID: "cred-" + agent, SourceIP: "10.0.0.1",
			Method: "GET", Route: "/customers/{id}", Path: fmt.Sprintf("/customers/%d", i),
			QueryParams: []string{"expand"}, Status: 200, ResponseBytes: 1000, DurationUs: 1500,
			UserAgent: "agent-sdk/1.0", Gateway: "kong", Upstream: "crm", RequestID: fmt.Sprintf("req-%d", i),
			Format: "kong", Topic: "raw", Offset: int64(i),
		}
	}
	return evs
}

// testScores returns 5-minute window scores of agent from an hour before
// the anomaly to 10 minutes after; the anomaly's window is untrained.
func testScores(agent string) []anomaly.Score {
	var out []anomaly.Score
	for d := -60 * time.Minute; d <= 10*time.Minute; d += window {
		s := anomaly.Score{
			AgentID: agent, WindowStartMs: ms(d), WindowEndMs: ms(d + window), Score: 0.5, Severity: "none",
			Values: make([]float64, features.NumFeatures), Expected: make([]float64, features.NumFeatures),
			Surprise: make([]float64, features.NumFeatures), Trained: true,
		}
		for id := range features.NumFeatures {
			s.Expected[id] = 100 + float64(id)
			s.Values[id] = s.Expected[id] + float64(int(d/time.Minute)%7) - 3
		}
		if d == 0 {
			s.Score, s.Severity, s.Trained = 12.5, "high", false
			s.Values[features.RespBytes], s.Values[features.Calls] = 5e7, 900
			s.Surprise[features.RespBytes], s.Surprise[features.Calls] = 30, 7
		}
		out = append(out, s)
	}
	return out
}

type fixture struct {
	root  string
	chain *FileChain
	src   *MemSource
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := filepath.Join(t.TempDir(), "evidence")
	chain, err := OpenFileChain(filepath.Join(t.TempDir(), "chain.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		chain.Close()
		makeWritable(root) // so that TempDir's cleanup can remove read-only bundles
	})
	return &fixture{root: root, chain: chain, src: &MemSource{}}
}

func makeWritable(root string) {
	_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o755)
		}
		return nil
	})
}

func (f *fixture) request(id, agent string) Request {
	return Request{ID: id, IncidentID: "inc-" + id, Anomaly: testAnomaly(agent), Scores: testScores(agent),
		Before: 15 * time.Minute, After: window}
}

func (f *fixture) snapshot(t *testing.T, id, agent string) Bundle {
	t.Helper()
	b, err := Snapshot(context.Background(), f.request(id, agent), f.src, f.chain, f.root, t0.Add(time.Hour))
	if err != nil {
		t.Fatalf("Snapshot(%s): %v", id, err)
	}
	return b
}

// tamper runs fn on a file of a read-only bundle, as an attacker with
// write access to the disk would.
func tamper(t *testing.T, path string, fn func(path string)) {
	t.Helper()
	dir := filepath.Dir(path)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(path, 0o644)
	fn(path)
	_ = os.Chmod(path, 0o444)
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string) {
	t.Helper()
	tamper(t, path, func(path string) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x01
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	})
}

// named returns the files the integrity errors in err name, and fails if
// err holds anything but integrity errors.
func named(t *testing.T, err error) []string {
	t.Helper()
	var out []string
	for _, e := range IntegrityErrors(err) {
		out = append(out, e.File)
	}
	if err != nil && len(out) == 0 {
		t.Fatalf("want integrity errors, got %v", err)
	}
	return out
}

func TestSnapshotWritesAVerifiableBundle(t *testing.T) {
	f := newFixture(t)
	f.src.Add(testEvents("agent-7", 100, -15*time.Minute, 10*time.Minute)...)
	f.src.Add(testEvents("agent-7", 10, -60*time.Minute, -16*time.Minute)...) // before the evidence window
	f.src.Add(testEvents("agent-7", 10, 10*time.Minute, 20*time.Minute)...)   // after it
	f.src.Add(testEvents("other", 50, -15*time.Minute, 10*time.Minute)...)
	ctx := context.Background()

	b := f.snapshot(t, "ev-1", "agent-7")
	m := b.Manifest
	if b.Path != filepath.Join(f.root, "ev-1") || m.Seq != 1 || m.PrevManifestSHA256 != ZeroHash ||
		m.Events != 100 || m.Truncated || m.AgentID != "agent-7" || m.IncidentID != "inc-ev-1" ||
		m.AnomalyID != testAnomaly("agent-7").ID || m.CreatedMs != t0.Add(time.Hour).UnixMilli() ||
		m.FromMs != ms(-15*time.Minute) || m.ToMs != ms(10*time.Minute) || m.MaxEvents != DefaultMaxEvents {
		t.Fatalf("bundle = %+v", b)
	}
	var names []string
	for _, fl := range m.Files {
		names = append(names, fl.Name)
	}
	if want := []string{EventsJSONL, EventsCSV, AnomalyJSON, ScoresCSV, SummaryTXT, PlotPNG}; !slices.Equal(names, want) {
		t.Fatalf("manifest files %v, want %v", names, want)
	}

	fi, err := os.Stat(b.Path)
	if err != nil || fi.Mode().Perm() != 0o500 {
		t.Fatalf("bundle dir mode %v, %v; want 0500 (the responder's user only, read-only)", fi.Mode(), err)
	}
	for _, n := range append(names, ManifestJSON) {
		fi, err := os.Stat(filepath.Join(b.Path, n))
		if err != nil || fi.Mode().Perm() != 0o400 {
			t.Fatalf("%s mode %v, %v; want 0400", n, fi.Mode(), err)
		}
	}

	// events.jsonl: exactly the agent's events of the window, in order.
	data, err := os.ReadFile(filepath.Join(b.Path, EventsJSONL))
	if err != nil {
		t.Fatal(err)
	}
	var dec event.Decoder
	var last int64
	lines := 0
	for line := range bytes.Lines(data) {
		e, err := dec.Decode(bytes.TrimSuffix(line, []byte("\n")))
		if err != nil {
			t.Fatalf("events.jsonl line %d: %v", lines+1, err)
		}
		if e.AgentID != "agent-7" || e.EventTimeMs < m.FromMs || e.EventTimeMs >= m.ToMs || e.EventTimeMs < last {
			t.Fatalf("events.jsonl line %d: %+v", lines+1, e)
		}
		last = e.EventTimeMs
		lines++
	}
	if lines != 100 {
		t.Fatalf("events.jsonl has %d lines, want 100", lines)
	}

	summary, err := os.ReadFile(filepath.Join(b.Path, SummaryTXT))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`Agent "agent-7"`, "response_bytes", "47.7 MB", "97.7 KB", "×500", "180 calls/min", "Events            100 (all", "GET /customers/{id}", "2025-03-04 12:00:00.000 UTC", `incident "inc-ev-1"`} {
		if !strings.Contains(string(summary), want) {
			t.Errorf("summary.txt lacks %q:\n%s", want, summary)
		}
	}
	if strings.Contains(string(summary), "e+0") {
		t.Errorf("summary.txt has a raw exponent number:\n%s", summary)
	}
	pf, err := os.Open(filepath.Join(b.Path, PlotPNG))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := png.DecodeConfig(pf)
	pf.Close()
	if err != nil || cfg.Width < 500 {
		t.Fatalf("plot.png: %+v, %v", cfg, err)
	}

	if err := Verify(ctx, f.chain, f.root, "ev-1"); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if err := VerifyChain(ctx, f.chain, f.root); err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}
	if hash, seq, _ := f.chain.Head(ctx); hash != b.SHA256 || seq != 1 {
		t.Fatalf("chain head %s %d, want %s 1", hash, seq, b.SHA256)
	}
	if got, err := Open(f.root, "ev-1"); err != nil || got.SHA256 != b.SHA256 || got.Path != b.Path {
		t.Fatalf("Open = %+v, %v; want %+v", got, err, b)
	}

	// The same id again: refused, and Resume gives the existing bundle
	// without a second record.
	if _, err := Snapshot(ctx, f.request("ev-1", "agent-7"), f.src, f.chain, f.root, t0.Add(2*time.Hour)); !errors.Is(err, ErrExists) {
		t.Fatalf("second Snapshot: %v, want ErrExists", err)
	}
	if got, err := Resume(ctx, f.chain, f.root, "ev-1"); err != nil || got.SHA256 != b.SHA256 {
		t.Fatalf("Resume = %+v, %v", got, err)
	}
	if _, seq, _ := f.chain.Head(ctx); seq != 1 {
		t.Fatalf("chain seq %d after Resume of a recorded bundle, want 1", seq)
	}
	assertNoTemp(t, f.root)
}

func assertNoTemp(t *testing.T, root string) {
	t.Helper()
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Fatalf("temporary directory %s left in the root", e.Name())
		}
	}
}

// bundleFiles are the files of every bundle, manifest last.
var bundleFiles = []string{EventsJSONL, EventsCSV, AnomalyJSON, ScoresCSV, SummaryTXT, PlotPNG, ManifestJSON}

// clone copies f's root and chain into a new fixture, so that a test can
// damage one copy of a bundle per case without writing a bundle per case.
func (f *fixture) clone(t *testing.T) *fixture {
	t.Helper()
	c := newFixture(t)
	if err := os.CopyFS(c.root, os.DirFS(f.root)); err != nil {
		t.Fatal(err)
	}
	c.chain.Close()
	if err := os.WriteFile(c.chain.path, mustRead(t, f.chain.path), 0o644); err != nil {
		t.Fatal(err)
	}
	chain, err := OpenFileChain(c.chain.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chain.Close() })
	c.chain = chain
	return c
}

func TestVerifyNamesTheChangedFile(t *testing.T) {
	orig := newFixture(t)
	orig.src.Add(testEvents("a", 20, -10*time.Minute, 5*time.Minute)...)
	orig.snapshot(t, "ev-1", "a")
	for _, name := range bundleFiles {
		t.Run(name, func(t *testing.T) {
			f := orig.clone(t)
			if err := Verify(context.Background(), f.chain, f.root, "ev-1"); err != nil {
				t.Fatalf("the clone does not verify: %v", err)
			}
			flipByte(t, filepath.Join(f.root, "ev-1", name))
			err := Verify(context.Background(), f.chain, f.root, "ev-1")
			got := named(t, err)
			if !slices.Contains(got, name) || (name != ManifestJSON && len(got) != 1) {
				t.Fatalf("Verify after changing %s named %q: %v", name, got, err)
			}
			if err := VerifyChain(context.Background(), f.chain, f.root); !slices.Contains(named(t, err), name) {
				t.Fatalf("VerifyChain after changing %s: %v", name, err)
			}
		})
	}
}

func TestVerifyNamesTheDeletedFile(t *testing.T) {
	orig := newFixture(t)
	orig.snapshot(t, "ev-1", "a") // no events: an empty but valid bundle
	for _, name := range bundleFiles {
		t.Run(name, func(t *testing.T) {
			f := orig.clone(t)
			tamper(t, filepath.Join(f.root, "ev-1", name), func(p string) {
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
			})
			err := Verify(context.Background(), f.chain, f.root, "ev-1")
			ies := IntegrityErrors(err)
			if len(ies) != 1 || ies[0].File != name || ies[0].Reason != "missing" {
				t.Fatalf("Verify after deleting %s: %v", name, err)
			}
		})
	}
}

func TestVerifyNamesAnAddedFile(t *testing.T) {
	f := newFixture(t)
	b := f.snapshot(t, "ev-1", "a")
	tamper(t, filepath.Join(b.Path, "notes.txt"), func(p string) {
		if err := os.WriteFile(p, []byte("planted"), 0o444); err != nil {
			t.Fatal(err)
		}
	})
	if got := named(t, Verify(context.Background(), f.chain, f.root, "ev-1")); !slices.Equal(got, []string{"notes.txt"}) {
		t.Fatalf("Verify named %q, want notes.txt", got)
	}
}

// An attacker who changes a file and fixes the manifest to match passes
// VerifyFiles, but not the chain.
func TestEditedManifestFailsTheChain(t *testing.T) {
	f := newFixture(t)
	f.src.Add(testEvents("a", 20, -10*time.Minute, 5*time.Minute)...)
	f.snapshot(t, "ev-1", "a")
	b := f.snapshot(t, "ev-2", "b")
	f.snapshot(t, "ev-3", "c")
	ctx := context.Background()

	csvPath := filepath.Join(b.Path, EventsCSV)
	forged := []byte("event_id\nnothing to see here\n")
	tamper(t, csvPath, func(p string) {
		if err := os.WriteFile(p, forged, 0o444); err != nil {
			t.Fatal(err)
		}
	})
	m := b.Manifest
	for i := range m.Files {
		if m.Files[i].Name == EventsCSV {
			m.Files[i] = File{Name: EventsCSV, SHA256: sha(forged), Size: int64(len(forged))}
		}
	}
	mb, err := MarshalManifest(m)
	if err != nil {
		t.Fatal(err)
	}
	tamper(t, filepath.Join(b.Path, ManifestJSON), func(p string) {
		if err := os.WriteFile(p, mb, 0o444); err != nil {
			t.Fatal(err)
		}
	})

	if _, _, err := VerifyFiles(f.root, "ev-2"); err != nil {
		t.Fatalf("VerifyFiles of a consistently forged bundle: %v (the forgery should pass this step)", err)
	}
	err = Verify(ctx, f.chain, f.root, "ev-2")
	if ies := IntegrityErrors(err); len(ies) != 1 || ies[0].BundleID != "ev-2" || ies[0].File != ManifestJSON {
		t.Fatalf("Verify of the forged bundle: %v", err)
	}
	err = VerifyChain(ctx, f.chain, f.root)
	if err == nil || !strings.Contains(err.Error(), "evidence bundle ev-2") {
		t.Fatalf("VerifyChain: %v, want it to name ev-2", err)
	}
	// The forged manifest hashes differently, so ev-3's link to it breaks too.
	if !hasLink(err, 2, 3) || hasLink(err, 1, 2) {
		t.Fatalf("VerifyChain: %v, want link 2→3 broken and 1→2 intact", err)
	}
}

func sha(b []byte) string { return fmt.Sprintf("%x", sha256.Sum256(b)) }

func hasLink(err error, from, to int64) bool {
	for _, e := range IntegrityErrors(err) {
		if e.Link == [2]int64{from, to} {
			return true
		}
	}
	return false
}

// headStore is a ChainStore stuck at one head, to forge bundles with.
type headStore struct {
	hash string
	seq  int64
}

func (s headStore) Head(context.Context) (string, int64, error)       { return s.hash, s.seq, nil }
func (s headStore) Append(context.Context, Record) error              { return nil }
func (s headStore) Records(context.Context, func(Record) error) error { return nil }

func TestChainOfThreeAndAReplacedMiddleBundle(t *testing.T) {
	f := newFixture(t)
	f.src.Add(testEvents("a", 20, -10*time.Minute, 5*time.Minute)...)
	f.src.Add(testEvents("b", 20, -10*time.Minute, 5*time.Minute)...)
	ctx := context.Background()
	b1 := f.snapshot(t, "ev-1", "a")
	b2 := f.snapshot(t, "ev-2", "b")
	b3 := f.snapshot(t, "ev-3", "a")
	if b2.Manifest.Seq != 2 || b2.Manifest.PrevManifestSHA256 != b1.SHA256 || b3.Manifest.PrevManifestSHA256 != b2.SHA256 {
		t.Fatalf("links: %+v %+v %+v", b1.Manifest, b2.Manifest, b3.Manifest)
	}
	if err := VerifyChain(ctx, f.chain, f.root); err != nil {
		t.Fatalf("VerifyChain of an intact chain: %v", err)
	}
	var recs []Record
	_ = f.chain.Records(ctx, func(r Record) error { recs = append(recs, r); return nil })
	if len(recs) != 3 || recs[1].PrevSHA256 != b1.SHA256 || recs[2].ManifestSHA256 != b3.SHA256 {
		t.Fatalf("records: %+v", recs)
	}

	// A forger writes a self-consistent ev-2 without b's events, linked to
	// ev-1 like the original, and swaps it in.
	forgeRoot := filepath.Join(t.TempDir(), "forge")
	t.Cleanup(func() { makeWritable(forgeRoot) })
	req := f.request("ev-2", "b")
	req.Anomaly.Summary = "nothing happened"
	if _, err := Snapshot(ctx, req, &MemSource{}, headStore{b1.SHA256, 1}, forgeRoot, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f.root, 0o755); err != nil {
		t.Fatal(err)
	}
	makeWritable(b2.Path)
	if err := os.RemoveAll(b2.Path); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(forgeRoot, "ev-2"), b2.Path); err != nil {
		t.Fatal(err)
	}

	if _, _, err := VerifyFiles(f.root, "ev-2"); err != nil {
		t.Fatalf("the forgery is self-consistent, VerifyFiles should pass: %v", err)
	}
	err := VerifyChain(ctx, f.chain, f.root)
	if !hasLink(err, 2, 3) || hasLink(err, 1, 2) {
		t.Fatalf("VerifyChain: %v; want link 2→3 broken, 1→2 intact", err)
	}
	if !strings.Contains(err.Error(), "evidence bundle ev-2: manifest.json") {
		t.Fatalf("VerifyChain: %v; want it to name ev-2's manifest", err)
	}
	for _, id := range []string{"ev-1", "ev-3"} {
		if err := Verify(ctx, f.chain, f.root, id); err != nil {
			t.Fatalf("Verify(%s) = %v; only ev-2 was replaced", id, err)
		}
	}
	if err := Verify(ctx, f.chain, f.root, "ev-2"); err == nil {
		t.Fatal("Verify(ev-2) passed after replacement")
	}
}

func TestTamperedChainRecordBreaksTheLink(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, id := range []string{"ev-1", "ev-2", "ev-3"} {
		f.snapshot(t, id, "a")
	}
	path := f.chain.path
	f.chain.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	r, err := ParseRecord([]byte(strings.TrimSuffix(lines[1], "\n")))
	if err != nil {
		t.Fatal(err)
	}
	r.PrevSHA256 = strings.Repeat("ab", 32)
	b, _ := MarshalRecord(r)
	lines[1] = string(b) + "\n"
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	chain, err := OpenFileChain(path)
	if err != nil {
		t.Fatal(err)
	}
	defer chain.Close()
	err = VerifyChain(ctx, chain, f.root)
	if !hasLink(err, 1, 2) || hasLink(err, 2, 3) {
		t.Fatalf("VerifyChain: %v; want link 1→2 broken", err)
	}
}

func TestTruncation(t *testing.T) {
	for _, tc := range []struct {
		events, max int
		truncated   bool
	}{{50, 10, true}, {10, 10, false}, {11, 10, true}, {0, 1, false}} {
		t.Run(fmt.Sprintf("%d events cap %d", tc.events, tc.max), func(t *testing.T) {
			f := newFixture(t)
			f.src.Add(testEvents("a", tc.events, -10*time.Minute, 5*time.Minute)...)
			src := &countingSource{src: f.src}
			req := f.request("ev-1", "a")
			req.MaxEvents = tc.max
			b, err := Snapshot(context.Background(), req, src, f.chain, f.root, t0.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			want := int64(min(tc.events, tc.max))
			if b.Manifest.Events != want || b.Manifest.Truncated != tc.truncated || b.Manifest.MaxEvents != int64(tc.max) {
				t.Fatalf("manifest events %d truncated %v max %d; want %d %v %d", b.Manifest.Events, b.Manifest.Truncated, b.Manifest.MaxEvents, want, tc.truncated, tc.max)
			}
			if src.n > tc.max+1 {
				t.Fatalf("read %d events from the source for a cap of %d: it should stop reading", src.n, tc.max)
			}
			jsonl, _ := os.ReadFile(filepath.Join(b.Path, EventsJSONL))
			rows, err := csv.NewReader(bytes.NewReader(mustRead(t, filepath.Join(b.Path, EventsCSV)))).ReadAll()
			if err != nil || int64(bytes.Count(jsonl, []byte("\n"))) != want || int64(len(rows)) != want+1 {
				t.Fatalf("events.jsonl %d lines, events.csv %d rows (%v); want %d events", bytes.Count(jsonl, []byte("\n")), len(rows), err, want)
			}
			summary := string(mustRead(t, filepath.Join(b.Path, SummaryTXT)))
			if strings.Contains(summary, "TRUNCATED") != tc.truncated {
				t.Fatalf("summary truncated=%v, want %v:\n%s", !tc.truncated, tc.truncated, summary)
			}
			if err := Verify(context.Background(), f.chain, f.root, "ev-1"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type countingSource struct {
	src EventSource
	n   int
}

func (c *countingSource) Events(ctx context.Context, agent string, from, to int64, fn func(*event.Event) error) error {
	return c.src.Events(ctx, agent, from, to, func(e *event.Event) error { c.n++; return fn(e) })
}

// failingSource fails after n events.
type failingSource struct {
	src EventSource
	n   int
}

func (s failingSource) Events(ctx context.Context, agent string, from, to int64, fn func(*event.Event) error) error {
	i := 0
	return s.src.Events(ctx, agent, from, to, func(e *event.Event) error {
		if i++; i > s.n {
			return errors.New("connection reset")
		}
		return fn(e)
	})
}

// flakyStore fails Append with err the next fail times, then passes to store.
type flakyStore struct {
	ChainStore
	fail int
	err  error
}

func (s *flakyStore) Append(ctx context.Context, r Record) error {
	if s.fail > 0 {
		s.fail--
		return s.err
	}
	return s.ChainStore.Append(ctx, r)
}

func TestFailedSnapshotLeavesNoBundle(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, f *fixture, err error) {
		t.Helper()
		if err == nil {
			t.Fatal("Snapshot succeeded")
		}
		entries, _ := os.ReadDir(f.root)
		if len(entries) != 0 {
			t.Fatalf("root holds %v after a failed snapshot (%v)", entries, err)
		}
		if _, seq, _ := f.chain.Head(ctx); seq != 0 {
			t.Fatalf("chain at seq %d after a failed snapshot", seq)
		}
	}
	t.Run("source fails", func(t *testing.T) {
		f := newFixture(t)
		f.src.Add(testEvents("a", 20, -10*time.Minute, 5*time.Minute)...)
		_, err := Snapshot(ctx, f.request("ev-1", "a"), failingSource{f.src, 5}, f.chain, f.root, t0)
		if err == nil || !strings.Contains(err.Error(), "connection reset") {
			t.Fatalf("err = %v", err)
		}
		check(t, f, err)
	})
	t.Run("canceled", func(t *testing.T) {
		f := newFixture(t)
		f.src.Add(testEvents("a", 20, -10*time.Minute, 5*time.Minute)...)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := Snapshot(cctx, f.request("ev-1", "a"), f.src, f.chain, f.root, t0)
		check(t, f, err)
	})
	t.Run("chain always moves", func(t *testing.T) {
		f := newFixture(t)
		store := &flakyStore{ChainStore: f.chain, fail: 1 << 30, err: fmt.Errorf("test: %w", ErrChainMoved)}
		_, err := Snapshot(ctx, f.request("ev-1", "a"), f.src, store, f.root, t0)
		if !errors.Is(err, ErrChainMoved) {
			t.Fatalf("err = %v, want ErrChainMoved", err)
		}
		check(t, f, err)
	})
	t.Run("bad request", func(t *testing.T) {
		f := newFixture(t)
		req := f.request("../escape", "a")
		req.Anomaly.AgentID = ""
		_, err := Snapshot(ctx, req, f.src, f.chain, f.root, t0)
		if err == nil || !strings.Contains(err.Error(), "bundle id") || !strings.Contains(err.Error(), "agent id") {
			t.Fatalf("err = %v, want both problems", err)
		}
	})
}

func TestChainMovedOnceIsRetried(t *testing.T) {
	f := newFixture(t)
	store := &flakyStore{ChainStore: f.chain, fail: 2, err: fmt.Errorf("test: %w", ErrChainMoved)}
	b, err := Snapshot(context.Background(), f.request("ev-1", "a"), f.src, store, f.root, t0)
	if err != nil || b.Manifest.Seq != 1 {
		t.Fatalf("Snapshot = %+v, %v", b, err)
	}
	if err := VerifyChain(context.Background(), f.chain, f.root); err != nil {
		t.Fatal(err)
	}
	assertNoTemp(t, f.root)
}

func TestUnrecordedBundleIsResumed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.snapshot(t, "ev-0", "a")
	store := &flakyStore{ChainStore: f.chain, fail: 1, err: errors.New("i/o timeout")}
	_, err := Snapshot(ctx, f.request("ev-1", "a"), f.src, store, f.root, t0)
	if !errors.Is(err, ErrUnrecorded) {
		t.Fatalf("err = %v, want ErrUnrecorded", err)
	}
	err = Verify(ctx, f.chain, f.root, "ev-1")
	if ies := IntegrityErrors(err); len(ies) != 1 || !strings.Contains(ies[0].Reason, "not in the evidence chain") {
		t.Fatalf("Verify of the unrecorded bundle: %v", err)
	}
	b, err := Resume(ctx, f.chain, f.root, "ev-1")
	if err != nil || b.Manifest.Seq != 2 {
		t.Fatalf("Resume = %+v, %v", b, err)
	}
	if err := VerifyChain(ctx, f.chain, f.root); err != nil {
		t.Fatal(err)
	}
}

func TestOrphanBundleIsNotResumed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	store := &flakyStore{ChainStore: f.chain, fail: 1, err: errors.New("i/o timeout")}
	if _, err := Snapshot(ctx, f.request("ev-1", "a"), f.src, store, f.root, t0); !errors.Is(err, ErrUnrecorded) {
		t.Fatalf("err = %v", err)
	}
	f.snapshot(t, "ev-2", "a") // takes seq 1, the place ev-1 was written for
	if _, err := Resume(ctx, f.chain, f.root, "ev-1"); err == nil || !strings.Contains(err.Error(), "can never be linked") {
		t.Fatalf("Resume of an orphan: %v", err)
	}
	err := VerifyChain(ctx, f.chain, f.root)
	if ies := IntegrityErrors(err); len(ies) != 1 || ies[0].BundleID != "ev-1" || !strings.Contains(ies[0].Reason, "not in the evidence chain") {
		t.Fatalf("VerifyChain: %v; want the orphan ev-1 named", err)
	}
}

func TestConcurrentSnapshotsShareAChain(t *testing.T) {
	f := newFixture(t)
	f.src.Add(testEvents("a", 20, -10*time.Minute, 5*time.Minute)...)
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = Snapshot(context.Background(), f.request(fmt.Sprintf("ev-%d", i), "a"), f.src, f.chain, f.root, t0)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if _, seq, _ := f.chain.Head(context.Background()); seq != n {
		t.Fatalf("chain seq %d, want %d", seq, n)
	}
	if err := VerifyChain(context.Background(), f.chain, f.root); err != nil {
		t.Fatal(err)
	}
	assertNoTemp(t, f.root)
}

func TestHostileStringsInEvents(t *testing.T) {
	f := newFixture(t)
	ev := testEvents("a", 1, 0, time.Minute)[0]
	ev.UserAgent = "Mozilla, \"evil\"\nsecond line\r\nthird,,"
	ev.Path = `/a,b"c`
	ev.Route = "/x\nFAKE SUMMARY LINE"
	ev.RequestID = `=HYPERLINK("http://evil","click")`
	ev.Upstream = "@SUM(A1)"
	ev.Gateway = "bad\xffutf8"
	ev.QueryParams = []string{"a,b", `c"d`, "e\nf"}
	f.src.Add(ev)
	b := f.snapshot(t, "ev-1", "a")

	raw := mustRead(t, filepath.Join(b.Path, EventsCSV))
	if !bytes.Contains(raw, []byte(`,"Mozilla, ""evil""`+"\nsecond line\r\nthird,,\",")) {
		t.Fatalf("events.csv does not quote the user agent as RFC 4180 says:\n%s", raw)
	}
	rows, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil || len(rows) != 2 {
		t.Fatalf("events.csv: %d rows, %v", len(rows), err)
	}
	got := map[string]string{}
	for i, h := range rows[0] {
		got[h] = rows[1][i]
	}
	want := map[string]string{
		// encoding/csv's reader turns \r\n inside a quoted field into \n;
		// events.jsonl keeps the exact bytes.
		"user_agent":   strings.ReplaceAll(ev.UserAgent, "\r\n", "\n"),
		"path":         ev.Path,
		"route":        ev.Route,
		"request_id":   "'" + ev.RequestID,
		"upstream":     "'" + ev.Upstream,
		"gateway":      "bad\uFFFDutf8",
		"query_params": `["a,b","c\"d","e\nf"]`,
		"status":       "200",
		"event_time":   "2025-03-04T12:00:00.000Z",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("events.csv %s = %q, want %q", k, got[k], v)
		}
	}

	var dec event.Decoder
	line := bytes.TrimSuffix(mustRead(t, filepath.Join(b.Path, EventsJSONL)), []byte("\n"))
	back, err := dec.Decode(line)
	if err != nil || back.UserAgent != ev.UserAgent || back.RequestID != ev.RequestID || !slices.Equal(back.QueryParams, ev.QueryParams) {
		t.Fatalf("events.jsonl: %+v, %v", back, err)
	}

	summary := string(mustRead(t, filepath.Join(b.Path, SummaryTXT)))
	for line := range strings.Lines(summary) {
		if strings.HasPrefix(line, "FAKE SUMMARY LINE") {
			t.Fatalf("a route forged a line of summary.txt:\n%s", summary)
		}
	}
	if !strings.Contains(summary, `/x\u000aFAKE SUMMARY LINE`) {
		t.Fatalf("summary.txt does not show the escaped route:\n%s", summary)
	}
}

func TestSummaryTextEscapes(t *testing.T) {
	ok := func(in, want string) {
		t.Helper()
		if got := text(in, 40); got != want {
			t.Fatalf("text(%q) = %q, want %q", in, got, want)
		}
	}
	ok("plain /route", "plain /route")
	ok("a\nb\r\tc", `a\u000ab\u000d\u0009c`)
	ok("rtl\u202eevil", `rtl\u202eevil`)
	ok("line\u2028sep", `line\u2028sep`)
	ok("bad\xff", `bad\ufffd`)
	ok(`back\slash`, `back\\slash`)
	ok(strings.Repeat("x", 50), strings.Repeat("x", 40)+"…")
}

func TestRuleAnomalyWithoutScores(t *testing.T) {
	f := newFixture(t)
	f.src.Add(testEvents("a", 30, -10*time.Minute, 5*time.Minute)...)
	req := f.request("ev-1", "a")
	req.Anomaly.Kind, req.Anomaly.Explanation, req.Anomaly.Count = anomaly.ZombieRoute, nil, 3
	req.Scores = nil
	b, err := Snapshot(context.Background(), req, f.src, f.chain, f.root, t0)
	if err != nil {
		t.Fatal(err)
	}
	summary := string(mustRead(t, filepath.Join(b.Path, SummaryTXT)))
	for _, want := range []string{"3 events hit the rule", "(none: a rule anomaly", "NOTE: the evidence window ends after"} {
		if !strings.Contains(summary, want) {
			t.Errorf("summary lacks %q:\n%s", want, summary)
		}
	}
}

func TestPlotStaysFastWithManyWindows(t *testing.T) {
	f := newFixture(t)
	req := f.request("ev-1", "a")
	base := testScores("a")[0]
	req.Before = 7 * 24 * time.Hour
	req.Scores = nil
	for i := range 2016 { // a week of 5-minute windows
		s := base
		s.WindowStartMs = ms(-7*24*time.Hour + time.Duration(i)*window)
		s.WindowEndMs = s.WindowStartMs + window.Milliseconds()
		req.Scores = append(req.Scores, s)
	}
	start := time.Now()
	if _, err := Snapshot(context.Background(), req, f.src, f.chain, f.root, t0); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot with %d windows took %s", len(req.Scores), time.Since(start))
}

func TestBundleID(t *testing.T) {
	a, b := BundleID("inc-1"), BundleID("inc-2")
	if a != BundleID("inc-1") || a == b || ValidID(a) != nil || len(a) != 35 {
		t.Fatalf("BundleID: %q %q", a, b)
	}
	for _, bad := range []string{"", ".", "..", ".tmp-x", "a/b", "a b", strings.Repeat("x", 129), "ev\n1"} {
		if ValidID(bad) == nil {
			t.Errorf("ValidID(%q) = nil", bad)
		}
	}
}

func TestFileChainReopen(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.snapshot(t, "ev-1", "a")
	b2 := f.snapshot(t, "ev-2", "a")
	path := f.chain.path
	f.chain.Close()
	if _, _, err := f.chain.Head(ctx); err == nil {
		t.Fatal("Head after Close succeeded")
	}

	// A torn last line (crash mid-append) is cut off on open.
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString(`{"seq":3,"bundle_id":"ev-3","agent`)
	fh.Close()
	c, err := OpenFileChain(path)
	if err != nil {
		t.Fatal(err)
	}
	if hash, seq, _ := c.Head(ctx); hash != b2.SHA256 || seq != 2 {
		t.Fatalf("head after reopen %s %d, want %s 2", hash, seq, b2.SHA256)
	}
	f.chain = c
	f.snapshot(t, "ev-3", "a")
	if err := VerifyChain(ctx, c, f.root); err != nil {
		t.Fatal(err)
	}
	if err := c.Append(ctx, Record{Seq: 9, BundleID: "x", ManifestSHA256: ZeroHash, PrevSHA256: ZeroHash}); !errors.Is(err, ErrChainMoved) {
		t.Fatalf("Append out of order: %v, want ErrChainMoved", err)
	}
	c.Close()

	// A complete line that is not a record is an error naming the line.
	fh, _ = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	fh.WriteString("not json\n")
	fh.Close()
	if _, err := OpenFileChain(path); err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Fatalf("OpenFileChain of a damaged file: %v", err)
	}
}

func TestParseRecordAndManifest(t *testing.T) {
	h := strings.Repeat("a", 64)
	good := fmt.Sprintf(`{"seq":2,"bundle_id":"ev-1","agent_id":"a","anomaly_id":"x","incident_id":"","path":"/p","manifest_sha256":%q,"prev_sha256":%q,"created_ms":1}`, h, h)
	if _, err := ParseRecord([]byte(good)); err != nil {
		t.Fatalf("ParseRecord(good): %v", err)
	}
	for _, bad := range []string{
		strings.Replace(good, `"seq":2`, `"seq":0`, 1),
		strings.Replace(good, `"ev-1"`, `"../x"`, 1),
		strings.Replace(good, `"created_ms":1`, `"created_ms":1,"extra":1`, 1),
		strings.Replace(good, h, "ABC", 1),
		strings.Replace(good, `"seq":2`, `"seq":1`, 1), // first record with a non-zero previous
		good + " {}",
		"",
	} {
		if _, err := ParseRecord([]byte(bad)); err == nil {
			t.Errorf("ParseRecord(%s) = nil error", bad)
		}
	}

	m := Manifest{V: 1, BundleID: "ev-1", Seq: 1, PrevManifestSHA256: ZeroHash, Files: []File{{Name: "a.txt", SHA256: h, Size: 1}}}
	mb, _ := MarshalManifest(m)
	if got, err := ParseManifest(mb); err != nil || got.Files[0] != m.Files[0] {
		t.Fatalf("ParseManifest(good) = %+v, %v", got, err)
	}
	for _, files := range [][]File{
		nil,
		{{Name: "../a", SHA256: h}},
		{{Name: ManifestJSON, SHA256: h}},
		{{Name: "a", SHA256: h}, {Name: "a", SHA256: h}},
		{{Name: "a", SHA256: h, Size: -1}},
		{{Name: "a", SHA256: "zz"}},
	} {
		bad := m
		bad.Files = files
		b, _ := MarshalManifest(bad)
		if _, err := ParseManifest(b); err == nil {
			t.Errorf("ParseManifest with files %+v = nil error", files)
		}
	}
}

// FileChain reads records of any length: a long path is still one line.
func TestFileChainLongRecord(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r := Record{Seq: 1, BundleID: "ev-1", Path: strings.Repeat("p", 200_000), ManifestSHA256: strings.Repeat("b", 64), PrevSHA256: ZeroHash}
	if err := f.chain.Append(ctx, r); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := f.chain.Records(ctx, func(got Record) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("Records: %d, %v", n, err)
	}
	c, err := OpenFileChain(f.chain.path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
