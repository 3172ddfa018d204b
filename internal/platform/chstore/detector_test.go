package chstore

import (
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
)

// The detector's insert column lists and the 0002 DDL must agree in names
// and order, and the DDL must stay within what 18.16 understands.
func TestDetectorColumnsMatchDDL(t *testing.T) {
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 2 || ms[1].name != "detector" {
		t.Fatalf("migration 0002 is %+v; want 0002_detector", ms[1:])
	}
	want := map[string][]string{
		"detector_state":       stateColumns,
		"detector_checkpoints": checkpointColumns,
		"anomalies":            anomalyColumns,
		"window_scores":        scoreColumns,
		"backfill_progress":    backfillColumns,
	}
	tableRE := regexp.MustCompile(`^CREATE TABLE IF NOT EXISTS ([a-z_]+)\s`)
	colRE := regexp.MustCompile("(?m)^\\s*`([a-z_]+)`\\s")
	seen := map[string]bool{}
	for _, st := range ms[1].stmts {
		m := tableRE.FindStringSubmatch(st)
		if m == nil {
			t.Fatalf("0002 statement is not a CREATE TABLE IF NOT EXISTS: %.80s", st)
		}
		var cols []string
		for _, c := range colRE.FindAllStringSubmatch(st, -1) {
			cols = append(cols, c[1])
		}
		if !slices.Equal(cols, want[m[1]]) {
			t.Errorf("%s: DDL columns %v\ndiffer from insert columns %v", m[1], cols, want[m[1]])
		}
		seen[m[1]] = true
		for _, banned := range []string{"DateTime64", "TTL", "Map(", "LowCardinality", "Nullable", "CODEC", "PREWHERE"} {
			if strings.Contains(st, banned) {
				t.Errorf("%s DDL uses %s, which ClickHouse 18.16 lacks", m[1], banned)
			}
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("0002 creates %v; want %d tables", seen, len(want))
	}
}

func TestNewestStatesKeepsNewestPerKey(t *testing.T) {
	in := []detstate.State{
		{Kind: "agent", Key: "a", UpdatedMs: 5, Blob: []byte("a5")},
		{Kind: "peer", Key: "a", UpdatedMs: 1, Blob: []byte("p1")},
		{Kind: "agent", Key: "a", UpdatedMs: 3, Blob: []byte("a3")},
		{Kind: "agent", Key: "b", UpdatedMs: 1, Blob: []byte("b1")},
		{Kind: "agent", Key: "a", UpdatedMs: 5, Blob: []byte("a5'")},
	}
	var got []string
	for _, st := range newestStates(in) {
		got = append(got, string(st.Blob))
	}
	if want := []string{"a5'", "p1", "b1"}; !slices.Equal(got, want) {
		t.Fatalf("newestStates = %q; want %q", got, want)
	}
	cps := newestCheckpoints([]detstate.Checkpoint{
		{Group: "g", Topic: "t", Partition: 1, UpdatedMs: 2, LastOffset: 1},
		{Group: "g", Topic: "t", Partition: 1, UpdatedMs: 1, LastOffset: 2},
		{Group: "g", Topic: "t", Partition: 2, UpdatedMs: 1, LastOffset: 3},
	})
	if len(cps) != 2 || cps[0].LastOffset != 1 || cps[1].LastOffset != 3 {
		t.Fatalf("newestCheckpoints = %+v; want offsets 1 and 3", cps)
	}
}

func TestClampUInt32(t *testing.T) {
	for in, want := range map[int]uint32{-1: 0, 0: 0, 7: 7, math.MaxUint32: math.MaxUint32, math.MaxUint32 + 1: math.MaxUint32, math.MinInt: 0} {
		if got := clampUInt32(in); got != want {
			t.Errorf("clampUInt32(%d) = %d; want %d", in, got, want)
		}
	}
}

func TestInt32List(t *testing.T) {
	if got := int32List([]int32{0, -1, math.MaxInt32}); got != "0, -1, 2147483647" {
		t.Fatalf("int32List = %q", got)
	}
}
