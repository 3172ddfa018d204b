package audit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// TerminalSafe makes an untrusted string inert on a terminal and keeps it
// on one line: a backslash becomes \\, a byte that is not valid UTF-8
// becomes \xNN (so a lone 0x9b cannot act as an 8-bit CSI), and control
// characters (C0, DEL and C1: ESC, CSI, OSC, BEL, tab, newline), invisible
// format characters (bidi overrides, zero-width joiners) and the line and
// paragraph separators become \t, \n, \r or \uXXXX. The escapes cannot be
// confused with the text, as every backslash in it is doubled. The result
// is cut to at most max runes (0: no cap), with "…" marking a cut.
func TerminalSafe(s string, max int) string {
	var b strings.Builder
	runes := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var piece string
		switch {
		case r == utf8.RuneError && size == 1:
			piece = fmt.Sprintf(`\x%02x`, s[i])
		case r == '\\':
			piece = `\\`
		case r == '\t':
			piece = `\t`
		case r == '\n':
			piece = `\n`
		case r == '\r':
			piece = `\r`
		case unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp, unicode.Co, unicode.Cs):
			if r > 0xFFFF {
				piece = fmt.Sprintf(`\U%08x`, r)
			} else {
				piece = fmt.Sprintf(`\u%04x`, r)
			}
		default:
			piece = s[i : i+size]
		}
		i += size
		pr := utf8.RuneCountInString(piece)
		if max > 0 && runes+pr > max-1 && (i < len(s) || runes+pr > max) {
			b.WriteString(ellipsis)
			break
		}
		b.WriteString(piece)
		runes += pr
	}
	return b.String()
}

// TableOptions configures WriteTable. The zero value prints UTC times and
// caps the detail column at 160 runes.
type TableOptions struct {
	// Location is the time zone of the WHEN column; nil means UTC.
	Location *time.Location
	// MaxDetail caps the DETAIL column, in runes; 0 means 160, a negative
	// value means no cap.
	MaxDetail int
}

// Column caps of WriteTable, in runes.
const (
	tableCapID     = 64
	tableCapActor  = 48
	tableDefDetail = 160
)

// WriteTable writes recs as an aligned table with the columns WHEN, ACTOR,
// ACTION, PLAYBOOK, INCIDENT, RESULT and DETAIL (the reason, then the
// detail), one record per line, for `responder audit`. Every string is
// passed through TerminalSafe and capped, so an agent id, reason or error
// text cannot move the cursor, change colours, set the window title or
// break a line. Empty cells show "-".
func WriteTable(w io.Writer, recs []Record, o TableOptions) error {
	loc := o.Location
	if loc == nil {
		loc = time.UTC
	}
	maxDetail := o.MaxDetail
	switch {
	case maxDetail == 0:
		maxDetail = tableDefDetail
	case maxDetail < 0:
		maxDetail = 0
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tACTOR\tACTION\tPLAYBOOK\tINCIDENT\tRESULT\tDETAIL")
	for _, r := range recs {
		result := string(r.Result)
		if r.DryRun && r.Result != ResultDryRun {
			result += " (dry run)"
		}
		var detail []string
		for _, s := range []string{r.Why, r.Detail} {
			if s != "" {
				detail = append(detail, s)
			}
		}
		cells := []string{
			time.UnixMilli(r.AtMs).In(loc).Format("2006-01-02T15:04:05.000Z07:00"),
			cell(r.Actor.String(), tableCapActor),
			cell(r.Action, tableCapID),
			cell(r.Playbook, tableCapID),
			cell(r.IncidentID, tableCapID),
			cell(result, tableCapID),
			cell(strings.Join(detail, "; "), maxDetail),
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func cell(s string, max int) string {
	s = TerminalSafe(s, max)
	if s == "" {
		return "-"
	}
	return s
}

// WriteJSON writes recs as JSON lines (`responder audit --json`). On top of
// JSON's own escaping (C0 controls, U+2028, U+2029, and <, >, &), it writes
// every other control or invisible format character (C1 controls such as
// U+009B, bidi overrides) as a \u escape, so the output is inert on a
// terminal and decodes to the same records.
func WriteJSON(w io.Writer, recs []Record) error {
	bw := bufio.NewWriter(w)
	for _, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return fmt.Errorf("encode audit record %.40q: %w", r.ID, err)
		}
		bw.Write(InertJSON(b))
		bw.WriteByte('\n')
	}
	return bw.Flush()
}

// InertJSON rewrites the non-ASCII control and format characters of JSON
// text b (C1 controls such as U+009B, bidi overrides, zero-width
// characters) as \u escapes, a surrogate pair above U+FFFF, so that JSON
// an API or CLI prints is inert on a terminal. Such characters can only
// occur inside JSON strings, where the escape means the same, so the
// result decodes to the same value. encoding/json already escapes the
// ASCII controls. b is not modified.
func InertJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r >= utf8.RuneSelf && unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) {
			if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
				out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
			} else {
				out = fmt.Appendf(out, `\u%04x`, r)
			}
		} else {
			out = append(out, b[i:i+size]...)
		}
		i += size
	}
	return out
}
