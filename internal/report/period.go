package report

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/visibility"
)

// Period is the span one report covers: a calendar month, an ISO week or
// one day, in UTC.
type Period struct {
	// Name is the canonical spelling: "2026-11", "2026-W47" or
	// "2026-11-17".
	Name string
	// Weekly is true for an ISO week, Daily for one day.
	Weekly, Daily bool
	// Span is [first day 00:00, first day of the next period 00:00) UTC.
	Span visibility.Span
}

// ParsePeriod reads a month ("2026-11"), a day ("2026-11-17") or an ISO
// 8601 week ("2026-W47",
// Monday to Sunday; week 1 holds the year's first Thursday). Years 2000 to
// 2999 only: a report of another millennium is a typo.
func ParsePeriod(s string) (Period, error) {
	bad := func(why string) (Period, error) {
		return Period{}, fmt.Errorf("period %q: %s (want a month like 2026-11, an ISO week like 2026-W47 or a day like 2026-11-17)", clip(s, 40), why)
	}
	if len(s) == 10 {
		d, err := time.Parse(time.DateOnly, s)
		if err != nil {
			return bad("not a date")
		}
		if d.Year() < 2000 || d.Year() > 2999 {
			return bad("year must be 2000 to 2999")
		}
		return Period{Name: s, Daily: true, Span: visibility.Span{From: d, To: d.AddDate(0, 0, 1)}}, nil
	}
	if len(s) < 7 || len(s) > 8 || s[4] != '-' {
		return bad("wrong shape")
	}
	year, err := strconv.Atoi(s[:4])
	if err != nil || year < 2000 || year > 2999 {
		return bad("year must be 2000 to 2999")
	}
	if s[5] == 'W' || s[5] == 'w' {
		wk := s[6:]
		if len(wk) != 2 || strings.ContainsAny(wk, "+- ") {
			return bad("the week needs two digits")
		}
		w, err := strconv.Atoi(wk)
		if err != nil || w < 1 || w > isoWeeks(year) {
			return bad(fmt.Sprintf("week must be 01 to %02d in %d", isoWeeks(year), year))
		}
		from := isoWeek1(year).AddDate(0, 0, 7*(w-1))
		return Period{Name: fmt.Sprintf("%04d-W%02d", year, w), Weekly: true,
			Span: visibility.Span{From: from, To: from.AddDate(0, 0, 7)}}, nil
	}
	if len(s) != 7 || strings.ContainsAny(s[5:], "+- ") {
		return bad("wrong shape")
	}
	m, err := strconv.Atoi(s[5:])
	if err != nil || m < 1 || m > 12 {
		return bad("month must be 01 to 12")
	}
	from := time.Date(year, time.Month(m), 1, 0, 0, 0, 0, time.UTC)
	return Period{Name: fmt.Sprintf("%04d-%02d", year, m), Span: visibility.Span{From: from, To: from.AddDate(0, 1, 0)}}, nil
}

// isoWeek1 is the Monday of ISO week 1 of year: the week holding 4 January.
func isoWeek1(year int) time.Time {
	jan4 := time.Date(year, time.January, 4, 0, 0, 0, 0, time.UTC)
	back := (int(jan4.Weekday()) + 6) % 7 // days since Monday
	return jan4.AddDate(0, 0, -back)
}

// isoWeeks is how many ISO weeks year has (52 or 53).
func isoWeeks(year int) int {
	_, w := time.Date(year, time.December, 28, 0, 0, 0, 0, time.UTC).ISOWeek()
	return w
}

// Previous is the period just before p, of the same length kind.
func (p Period) Previous() Period {
	if p.Daily {
		from := p.Span.From.AddDate(0, 0, -1)
		return Period{Name: from.Format(time.DateOnly), Daily: true, Span: visibility.Span{From: from, To: p.Span.From}}
	}
	if p.Weekly {
		from := p.Span.From.AddDate(0, 0, -7)
		y, w := from.ISOWeek()
		return Period{Name: fmt.Sprintf("%04d-W%02d", y, w), Weekly: true, Span: visibility.Span{From: from, To: p.Span.From}}
	}
	from := p.Span.From.AddDate(0, -1, 0)
	return Period{Name: from.Format("2006-01"), Span: visibility.Span{From: from, To: p.Span.From}}
}

// DayOf is the day that holds t, as a period.
func DayOf(t time.Time) Period {
	p, err := ParsePeriod(t.UTC().Format(time.DateOnly))
	if err != nil {
		panic(fmt.Sprintf("report: DayOf(%s): %v", t, err))
	}
	return p
}

// PeriodOf is the period of the given kind that holds t.
func PeriodOf(t time.Time, weekly bool) Period {
	t = t.UTC()
	var s string
	if weekly {
		y, w := t.ISOWeek()
		s = fmt.Sprintf("%04d-W%02d", y, w)
	} else {
		s = t.Format("2006-01")
	}
	p, err := ParsePeriod(s)
	if err != nil {
		panic(fmt.Sprintf("report: PeriodOf(%s) gave unparsable %q: %v", t, s, err))
	}
	return p
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
