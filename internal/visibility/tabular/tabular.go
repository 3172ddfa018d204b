// Package tabular writes the visibility service's answers as an aligned
// table for a terminal, as JSON, or as CSV for a spreadsheet: the CLI
// prints them, and the HTTP API serves its CSV through it. Every string
// in the answers may be attacker-controlled (agent ids, routes, request
// ids from the traffic): the table makes each one inert on a terminal
// (audit.TerminalSafe), the JSON escapes what a terminal would act on
// (audit.InertJSON), and the CSV defuses spreadsheet formulas.
package tabular

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
)

// Format is an output format.
type Format string

// Formats.
const (
	FormatTable Format = "table"
	FormatJSON  Format = "json"
	FormatCSV   Format = "csv"
)

// ParseFormat reads a format name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case FormatTable, FormatJSON, FormatCSV:
		return f, nil
	}
	return "", fmt.Errorf("%.40q is not an output format; want table, json or csv", s)
}

// Table is rows of cells under a header. Cells hold the values as they
// are: the writers escape them.
type Table struct {
	// Title, when set, is printed above the table (not in CSV).
	Title  string
	Header []string
	Rows   [][]string
	// Caps are the table's column caps, in runes, by column index; 0 or
	// missing means DefaultCap. CSV is never capped.
	Caps []int
}

// DefaultCap caps a table cell, in runes.
const DefaultCap = 64

// WriteTables writes ts one after the other, a blank line between them.
func WriteTables(w io.Writer, ts ...Table) error {
	for i, t := range ts {
		if i > 0 {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		if err := WriteTable(w, t); err != nil {
			return err
		}
	}
	return nil
}

// WriteTable writes t aligned, one row per line: every cell passed
// through audit.TerminalSafe and capped, so no value can move the cursor,
// change colours, set the window title or break a line. Empty cells show
// "-". A table without rows says "(none)".
func WriteTable(w io.Writer, t Table) error {
	bw := bufio.NewWriter(w)
	if t.Title != "" {
		fmt.Fprintln(bw, audit.TerminalSafe(t.Title, 200))
	}
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(t.Header, "\t"))
	for _, row := range t.Rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cp := DefaultCap
			if i < len(t.Caps) && t.Caps[i] != 0 {
				cp = t.Caps[i]
			}
			cells[i] = audit.TerminalSafe(c, cp)
			if cells[i] == "" {
				cells[i] = "-"
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(t.Rows) == 0 {
		fmt.Fprintln(bw, "(none)")
	}
	return bw.Flush()
}

// WriteCSV writes t as CSV (RFC 4180, a header line first) with every
// cell made valid UTF-8 and defused against formula injection
// (SafeCell).
func WriteCSV(w io.Writer, t Table) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(t.Header); err != nil {
		return err
	}
	for _, row := range t.Rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = SafeCell(c)
		}
		if err := cw.Write(cells); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// SafeCell makes s a CSV cell a spreadsheet shows as text: invalid UTF-8
// becomes U+FFFD, and a cell starting with '=', '+', '-', '@', a tab or a
// carriage return (which a spreadsheet may run as a formula) is prefixed
// with a single quote (OWASP's advice on CSV injection).
func SafeCell(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// WriteJSON writes v as indented JSON and a newline, inert on a terminal
// (audit.InertJSON): it decodes to the same value.
func WriteJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode answer: %w", err)
	}
	_, err = w.Write(append(audit.InertJSON(b), '\n'))
	return err
}
