package detstate

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

func openTest(t *testing.T, dir string) *FileStore {
	t.Helper()
	s, err := OpenFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestFileStoreStates(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := t.Context()
	blob := allBytes()
	in := []State{
		{Topic: "events", Partition: 0, Kind: KindAgent, Key: "a\x00\xff", UpdatedMs: 100, Blob: blob},
		{Topic: "events", Partition: 1, Kind: KindAgent, Key: "b", UpdatedMs: 100, Blob: nil},
		{Topic: "events", Partition: 1, Kind: KindPeer, Key: "", UpdatedMs: 100, Blob: []byte("peer")},
		{Topic: "other", Partition: 0, Kind: KindAgent, Key: "c", UpdatedMs: 100, Blob: []byte("c")},
	}
	if err := s.SaveStates(ctx, in); err != nil {
		t.Fatal(err)
	}
	blob[0] = 'X' // the store copied it
	if err := s.SaveStates(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// b moves to partition 2; a stale write for partition 1 loses; equal
	// UpdatedMs: the later write wins.
	for _, batch := range [][]State{
		{{Topic: "events", Partition: 2, Kind: KindAgent, Key: "b", UpdatedMs: 200, Blob: []byte("b200")}},
		{{Topic: "events", Partition: 1, Kind: KindAgent, Key: "b", UpdatedMs: 150, Blob: []byte("b150")}},
		{{Topic: "events", Partition: 1, Kind: KindPeer, Key: "", UpdatedMs: 300, Blob: []byte("tie1")},
			{Topic: "events", Partition: 1, Kind: KindPeer, Key: "", UpdatedMs: 300, Blob: []byte("tie2")}},
	} {
		if err := s.SaveStates(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *FileStore, phase string) {
		t.Helper()
		blobs := func(ps ...int32) map[string]string {
			_, states, err := s.LoadPartitions(ctx, "g", "events", ps)
			if err != nil {
				t.Fatal(err)
			}
			m := map[string]string{}
			for _, st := range states {
				m[st.Kind+"/"+st.Key] = string(st.Blob)
			}
			return m
		}
		if got, want := blobs(0), map[string]string{"agent/a\x00\xff": string(allBytes())}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: partition 0: %q; want %q", phase, got, want)
		}
		if got, want := blobs(1), map[string]string{"peer/": "tie2"}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: partition 1: %q; want %q (b moved to 2)", phase, got, want)
		}
		if got, want := blobs(2, 9), map[string]string{"agent/b": "b200"}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: partition 2: %q; want %q", phase, got, want)
		}
		if got := blobs(); len(got) != 0 {
			t.Errorf("%s: no partitions: %q", phase, got)
		}
		st, ok, err := s.LoadState(ctx, KindAgent, "a\x00\xff")
		want := State{Topic: "events", Partition: 0, Kind: KindAgent, Key: "a\x00\xff", UpdatedMs: 100, Blob: allBytes()}
		if err != nil || !ok || !reflect.DeepEqual(st, want) {
			t.Errorf("%s: LoadState = %+v, %v, %v", phase, st, ok, err)
		}
		st.Blob[0] = 'Y' // a copy: the store is unaffected
		if st, _, _ := s.LoadState(ctx, KindAgent, "a\x00\xff"); st.Blob[0] != 0 {
			t.Errorf("%s: LoadState returned the stored blob itself", phase)
		}
		if _, ok, err := s.LoadState(ctx, KindPeer, "a\x00\xff"); ok || err != nil {
			t.Errorf("%s: LoadState(peer) ok = %v, %v; want false", phase, ok, err)
		}
		if st, ok, _ := s.LoadState(ctx, KindAgent, "c"); !ok || st.Topic != "other" {
			t.Errorf("%s: LoadState(c) = %+v, %v", phase, st, ok)
		}
	}
	check(s, "open")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	check(openTest(t, dir), "reopened")
}

func TestFileStoreCheckpointsAndBackfill(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := t.Context()
	cp := func(group, topic string, p int32, updated int64) Checkpoint {
		return Checkpoint{Group: group, Topic: topic, Partition: p, ClosedThroughMs: updated * 10, WatermarkMs: math.MaxInt64,
			ResumeOffset: -1, LastOffset: updated, UpdatedMs: updated}
	}
	for _, b := range [][]Checkpoint{
		{cp("g", "t", 0, 100), cp("g", "t", 1, 100)},
		{cp("g", "t", 0, 200), cp("g", "t", 1, 50)},
		{cp("h", "t", 0, 999), cp("g", "u", 0, 999)},
	} {
		if err := s.SaveCheckpoints(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := s.BackfillProgress(ctx, "job"); ok || err != nil {
		t.Fatalf("BackfillProgress before any = %v, %v", ok, err)
	}
	for _, v := range []int64{10, 20, 5} {
		if err := s.SetBackfillProgress(ctx, "job", v); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetBackfillProgress(ctx, "other", math.MinInt64); err != nil {
		t.Fatal(err)
	}
	want := map[int32]Checkpoint{0: cp("g", "t", 0, 200), 1: cp("g", "t", 1, 100)}
	check := func(s *FileStore, phase string) {
		t.Helper()
		cps, states, err := s.LoadPartitions(ctx, "g", "t", []int32{0, 1, 2})
		if err != nil || !reflect.DeepEqual(cps, want) || len(states) != 0 {
			t.Errorf("%s: LoadPartitions = %+v, %v, %v; want %+v", phase, cps, states, err, want)
		}
		if v, ok, err := s.BackfillProgress(ctx, "job"); v != 5 || !ok || err != nil {
			t.Errorf("%s: BackfillProgress(job) = %d, %v, %v; want 5", phase, v, ok, err)
		}
		if v, ok, _ := s.BackfillProgress(ctx, "other"); v != math.MinInt64 || !ok {
			t.Errorf("%s: BackfillProgress(other) = %d, %v", phase, v, ok)
		}
	}
	check(s, "open")
	s.Close()
	check(openTest(t, dir), "reopened")
}

func fileAnomaly(agent string, start int64, kind string, p int32) anomaly.Anomaly {
	return anomaly.Anomaly{V: anomaly.Version, ID: anomaly.ID(agent, start, kind), AgentID: agent, Kind: kind,
		WindowStartMs: start, WindowEndMs: start + 60_000, Score: 5, Severity: "medium", Summary: "s", Partition: p, DetectedMs: start + 61_000,
		Explanation: []anomaly.Feature{{Name: "calls", Observed: 1e300, Expected: 5e-324, Surprise: math.Copysign(0, -1), Contribution: 0.1 + 0.2}}}
}

func TestFileStoreAnomalies(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := t.Context()
	as := []anomaly.Anomaly{
		fileAnomaly("b", 2000, anomaly.Drift, 1),
		fileAnomaly("a", 1000, anomaly.Behaviour, 0),
		fileAnomaly("a", 2000, anomaly.ZombieRoute, 0),
		fileAnomaly("a", 2000, anomaly.Behaviour, 0),
		fileAnomaly("c", math.MinInt64, anomaly.AgentFlood, 2),
	}
	if err := s.InsertAnomalies(ctx, as); err != nil {
		t.Fatal(err)
	}
	dup := as[0]
	dup.DetectedMs++ // a re-detection: same id, kept once (the first)
	if err := s.InsertAnomalies(ctx, []anomaly.Anomaly{dup, dup}); err != nil {
		t.Fatal(err)
	}
	bad := fileAnomaly("d", 1, anomaly.Behaviour, 0)
	bad.Score = math.NaN()
	if err := s.InsertAnomalies(ctx, []anomaly.Anomaly{fileAnomaly("d", 1, anomaly.Drift, 0), bad}); err == nil {
		t.Fatal("InsertAnomalies with a NaN score succeeded")
	}
	sorted := []anomaly.Anomaly{as[4], as[1], as[3], as[2], as[0]}
	check := func(s *FileStore, phase string) {
		t.Helper()
		got, err := s.Anomalies(ctx, "", math.MinInt64, math.MaxInt64)
		if err != nil || !reflect.DeepEqual(got, sorted) {
			t.Errorf("%s: Anomalies(all) = %+v, %v;\nwant %+v", phase, got, err, sorted)
		}
		got, err = s.Anomalies(ctx, "a", 1001, 2001)
		if err != nil || !reflect.DeepEqual(got, []anomaly.Anomaly{as[3], as[2]}) {
			t.Errorf("%s: Anomalies(a, 1001, 2001) = %+v, %v", phase, got, err)
		}
		if got, _ := s.Anomalies(ctx, "", 1000, 1000); len(got) != 0 {
			t.Errorf("%s: empty range returned %d", phase, len(got))
		}
		ids := func(ps []int32, from int64) []string {
			m, err := s.AnomalyIDs(ctx, ps, from)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for id := range m {
				out = append(out, id)
			}
			slices.Sort(out)
			return out
		}
		idsOf := func(xs ...anomaly.Anomaly) []string {
			var out []string
			for _, a := range xs {
				out = append(out, a.ID)
			}
			slices.Sort(out)
			return out
		}
		if got, want := ids([]int32{0}, 2000), idsOf(as[2], as[3]); !slices.Equal(got, want) {
			t.Errorf("%s: AnomalyIDs([0], 2000) = %v; want %v", phase, got, want)
		}
		if got, want := ids([]int32{1, 2}, math.MinInt64), idsOf(as[0], as[4]); !slices.Equal(got, want) {
			t.Errorf("%s: AnomalyIDs([1 2]) = %v; want %v", phase, got, want)
		}
		if got := ids(nil, math.MinInt64); len(got) != 0 {
			t.Errorf("%s: AnomalyIDs(nil) = %v", phase, got)
		}
	}
	check(s, "open")
	s.Close()
	s = openTest(t, dir)
	check(s, "reopened")
	// The id set survives a reopen: the duplicate is still refused.
	if err := s.InsertAnomalies(ctx, []anomaly.Anomaly{dup}); err != nil {
		t.Fatal(err)
	}
	check(s, "duplicate after reopen")
	b, err := os.ReadFile(filepath.Join(dir, anomaliesFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != len(as) {
		t.Errorf("anomalies.jsonl has %d lines; want %d", n, len(as))
	}
}

// A crash during an append leaves a torn last line: it is dropped on open,
// and appending continues on a clean line.
func TestFileStoreTornAppend(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := t.Context()
	a := fileAnomaly("a", 1000, anomaly.Behaviour, 0)
	if err := s.InsertAnomalies(ctx, []anomaly.Anomaly{a}); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertScores(ctx, []anomaly.Score{{AgentID: "a", WindowStartMs: 1}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, name := range []string{anomaliesFile, scoresFile} {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(`{"v":1,"anomaly_id":"torn`)
		f.Close()
	}
	s = openTest(t, dir)
	b := fileAnomaly("b", 1000, anomaly.Behaviour, 0)
	if err := s.InsertAnomalies(ctx, []anomaly.Anomaly{b}); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertScores(ctx, []anomaly.Score{{AgentID: "b", WindowStartMs: 1}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Anomalies(ctx, "", 0, math.MaxInt64)
	if err != nil || len(got) != 2 || got[0].ID != a.ID || got[1].ID != b.ID {
		t.Fatalf("Anomalies after a torn append = %+v, %v; want a and b", got, err)
	}
	if sc, err := s.Scores(ctx, "", 0, math.MaxInt64); err != nil || len(sc) != 2 {
		t.Fatalf("Scores after a torn append = %+v, %v; want 2", sc, err)
	}
}

func TestFileStoreScores(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := t.Context()
	negZero := math.Copysign(0, -1)
	floats := []float64{0, negZero, 1, -1, math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, 2.2250738585072014e-308,
		1e-300, 1e300, math.Pi, 0.1 + 0.2, 1<<53 + 1, math.Inf(1), math.Inf(-1), math.NaN()}
	full := anomaly.Score{AgentID: "a", WindowStartMs: 1000, WindowEndMs: 2000, Partition: math.MinInt32, Score: math.Inf(1),
		Severity: "critical", Values: floats, Expected: floats[:2], Surprise: []float64{negZero}, Trained: true, PeerBaseline: true, Late: 7}
	empty := anomaly.Score{AgentID: "b", WindowStartMs: 1000}
	first := anomaly.Score{AgentID: "a", WindowStartMs: 3000, Score: 1, Values: []float64{1}}
	if err := s.InsertScores(ctx, []anomaly.Score{first, full, empty}); err != nil {
		t.Fatal(err)
	}
	rescored := first
	rescored.Score = 2
	if err := s.InsertScores(ctx, []anomaly.Score{rescored}); err != nil {
		t.Fatal(err)
	}
	empty.Values, empty.Expected, empty.Surprise = []float64{}, []float64{}, []float64{}
	rescored.Expected, rescored.Surprise = []float64{}, []float64{}
	bits := func(fs []float64) []uint64 {
		out := []uint64{}
		for _, f := range fs {
			out = append(out, math.Float64bits(f))
		}
		return out
	}
	same := func(x, y anomaly.Score) bool {
		xs, ys := x, y
		xs.Values, xs.Expected, xs.Surprise, xs.Score, ys.Values, ys.Expected, ys.Surprise, ys.Score = nil, nil, nil, 0, nil, nil, nil, 0
		return reflect.DeepEqual(xs, ys) && math.Float64bits(x.Score) == math.Float64bits(y.Score) &&
			slices.Equal(bits(x.Values), bits(y.Values)) && slices.Equal(bits(x.Expected), bits(y.Expected)) &&
			slices.Equal(bits(x.Surprise), bits(y.Surprise)) && x.Values != nil && x.Expected != nil && x.Surprise != nil
	}
	check := func(s *FileStore, phase, agent string, from, to int64, want ...anomaly.Score) {
		t.Helper()
		got, err := s.Scores(ctx, agent, from, to)
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s: Scores(%q, %d, %d) = %+v, %v; want %d", phase, agent, from, to, got, err, len(want))
		}
		for i := range got {
			if !same(got[i], want[i]) {
				t.Errorf("%s: Scores[%d] = %+v; want %+v", phase, i, got[i], want[i])
			}
		}
	}
	check(s, "open", "", math.MinInt64, math.MaxInt64, full, empty, rescored)
	check(s, "open", "a", 1000, 3000, full)
	s.Close()
	s = openTest(t, dir)
	check(s, "reopened", "", math.MinInt64, math.MaxInt64, full, empty, rescored)

	// Scores of one agent skip other agents' lines unread: only the exact
	// id matches, however JSON escapes it.
	odd := []string{`a"b`, `<a&b>`, "a\u2028b", `a\`, "ab", "\u00e9"}
	for i, id := range odd {
		if err := s.InsertScores(ctx, []anomaly.Score{{AgentID: id, WindowStartMs: 5000 + int64(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range odd {
		want := anomaly.Score{AgentID: id, WindowStartMs: 5000 + int64(i), Values: []float64{}, Expected: []float64{}, Surprise: []float64{}}
		check(s, "odd id "+id, id, 0, math.MaxInt64, want)
	}
	check(s, "prefix of another", "a", 0, math.MaxInt64, full, rescored)
}

func TestFileStoreCorruptStatesFile(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if err := s.SaveStates(t.Context(), []State{{Kind: KindAgent, Key: "a", Blob: []byte("xyz")}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	path := filepath.Join(dir, statesFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{b[:len(b)-1], append(slices.Clone(b[:len(b)-6]), 'Q', b[len(b)-5], b[len(b)-4], b[len(b)-3], b[len(b)-2], b[len(b)-1]), []byte("junk")} {
		if err := os.WriteFile(path, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenFileStore(dir); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("OpenFileStore with a damaged %s: err = %v; want a corruption error", statesFile, err)
		}
	}
}

func TestFileStoreClosed(t *testing.T) {
	s := openTest(t, t.TempDir())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	ctx := t.Context()
	errs := []error{
		s.SaveStates(ctx, []State{{}}),
		s.SaveCheckpoints(ctx, []Checkpoint{{}}),
		s.InsertAnomalies(ctx, []anomaly.Anomaly{{}}),
		s.InsertScores(ctx, []anomaly.Score{{}}),
		s.SetBackfillProgress(ctx, "j", 1),
	}
	_, _, err := s.LoadPartitions(ctx, "g", "t", nil)
	errs = append(errs, err)
	_, err = s.Anomalies(ctx, "", 0, 1)
	errs = append(errs, err)
	for i, err := range errs {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("call %d on a closed store: err = %v; want ErrClosed", i, err)
		}
	}
}

// TestFileStoreConcurrent exercises every method from several goroutines;
// run with -race.
func TestFileStoreConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	ctx := t.Context()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 20 {
				key := strconv.Itoa(g) + "-" + strconv.Itoa(i)
				p := int32(i % 3)
				if err := s.SaveStates(ctx, []State{{Topic: "t", Partition: p, Kind: KindAgent, Key: key, UpdatedMs: int64(i), Blob: []byte(key)}}); err != nil {
					t.Error(err)
				}
				if err := s.SaveCheckpoints(ctx, []Checkpoint{{Group: "g", Topic: "t", Partition: p, UpdatedMs: int64(i)}}); err != nil {
					t.Error(err)
				}
				if err := s.InsertAnomalies(ctx, []anomaly.Anomaly{fileAnomaly(key, int64(i), anomaly.Behaviour, p)}); err != nil {
					t.Error(err)
				}
				if err := s.InsertScores(ctx, []anomaly.Score{{AgentID: key, WindowStartMs: int64(i)}}); err != nil {
					t.Error(err)
				}
				if err := s.SetBackfillProgress(ctx, "job"+strconv.Itoa(g), int64(i)); err != nil {
					t.Error(err)
				}
				if _, _, err := s.LoadPartitions(ctx, "g", "t", []int32{p}); err != nil {
					t.Error(err)
				}
				if _, err := s.AnomalyIDs(ctx, []int32{p}, 0); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	s.Close()
	s = openTest(t, dir)
	_, states, err := s.LoadPartitions(ctx, "g", "t", []int32{0, 1, 2})
	if err != nil || len(states) != 80 {
		t.Fatalf("after concurrent saves and a reopen: %d states, %v; want 80", len(states), err)
	}
	if ids, err := s.AnomalyIDs(ctx, []int32{0, 1, 2}, 0); err != nil || len(ids) != 80 {
		t.Fatalf("AnomalyIDs after reopen: %d, %v; want 80", len(ids), err)
	}
	if sc, err := s.Scores(ctx, "", 0, math.MaxInt64); err != nil || len(sc) != 80 {
		t.Fatalf("Scores after reopen: %d, %v; want 80", len(sc), err)
	}
}

// TestFileStoreLockAndModes: a second store on an open directory is
// refused; the appended files are 0644 and the rewritten ones 0600.
func TestFileStoreLockAndModes(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if _, err := OpenFileStore(dir); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second OpenFileStore = %v; want refused", err)
	}
	ctx := t.Context()
	if err := s.SaveStates(ctx, []State{{Kind: KindAgent, Key: "a"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpoints(ctx, []Checkpoint{{Group: "g"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetBackfillProgress(ctx, "j", 1); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{anomaliesFile: 0o644, scoresFile: 0o644,
		statesFile: 0o600, checkpointsFile: 0o600, backfillFile: 0o600} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %v", name, fi.Mode().Perm(), err, want)
		}
	}
	s.Close()
	openTest(t, dir)
}

// TestReadAnomalies reads the anomalies beside an open store, which holds
// its lock, once per ID.
func TestReadAnomalies(t *testing.T) {
	dir := t.TempDir()
	if got, err := ReadAnomalies(dir); err != nil || len(got) != 0 {
		t.Fatalf("ReadAnomalies of an empty dir = %v, %v", got, err)
	}
	s := openTest(t, dir)
	as := []anomaly.Anomaly{fileAnomaly("a", 1000, anomaly.Behaviour, 0), fileAnomaly("b", 2000, anomaly.Drift, 1)}
	if err := s.InsertAnomalies(t.Context(), as); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertAnomalies(t.Context(), as[:1]); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAnomalies(dir)
	if err != nil || !reflect.DeepEqual(got, as) {
		t.Fatalf("ReadAnomalies = %+v, %v; want %+v", got, err, as)
	}
}
