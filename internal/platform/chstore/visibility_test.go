package chstore

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/visibility"
)

func TestSplitSpan(t *testing.T) {
	d := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
	ms := func(t time.Time) int64 { return t.UnixMilli() }
	h := time.Hour
	for _, c := range []struct {
		name     string
		from, to time.Time
		want     spanParts
	}{
		{"whole days", d, d.AddDate(0, 0, 2), spanParts{fullFrom: ms(d), fullTo: ms(d.AddDate(0, 0, 2))}},
		{"ragged ends", d.Add(5 * h), d.AddDate(0, 0, 2).Add(3 * h), spanParts{fullFrom: ms(d.AddDate(0, 0, 1)), fullTo: ms(d.AddDate(0, 0, 2)),
			edges: [][2]int64{{ms(d.Add(5 * h)), ms(d.AddDate(0, 0, 1))}, {ms(d.AddDate(0, 0, 2)), ms(d.AddDate(0, 0, 2).Add(3 * h))}}}},
		{"within one day", d.Add(h), d.Add(2 * h), spanParts{edges: [][2]int64{{ms(d.Add(h)), ms(d.Add(2 * h))}}}},
		{"across midnight, no whole day", d.Add(-h), d.Add(h), spanParts{edges: [][2]int64{{ms(d.Add(-h)), ms(d.Add(h))}}}},
		{"one millisecond past a whole day", d, d.AddDate(0, 0, 1).Add(time.Millisecond), spanParts{fullFrom: ms(d), fullTo: ms(d.AddDate(0, 0, 1)),
			edges: [][2]int64{{ms(d.AddDate(0, 0, 1)), ms(d.AddDate(0, 0, 1)) + 1}}}},
		{"empty", d, d, spanParts{}},
		{"reversed", d.Add(h), d, spanParts{}},
		{"before 1970", time.UnixMilli(-dayMs - 5), time.UnixMilli(dayMs), spanParts{fullFrom: -dayMs, fullTo: dayMs, edges: [][2]int64{{-dayMs - 5, -dayMs}}}},
	} {
		got := splitSpan(visibility.Span{From: c.from, To: c.to})
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: splitSpan = %+v, want %+v", c.name, got, c.want)
		}
	}
}

// TestInventoryViews: the views of migration 0005 are found, and their
// aggregation over selected events replaces exactly their FROM.
func TestInventoryViews(t *testing.T) {
	vs, err := inventoryViews()
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range inventoryTables {
		v := vs[table]
		if v.name != table+"_mv" || !strings.HasPrefix(v.selectSQL, "SELECT") {
			t.Errorf("%s: view %q, select %.40q", table, v.name, v.selectSQL)
		}
		q := v.fromEvents("agent_id = 'x'")
		if strings.Contains(q, "\nFROM events\n") || !strings.Contains(q, "FROM events WHERE agent_id = 'x' LIMIT 1 BY event_id)") {
			t.Errorf("%s: fromEvents:\n%s", table, q)
		}
	}
}
