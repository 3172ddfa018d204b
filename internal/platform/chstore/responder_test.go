package chstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// readMigration returns the statements of the embedded migration named
// name (such as "0003_responder.sql"), split as Migrate splits them.
func readMigration(t *testing.T, name string) []string {
	t.Helper()
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if fmt.Sprintf("%04d_%s.sql", m.version, m.name) == name {
			return m.stmts
		}
	}
	t.Fatalf("no embedded migration %s", name)
	return nil
}

var (
	tableRE = regexp.MustCompile(`^CREATE TABLE IF NOT EXISTS ([a-z_]+)\s`)
	colRE   = regexp.MustCompile("(?m)^\\s*`([a-z_0-9]+)`\\s")
)

// ddlTables maps each table a migration creates to its column names, in
// order, and checks the statements stay within what 18.16 understands.
func ddlTables(t *testing.T, stmts []string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, st := range stmts {
		m := tableRE.FindStringSubmatch(st)
		if m == nil {
			t.Fatalf("statement is not a CREATE TABLE IF NOT EXISTS: %.80s", st)
		}
		var cols []string
		for _, c := range colRE.FindAllStringSubmatch(st, -1) {
			cols = append(cols, c[1])
		}
		out[m[1]] = cols
		for _, banned := range []string{"DateTime64", "TTL", "Map(", "LowCardinality", "Nullable", "CODEC", "PREWHERE"} {
			if strings.Contains(st, banned) {
				t.Errorf("%s DDL uses %s, which ClickHouse 18.16 lacks", m[1], banned)
			}
		}
	}
	return out
}

// The audit table's DDL keeps the key, engine and types Audit relies on,
// and auditRow fills every column.
func TestAuditDDL(t *testing.T) {
	var ddl string
	for _, st := range readMigration(t, "0003_responder.sql") {
		if strings.HasPrefix(st, "CREATE TABLE IF NOT EXISTS audit\n") {
			ddl = st
		}
	}
	if ddl == "" {
		t.Fatal("0003_responder.sql creates no audit table")
	}
	if n := len(auditRow(audit.Record{ID: "x", AtMs: 1, AgentID: "a", IncidentID: "i"})); n != len(auditColumns) {
		t.Errorf("auditRow has %d values for %d columns", n, len(auditColumns))
	}
	for _, want := range []string{"ReplacingMergeTree()", "PARTITION BY toYYYYMM(at)", "ORDER BY (agent_id, at, id)", "`at`               DateTime,"} {
		if !strings.Contains(ddl, want) {
			t.Errorf("audit DDL lacks %q", want)
		}
	}
	if strings.Contains(ddl, "DateTime64") {
		t.Error("audit DDL uses DateTime64, which ClickHouse 18.16 lacks")
	}
	// The runner splits on semicolons: one inside the statement would cut it.
	if !strings.HasSuffix(ddl, "ORDER BY (agent_id, at, id)") {
		t.Errorf("audit statement, as the runner splits it, ends %q; want the whole CREATE TABLE", ddl[max(0, len(ddl)-40):])
	}
}

// Insert and select column lists must agree with the DDL in names and
// order: Records and Since scan positionally.
func TestColumnsMatchDDL(t *testing.T) {
	got := ddlTables(t, readMigration(t, "0003_responder.sql"))
	want := map[string][]string{
		"audit":             auditColumns,
		"evidence_chain":    chainColumns,
		"responder_handled": seenColumns,
		"feedback_verdicts": feedbackColumns,
	}
	for table, cols := range want {
		if !slices.Equal(got[table], cols) {
			t.Errorf("%s: DDL columns %v\ndiffer from this package's %v", table, got[table], cols)
		}
	}
	if len(got) != len(want) {
		t.Errorf("0003 creates %d tables; want %d", len(got), len(want))
	}
	events := ddlTables(t, readMigration(t, "0001_events.sql"))["events"]
	if !slices.Equal(events, eventColumns) {
		t.Errorf("events: DDL columns %v\ndiffer from eventColumns %v", events, eventColumns)
	}
}

// Invalid input is refused before the server is asked: these values have
// no connection, so reaching it would panic.
func TestInvalidInputIsRefusedLocally(t *testing.T) {
	ctx := context.Background()
	if err := (&Audit{}).Append(ctx, audit.Record{ID: "x"}); err == nil || !strings.Contains(err.Error(), "at_ms") {
		t.Errorf("Audit.Append of an invalid record: %v", err)
	}
	if err := (&Audit{}).Append(ctx); err != nil {
		t.Errorf("Audit.Append of nothing: %v", err)
	}
	if _, err := (&Audit{}).Query(ctx, audit.Filter{FromMs: 5, ToMs: 1}); err == nil {
		t.Error("Audit.Query with to before from: no error")
	}
	bad := chainRecord(1, evidence.ZeroHash)
	bad.ManifestSHA256 = "nothex"
	if err := (&Chain{}).Append(ctx, bad); err == nil || errors.Is(err, evidence.ErrChainMoved) {
		t.Errorf("Chain.Append of an invalid record: %v", err)
	}
	for _, id := range []string{"", strings.Repeat("x", 513)} {
		if _, err := (&Seen{}).MarkHandled(ctx, id); err == nil {
			t.Errorf("Seen.MarkHandled(%d bytes): no error", len(id))
		}
	}
	v := testVerdict("v1", 10)
	v.Values = []float64{1, math.NaN()}
	v.AgentID = ""
	err := (&Feedback{}).Put(ctx, v)
	if err == nil || !strings.Contains(err.Error(), "values[1]") || !strings.Contains(err.Error(), "agent_id") {
		t.Errorf("Feedback.Put of an invalid verdict: %v; want both problems", err)
	}
}

func testVerdict(id string, atMs int64) anomaly.Verdict {
	return anomaly.Verdict{
		ID: id, AnomalyID: "an-" + id, AgentID: "agent-1", Kind: anomaly.Behaviour,
		WindowStartMs: 1_700_000_000_000, WindowEndMs: 1_700_000_300_000,
		Values: []float64{1, 0.5, 1e300, math.Copysign(0, -1), 5e-324}, Verdict: anomaly.VerdictFalsePositive,
		Author: "U123", AtMs: atMs,
	}
}

func hashOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// chainRecord returns a valid record for position seq after prev.
func chainRecord(seq int64, prev string) evidence.Record {
	id := fmt.Sprintf("ev-%d-%s", seq, prev[:6])
	return evidence.Record{
		Seq: seq, BundleID: id, AgentID: "agent-1", AnomalyID: "an-" + id, IncidentID: "inc-" + id,
		Path: "/var/lib/agentwatch/evidence/" + id, ManifestSHA256: hashOf(id), PrevSHA256: prev,
		CreatedMs: 1_700_000_000_000 + seq,
	}
}

func records(t *testing.T, s evidence.ChainStore) []evidence.Record {
	t.Helper()
	var out []evidence.Record
	if err := s.Records(t.Context(), func(r evidence.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkChainStore runs the evidence.ChainStore contract against stores
// from open, each empty: the same table of checks for evidence.FileChain
// (the reference) and Chain.
func checkChainStore(t *testing.T, open func(t *testing.T) evidence.ChainStore) {
	t.Run("empty", func(t *testing.T) {
		s := open(t)
		if h, seq, err := s.Head(t.Context()); err != nil || h != evidence.ZeroHash || seq != 0 {
			t.Fatalf("Head of an empty chain = %s, %d, %v", h, seq, err)
		}
		if got := records(t, s); len(got) != 0 {
			t.Fatalf("Records of an empty chain = %+v", got)
		}
	})
	t.Run("append and read back", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		var want []evidence.Record
		prev := evidence.ZeroHash
		for seq := int64(1); seq <= 3; seq++ {
			r := chainRecord(seq, prev)
			if seq == 2 {
				r.IncidentID, r.Path = "", "/a path/with \"quotes\", commas and ünïcode\n"
			}
			if err := s.Append(ctx, r); err != nil {
				t.Fatalf("Append seq %d: %v", seq, err)
			}
			want = append(want, r)
			prev = r.ManifestSHA256
			if h, got, err := s.Head(ctx); err != nil || h != prev || got != seq {
				t.Fatalf("Head after seq %d = %s, %d, %v; want %s", seq, h, got, err, prev)
			}
		}
		if got := records(t, s); !slices.Equal(got, want) {
			t.Fatalf("Records = %+v\nwant %+v", got, want)
		}
	})
	t.Run("refusals store nothing", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		first := chainRecord(1, evidence.ZeroHash)
		if err := s.Append(ctx, first); err != nil {
			t.Fatal(err)
		}
		moved := map[string]evidence.Record{
			"same seq again":       first,
			"gap":                  chainRecord(3, first.ManifestSHA256),
			"wrong prev":           chainRecord(2, hashOf("other")),
			"first after a head":   chainRecord(1, evidence.ZeroHash),
			"seq 2 after the zero": chainRecord(2, evidence.ZeroHash),
		}
		for name, r := range moved {
			if err := s.Append(ctx, r); !errors.Is(err, evidence.ErrChainMoved) {
				t.Errorf("%s: Append = %v; want ErrChainMoved", name, err)
			}
		}
		invalid := chainRecord(2, first.ManifestSHA256)
		invalid.BundleID = "../escape"
		if err := s.Append(ctx, invalid); err == nil || errors.Is(err, evidence.ErrChainMoved) {
			t.Errorf("invalid record: Append = %v; want a validation error", err)
		}
		if got := records(t, s); !slices.Equal(got, []evidence.Record{first}) {
			t.Fatalf("Records after refusals = %+v; want only the first", got)
		}
	})
	t.Run("records stops with fn's error", func(t *testing.T) {
		s := open(t)
		ctx := t.Context()
		prev := evidence.ZeroHash
		for seq := int64(1); seq <= 3; seq++ {
			r := chainRecord(seq, prev)
			if err := s.Append(ctx, r); err != nil {
				t.Fatal(err)
			}
			prev = r.ManifestSHA256
		}
		stop := errors.New("stop")
		n := 0
		err := s.Records(ctx, func(evidence.Record) error { n++; return stop })
		if err != stop || n != 1 {
			t.Fatalf("Records = %v after %d calls; want stop after 1", err, n)
		}
	})
	t.Run("concurrent appends at one head", func(t *testing.T) {
		s := open(t)
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				r := chainRecord(1, evidence.ZeroHash)
				r.BundleID = fmt.Sprintf("ev-racer-%d", i)
				r.ManifestSHA256 = hashOf(r.BundleID)
				errs[i] = s.Append(t.Context(), r)
			})
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, evidence.ErrChainMoved):
				t.Errorf("racer: %v", err)
			}
		}
		if got := records(t, s); ok != 1 || len(got) != 1 {
			t.Fatalf("%d appends succeeded, %d records stored; want 1 and 1", ok, len(got))
		}
	})
}

func TestFileChainConformance(t *testing.T) {
	checkChainStore(t, func(t *testing.T) evidence.ChainStore {
		c, err := evidence.OpenFileChain(filepath.Join(t.TempDir(), "chain.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	})
}

// fixedClock returns a clock that starts at t0 and advances 1ms per call.
func fixedClock(t0 time.Time) func() time.Time {
	var mu sync.Mutex
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t0 = t0.Add(time.Millisecond)
		return t0
	}
}
