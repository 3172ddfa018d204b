package report

import (
	"testing"
	"time"
)

func TestParsePeriod(t *testing.T) {
	day := func(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }
	for _, c := range []struct {
		in, name string
		from, to time.Time
		weekly   bool
	}{
		{"2026-11", "2026-11", day(2026, 11, 1), day(2026, 12, 1), false},
		{"2026-12", "2026-12", day(2026, 12, 1), day(2027, 1, 1), false},
		{"2026-W47", "2026-W47", day(2026, 11, 16), day(2026, 11, 23), true},
		{"2026-w01", "2026-W01", day(2025, 12, 29), day(2026, 1, 5), true},
		{"2026-W53", "2026-W53", day(2026, 12, 28), day(2027, 1, 4), true},
		{"2027-W01", "2027-W01", day(2027, 1, 4), day(2027, 1, 11), true},
	} {
		p, err := ParsePeriod(c.in)
		if err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if p.Name != c.name || !p.Span.From.Equal(c.from) || !p.Span.To.Equal(c.to) || p.Weekly != c.weekly {
			t.Errorf("%s: got %+v", c.in, p)
		}
		if y, w := p.Span.From.ISOWeek(); c.weekly && (y != must(ParsePeriod(c.name)).Span.From.Year() && w != 1) {
			t.Errorf("%s: starts in week %d-%d", c.in, y, w)
		}
		if got := PeriodOf(p.Span.From.Add(36*time.Hour), c.weekly); got != p {
			t.Errorf("PeriodOf(%s) = %+v", c.in, got)
		}
	}
	for in, want := range map[string][2]time.Time{
		"2026-03-15": {day(2026, 3, 15), day(2026, 3, 16)},
		"2026-12-31": {day(2026, 12, 31), day(2027, 1, 1)},
	} {
		p, err := ParsePeriod(in)
		if err != nil || !p.Daily || p.Weekly || p.Name != in || !p.Span.From.Equal(want[0]) || !p.Span.To.Equal(want[1]) {
			t.Errorf("%s: got %+v, %v", in, p, err)
			continue
		}
		if got := DayOf(p.Span.From.Add(23 * time.Hour)); got != p {
			t.Errorf("DayOf(%s) = %+v", in, got)
		}
		if prev := p.Previous(); !prev.Daily || !prev.Span.To.Equal(p.Span.From) || !prev.Span.From.Equal(p.Span.From.AddDate(0, 0, -1)) {
			t.Errorf("%s: previous %+v", in, prev)
		}
	}
	for _, bad := range []string{"", "2026", "2026-13", "2026-02-30", "1999-12-31", "2026-1-015", "2026-00", "2026-W00", "2025-W53", "2026-W5", "1999-01", "2026-1", "2026/11", "2026-+1", "2026-W-1", "2026-W+1", "20261101"} {
		if _, err := ParsePeriod(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestPrevious(t *testing.T) {
	if p := must(ParsePeriod("2026-01")).Previous(); p.Name != "2025-12" || !p.Span.To.Equal(must(ParsePeriod("2026-01")).Span.From) {
		t.Errorf("%+v", p)
	}
	if p := must(ParsePeriod("2027-W01")).Previous(); p.Name != "2026-W53" {
		t.Errorf("%+v", p)
	}
}

func FuzzParsePeriod(f *testing.F) {
	for _, s := range []string{"2026-11", "2026-W47", "2026-W53", "x", "2026-W"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePeriod(s)
		if err != nil {
			return
		}
		again, err := ParsePeriod(p.Name)
		if err != nil || again != p {
			t.Fatalf("%q → %+v, its name parses to %+v, %v", s, p, again, err)
		}
		if !p.Span.From.Before(p.Span.To) || p.Span.From.Location() != time.UTC {
			t.Fatalf("%q: span %+v", s, p.Span)
		}
	})
}
