package visibility

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParseSpan: from and to come from a command line or a query string.
func FuzzParseSpan(f *testing.F) {
	for _, s := range [][2]string{{"2026-03-15", "2026-03-15"}, {"", ""}, {"2026-03-15T10:00:00Z", "2026-03-15T12:00:00+01:00"},
		{"yesterday", "2026-13-01"}, {"0001-01-01", "9999-12-31"}, {"2026-03-16", "2026-03-15"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, from, to string) {
		sp, err := ParseSpan(from, to, now, 24*time.Hour)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseSpan(%q, %q) error %v does not match ErrInvalid", from, to, err)
			}
			return
		}
		if sp.Validate() != nil || !sp.To.After(sp.From) || sp.To.Sub(sp.From) > MaxSpan {
			t.Fatalf("ParseSpan(%q, %q) = %v, which does not validate", from, to, sp)
		}
		if s := sp.String(); strings.ContainsAny(s, "\n\r") {
			t.Fatalf("span renders on more than one line: %q", s)
		}
	})
}

// FuzzMatchGlob: the pattern comes from a person, the route from the
// traffic.
func FuzzMatchGlob(f *testing.F) {
	for _, s := range [][2]string{{"/customers/**", "/customers/{id}/orders"}, {"/*/x", "/a/x"}, {"/**/**/a/**", "/a"},
		{"/", "/"}, {"/a/{b}", "/a/{id}"}, {"", ""}, {"/\x00/**", "//x//"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, route string) {
		got := MatchGlob(pattern, route)
		if ValidateGlob(pattern) != nil {
			return
		}
		if !MatchGlob("/**", route) {
			t.Fatalf("/** does not match %q", route)
		}
		// A template without wildcards matches itself.
		if !strings.Contains(pattern, "*") && !MatchGlob(pattern, pattern) {
			t.Fatalf("%q does not match itself", pattern)
		}
		// "**" in place of any one segment matches whatever that one did.
		if got && !strings.Contains(pattern, "**") {
			if i := strings.LastIndex(pattern, "/"); i >= 0 && !MatchGlob(pattern[:i]+"/**", route) {
				t.Fatalf("%q matches %q but %q does not", pattern, route, pattern[:i]+"/**")
			}
		}
	})
}
