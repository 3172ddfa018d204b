package chstore

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
)

// testAddr returns TEST_CLICKHOUSE_ADDR (comma-separated host:port, native
// protocol), failing when REQUIRE_INTEGRATION says the service must be there.
func testAddr(t *testing.T) []string {
	t.Helper()
	v := os.Getenv("TEST_CLICKHOUSE_ADDR")
	if v == "" {
		if os.Getenv("REQUIRE_INTEGRATION") != "" {
			t.Fatal("TEST_CLICKHOUSE_ADDR not set but REQUIRE_INTEGRATION is: ClickHouse did not start (deploy/clickhouse.sh up)")
		}
		t.Skip("TEST_CLICKHOUSE_ADDR not set; run deploy/clickhouse.sh up and TEST_CLICKHOUSE_ADDR=127.0.0.1:9000")
	}
	return strings.Split(v, ",")
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testDatabase names a database no other test (or run) uses; under
// TestIntegrationSecureRoundTrips, the one the restricted user may use.
func testDatabase(t *testing.T) string {
	if secure != nil {
		return secure.Database
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, t.Name())
	return fmt.Sprintf("chstore_it_%.40s_%x", name, b)
}

// openTestStore opens a Store on database db and closes it at cleanup.
func openTestStore(t *testing.T, db string) *Store {
	t.Helper()
	s, err := Open(t.Context(), testOptions(t, db), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// newTestStore opens a Store on a fresh database that is dropped afterwards.
func newTestStore(t *testing.T) *Store {
	t.Helper()
	s := openTestStore(t, testDatabase(t))
	dropAtCleanup(t, s)
	return s
}

// dropAtCleanup drops s's database when the test ends, before s is closed
// (cleanups run last registered first).
func dropAtCleanup(t *testing.T, s *Store) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.conn.Exec(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(s.db)); err != nil {
			t.Errorf("drop test database %s: %v", s.db, err)
		}
	})
}

func newMigratedStore(t *testing.T) *Store {
	t.Helper()
	s := newTestStore(t)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestIntegrationTypesRoundTrip proves that every column type the schema
// uses survives clickhouse-go v2 against this server byte for byte, through
// the same column-wise append path InsertEvents uses. clickhouse-go is only
// tested against current servers; this is the evidence for 18.16.
func TestIntegrationTypesRoundTrip(t *testing.T) {
	s := newTestStore(t)
	ctx := t.Context()
	err := s.conn.Exec(ctx, "CREATE TABLE types_rt (`row` UInt32, `s` String, `i32` Int32, `i64` Int64, `u8` UInt8, "+
		"`u16` UInt16, `u64` UInt64, `dt` DateTime, `arr` Array(String)) ENGINE = MergeTree() ORDER BY row")
	if err != nil {
		t.Fatal(err)
	}

	big := make([]byte, 1<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	big[0], big[len(big)/2], big[len(big)-1] = 0, 0, 0
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	strs := []string{
		"", "plain", "\x00", "a\x00b\x00", "\xff\xfe\xfd", "\xc3\x28", "\xed\xa0\x80", "\x80", "ünïcødé 🚀",
		"quote'\"`\\\n\r\t", string(allBytes), string(big), strings.Repeat("x", 70000),
	}
	i32s := []int32{math.MinInt32, math.MinInt32 + 1, -1, 0, 1, math.MaxInt32 - 1, math.MaxInt32}
	i64s := []int64{math.MinInt64, math.MinInt64 + 1, math.MinInt32 - 1, -1, 0, 1, math.MaxUint32 + 1, math.MaxInt64 - 1, math.MaxInt64}
	u8s := []uint8{0, 1, 127, 128, 254, 255}
	u16s := []uint16{0, 1, 255, 256, 32767, 32768, 65534, 65535}
	u64s := []uint64{0, 1, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint32, math.MaxUint64 - 1, math.MaxUint64}
	// DateTime is a UInt32 of seconds: both ends, the 2038 signed boundary
	// and a day boundary.
	dts := []int64{0, 1, 86399, 86400, 1_700_000_000, math.MaxInt32, math.MaxInt32 + 1, math.MaxUint32 - 1, math.MaxUint32}
	arrs := [][]string{nil, {}, {""}, {"", ""}, {"a\x00", "\xff", ""}, {string(allBytes)}, slices.Repeat([]string{"p"}, 1000)}

	n := max(len(strs), len(i32s), len(i64s), len(u8s), len(u16s), len(u64s), len(dts), len(arrs)) * 2
	var (
		cRow = make([]uint32, n)
		cS   = make([]string, n)
		cI32 = make([]int32, n)
		cI64 = make([]int64, n)
		cU8  = make([]uint8, n)
		cU16 = make([]uint16, n)
		cU64 = make([]uint64, n)
		cDT  = make([]time.Time, n)
		cArr = make([][]string, n)
	)
	for i := range n {
		cRow[i] = uint32(i)
		cS[i] = strs[i%len(strs)]
		cI32[i] = i32s[i%len(i32s)]
		cI64[i] = i64s[i%len(i64s)]
		cU8[i] = u8s[i%len(u8s)]
		cU16[i] = u16s[i%len(u16s)]
		cU64[i] = u64s[i%len(u64s)]
		cDT[i] = time.Unix(dts[i%len(dts)], 0).UTC()
		cArr[i] = arrs[i%len(arrs)]
		if cArr[i] == nil {
			cArr[i] = []string{} // as eventColumnData does
		}
	}
	names := []string{"row", "s", "i32", "i64", "u8", "u16", "u64", "dt", "arr"}
	if err := s.insertColumns(ctx, "types_rt", names, []any{cRow, cS, cI32, cI64, cU8, cU16, cU64, cDT, cArr}, n); err != nil {
		t.Fatal(err)
	}

	rows, err := s.conn.Query(ctx, "SELECT row, s, i32, i64, u8, u16, u64, dt, toUInt32(dt), arr FROM types_rt ORDER BY row")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := 0
	for rows.Next() {
		var (
			row, dtRaw uint32
			str        string
			i32        int32
			i64        int64
			u8         uint8
			u16        uint16
			u64        uint64
			dt         time.Time
			arr        []string
		)
		if err := rows.Scan(&row, &str, &i32, &i64, &u8, &u16, &u64, &dt, &dtRaw, &arr); err != nil {
			t.Fatal(err)
		}
		i := int(row)
		if row != uint32(got) {
			t.Fatalf("row %d arrived as %d", got, row)
		}
		got++
		if str != cS[i] {
			t.Errorf("row %d String: %d bytes came back (%.20q…), sent %d (%.20q…)", i, len(str), str, len(cS[i]), cS[i])
		}
		if i32 != cI32[i] || i64 != cI64[i] || u8 != cU8[i] || u16 != cU16[i] || u64 != cU64[i] {
			t.Errorf("row %d ints: got %d %d %d %d %d; sent %d %d %d %d %d", i, i32, i64, u8, u16, u64, cI32[i], cI64[i], cU8[i], cU16[i], cU64[i])
		}
		if dt.Unix() != cDT[i].Unix() || int64(dtRaw) != cDT[i].Unix() {
			t.Errorf("row %d DateTime: got %v (raw %d); sent %v (%d)", i, dt, dtRaw, cDT[i], cDT[i].Unix())
		}
		if !slices.Equal(arr, cArr[i]) || arr == nil {
			t.Errorf("row %d Array(String): got %q (nil=%v); sent %.60q", i, arr, arr == nil, cArr[i])
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("read %d rows; inserted %d", got, n)
	}

	// The server must have stored the bytes, not just handed them back:
	// check lengths and a hash computed server-side.
	var (
		serverLen  uint64
		serverHash string
	)
	if err := s.conn.QueryRow(ctx, "SELECT length(s), hex(MD5(s)) FROM types_rt WHERE row = ?", uint32(slices.Index(strs, string(big)))).Scan(&serverLen, &serverHash); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(big)
	if clientHash := strings.ToUpper(hex.EncodeToString(sum[:])); serverLen != 1<<20 || serverHash != clientHash {
		t.Fatalf("1 MiB string stored as %d bytes with MD5 %s; want %d bytes with MD5 %s", serverLen, serverHash, 1<<20, clientHash)
	}
}

// readEvents reads the events table back into Events, ordered by offset.
func readEvents(t *testing.T, s *Store) ([]event.Event, []time.Time) {
	t.Helper()
	rows, err := s.conn.Query(t.Context(), "SELECT "+strings.Join(quoteAll(eventColumns), ", ")+" FROM events FINAL ORDER BY `offset`")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var (
		evs   []event.Event
		times []time.Time
	)
	for rows.Next() {
		var (
			e   event.Event
			et  time.Time
			una uint8
		)
		if err := rows.Scan(&e.EventID, &et, &e.EventTimeMs, &e.IngestTimeMs, &e.AgentID, &e.IdentitySource, &una,
			&e.CredentialID, &e.SourceIP, &e.Method, &e.Route, &e.Path, &e.QueryParams, &e.Status, &e.RequestBytes,
			&e.ResponseBytes, &e.DurationUs, &e.UserAgent, &e.Gateway, &e.Upstream, &e.RequestID, &e.Format,
			&e.Topic, &e.Partition, &e.Offset); err != nil {
			t.Fatal(err)
		}
		e.Unattributed = una == 1
		if una > 1 {
			t.Fatalf("unattributed stored as %d", una)
		}
		evs = append(evs, e)
		times = append(times, et)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return evs, times
}

func quoteAll(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = quoteIdent(n)
	}
	return out
}

// TestIntegrationEventsRoundTrip sends Events with extreme field values
// through InsertEvents and reads every field back unchanged.
func TestIntegrationEventsRoundTrip(t *testing.T) {
	s := newMigratedStore(t)
	ctx := t.Context()
	weird := "a\x00\xff\xfe\"'`\\\n" + strings.Repeat("é", 1000)
	evs := []event.Event{
		{
			EventID: event.ID("t", 0, 0), EventTimeMs: 1_700_000_000_123, IngestTimeMs: 1_700_000_000_456,
			AgentID: "agent-1", IdentitySource: "header", CredentialID: "key_1", SourceIP: "2001:db8::1",
			Method: "GET", Route: "/v1/customers/{id}", Path: "/v1/customers/42", QueryParams: []string{"page", "", "limit"},
			Status: 200, RequestBytes: 1, ResponseBytes: 2, DurationUs: 3, UserAgent: "ua", Gateway: "gw",
			Upstream: "up", RequestID: "rid", Format: "envoy", Topic: "t", Partition: 0, Offset: 1,
		},
		{
			EventID: weird, EventTimeMs: 0, IngestTimeMs: math.MinInt64, Unattributed: true,
			CredentialID: weird, SourceIP: weird, Method: weird, Route: weird, Path: weird, QueryParams: nil,
			Status: math.MaxUint16, RequestBytes: math.MaxUint64, ResponseBytes: math.MaxUint64, DurationUs: math.MaxUint64,
			UserAgent: weird, Gateway: weird, Upstream: weird, RequestID: weird, Format: weird, Topic: weird,
			Partition: math.MaxInt32, Offset: 2,
		},
		{
			EventID: "max", EventTimeMs: math.MaxInt64, IngestTimeMs: math.MaxInt64, AgentID: "agent-\x00",
			QueryParams: []string{}, Partition: math.MinInt32, Offset: 3,
		},
		{EventID: "min", EventTimeMs: math.MinInt64, AgentID: "z", Offset: math.MaxInt64},
	}
	if err := s.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	got, times := readEvents(t, s)
	if len(got) != len(evs) {
		t.Fatalf("read %d events; wrote %d", len(got), len(evs))
	}
	for i := range evs {
		want := evs[i]
		if want.QueryParams == nil {
			want.QueryParams = []string{} // ClickHouse has no NULL array; nil is stored as empty
		}
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], want)
		}
		if wantT := partitionTime(want.EventTimeMs); !times[i].Equal(wantT) {
			t.Errorf("event %d event_time = %v; want %v", i, times[i], wantT)
		}
	}
	if err := s.InsertEvents(ctx, nil); err != nil {
		t.Fatalf("InsertEvents(nil) = %v; want a no-op", err)
	}
}

// TestIntegrationEventsSchema checks the live table against what the
// adapter appends: same names, order and types.
func TestIntegrationEventsSchema(t *testing.T) {
	s := newMigratedStore(t)
	rows, err := s.conn.Query(t.Context(), "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = 'events' ORDER BY position")
	if err != nil {
		// 18.16's system.columns may lack position; fall back to its natural order.
		rows, err = s.conn.Query(t.Context(), "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = 'events'")
		if err != nil {
			t.Fatal(err)
		}
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			t.Fatal(err)
		}
		got = append(got, name+" "+typ)
	}
	types := map[string]string{
		"event_time": "DateTime", "event_time_ms": "Int64", "ingest_time_ms": "Int64", "unattributed": "UInt8",
		"query_params": "Array(String)", "status": "UInt16", "request_bytes": "UInt64", "response_bytes": "UInt64",
		"duration_us": "UInt64", "partition": "Int32", "offset": "Int64",
	}
	var want []string
	for _, c := range eventColumns {
		typ, ok := types[c]
		if !ok {
			typ = "String"
		}
		want = append(want, c+" "+typ)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("events columns:\n got %v\nwant %v", got, want)
	}
}

func TestIntegrationMigrateIdempotent(t *testing.T) {
	s := newTestStore(t)
	ctx := t.Context()
	for range 2 {
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	checkApplied(t, s)
	if n, err := s.CountEvents(ctx, false); err != nil || n != 0 {
		t.Fatalf("CountEvents on a new table = %d, %v; want 0", n, err)
	}
}

// TestIntegrationMigrateConcurrent runs Migrate from several Stores (as
// several processes would) on one empty database at once.
func TestIntegrationMigrateConcurrent(t *testing.T) {
	first := newTestStore(t)
	const racers = 4
	stores := []*Store{first}
	for range racers - 1 {
		stores = append(stores, openTestStore(t, first.db))
	}
	var wg sync.WaitGroup
	errs := make([]error, racers)
	start := make(chan struct{})
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = s.Migrate(t.Context())
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("racer %d: %v", i, err)
		}
	}
	checkApplied(t, first)
	if err := first.InsertEvents(t.Context(), []event.Event{{EventID: "x", AgentID: "a"}}); err != nil {
		t.Fatalf("insert after concurrent migrations: %v", err)
	}
}

// checkApplied asserts that every embedded migration is recorded once.
func checkApplied(t *testing.T, s *Store) {
	t.Helper()
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	applied, err := s.AppliedMigrations(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(ms) {
		t.Fatalf("applied migrations %+v; want %d", applied, len(ms))
	}
	for i, a := range applied {
		if a.Version != ms[i].version || a.Name != ms[i].name || time.Since(a.AppliedAt) > time.Hour || time.Since(a.AppliedAt) < -time.Minute {
			t.Errorf("applied[%d] = %+v; want version %d name %s applied just now", i, a, ms[i].version, ms[i].name)
		}
	}
}

// TestIntegrationRetriedBatchDeduplicates inserts the same batch three times,
// as a consumer that crashed before committing offsets would, and expects
// every event exactly once in deduplicated reads, and physically once after
// a merge.
func TestIntegrationRetriedBatchDeduplicates(t *testing.T) {
	s := newMigratedStore(t)
	ctx := t.Context()
	const n = 5000
	evs := newSynth(time.Now().Add(-2*time.Hour).UnixMilli()).fill(nil, n)
	for attempt := range 3 {
		// A real retry re-parses the records, so the ingest time differs;
		// it is not part of the dedup key.
		for i := range evs {
			evs[i].IngestTimeMs += int64(attempt)
		}
		if err := s.InsertEvents(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.CountEvents(ctx, true); err != nil || got != n {
		t.Fatalf("CountEvents(dedup) = %d, %v; want %d", got, err, n)
	}
	raw, err := s.CountEvents(ctx, false)
	if err != nil || raw < n || raw > 3*n {
		t.Fatalf("CountEvents(raw) = %d, %v; want between %d and %d", raw, err, n, 3*n)
	}
	ids, err := s.EventIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != n {
		t.Fatalf("EventIDs has %d ids; want %d", len(ids), n)
	}
	for _, e := range evs {
		if c := ids[e.EventID]; c != 1 {
			t.Fatalf("event %s counted %d times after FINAL; want 1", e.EventID, c)
		}
	}
	if err := s.conn.Exec(ctx, "OPTIMIZE TABLE events FINAL"); err != nil {
		t.Fatal(err)
	}
	if raw, err := s.CountEvents(ctx, false); err != nil || raw != n {
		t.Fatalf("CountEvents(raw) after OPTIMIZE FINAL = %d, %v; want %d: ReplacingMergeTree did not collapse retries", raw, err, n)
	}
}

func TestIntegrationDropPartitionsBefore(t *testing.T) {
	s := newMigratedStore(t)
	ctx := t.Context()
	today := time.Now().UTC().Truncate(24 * time.Hour)
	day := func(d int) time.Time { return today.AddDate(0, 0, d) }
	ymd := func(tm time.Time) string { return tm.Format("20060102") }
	at := []time.Time{
		day(-10).Add(12 * time.Hour),
		day(-3).Add(time.Hour),
		day(-2).Add(24*time.Hour - time.Millisecond), // last ms of day -2: dropped
		day(-1),                 // first ms of the cutoff day: kept
		day(-1).Add(time.Hour),  // kept
		day(0).Add(time.Minute), // kept
	}
	var evs []event.Event
	for i, ts := range at {
		evs = append(evs, event.Event{EventID: "e" + strconv.Itoa(i), AgentID: "a", EventTimeMs: ts.UnixMilli(), Offset: int64(i)})
	}
	if err := s.InsertEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	// The cutoff is a UTC day, whatever the argument's time of day and zone:
	// 15:00 UTC on day -1 is already day 0 in UTC+9.
	cutoff := day(-1).Add(15 * time.Hour).In(time.FixedZone("UTC+9", 9*3600))
	dropped, err := s.DropPartitionsBefore(ctx, cutoff)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ymd(day(-10)), ymd(day(-3)), ymd(day(-2))}
	if !slices.Equal(dropped, want) {
		t.Fatalf("DropPartitionsBefore(%v) dropped %v; want %v", cutoff, dropped, want)
	}
	got, _ := readEvents(t, s)
	var left []string
	for _, e := range got {
		left = append(left, e.EventID)
	}
	if !slices.Equal(left, []string{"e3", "e4", "e5"}) {
		t.Fatalf("events left after retention: %v; want e3 e4 e5", left)
	}
	if again, err := s.DropPartitionsBefore(ctx, cutoff); err != nil || len(again) != 0 {
		t.Fatalf("second DropPartitionsBefore = %v, %v; want nothing to drop", again, err)
	}
}

// TestIntegrationMeasureInsert reports insert throughput. Scale it with
// TEST_CLICKHOUSE_MEASURE_ROWS and TEST_CLICKHOUSE_MEASURE_BATCH.
func TestIntegrationMeasureInsert(t *testing.T) {
	s := newMigratedStore(t)
	rows := envInt(t, "TEST_CLICKHOUSE_MEASURE_ROWS", 300_000)
	batch := envInt(t, "TEST_CLICKHOUSE_MEASURE_BATCH", 100_000)
	elapsed, err := MeasureInsert(t.Context(), s, rows, batch)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inserted %d rows in batches of %d in %v: %.0f rows/s", rows, batch, elapsed, float64(rows)/elapsed.Seconds())
	for _, dedup := range []bool{false, true} {
		if n, err := s.CountEvents(t.Context(), dedup); err != nil || n != uint64(rows) {
			t.Fatalf("CountEvents(dedup=%v) = %d, %v; want %d", dedup, n, err, rows)
		}
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// TestIntegrationRetryable classifies real failures: a statement the server
// rejects is final, a server that is not there is worth retrying.
func TestIntegrationRetryable(t *testing.T) {
	s := newMigratedStore(t)
	err := s.insertColumns(t.Context(), "no_such_table", []string{"x"}, []any{[]string{"a"}}, 1)
	if err == nil || Retryable(err) {
		t.Fatalf("insert into a missing table: err = %v, Retryable = %v; want a final error", err, Retryable(err))
	}
	_, err = Open(t.Context(), Options{Addr: []string{"127.0.0.1:1"}, DialTimeout: time.Second}, testLogger(t))
	if err == nil || !Retryable(err) {
		t.Fatalf("open against a closed port: err = %v, Retryable = %v; want a retryable error", err, Retryable(err))
	}
}
