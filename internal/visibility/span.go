package visibility

import (
	"errors"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/timeflag"
)

// ParseSpan reads the time range of a question as the CLI and the HTTP
// API take it: from and to are RFC 3339 times or YYYY-MM-DD days, and a
// day alone means that whole UTC day, so "--from 2026-03-15 --to
// 2026-03-15" is March 15th, [2026-03-15T00:00Z, 2026-03-16T00:00Z). An
// empty to means up to now, given as the end of the current UTC day (no
// event is from the future, and whole days are answered from the daily
// summaries); an empty from means def before to (before now when to is
// empty too). The errors match
// ErrInvalid and name the parameter.
func ParseSpan(from, to string, now time.Time, def time.Duration) (Span, error) {
	var sp Span
	var errs []error
	sp.To = endOfDay(now)
	if to != "" {
		t, isDay, err := parseBound(to)
		if err != nil {
			errs = append(errs, invalidf("to: %v", err))
		} else if isDay {
			t = t.Add(day)
		}
		sp.To = t
	}
	if from != "" {
		t, _, err := parseBound(from)
		if err != nil {
			errs = append(errs, invalidf("from: %v", err))
		}
		sp.From = t
	} else if to == "" {
		sp.From = now.UTC().Add(-def) // the last def, exactly
	} else {
		sp.From = sp.To.Add(-def)
	}
	if err := errors.Join(errs...); err != nil {
		return Span{}, err
	}
	if err := sp.Validate(); err != nil {
		return Span{}, err
	}
	return sp, nil
}

// DaySpan is the whole UTC day of t.
func DaySpan(t time.Time) Span {
	d := t.UTC().Truncate(day)
	return Span{From: d, To: d.Add(day)}
}

func parseBound(s string) (t time.Time, isDay bool, err error) {
	t, err = timeflag.Parse(s)
	if err != nil {
		return t, false, err
	}
	_, dayErr := time.Parse(time.DateOnly, s)
	return t, dayErr == nil, nil
}
