package silence

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MatchType is how a Matcher compares a label's value.
type MatchType string

// The match types. Their JSON form is the name; their text form (ParseMatcher)
// is the operator in the comment. Alike in shape to other enums
// (outbox.State), not shared.
const (
	// MatchEqual ("="): the label's value equals Value.
	MatchEqual MatchType = "equal"
	// MatchNotEqual ("!="): the label's value differs from Value.
	MatchNotEqual MatchType = "not_equal"
	// MatchRegexp ("=~"): the whole of the label's value matches the RE2
	// regular expression Value (anchored at both ends, as in Alertmanager).
	MatchRegexp MatchType = "regex"
	// MatchNotRegexp ("!~"): the label's value does not match Value as
	// MatchRegexp would.
	MatchNotRegexp MatchType = "not_regex"
)

// Op returns the operator of t in the text form, or "" for an unknown type.
func (t MatchType) Op() string {
	switch t {
	case MatchEqual:
		return "="
	case MatchNotEqual:
		return "!="
	case MatchRegexp:
		return "=~"
	case MatchNotRegexp:
		return "!~"
	}
	return ""
}

// Limits on what a matcher and a silence may hold. They bound the file, the
// work of one Match and what a Slack message has to show.
const (
	// MaxValueLen is the longest matcher value or regular expression, in
	// bytes.
	MaxValueLen = 1024
	// MaxMatchers is the most matchers one silence may have.
	MaxMatchers = 32
)

// Matcher selects anomalies by one label. A label the anomaly does not have
// has the empty value, as in Alertmanager: "feature=" matches anomalies
// without an explanation, and "owner!=alice" matches those without an
// owner. A Matcher is a value; it is safe for concurrent use.
type Matcher struct {
	// Name is one of LabelNames.
	Name string `json:"name"`
	// Value is the value compared, or the regular expression of
	// MatchRegexp and MatchNotRegexp (RE2 syntax, implicitly anchored).
	Value string `json:"value"`
	// Type says how Value is compared.
	Type MatchType `json:"type"`
}

// Validate reports every problem with m at once: a name outside
// LabelNames, an unknown type, a value that is too long or not UTF-8, or a
// regular expression that does not compile.
func (m Matcher) Validate() error {
	var errs []error
	if !isLabelName(m.Name) {
		errs = append(errs, fmt.Errorf("name %q: want one of %s", clip(m.Name, 40), strings.Join(LabelNames(), ", ")))
	}
	if m.Type.Op() == "" {
		errs = append(errs, fmt.Errorf("type %q: want equal, not_equal, regex or not_regex", clip(string(m.Type), 40)))
	}
	switch {
	case len(m.Value) > MaxValueLen:
		errs = append(errs, fmt.Errorf("value of %d bytes: at most %d are allowed", len(m.Value), MaxValueLen))
	case !utf8.ValidString(m.Value):
		errs = append(errs, errors.New("value: not valid UTF-8"))
	case m.Type == MatchRegexp || m.Type == MatchNotRegexp:
		if _, err := compileAnchored(m.Value); err != nil {
			errs = append(errs, fmt.Errorf("regex %q: %w", clip(m.Value, 80), err))
		}
	}
	return errors.Join(errs...)
}

// Matches reports whether m selects labels (a missing label has the empty
// value). It compiles a regular expression on every call, so it suits one-off
// checks; the Store compiles each silence's matchers once. An invalid m
// matches nothing.
func (m Matcher) Matches(labels map[string]string) bool {
	c, err := compile(m)
	return err == nil && c.matches(labels)
}

// String returns m in the text form ParseMatcher reads.
func (m Matcher) String() string {
	return m.Name + m.Type.Op() + formatValue(m.Value)
}

// compileAnchored compiles re as Alertmanager does: the whole value must
// match.
func compileAnchored(re string) (*regexp.Regexp, error) {
	return regexp.Compile("^(?:" + re + ")$")
}

// compiled is a validated Matcher ready to match.
type compiled struct {
	Matcher
	re *regexp.Regexp
}

func compile(m Matcher) (compiled, error) {
	if err := m.Validate(); err != nil {
		return compiled{}, err
	}
	c := compiled{Matcher: m}
	if m.Type == MatchRegexp || m.Type == MatchNotRegexp {
		c.re, _ = compileAnchored(m.Value) // Validate compiled it
	}
	return c, nil
}

func (c compiled) matches(labels map[string]string) bool {
	return c.matchesValue(labels[c.Name])
}

func (c compiled) matchesValue(v string) bool {
	switch c.Type {
	case MatchEqual:
		return v == c.Value
	case MatchNotEqual:
		return v != c.Value
	case MatchRegexp:
		return c.re.MatchString(v)
	case MatchNotRegexp:
		return !c.re.MatchString(v)
	}
	return false
}

// ParseMatcher reads one matcher in the text form:
//
//	name=value    name!=value    name=~regex    name!~regex
//
// Spaces around the operator and the value are ignored. A value is taken
// literally (a backslash is just a backslash, as a regex wants) unless it
// is double-quoted. It must be quoted when it is empty or holds a space, a
// comma, a double quote or an unprintable character, or starts with "~" or
// "=". A quoted value is a Go string literal: \" is a quote, \\ a backslash,
// \n a newline, and a regex's backslash is written twice, e.g.
// feature=~"bytes\\..*". The matcher is validated (Matcher.Validate).
func ParseMatcher(s string) (Matcher, error) {
	m, err := parseMatcher(s)
	if err != nil {
		return Matcher{}, fmt.Errorf("%w matcher %q: %w", ErrInvalid, clip(s, 80), err)
	}
	return m, nil
}

func parseMatcher(s string) (Matcher, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && isNameByte(s[i]) {
		i++
	}
	if i == 0 {
		return Matcher{}, errors.New("want name=value, name!=value, name=~regex or name!~regex")
	}
	m := Matcher{Name: s[:i]}
	rest := strings.TrimLeft(s[i:], " \t")
	for _, t := range []MatchType{MatchRegexp, MatchNotRegexp, MatchNotEqual, MatchEqual} { // "=~" before "="
		if r, ok := strings.CutPrefix(rest, t.Op()); ok {
			m.Type, rest = t, r
			break
		}
	}
	if m.Type == "" {
		return Matcher{}, fmt.Errorf("after %q: want one of =, !=, =~, !~", m.Name)
	}
	v, err := parseValue(strings.TrimSpace(rest))
	if err != nil {
		return Matcher{}, err
	}
	m.Value = v
	return m, m.Validate()
}

// parseValue reads a whole value, quoted or not.
func parseValue(s string) (string, error) {
	if strings.HasPrefix(s, `"`) {
		end := quotedEnd(s)
		if end < 0 {
			return "", errors.New("value: unterminated quoted string")
		}
		if end != len(s) {
			return "", fmt.Errorf("unexpected %q after the quoted value", clip(s[end:], 20))
		}
		v, err := strconv.Unquote(s)
		if err != nil {
			return "", fmt.Errorf("value: bad quoted string: %w", err)
		}
		return v, nil
	}
	if s == "" {
		return "", errors.New(`value: empty; write "" for the empty value`)
	}
	if s[0] == '~' || s[0] == '=' {
		return "", fmt.Errorf("value %q: starts with %q, which reads like an operator; quote it", clip(s, 40), s[0])
	}
	for _, r := range s {
		if !bareRune(r) {
			return "", fmt.Errorf("value %q: %q must be quoted", clip(s, 40), r)
		}
	}
	return s, nil
}

// quotedEnd returns the index just past the closing quote of the string
// literal s starts with, or -1.
func quotedEnd(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		case '\n':
			return -1
		}
	}
	return -1
}

// bareRune reports whether r may appear in an unquoted value.
func bareRune(r rune) bool {
	return r != ' ' && r != '"' && r != ',' && r != utf8.RuneError && unicode.IsPrint(r)
}

func formatValue(v string) string {
	if v == "" || v[0] == '~' || v[0] == '=' || !utf8.ValidString(v) {
		return strconv.Quote(v)
	}
	for _, r := range v {
		if !bareRune(r) {
			return strconv.Quote(v)
		}
	}
	return v
}

func isNameByte(c byte) bool {
	return c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// ParseMatchers reads a comma-separated list of matchers (ParseMatcher),
// optionally inside braces as amtool prints them:
//
//	agent_id=cs-agent-1,kind=behaviour
//	{agent_id="cs-agent-1", feature=~"response_bytes.*"}
//
// Commas inside quoted values do not separate. An empty list ("" or "{}")
// gives no matchers and no error; a silence needs at least one, which
// Store.Add checks.
func ParseMatchers(s string) ([]Matcher, error) {
	body := strings.TrimSpace(s)
	if strings.HasPrefix(body, "{") {
		inner, ok := strings.CutSuffix(body[1:], "}")
		if !ok {
			return nil, fmt.Errorf("%w matchers %q: missing closing brace", ErrInvalid, clip(s, 80))
		}
		body = strings.TrimSpace(inner)
	}
	if body == "" {
		return nil, nil
	}
	var out []Matcher
	for len(body) > 0 {
		end := itemEnd(body)
		m, err := ParseMatcher(body[:end])
		if err != nil {
			return nil, err
		}
		out = append(out, m)
		if end == len(body) {
			break
		}
		body = body[end+1:]
		if strings.TrimSpace(body) == "" {
			return nil, fmt.Errorf("%w matchers %q: trailing comma", ErrInvalid, clip(s, 80))
		}
	}
	if len(out) > MaxMatchers {
		return nil, fmt.Errorf("%w matchers %q: %d matchers, at most %d are allowed", ErrInvalid, clip(s, 80), len(out), MaxMatchers)
	}
	return out, nil
}

// itemEnd returns the index of the first comma of s outside a quoted
// string, or len(s).
func itemEnd(s string) int {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',':
			return i
		case '"':
			e := quotedEnd(s[i:])
			if e < 0 {
				return len(s) // ParseMatcher reports it
			}
			i += e - 1
		}
	}
	return len(s)
}

// FormatMatchers returns ms in the text form ParseMatchers reads, joined by
// commas without spaces (one shell word unless a value is quoted).
func FormatMatchers(ms []Matcher) string {
	var b strings.Builder
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(m.String())
	}
	return b.String()
}

// matchesEmpty reports whether m selects an anomaly whose label m.Name is
// missing.
func matchesEmpty(c compiled) bool { return c.matchesValue("") }

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
