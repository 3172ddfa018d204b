package timeflag

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	ok := func(s string, want time.Time) {
		t.Helper()
		got, err := Parse(s)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Fatalf("Parse(%q) = %v, %v; want %v in UTC", s, got, err, want)
		}
	}
	bad := func(s string) {
		t.Helper()
		if got, err := Parse(s); err == nil {
			t.Fatalf("Parse(%q) = %v; want an error", s, got)
		}
	}
	ok("2026-11-01T00:00:00Z", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	ok("2026-11-01T02:30:00+02:00", time.Date(2026, 11, 1, 0, 30, 0, 0, time.UTC))
	ok("2026-11-01T00:00:00.5Z", time.Date(2026, 11, 1, 0, 0, 0, 5e8, time.UTC))
	ok("2026-11-01", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	bad("")
	bad("yesterday")
	bad("2026-11-01 00:00:00")
	bad("2026-13-01")
	bad("1730419200")
}

func TestParseErrorNamesInput(t *testing.T) {
	_, err := Parse("nov 1")
	if err == nil || err.Error() != `"nov 1" is neither RFC 3339 nor YYYY-MM-DD` {
		t.Fatalf("Parse(%q) error = %v", "nov 1", err)
	}
}
