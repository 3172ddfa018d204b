package slackui

import (
	"strings"
	"unicode"
	"unicode/utf16"
)

// Block Kit limits, in characters. Slack does not say whether it counts code
// points or UTF-16 units; we count UTF-16 units, which is never fewer.
const (
	maxText        = 3000 // any text object in a section
	maxField       = 2000 // one section field
	maxHeader      = 150  // header block text
	maxBlocks      = 50   // blocks in one message
	maxFields      = 10   // fields in one section
	maxButtonText  = 75   // button label
	maxButtonValue = 2000 // button value
	maxConfirmText = 300  // confirmation dialog text
	maxFallback    = 3000 // our own cap on the notification text (Slack truncates at 40000)
)

// Caps for single values, well under Slack's limits so that an alert stays
// readable however hostile its input.
const (
	capID      = 128  // agent, owner, role, credential, request ids
	capRoute   = 300  // one route template or path
	capSummary = 1000 // the anomaly's summary sentence
	capDetail  = 500  // one extra evidence value (a user agent, a header value)
)

const ellipsis = "…"

// clean makes an untrusted string safe to place in a Slack text object:
//
//   - invalid UTF-8 becomes U+FFFD;
//   - control characters (newlines too, unless multiLine) and the line and
//     paragraph separators become spaces, so a single-line value stays on
//     one line; bidirectional overrides become U+FFFD, so text cannot be
//     displayed reversed;
//   - &, < and > become &amp;, &lt; and &gt;, Slack's only control
//     characters: no mention (<!channel>, <!here>, <@U1>, <!subteam^S1>)
//     and no link (<https://x|y>) can survive;
//   - the result has at most max UTF-16 units, cut between escapes (never
//     inside &amp;) and ended with an ellipsis when cut.
//
// It never returns an empty or all-blank string (Slack rejects empty text
// objects): such input becomes "—".
func clean(s string, max int, multiLine bool) string {
	var b strings.Builder
	n := 0    // UTF-16 units written
	keep := 0 // b.Len() at the last point where an ellipsis still fits
	blank := true
	for _, r := range s { // range yields U+FFFD for each invalid byte
		var piece string
		switch {
		case r == '&':
			piece = "&amp;"
		case r == '<':
			piece = "&lt;"
		case r == '>':
			piece = "&gt;"
		case r == '\n' && multiLine:
			piece = "\n"
		case unicode.IsControl(r), r == '\u2028', r == '\u2029':
			piece = " "
		case unicode.Is(unicode.Bidi_Control, r):
			piece = "\uFFFD"
		default:
			piece = string(r)
		}
		pn := utf16Len(piece)
		if n+pn > max {
			out := strings.TrimRight(b.String()[:keep], " \n")
			if out == "" {
				return ellipsis
			}
			return out + ellipsis
		}
		b.WriteString(piece)
		n += pn
		if n+1 <= max { // room for the ellipsis (one UTF-16 unit)
			keep = b.Len()
		}
		if blank && strings.TrimSpace(piece) != "" {
			blank = false
		}
	}
	if blank {
		return "—"
	}
	return b.String()
}

// line cleans a single-line value.
func line(s string, max int) string { return clean(s, max, false) }

// fallbackText makes a cleaned string safe for the message's top-level text,
// which Slack formats as mrkdwn and shows in notifications: on top of clean,
// a word joiner after each @ keeps "@here" from ever being parsed as a
// mention, and backticks become a look-alike so they cannot open code spans.
func fallbackText(s string) string {
	s = strings.ReplaceAll(s, "@", "@\u2060")
	return strings.ReplaceAll(s, "`", "\u02CB")
}

// utf16Len is the length of s in UTF-16 units.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// join concatenates already-cleaned parts and caps the result at max UTF-16
// units. Parts are cut whole, never inside an escape; when something is left
// out, an ellipsis ends the result.
func join(parts []string, sep string, max int) string {
	var b strings.Builder
	n := 0
	for i, p := range parts {
		add := p
		if i > 0 {
			add = sep + p
		}
		an := utf16Len(add)
		if n+an > max-1 && (i < len(parts)-1 || n+an > max) {
			b.WriteString(ellipsis)
			break
		}
		b.WriteString(add)
		n += an
	}
	if b.Len() == 0 {
		return "—"
	}
	return b.String()
}
