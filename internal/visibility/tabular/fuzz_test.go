package tabular

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzWriters: any string from the traffic, in a table, is inert on a
// terminal and on one line; in CSV, it is one cell that cannot run as a
// formula and reads back as written.
func FuzzWriters(f *testing.F) {
	for _, s := range []string{"cs-1", "=1+1", "-1", "\x1b]0;t\x07", "a\r\nb", "\u202e\u009b", "\xff\xfe", "\"quoted\",x", "\t@x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tb := Table{Header: []string{"A", "B"}, Rows: [][]string{{s, "x"}}}
		var b bytes.Buffer
		if err := WriteTable(&b, tb); err != nil {
			t.Fatal(err)
		}
		out := strings.TrimSuffix(b.String(), "\n")
		if strings.Count(out, "\n") != 1 {
			t.Fatalf("cell %q broke the table's lines:\n%s", s, out)
		}
		for _, r := range out {
			if r != '\n' && (unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zl, unicode.Zp) || r == utf8.RuneError && !strings.Contains(s, "\uFFFD")) {
				t.Fatalf("cell %q left %U in the table", s, r)
			}
		}
		b.Reset()
		if err := WriteCSV(&b, tb); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&b).ReadAll()
		if err != nil || len(recs) != 2 || len(recs[1]) != 2 {
			t.Fatalf("CSV of %q: %q, %v", s, recs, err)
		}
		c := recs[1][0]
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			t.Fatalf("cell %q reads back as %q, a formula", s, c)
		}
		if want := strings.ReplaceAll(SafeCell(s), "\r\n", "\n"); c != want && c != strings.ReplaceAll(want, "\r", "\n") {
			t.Fatalf("cell %q reads back as %q; want %q", s, c, want)
		}
	})
}
