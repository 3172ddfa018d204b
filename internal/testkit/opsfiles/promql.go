package opsfiles

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

var (
	promqlString   = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promqlBraces   = regexp.MustCompile(`\{[^{}]*\}`)
	promqlBrackets = regexp.MustCompile(`\[[^\[\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	grafanaVar     = regexp.MustCompile(`\$\{[^}]*\}|\$\w+`)
	promqlNumber   = regexp.MustCompile(`(?:^|[^\w:])(\d[\w.]*(?:[eE][+-]\d+)?)`)
	promqlIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
)

// promqlKeywords are the words of PromQL that are not followed by a
// parenthesis and name no series.
var promqlKeywords = []string{"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan", "Inf", "NaN"}

// MetricNames returns the series names an expression (PromQL, possibly
// with Grafana's $variables) selects: the identifiers that are not
// functions, aggregations, keywords, labels or numbers. It is a scanner,
// not a parser; it fails on braces or brackets it cannot pair, so a
// construct it does not know shows up as an error rather than a miss.
func MetricNames(expr string) ([]string, error) {
	s := promqlString.ReplaceAllString(expr, " ")
	s = grafanaVar.ReplaceAllString(s, " ")
	s = promqlBraces.ReplaceAllString(s, " ")
	s = promqlBrackets.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	if strings.ContainsAny(s, "{}[]") {
		return nil, fmt.Errorf("unbalanced or nested braces in %q", expr)
	}
	s = promqlNumber.ReplaceAllStringFunc(s, func(m string) string {
		// Keep the character before the number: it may be a parenthesis.
		if m[0] < '0' || m[0] > '9' {
			return m[:1] + strings.Repeat(" ", len(m)-1)
		}
		return strings.Repeat(" ", len(m))
	})
	var names []string
	for _, loc := range promqlIdent.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || slices.Contains(promqlKeywords, word) {
			continue
		}
		if !slices.Contains(names, word) {
			names = append(names, word)
		}
	}
	slices.Sort(names)
	return names, nil
}
