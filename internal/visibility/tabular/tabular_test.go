package tabular

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

const hostile = "evil\x1b[2J\x1b]0;owned\x07\u009b6n\u202e\r\nFAKE ROW\t<script>alert(1)</script>\"><img onerror=x>\xff"

var t0 = time.Date(2026, 3, 15, 10, 0, 0, 0, time.UTC).UnixMilli()

// answers holds one answer of every kind, each with hostile strings.
func answers() map[string]any {
	use := visibility.Usage{Calls: 3, ResponseBytes: 100, FirstMs: t0, LastMs: t0 + 1000, Status: visibility.StatusMix{S2xx: 2, S4xx: 1, S403: 1}}
	ar := visibility.AgentRouteRow{AgentRouteUsage: visibility.AgentRouteUsage{AgentID: hostile, Route: "/x/" + hostile, Usage: use}, Known: true}
	row := visibility.AgentRow{AgentID: hostile, Owner: "=HYPERLINK(\"http://evil\")", Lifecycle: visibility.LifecycleShadow,
		AgentUsage: visibility.AgentUsage{AgentID: hostile, Usage: use, Credentials: []string{"+cred"}}, ApprovedRoutes: -1, FirstSeenMs: t0, LastSeenMs: t0}
	return map[string]any{
		"agents":       []visibility.AgentRow{row},
		"routes":       []visibility.RouteRow{{Route: "/x/" + hostile, Tags: []string{"pii"}, Callers: []string{hostile}, CallerCount: 1, Usage: use}},
		"agent-routes": []visibility.AgentRouteRow{ar},
		"findings":     []visibility.Finding{{Kind: visibility.FindingShadow, AgentID: hostile, Detail: "-1+1 " + hostile}},
		"access": visibility.AccessAnswer{Request: visibility.AccessRequest{Tag: "pii", Span: visibility.DaySpan(time.UnixMilli(t0))},
			Routes: []string{"/x"}, Rows: []visibility.AccessRow{{AgentID: hostile, Usage: use, Routes: []string{"/x"}, SampleRequestIDs: []string{"@req", hostile}}}},
		"events": []event.Event{{EventTimeMs: t0, AgentID: hostile, Route: "/x", Path: "/x/" + hostile, Status: 200, RequestID: "=1+1"}},
		"agent": visibility.AgentProfile{Agent: row, Registry: &inventory.Agent{ID: hostile, Owner: hostile}, Routes: []visibility.AgentRouteRow{ar},
			Findings: []visibility.Finding{{Kind: visibility.FindingShadow, AgentID: hostile, Detail: hostile}},
			Timeline: []visibility.TimelineEntry{{AtMs: t0, Kind: visibility.TimelineAnomaly, Summary: "anomaly " + hostile}}},
		"route": visibility.RouteProfile{Route: visibility.RouteRow{Route: hostile, Callers: []string{hostile}}, Callers: []visibility.AgentRouteRow{ar},
			Daily: []visibility.DailyCount{{Day: time.UnixMilli(t0).Truncate(24 * time.Hour), Key: hostile, Usage: use}}},
	}
}

func TestTableInert(t *testing.T) {
	for name, v := range answers() {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Write(&b, FormatTable, v); err != nil {
				t.Fatal(err)
			}
			out := b.String()
			for _, r := range out {
				if r != '\n' && (unicode.In(r, unicode.Cc, unicode.Cf) || r == utf8.RuneError) {
					t.Fatalf("table holds control, format or invalid character %U:\n%s", r, out)
				}
			}
			if strings.Contains(out, "\nFAKE ROW") {
				t.Fatalf("a hostile id broke a line:\n%s", out)
			}
			if !strings.Contains(out, `evil\u001b[2J\u001b]0;owned\u0007\u009b6n\u202e`) {
				t.Fatalf("the hostile id is not shown escaped:\n%s", out)
			}
		})
	}
}

func TestTableAligned(t *testing.T) {
	var b bytes.Buffer
	rows := []visibility.AgentRow{{AgentID: "a", Lifecycle: visibility.LifecycleActive, ApprovedRoutes: 2},
		{AgentID: "a-much-longer-agent-id", Lifecycle: visibility.LifecycleNew, ApprovedRoutes: -1}}
	if err := Write(&b, FormatTable, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	col := strings.Index(lines[0], "LIFECYCLE")
	if strings.Index(lines[1], "active") != col || strings.Index(lines[2], "new") != col {
		t.Fatalf("LIFECYCLE not aligned:\n%s", b.String())
	}
	if !strings.Contains(lines[1], " 2 ") {
		t.Errorf("approved count missing: %s", lines[1])
	}
	b.Reset()
	if err := Write(&b, FormatTable, []visibility.Finding{}); err != nil || !strings.Contains(b.String(), "(none)") {
		t.Errorf("empty table: %q, %v", b.String(), err)
	}
}

func TestCSVSafe(t *testing.T) {
	for in, want := range map[string]string{
		"=1+1": "'=1+1", "+1": "'+1", "-1": "'-1", "@SUM(A1)": "'@SUM(A1)", "\tx": "'\tx", "\rx": "'\rx",
		"a=1": "a=1", "": "", "1": "1", "\xffa": "\uFFFDa", "'already": "'already",
	} {
		if got := SafeCell(in); got != want {
			t.Errorf("SafeCell(%q) = %q; want %q", in, got, want)
		}
	}
	for name, v := range answers() {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Write(&b, FormatCSV, v); err != nil {
				t.Fatal(err)
			}
			recs, err := csv.NewReader(&b).ReadAll()
			if err != nil {
				t.Fatalf("CSV does not parse: %v", err)
			}
			if len(recs) < 2 {
				t.Fatalf("CSV has %d records; want a header and rows", len(recs))
			}
			for _, rec := range recs {
				if len(rec) != len(recs[0]) {
					t.Fatalf("ragged CSV: %q", recs)
				}
				for _, c := range rec {
					if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
						t.Fatalf("cell %q could run as a formula", c)
					}
					if !utf8.ValidString(c) {
						t.Fatalf("cell %q is not UTF-8", c)
					}
				}
			}
		})
	}
	// The hostile id comes back whole (but for its invalid byte).
	var b bytes.Buffer
	if err := Write(&b, FormatCSV, answers()["findings"]); err != nil {
		t.Fatal(err)
	}
	recs, _ := csv.NewReader(&b).ReadAll()
	back := strings.ReplaceAll(strings.ToValidUTF8(hostile, "\uFFFD"), "\r\n", "\n") // encoding/csv reads a quoted \r\n as \n
	if recs[1][1] != back || recs[1][4] != "'-1+1 "+back {
		t.Errorf("CSV cells %q", recs[1])
	}
}

func TestJSON(t *testing.T) {
	for name, v := range answers() {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Write(&b, FormatJSON, v); err != nil {
				t.Fatal(err)
			}
			for _, r := range b.String() {
				if r != '\n' && (unicode.In(r, unicode.Cc, unicode.Cf) || r >= 0x80 && unicode.In(r, unicode.Zl, unicode.Zp)) {
					t.Fatalf("JSON holds control or format character %U", r)
				}
			}
			if strings.ContainsAny(b.String(), "<>") {
				t.Fatal("JSON holds raw < or >")
			}
			var back any
			if err := json.Unmarshal(b.Bytes(), &back); err != nil {
				t.Fatalf("JSON does not decode: %v", err)
			}
		})
	}
	var b bytes.Buffer
	if err := Write(&b, FormatJSON, answers()["findings"]); err != nil {
		t.Fatal(err)
	}
	var fs []visibility.Finding
	if err := json.Unmarshal(b.Bytes(), &fs); err != nil || fs[0].AgentID != strings.ToValidUTF8(hostile, "\uFFFD") {
		t.Fatalf("round trip: %+v, %v", fs, err)
	}
}

func TestParseFormat(t *testing.T) {
	for _, s := range []string{"table", "json", "csv"} {
		if f, err := ParseFormat(s); err != nil || string(f) != s {
			t.Errorf("ParseFormat(%q) = %q, %v", s, f, err)
		}
	}
	if _, err := ParseFormat("xml"); err == nil || !strings.Contains(err.Error(), "want table, json or csv") {
		t.Errorf("ParseFormat(xml): %v", err)
	}
	if err := Write(&bytes.Buffer{}, FormatTable, 42); err == nil {
		t.Error("Write of an int gave no error")
	}
}
