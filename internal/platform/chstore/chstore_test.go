package chstore

import (
	"context"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
)

func TestSplitStatements(t *testing.T) {
	got := splitStatements("-- a comment; with a semicolon\nCREATE TABLE a (x UInt8);\n\n  -- another\nCREATE TABLE b (y String)\n;\n")
	want := []string{"CREATE TABLE a (x UInt8)", "CREATE TABLE b (y String)"}
	if !slices.Equal(got, want) {
		t.Fatalf("splitStatements = %q; want %q", got, want)
	}
}

func TestLoadMigrationsRejectsBadSets(t *testing.T) {
	bad := func(name string, files fstest.MapFS) {
		t.Helper()
		if _, err := loadMigrations(files, "m"); err == nil {
			t.Errorf("%s: loadMigrations succeeded; want an error", name)
		}
	}
	stmt := &fstest.MapFile{Data: []byte("CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = Memory")}
	bad("gap", fstest.MapFS{"m/0001_a.sql": stmt, "m/0003_c.sql": stmt})
	bad("duplicate", fstest.MapFS{"m/0001_a.sql": stmt, "m/0001_b.sql": stmt})
	bad("bad name", fstest.MapFS{"m/1_a.sql": stmt})
	bad("empty file", fstest.MapFS{"m/0001_a.sql": &fstest.MapFile{Data: []byte("-- nothing\n")}})
	bad("no files", fstest.MapFS{"m/.keep": &fstest.MapFile{}})

	ms, err := loadMigrations(fstest.MapFS{"m/0002_b.sql": stmt, "m/0001_a.sql": stmt}, "m")
	if err != nil || len(ms) != 2 || ms[0].name != "a" || ms[1].version != 2 {
		t.Fatalf("loadMigrations = %+v, %v; want versions 1 (a) and 2 (b)", ms, err)
	}
}

// Concurrent Migrate calls are only safe because every statement is
// idempotent; this keeps a future migration from breaking that quietly.
func TestEmbeddedMigrationsAreIdempotent(t *testing.T) {
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	idempotent := regexp.MustCompile(`(?i)\bIF (NOT )?EXISTS\b`)
	for _, m := range ms {
		for _, st := range m.stmts {
			if !idempotent.MatchString(st) {
				t.Errorf("migration %04d_%s: statement is not idempotent (no IF [NOT] EXISTS): %.80s", m.version, m.name, st)
			}
		}
	}
}

// The insert column list and the DDL must agree in names and order, or
// column-wise appends would land in the wrong column.
func TestEventColumnsMatchDDL(t *testing.T) {
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	ddl := ms[0].stmts[0]
	var cols []string
	for _, m := range regexp.MustCompile("(?m)^\\s*`([a-z_]+)`\\s").FindAllStringSubmatch(ddl, -1) {
		cols = append(cols, m[1])
	}
	if !slices.Equal(cols, eventColumns) {
		t.Fatalf("DDL columns %v\ndiffer from insert columns %v", cols, eventColumns)
	}
	if n := len(eventColumnData([]event.Event{{}})); n != len(eventColumns) {
		t.Fatalf("eventColumnData yields %d columns; want %d", n, len(eventColumns))
	}
	for _, banned := range []string{"DateTime64", "TTL", "Map(", "LowCardinality", "Nullable", "CODEC"} {
		if strings.Contains(ddl, banned) {
			t.Errorf("events DDL uses %s, which ClickHouse 18.16 lacks", banned)
		}
	}
}

func TestEventColumnDataCopiesEveryField(t *testing.T) {
	ev := event.Event{
		EventID: "id", EventTimeMs: 1_700_000_000_123, IngestTimeMs: 2, AgentID: "ag", IdentitySource: "header",
		Unattributed: true, CredentialID: "cred", SourceIP: "ip", Method: "GET", Route: "/r", Path: "/p",
		Status: 404, RequestBytes: 5, ResponseBytes: 6, DurationUs: 7, UserAgent: "ua", Gateway: "gw",
		Upstream: "up", RequestID: "rid", Format: "envoy", Topic: "t", Partition: 8, Offset: 9,
	}
	cols := eventColumnData([]event.Event{ev})
	got := make([]any, len(cols))
	for i, c := range cols {
		switch c := c.(type) {
		case []string:
			got[i] = c[0]
		case []time.Time:
			got[i] = c[0].Unix()
		case []int64:
			got[i] = c[0]
		case []uint8:
			got[i] = c[0]
		case [][]string:
			got[i] = len(c[0])
		case []uint16:
			got[i] = c[0]
		case []uint64:
			got[i] = c[0]
		case []int32:
			got[i] = c[0]
		default:
			t.Fatalf("column %s has unexpected Go type %T", eventColumns[i], c)
		}
	}
	want := []any{
		"id", int64(1_700_000_000), int64(1_700_000_000_123), int64(2), "ag", "header", uint8(1), "cred", "ip", "GET",
		"/r", "/p", 0, uint16(404), uint64(5), uint64(6), uint64(7), "ua", "gw", "up", "rid", "envoy", "t", int32(8), int64(9),
	}
	if !slices.Equal(got, want) {
		t.Fatalf("eventColumnData row = %v; want %v", got, want)
	}
	if qp := cols[12].([][]string)[0]; qp == nil {
		t.Fatal("nil QueryParams must become an empty, non-nil array")
	}
}

func TestPartitionTimeClamps(t *testing.T) {
	ok := func(ms int64, want int64) {
		t.Helper()
		if got := partitionTime(ms); got.Unix() != want || got.Location() != time.UTC {
			t.Errorf("partitionTime(%d) = %v (%d); want %d UTC", ms, got, got.Unix(), want)
		}
		if got := partitionSec(ms); int64(got) != want {
			t.Errorf("partitionSec(%d) = %d; want %d", ms, got, want)
		}
	}
	ok(0, 0)
	ok(999, 0)
	ok(1000, 1)
	ok(1999, 1)
	ok(-1, 0)
	ok(-5, 0)
	ok(math.MinInt64, 0)
	ok(1_700_000_000_123, 1_700_000_000)
	ok(1_700_000_000_999, 1_700_000_000)
	ok(math.MaxUint32*1000+999, math.MaxUint32)
	ok(1<<62, math.MaxUint32)
	ok(math.MaxInt64, math.MaxUint32)
}

func TestOpenRejectsUnsafeDatabaseName(t *testing.T) {
	for _, name := range []string{"a-b", "x; DROP TABLE y", "1abc", "a`b"} {
		if _, err := Open(context.Background(), Options{Database: name, Addr: []string{"127.0.0.1:1"}}, nil); err == nil || !strings.Contains(err.Error(), "must match") {
			t.Errorf("Open(Database=%q) error = %v; want a name validation error", name, err)
		}
	}
}

func TestQuoteIdent(t *testing.T) {
	if got := quoteIdent("a`b\\c"); got != "`a\\`b\\\\c`" {
		t.Fatalf("quoteIdent = %s", got)
	}
}

func TestMeasureInsertRejectsNonPositive(t *testing.T) {
	if _, err := MeasureInsert(context.Background(), nil, 0, 10); err == nil {
		t.Fatal("MeasureInsert(rows=0) succeeded; want an error")
	}
}

func TestSynthEventsAreDistinctAndValid(t *testing.T) {
	g := newSynth(1_700_000_000_000)
	evs := g.fill(nil, 5000)
	evs = g.fill(evs, 5000) // a second batch continues, never repeats
	seen := make(map[string]bool, len(evs))
	for _, e := range evs {
		if seen[e.EventID] {
			t.Fatalf("duplicate synthetic event id %s", e.EventID)
		}
		seen[e.EventID] = true
		if e.Unattributed != (e.AgentID == "") || e.Status == 0 || e.EventTimeMs < 1_700_000_000_000 {
			t.Fatalf("implausible synthetic event %+v", e)
		}
	}
}
