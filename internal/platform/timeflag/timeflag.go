// Package timeflag parses the times operators type on command lines:
// `responder audit --from`, `detector backfill --from/--to`. It is one
// pure function, so every command accepts the same spellings.
package timeflag

import (
	"fmt"
	"time"
)

// Parse reads s as RFC 3339 (2026-11-01T00:00:00Z) or as a date
// (2026-11-01, midnight UTC). The result is in UTC. The error quotes s and
// names both spellings, for the operator to fix the flag.
func Parse(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor YYYY-MM-DD", s)
	}
	return t, nil
}
