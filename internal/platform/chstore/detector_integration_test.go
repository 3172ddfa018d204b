package chstore

import (
	"cmp"
	"crypto/rand"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// stopMerges keeps every INSERT into table its own part, so reads see
// unmerged duplicates and must deduplicate themselves. It affects only the
// test database's table.
func stopMerges(t *testing.T, s *Store, table string) {
	t.Helper()
	if err := s.conn.Exec(t.Context(), "SYSTEM STOP MERGES "+quoteIdent(s.db)+"."+quoteIdent(table)); err != nil {
		t.Fatal(err)
	}
}

// mergeNow lets table merge and forces it into one part per partition.
func mergeNow(t *testing.T, s *Store, table string) {
	t.Helper()
	if err := s.conn.Exec(t.Context(), "SYSTEM START MERGES "+quoteIdent(s.db)+"."+quoteIdent(table)); err != nil {
		t.Fatal(err)
	}
	if err := s.conn.Exec(t.Context(), "OPTIMIZE TABLE "+quoteIdent(table)+" FINAL"); err != nil {
		t.Fatal(err)
	}
}

// rowCount counts the physical rows of table, duplicates included.
func rowCount(t *testing.T, s *Store, table string) uint64 {
	t.Helper()
	var n uint64
	if err := s.conn.QueryRow(t.Context(), "SELECT count() FROM "+quoteIdent(table)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestIntegrationDetectorMigrateFrom0001 upgrades a database that an older
// binary migrated to 0001 and that already holds events.
func TestIntegrationDetectorMigrateFrom0001(t *testing.T) {
	s := newTestStore(t)
	ctx := t.Context()
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	// What Migrate did before 0002 existed.
	if err := s.execDDL(ctx, schemaMigrationsDDL); err != nil {
		t.Fatal(err)
	}
	for _, st := range ms[0].stmts {
		if err := s.execDDL(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	rec := []any{[]uint32{1}, []string{ms[0].name}, []time.Time{time.Now().UTC().Truncate(time.Second)}}
	if err := s.insertColumns(ctx, "schema_migrations", []string{"version", "name", "applied_at"}, rec, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertEvents(ctx, []event.Event{{EventID: "old", AgentID: "a", EventTimeMs: 1}}); err != nil {
		t.Fatal(err)
	}

	for range 2 {
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	checkApplied(t, s)
	if n, err := s.CountEvents(ctx, true); err != nil || n != 1 {
		t.Fatalf("CountEvents after upgrade = %d, %v; want the 1 old event", n, err)
	}

	// The live tables have the types the adapter appends.
	want := map[string]string{
		"detector_state":       "topic String, partition Int32, kind String, key String, updated_ms Int64, state String",
		"detector_checkpoints": "group String, topic String, partition Int32, closed_through_ms Int64, watermark_ms Int64, resume_offset Int64, last_offset Int64, updated_ms Int64",
		"anomalies": "anomaly_id String, agent_id String, kind String, severity String, summary String, role String, owner String, credential_id String, " +
			"window_start_ms Int64, window_end_ms Int64, detected_ms Int64, window_start DateTime, score Float64, peer_baseline UInt8, partition Int32, " +
			"count UInt32, sample_request_ids Array(String), body String",
		"window_scores": "agent_id String, window_start_ms Int64, window_end_ms Int64, window_start DateTime, partition Int32, score Float64, severity String, " +
			"values Array(Float64), expected Array(Float64), surprise Array(Float64), trained UInt8, peer_baseline UInt8, late UInt32",
		"backfill_progress": "job String, done_through_ms Int64, updated_ms Int64",
	}
	for table, cols := range want {
		// system.columns lists columns in table order on 18.16 too.
		rows, err := s.conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = ?", table)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var name, typ string
			if err := rows.Scan(&name, &typ); err != nil {
				t.Fatal(err)
			}
			got = append(got, name+" "+typ)
		}
		rows.Close()
		if g := strings.Join(got, ", "); g != cols {
			t.Errorf("%s columns:\n got %s\nwant %s", table, g, cols)
		}
	}
}

// TestIntegrationDetectorStates covers SaveStates, LoadState and the state
// half of LoadPartitions: byte-exact blobs, newest-wins while parts are
// unmerged and after they merged, and restore by the newest version's
// partition when an agent moved.
func TestIntegrationDetectorStates(t *testing.T) {
	s := newMigratedStore(t)
	ctx := t.Context()
	stopMerges(t, s, "detector_state")

	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	big[0], big[len(big)-1] = 0, 0
	blobs := [][]byte{all, {}, {0}, {0xff, 0xfe, 0x00, 0xc3, 0x28}, []byte("\xed\xa0\x80 plain"), big}
	// Keys an attacker could shape: NUL, quotes, backslashes, invalid UTF-8.
	keys := []string{"agent-1", "", "a\x00b", "q'\"`\\", "\xff\xfe", strings.Repeat("k", 5000)}

	var first []detstate.State
	for i, k := range keys {
		first = append(first, detstate.State{Topic: "events", Partition: int32(i % 3), Kind: detstate.KindAgent, Key: k, UpdatedMs: 100, Blob: blobs[i]})
	}
	first = append(first, detstate.State{Topic: "events", Partition: 0, Kind: detstate.KindPeer, Key: "", UpdatedMs: 100, Blob: []byte("peer-all")})
	first = append(first, detstate.State{Topic: "events", Partition: 1, Kind: detstate.KindPeer, Key: "billing", UpdatedMs: 100, Blob: []byte("peer-billing")})
	if err := s.SaveStates(ctx, first); err != nil {
		t.Fatal(err)
	}
	for _, want := range first {
		got, ok, err := s.LoadState(ctx, want.Kind, want.Key)
		if err != nil || !ok || !reflect.DeepEqual(got, want) {
			t.Fatalf("LoadState(%q, %.20q) = %.80v, %v, %v; want %.80v", want.Kind, want.Key, got, ok, err, want)
		}
	}
	if _, ok, err := s.LoadState(ctx, detstate.KindAgent, "nobody"); ok || err != nil {
		t.Fatalf("LoadState(nobody) ok = %v, err = %v; want false, nil", ok, err)
	}
	if _, ok, err := s.LoadState(ctx, detstate.KindPeer, "agent-1"); ok || err != nil {
		t.Fatalf("LoadState(peer, agent-1) ok = %v, err = %v; want false: kinds are separate", ok, err)
	}

	// agent-1 moves from partition 0 to 2 (newer), then a stale write for
	// partition 0 arrives late (older): partition 2 keeps it.
	moved := detstate.State{Topic: "events", Partition: 2, Kind: detstate.KindAgent, Key: "agent-1", UpdatedMs: 200, Blob: []byte("v200")}
	stale := detstate.State{Topic: "events", Partition: 0, Kind: detstate.KindAgent, Key: "agent-1", UpdatedMs: 150, Blob: []byte("v150")}
	// Equal UpdatedMs: the later insert wins, across INSERTs and within one.
	tieA := detstate.State{Topic: "events", Partition: 1, Kind: detstate.KindPeer, Key: "billing", UpdatedMs: 300, Blob: []byte("tie-a")}
	tieB := detstate.State{Topic: "events", Partition: 1, Kind: detstate.KindPeer, Key: "billing", UpdatedMs: 300, Blob: []byte("tie-b")}
	tieC := detstate.State{Topic: "events", Partition: 1, Kind: detstate.KindPeer, Key: "billing", UpdatedMs: 300, Blob: []byte("tie-c")}
	// Same partition number on another topic.
	other := detstate.State{Topic: "other", Partition: 0, Kind: detstate.KindAgent, Key: "elsewhere", UpdatedMs: 1, Blob: []byte("x")}
	for _, batch := range [][]detstate.State{{moved}, {stale}, {tieA}, {tieB, tieC}, {other}} {
		if err := s.SaveStates(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveStates(ctx, nil); err != nil {
		t.Fatalf("SaveStates(nil) = %v; want a no-op", err)
	}
	if n := rowCount(t, s, "detector_state"); n != uint64(len(first))+5 {
		t.Fatalf("detector_state has %d rows; want %d unmerged rows", n, len(first)+5)
	}

	byPartition := func(ps ...int32) map[string]string {
		t.Helper()
		cps, states, err := s.LoadPartitions(ctx, "g", "events", ps)
		if err != nil {
			t.Fatal(err)
		}
		if len(cps) != 0 {
			t.Fatalf("LoadPartitions found checkpoints %v; none were saved", cps)
		}
		got := map[string]string{}
		for _, st := range states {
			k := st.Kind + "/" + st.Key
			if _, dup := got[k]; dup {
				t.Fatalf("LoadPartitions(%v) returned %s twice", ps, k)
			}
			if !slices.Contains(ps, st.Partition) || st.Topic != "events" {
				t.Fatalf("LoadPartitions(%v) returned a state of %s/%d", ps, st.Topic, st.Partition)
			}
			got[k] = string(st.Blob)
		}
		return got
	}
	check := func(phase string) {
		t.Helper()
		want0 := map[string]string{"agent/q'\"`\\": string(blobs[3]), "peer/": "peer-all"}
		if got := byPartition(0); !reflect.DeepEqual(got, want0) {
			t.Errorf("%s: partition 0 states %q; want %q (agent-1 moved to 2)", phase, got, want0)
		}
		want1 := map[string]string{"agent/": string(blobs[1]), "agent/\xff\xfe": string(blobs[4]), "peer/billing": "tie-c"}
		if got := byPartition(1); !reflect.DeepEqual(got, want1) {
			t.Errorf("%s: partition 1 states %q; want %q", phase, got, want1)
		}
		want2 := map[string]string{"agent/agent-1": "v200", "agent/a\x00b": string(blobs[2]), "agent/" + keys[5]: string(big)}
		if got := byPartition(2); !reflect.DeepEqual(got, want2) {
			t.Errorf("%s: partition 2 states differ: got %d keys, want %d; agent-1 = %q", phase, len(got), len(want2), got["agent/agent-1"])
		}
		if got := byPartition(0, 1, 2, 7); len(got) != 8 {
			t.Errorf("%s: partitions 0-2 hold %d states; want 8", phase, len(got))
		}
		if got := byPartition(); len(got) != 0 {
			t.Errorf("%s: no partitions gave %d states", phase, len(got))
		}
		st, ok, err := s.LoadState(ctx, detstate.KindAgent, "agent-1")
		if err != nil || !ok || !reflect.DeepEqual(st, moved) {
			t.Errorf("%s: LoadState(agent-1) = %+v, %v, %v; want %+v", phase, st, ok, err, moved)
		}
	}
	check("unmerged")
	mergeNow(t, s, "detector_state")
	if n := rowCount(t, s, "detector_state"); n != uint64(len(first))+1 {
		t.Errorf("detector_state has %d rows after OPTIMIZE FINAL; want %d", n, len(first)+1)
	}
	check("merged")
}

func TestIntegrationDetectorCheckpoints(t *testing.T) {
	s := newMigratedStore(t)
	ctx := t.Context()
	stopMerges(t, s, "detector_checkpoints")
	cp := func(group, topic string, p int32, updated, off int64) detstate.Checkpoint {
		return detstate.Checkpoint{Group: group, Topic: topic, Partition: p, ClosedThroughMs: updated * 10, WatermarkMs: updated*10 + 5,
			ResumeOffset: off, LastOffset: off + 100, UpdatedMs: updated}
	}
	extreme := detstate.Checkpoint{Group: "g", Topic: "t", Partition: math.MaxInt32, ClosedThroughMs: math.MinInt64,
		WatermarkMs: math.MaxInt64, ResumeOffset: -1, LastOffset: math.MaxInt64, UpdatedMs: 1}
	batches := [][]detstate.Checkpoint{
		{cp("g", "t", 0, 100, 10), cp("g", "t", 1, 100, 20), extreme},
		{cp("g", "t", 0, 200, 30)},                           // newer: wins
		{cp("g", "t", 1, 50, 40)},                            // older: loses
		{cp("g", "t", 0, 150, 50), cp("g", "t", 0, 300, 60)}, // one batch, newest wins
		{cp("other", "t", 0, 999, 70), cp("g", "u", 0, 999, 80)},
	}
	for _, b := range batches {
		if err := s.SaveCheckpoints(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveCheckpoints(ctx, nil); err != nil {
		t.Fatal(err)
	}
	want := map[int32]detstate.Checkpoint{0: cp("g", "t", 0, 300, 60), 1: cp("g", "t", 1, 100, 20), math.MaxInt32: extreme}
	for _, phase := range []string{"unmerged", "merged"} {
		cps, states, err := s.LoadPartitions(ctx, "g", "t", []int32{0, 1, 5, math.MaxInt32})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cps, want) || len(states) != 0 {
			t.Errorf("%s: LoadPartitions = %+v, %d states; want %+v", phase, cps, len(states), want)
		}
		cps, _, err = s.LoadPartitions(ctx, "g", "t", []int32{1})
		if err != nil || len(cps) != 1 || cps[1] != want[1] {
			t.Errorf("%s: LoadPartitions([1]) = %+v, %v", phase, cps, err)
		}
		mergeNow(t, s, "detector_checkpoints")
	}
}

func testAnomaly(agent string, startMs int64, kind string, p int32) anomaly.Anomaly {
	return anomaly.Anomaly{
		V: anomaly.Version, ID: anomaly.ID(agent, startMs, kind), AgentID: agent, Kind: kind,
		WindowStartMs: startMs, WindowEndMs: startMs + 60_000, Score: 7.25, Severity: "high",
		Summary: "agent " + agent + " did something", Partition: p, DetectedMs: startMs + 61_000,
	}
}

func TestIntegrationDetectorAnomalies(t *testing.T) {
	s := newMigratedStore(t)
	ctx := t.Context()
	stopMerges(t, s, "anomalies")
	const day = 24 * 3600 * 1000
	t0 := time.Date(2025, 1, 31, 23, 59, 0, 0, time.UTC).UnixMilli() // the next window is in February
	full := testAnomaly("agent-\x00\xff'", t0, anomaly.Behaviour, 3)
	full.Role, full.Owner, full.CredentialID = "billing", "team-a", "key_1"
	full.Explanation = []anomaly.Feature{{Name: "calls", Observed: 1e300, Expected: 5e-324, Surprise: math.Copysign(0, -1), Contribution: 0.1 + 0.2}}
	full.PeerBaseline = true
	full.Routes = []anomaly.RouteCount{{Route: "/v1/x/{id}", Calls: 3}}
	full.SampleRequestIDs = []string{"r1", "", "r\x003"}
	full.SampleEventIDs = []string{"e1"}
	full.Count = math.MaxUint32 + 5 // clamped in the column, exact in body
	as := []anomaly.Anomaly{
		full,
		testAnomaly("a", t0+60_000, anomaly.Drift, 1),
		testAnomaly("a", t0+60_000, anomaly.ZombieRoute, 1),
		testAnomaly("b", t0-day, anomaly.ShadowAgent, 2),
		testAnomaly("b", t0+2*day, anomaly.ShadowAgent, 2),
		testAnomaly("c", math.MinInt64, anomaly.AgentFlood, 1),
		testAnomaly("c", math.MaxInt64-60_000, anomaly.AgentFlood, 1),
	}
	if err := s.InsertAnomalies(ctx, as); err != nil {
		t.Fatal(err)
	}
	// JSON, and so the stored record, has U+FFFD for invalid UTF-8.
	full.AgentID, full.Summary = "agent-\x00\ufffd'", "agent agent-\x00\ufffd' did something"
	as[0] = full
	// A restart re-detects two of them: same ids, new detection time.
	again := []anomaly.Anomaly{as[1], as[3]}
	for i := range again {
		again[i].DetectedMs += 1000
	}
	if err := s.InsertAnomalies(ctx, again); err != nil {
		t.Fatal(err)
	}
	as[1], as[3] = again[0], again[1] // the later insert wins
	if err := s.InsertAnomalies(ctx, nil); err != nil {
		t.Fatal(err)
	}
	bad := testAnomaly("d", t0, anomaly.Behaviour, 1)
	bad.Score = math.Inf(1)
	if err := s.InsertAnomalies(ctx, []anomaly.Anomaly{testAnomaly("d", t0, anomaly.Drift, 1), bad}); err == nil {
		t.Fatal("InsertAnomalies with an infinite score succeeded; its JSON body cannot exist")
	}

	ids := func(ps []int32, from int64) []string {
		t.Helper()
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
	if got, want := ids([]int32{1}, t0+60_000), idsOf(as[1], as[2], as[6]); !slices.Equal(got, want) {
		t.Errorf("AnomalyIDs([1], t0+1m) = %v; want %v (fromMs inclusive)", got, want)
	}
	if got, want := ids([]int32{1}, t0+60_001), idsOf(as[6]); !slices.Equal(got, want) {
		t.Errorf("AnomalyIDs([1], t0+1m+1ms) = %v; want %v", got, want)
	}
	if got, want := ids([]int32{2, 3}, t0), idsOf(as[0], as[4]); !slices.Equal(got, want) {
		t.Errorf("AnomalyIDs([2 3], t0) = %v; want %v", got, want)
	}
	if got, want := ids([]int32{1, 2, 3}, math.MinInt64), idsOf(as...); !slices.Equal(got, want) {
		t.Errorf("AnomalyIDs(all) = %v; want %v", got, want)
	}
	if got := ids(nil, math.MinInt64); len(got) != 0 {
		t.Errorf("AnomalyIDs(no partitions) = %v", got)
	}

	read := func(agent string, from, to int64) []anomaly.Anomaly {
		t.Helper()
		got, err := s.Anomalies(ctx, agent, from, to)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	sorted := slices.Clone(as)
	slices.SortFunc(sorted, func(x, y anomaly.Anomaly) int {
		return cmp.Or(cmp.Compare(x.WindowStartMs, y.WindowStartMs), cmp.Compare(x.AgentID, y.AgentID), cmp.Compare(x.Kind, y.Kind))
	})
	for _, phase := range []string{"unmerged", "merged"} {
		if got := read("", math.MinInt64, math.MaxInt64); !reflect.DeepEqual(got, sorted) {
			t.Errorf("%s: Anomalies(all) =\n%+v\nwant\n%+v", phase, got, sorted)
		}
		if got := read("a", t0, t0+day); !reflect.DeepEqual(got, []anomaly.Anomaly{as[1], as[2]}) {
			t.Errorf("%s: Anomalies(a) = %+v", phase, got)
		}
		if got := read(full.AgentID, t0, t0+1); !reflect.DeepEqual(got, []anomaly.Anomaly{full}) {
			t.Errorf("%s: Anomalies(full, [t0, t0+1)) = %+v; want %+v", phase, got, full)
		}
		if got := read("", t0+1, t0+60_000); len(got) != 0 {
			t.Errorf("%s: Anomalies in (t0, t0+1m) = %+v; toMs is exclusive", phase, got)
		}
		mergeNow(t, s, "anomalies")
	}
	if n := rowCount(t, s, "anomalies"); n != uint64(len(as)) {
		t.Errorf("anomalies has %d rows after merge; want %d", n, len(as))
	}

	// The filter columns are copies of the record.
	var (
		sev, role, cred string
		count           uint32
		peer            uint8
		samples         []string
		start           time.Time
	)
	err := s.conn.QueryRow(ctx, "SELECT severity, role, credential_id, count, peer_baseline, sample_request_ids, window_start FROM anomalies WHERE anomaly_id = ?", full.ID).
		Scan(&sev, &role, &cred, &count, &peer, &samples, &start)
	if err != nil {
		t.Fatal(err)
	}
	if sev != "high" || role != "billing" || cred != "key_1" || count != math.MaxUint32 || peer != 1 ||
		!slices.Equal(samples, full.SampleRequestIDs) || start.Unix() != t0/1000 {
		t.Errorf("anomaly columns = %q %q %q %d %d %q %v", sev, role, cred, count, peer, samples, start)
	}
}

func TestIntegrationDetectorScores(t *testing.T) {
	s := newMigratedStore(t)
	ctx := t.Context()
	stopMerges(t, s, "window_scores")
	negZero := math.Copysign(0, -1)
	floats := []float64{0, negZero, 1, -1, math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64, -math.SmallestNonzeroFloat64,
		2.2250738585072014e-308, 1e-300, 1e300, math.Pi, 0.1 + 0.2, 1 << 53, 1<<53 + 1, math.Inf(1), math.Inf(-1), 123456789.123456789}
	rev := slices.Clone(floats)
	slices.Reverse(rev)
	const t0 = 1_750_000_000_000
	sc := func(agent string, start int64, score float64) anomaly.Score {
		return anomaly.Score{AgentID: agent, WindowStartMs: start, WindowEndMs: start + 60_000, Partition: 4, Score: score,
			Severity: "none", Values: []float64{1, 2}, Expected: []float64{}, Surprise: []float64{negZero}}
	}
	full := anomaly.Score{AgentID: "agent-\x00\xff", WindowStartMs: t0, WindowEndMs: t0 + 60_000, Partition: math.MinInt32,
		Score: negZero, Severity: "critical", Values: floats, Expected: rev, Surprise: floats[:3], Trained: true, PeerBaseline: true, Late: 42}
	empty := anomaly.Score{AgentID: "nil-arrays", WindowStartMs: t0 + 60_000, Late: math.MaxUint32 + 1}
	ss := []anomaly.Score{full, empty, sc("a", t0, 1), sc("a", t0+60_000, 2), sc("b", t0-1, 3), sc("b", t0+86_400_000, 4)}
	if err := s.InsertScores(ctx, ss); err != nil {
		t.Fatal(err)
	}
	rescored := sc("a", t0, 9) // a re-scored window replaces the first score
	rescored.Values = []float64{math.MaxFloat64}
	if err := s.InsertScores(ctx, []anomaly.Score{rescored}); err != nil {
		t.Fatal(err)
	}
	ss[2] = rescored
	empty.Values, empty.Expected, empty.Surprise, empty.Late = []float64{}, []float64{}, []float64{}, math.MaxUint32
	ss[1] = empty

	same := func(x, y anomaly.Score) bool { // bitwise on floats: -0 is not 0
		eq := func(a, b []float64) bool {
			return a != nil && b != nil && slices.EqualFunc(a, b, func(p, q float64) bool { return math.Float64bits(p) == math.Float64bits(q) })
		}
		xs, ys := x, y
		xs.Values, xs.Expected, xs.Surprise, ys.Values, ys.Expected, ys.Surprise = nil, nil, nil, nil, nil, nil
		return reflect.DeepEqual(xs, ys) && math.Float64bits(x.Score) == math.Float64bits(y.Score) &&
			eq(x.Values, y.Values) && eq(x.Expected, y.Expected) && eq(x.Surprise, y.Surprise)
	}
	check := func(phase, agent string, from, to int64, want ...anomaly.Score) {
		t.Helper()
		got, err := s.Scores(ctx, agent, from, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: Scores(%q, %d, %d) returned %d scores; want %d: %+v", phase, agent, from, to, len(got), len(want), got)
		}
		for i := range got {
			if !same(got[i], want[i]) {
				t.Errorf("%s: Scores(%q, %d, %d)[%d] =\n%+v\nwant\n%+v", phase, agent, from, to, i, got[i], want[i])
			}
		}
	}
	for _, phase := range []string{"unmerged", "merged"} {
		check(phase, "", math.MinInt64, math.MaxInt64, ss[4], ss[2], full, ss[3], empty, ss[5])
		check(phase, "a", t0, t0+60_001, ss[2], ss[3])
		check(phase, "a", t0, t0+60_000, ss[2])
		check(phase, full.AgentID, 0, math.MaxInt64, full)
		check(phase, "", t0+1, t0+60_000)
		mergeNow(t, s, "window_scores")
	}
	if err := s.InsertScores(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

func TestIntegrationDetectorBackfillProgress(t *testing.T) {
	s := newMigratedStore(t)
	ctx := t.Context()
	stopMerges(t, s, "backfill_progress")
	if ms, ok, err := s.BackfillProgress(ctx, "baselines"); ok || err != nil || ms != 0 {
		t.Fatalf("BackfillProgress before any = %d, %v, %v; want 0, false, nil", ms, ok, err)
	}
	// Calls within one millisecond tie on updated_ms; the later still wins.
	for _, step := range []struct {
		job  string
		done int64
	}{{"baselines", 10}, {"baselines", 20}, {"other\x00'", math.MinInt64}, {"baselines", 5}} {
		if err := s.SetBackfillProgress(ctx, step.job, step.done); err != nil {
			t.Fatal(err)
		}
	}
	for _, phase := range []string{"unmerged", "merged"} {
		if ms, ok, err := s.BackfillProgress(ctx, "baselines"); !ok || err != nil || ms != 5 {
			t.Errorf("%s: BackfillProgress(baselines) = %d, %v, %v; want 5, true (the latest call wins)", phase, ms, ok, err)
		}
		if ms, ok, err := s.BackfillProgress(ctx, "other\x00'"); !ok || err != nil || ms != math.MinInt64 {
			t.Errorf("%s: BackfillProgress(other) = %d, %v, %v", phase, ms, ok, err)
		}
		mergeNow(t, s, "backfill_progress")
	}
}

func TestIntegrationDetectorEventsBetween(t *testing.T) {
	s := newMigratedStore(t)
	ctx := t.Context()
	if lo, hi, n, err := s.EventTimeRange(ctx); lo != 0 || hi != 0 || n != 0 || err != nil {
		t.Fatalf("EventTimeRange of no events = %d, %d, %d, %v; want zeros", lo, hi, n, err)
	}
	stopMerges(t, s, "events")

	// Synthetic events cross a UTC day boundary, share milliseconds (so
	// event_id breaks ties) and interleave agents (so the table's order,
	// agent first, is not the wanted order).
	start := time.Date(2025, 3, 1, 23, 59, 55, 0, time.UTC).UnixMilli()
	evs := newSynth(start).fill(nil, 10_000)
	weird := event.Event{
		EventID: "weird", EventTimeMs: start + 5, IngestTimeMs: math.MinInt64, AgentID: "a\x00\xff", Unattributed: true,
		CredentialID: "c'\"", SourceIP: "::1", Method: "PATCH", Route: "/r/{id}", Path: "/r/1", QueryParams: []string{"", "\xff"},
		Status: math.MaxUint16, RequestBytes: math.MaxUint64, ResponseBytes: 1, DurationUs: 2, UserAgent: "ua\n", Gateway: "gw",
		Upstream: "up", RequestID: "rid", Format: "kong", Topic: "t", Partition: math.MaxInt32, Offset: math.MaxInt64,
	}
	evs = append(evs, weird)
	// Insert everything, then half of it again, as a retried batch would.
	if err := s.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertEvents(ctx, evs[len(evs)/2:]); err != nil {
		t.Fatal(err)
	}

	want := slices.Clone(evs)
	for i := range want {
		if want[i].QueryParams == nil {
			want[i].QueryParams = []string{}
		}
	}
	slices.SortFunc(want, func(x, y event.Event) int {
		return cmp.Or(cmp.Compare(x.EventTimeMs, y.EventTimeMs), cmp.Compare(x.EventID, y.EventID))
	})
	lo, hi := want[0].EventTimeMs, want[len(want)-1].EventTimeMs
	if lo/86_400_000 == hi/86_400_000 {
		t.Fatalf("synthetic events [%d, %d] lie in one day; the test wants two day partitions", lo, hi)
	}
	if lo2, hi2, n, err := s.EventTimeRange(ctx); lo2 != lo || hi2 != hi || n < uint64(len(evs)) || err != nil {
		t.Fatalf("EventTimeRange = %d, %d, %d, %v; want %d, %d, >= %d", lo2, hi2, n, err, lo, hi, len(evs))
	}

	between := func(from, to int64) []event.Event {
		t.Helper()
		var got []event.Event
		err := s.EventsBetween(ctx, from, to, func(e *event.Event) error {
			got = append(got, *e)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := between(lo, hi+1); !reflect.DeepEqual(got, want) {
		t.Fatalf("EventsBetween(all) returned %d events; want %d, each once, in (time, id) order", len(got), len(want))
	}
	// A slice in the middle, bounds [from, to).
	from, to := want[2500].EventTimeMs, want[7500].EventTimeMs
	var wantMid []event.Event
	for _, e := range want {
		if e.EventTimeMs >= from && e.EventTimeMs < to {
			wantMid = append(wantMid, e)
		}
	}
	if got := between(from, to); !reflect.DeepEqual(got, wantMid) {
		t.Fatalf("EventsBetween(%d, %d) returned %d events; want %d", from, to, len(got), len(wantMid))
	}
	if got := between(hi+1, math.MaxInt64); len(got) != 0 {
		t.Fatalf("EventsBetween after the last event returned %d", len(got))
	}
	if got := between(lo, lo); len(got) != 0 {
		t.Fatalf("EventsBetween of an empty range returned %d", len(got))
	}

	// fn stops the walk early; the error comes back as is and the Store
	// stays usable.
	stop := errors.New("enough")
	calls := 0
	err := s.EventsBetween(ctx, math.MinInt64, math.MaxInt64, func(*event.Event) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 3 {
		t.Fatalf("EventsBetween with a failing fn = %v after %d calls; want %v after 3", err, calls, stop)
	}
	if n, err := s.CountEvents(ctx, true); err != nil || n != uint64(len(evs)) {
		t.Fatalf("CountEvents after an early stop = %d, %v; want %d", n, err, len(evs))
	}
}
