package features

import (
	"math"
	"strconv"
	"strings"
)

// This file renders feature values the way an analyst reads them: bytes in
// KB/MB/GB, counts of calls per window as calls per minute, shares as
// percentages, and an observation next to its expectation as a ratio ("×340
// the usual"). Everything that shows a feature value to a person (Slack
// alerts, evidence summaries, the detector's summary sentences) uses these
// helpers, so one value reads the same everywhere. They take any float,
// NaN and ±Inf included, and never print "Inf" or "NaN".

// Unit is how a feature's value is measured, which decides how it is
// rendered.
type Unit uint8

const (
	// UnitCount is a plain number of things in the window (distinct
	// routes, resource ids, source addresses).
	UnitCount Unit = iota
	// UnitRate is a number of calls in the window, rendered per minute.
	UnitRate
	// UnitBytes is a size in bytes.
	UnitBytes
	// UnitShare is a fraction, 0..1, rendered as a percentage.
	UnitShare
)

// units maps the names an explanation can hold to their unit; a name not
// listed is a count.
var units = map[string]Unit{
	Calls.String(): UnitRate, SensitiveCalls.String(): UnitRate, DeprecatedCalls.String(): UnitRate,
	Client4xx.String(): UnitRate, Denials.String(): UnitRate, Server5xx.String(): UnitRate,
	WriteCalls.String(): UnitRate,
	RespBytes.String():  UnitBytes, RespBytesMax.String(): UnitBytes, ReqBytes.String(): UnitBytes,
	// The detector's hour-slot term: how often the agent is active in this
	// hour slot next to its busiest one.
	"off_hours": UnitShare,
}

// UnitOf returns the unit of the feature (or explanation term) name.
func UnitOf(name string) Unit {
	return units[name]
}

// defaultWindowMs is the window width assumed when a caller has none.
const defaultWindowMs = 60_000

// FormatValue renders v, a value of the feature name over a window
// windowMs wide (60000 when windowMs <= 0), in the feature's unit:
// "88.2 MB", "1,250 calls/min", "2%", "17".
func FormatValue(name string, v float64, windowMs int64) string {
	switch UnitOf(name) {
	case UnitBytes:
		return FormatBytes(v)
	case UnitRate:
		return FormatRate(v, windowMs)
	case UnitShare:
		return FormatShare(v)
	}
	return FormatNumber(v)
}

// FormatVersus renders an observation of feature name next to the
// baseline's expectation: "88.2 MB vs 9.4 KB usual (×9,800)". The ratio is
// left out when it says nothing (see FormatRatio).
func FormatVersus(name string, observed, expected float64, windowMs int64) string {
	var s string
	if UnitOf(name) == UnitRate {
		// One time unit for both sides: "32 calls/min vs 4 calls/h"
		// would hide the ratio it is meant to show.
		hourly := perHour(observed, windowMs) && perHour(expected, windowMs)
		s = formatRate(observed, windowMs, hourly) + " vs " + formatRate(expected, windowMs, hourly) + " usual"
	} else {
		s = FormatValue(name, observed, windowMs) + " vs " + FormatValue(name, expected, windowMs) + " usual"
	}
	if r := FormatMultiple(observed, expected); r != "" {
		s += " (" + r + ")"
	}
	return s
}

// FormatRatio renders observed over expected as "×340 the usual", or
// "none usual" when nothing (or next to nothing) was expected, where a
// ratio would be meaningless or infinite. It returns "" when either value
// is not a finite number or observed is not above 0.
func FormatRatio(observed, expected float64) string {
	r := FormatMultiple(observed, expected)
	if r == "" || r == noneUsual {
		return r
	}
	return r + " the usual"
}

const noneUsual = "none usual"

// tinyExpected is the expectation below which a ratio is not shown: a
// baseline floor (a feature that was always 0 is expected at a small
// floor, not at 0), not a level worth multiplying.
const tinyExpected = 1e-3

// FormatMultiple is FormatRatio without " the usual", for a table
// column: "×9,800", "×0.5", "none usual" or "".
func FormatMultiple(observed, expected float64) string {
	if !finite(observed) || !finite(expected) || observed <= 0 || expected < 0 {
		return ""
	}
	if expected < tinyExpected {
		return noneUsual
	}
	r := observed / expected
	if !finite(r) {
		return "×>1e+300" // overflow of a finite pair, not a zero expectation
	}
	switch {
	case r >= 100:
		// Two significant digits: ×9,800, not ×9,821.
		return "×" + FormatNumber(roundSig(r, 2))
	case r >= 10:
		return "×" + FormatNumber(math.Round(r))
	}
	return "×" + trimZeros(strconv.FormatFloat(r, 'f', 1, 64))
}

// FormatBytes renders a byte size with binary multiples named KB, MB, GB
// and TB and three significant digits: "512 B", "9.2 KB", "88.2 MB".
func FormatBytes(b float64) string {
	if !finite(b) {
		return "?"
	}
	neg := b < 0
	b = math.Abs(b)
	mult := [...]string{"B", "KB", "MB", "GB", "TB", "PB"}
	i := 0
	for b >= 1024*(1-5e-4) && i < len(mult)-1 {
		b /= 1024
		i++
	}
	var s string
	if i == 0 {
		s = FormatNumber(math.Round(b))
	} else {
		s = sig3(b)
	}
	if neg {
		s = "-" + s
	}
	return s + " " + mult[i]
}

// FormatRate renders count, a number of calls in a window windowMs wide
// (60000 when windowMs <= 0), as calls per minute: "1,250 calls/min",
// "0.5 calls/min"; rates under 0.1 a minute as calls per hour.
func FormatRate(count float64, windowMs int64) string {
	return formatRate(count, windowMs, perHour(count, windowMs))
}

func perMinute(count float64, windowMs int64) float64 {
	if windowMs <= 0 {
		windowMs = defaultWindowMs
	}
	return count * 60_000 / float64(windowMs)
}

// perHour reports whether count in a window is better read per hour: a
// rate under 0.1 a minute (0 and non-numbers are not).
func perHour(count float64, windowMs int64) bool {
	m := perMinute(count, windowMs)
	return finite(m) && m != 0 && math.Abs(m) < 0.1
}

func formatRate(count float64, windowMs int64, hourly bool) string {
	m := perMinute(count, windowMs)
	if !finite(m) {
		return "?"
	}
	if hourly {
		return FormatNumber(m*60) + " calls/h"
	}
	return FormatNumber(m) + " calls/min"
}

// FormatShare renders a fraction as a percentage: "2%", "0.4%", "100%",
// "<0.1%" for a positive share too small to show.
func FormatShare(f float64) string {
	if !finite(f) {
		return "?"
	}
	p := 100 * f
	switch {
	case p == 0:
		return "0%"
	case p > 0 && p < 0.1:
		return "<0.1%"
	case math.Abs(p) < 10:
		return trimZeros(strconv.FormatFloat(p, 'f', 1, 64)) + "%"
	}
	return FormatNumber(math.Round(p)) + "%"
}

// FormatNumber renders x for a person: whole numbers with thousands
// separators ("12,400"), others with at most three significant digits
// ("0.067", "4.5"), "?" for NaN and ±Inf.
func FormatNumber(x float64) string {
	if !finite(x) {
		return "?"
	}
	ax := math.Abs(x)
	switch {
	case ax >= 1e15:
		return strconv.FormatFloat(x, 'g', 3, 64)
	case ax >= 100 || x == math.Trunc(x):
		return group(strconv.FormatFloat(math.Round(x), 'f', 0, 64))
	case ax < 0.001:
		if x < 0 {
			return "-<0.001"
		}
		return "<0.001"
	}
	return sig3(x)
}

// sig3 renders x (|x| < 1000 after scaling) with three significant digits,
// without trailing zeros.
func sig3(x float64) string {
	ax := math.Abs(x)
	if ax >= 1000 || ax == 0 {
		return FormatNumber(x)
	}
	dec := 0
	switch {
	case ax < 1:
		dec = 2 - int(math.Floor(math.Log10(ax)))
	case ax < 10:
		dec = 2
	case ax < 100:
		dec = 1
	}
	dec = min(max(dec, 0), 6)
	s := strconv.FormatFloat(x, 'f', dec, 64)
	if dec > 0 {
		s = trimZeros(s)
	}
	return group(s)
}

// roundSig rounds x to n significant digits.
func roundSig(x float64, n int) float64 {
	if x == 0 || !finite(x) {
		return x
	}
	p := math.Pow(10, float64(n)-math.Ceil(math.Log10(math.Abs(x))))
	return math.Round(x*p) / p
}

// trimZeros drops trailing zeros after a decimal point, and the point.
func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// group puts thousands separators into the integer part of a decimal
// number string.
func group(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	intPart, frac := s, ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		intPart, frac = s[:i], s[i:]
	}
	if len(intPart) <= 3 {
		return sign + intPart + frac
	}
	var b strings.Builder
	b.Grow(len(intPart) + len(intPart)/3 + len(frac) + 1)
	b.WriteString(sign)
	head := len(intPart) % 3
	if head > 0 {
		b.WriteString(intPart[:head])
	}
	for i := head; i < len(intPart); i += 3 {
		if b.Len() > len(sign) {
			b.WriteByte(',')
		}
		b.WriteString(intPart[i : i+3])
	}
	b.WriteString(frac)
	return b.String()
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
