package features

import (
	"math"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFormatVersus(t *testing.T) {
	for _, c := range []struct {
		name               string
		observed, expected float64
		windowMs           int64
		want               string
	}{
		// The alert the analyst could not read: 92514087 vs 9.42e+03.
		{"response_bytes", 92514087, 9420, 60_000, "88.2 MB vs 9.2 KB usual (×9,800)"},
		{"response_bytes_max", 1536, 512, 60_000, "1.5 KB vs 512 B usual (×3)"},
		{"request_bytes", 3 << 30, 0, 60_000, "3 GB vs 0 B usual (none usual)"},
		{"calls", 1250, 40, 60_000, "1,250 calls/min vs 40 calls/min usual (×31)"},
		{"calls", 600, 20, 300_000, "120 calls/min vs 4 calls/min usual (×30)"},
		{"calls", 3, 0.05, 60_000, "3 calls/min vs 0.05 calls/min usual (×60)"},
		{"denials_401_403", 340, 1, 0, "340 calls/min vs 1 calls/min usual (×340)"},
		{"server_5xx", 12, 0.0001, 60_000, "12 calls/min vs <0.001 calls/min usual (none usual)"},
		{"server_5xx", 0.05, 0.001, 60_000, "3 calls/h vs 0.06 calls/h usual (×50)"},
		{"distinct_routes", 40, 3.2, 60_000, "40 vs 3.2 usual (×13)"},
		{"max_ids_per_route", 12400, 2, 60_000, "12,400 vs 2 usual (×6,200)"},
		{"off_hours", 1, 0.02, 60_000, "100% vs 2% usual (×50)"},
		{"calls_this_hour", 45, 0.3, 60_000, "45 vs 0.3 usual (×150)"},
		{"sensitive_calls", 32, 0.067, 60_000, "32 calls/min vs 0.067 calls/min usual (×480)"},
		{"calls", math.NaN(), math.Inf(1), 60_000, "? vs ? usual"},
		{"response_bytes", 0, 100, 60_000, "0 B vs 100 B usual"},
	} {
		if got := FormatVersus(c.name, c.observed, c.expected, c.windowMs); got != c.want {
			t.Errorf("FormatVersus(%s, %g, %g, %d) = %q, want %q", c.name, c.observed, c.expected, c.windowMs, got, c.want)
		}
	}
}

func TestFormatParts(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{FormatBytes(0), "0 B"},
		{FormatBytes(1023), "1,023 B"},
		{FormatBytes(1024), "1 KB"},
		{FormatBytes(741188309), "707 MB"},
		{FormatBytes(1.5 * (1 << 40)), "1.5 TB"},
		{FormatBytes(-2048), "-2 KB"},
		{FormatBytes(1e30), "888,178,419,700,125 PB"},
		{FormatRate(0, 60_000), "0 calls/min"},
		{FormatRate(0.001, 60_000), "0.06 calls/h"},
		{FormatShare(0), "0%"},
		{FormatShare(0.0004), "<0.1%"},
		{FormatShare(0.004), "0.4%"},
		{FormatShare(0.5), "50%"},
		{FormatNumber(7.41188309e+08), "741,188,309"},
		{FormatNumber(0.0671), "0.0671"},
		{FormatNumber(4.5), "4.5"},
		{FormatNumber(-1234.6), "-1,235"},
		{FormatNumber(0.0000001), "<0.001"},
		{FormatNumber(math.Inf(-1)), "?"},
		{FormatRatio(34, 0.1), "×340 the usual"},
		{FormatRatio(5, 0), "none usual"},
		{FormatRatio(5, 1e-300), "none usual"},
		{FormatRatio(1e308, 1e-2), "×>1e+300 the usual"},
		{FormatRatio(0, 3), ""},
		{FormatRatio(2, 4), "×0.5 the usual"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// FuzzFormatVersus: any pair of floats renders as readable text, never
// "Inf" or "NaN", and a finite ratio's multiplier is a number.
func FuzzFormatVersus(f *testing.F) {
	f.Add("response_bytes", 92514087.0, 9420.0, int64(60_000))
	f.Add("calls", 0.0, 0.0, int64(0))
	f.Add("off_hours", 1.0, 1e-9, int64(-5))
	f.Add("x", math.Inf(1), math.NaN(), int64(1))
	f.Add("denials_401_403", -3.0, 1e308, int64(1<<62))
	f.Fuzz(func(t *testing.T, name string, o, e float64, w int64) {
		s := FormatVersus(name, o, e, w)
		if !utf8.ValidString(s) || strings.Contains(s, "Inf") || strings.Contains(s, "NaN") {
			t.Fatalf("FormatVersus(%q, %g, %g, %d) = %q", name, o, e, w, s)
		}
		if r := FormatRatio(o, e); strings.Contains(r, "Inf") || strings.Contains(r, "NaN") {
			t.Fatalf("FormatRatio(%g, %g) = %q", o, e, r)
		}
	})
}
