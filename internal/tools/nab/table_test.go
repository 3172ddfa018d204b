package nab

import (
	"errors"
	"strings"
	"testing"
)

func report(std, lowFP, lowFN float64) Report {
	return Report{Profiles: []ProfileResult{
		{Name: "standard", Normalized: std},
		{Name: "reward_low_FP_rate", Normalized: lowFP},
		{Name: "reward_low_FN_rate", Normalized: lowFN},
	}}
}

func TestTable(t *testing.T) {
	for _, tc := range []struct {
		name  string
		r     Report
		ours  string // our row as written
		after string // the row just above ours
	}{
		{"between published", report(60.04, 50.0, 65.26), "| 4 | **ours** | **60.0** | **50.0** | **65.3** |", "| 3 | CAD OSE | 69.9 | 67.0 | 73.2 |"},
		{"tie goes below the published row", report(58.0, 1, 2), "| 6 | **ours** | **58.0** | **1.0** | **2.0** |", "| 5 | KNN CAD | 58.0 | 43.4 | 64.8 |"},
		{"below null", report(-12.5, -40, 3), "| 14 | **ours** | **-12.5** | **-40.0** | **3.0** |", "|  | Null | 0.0 | 0.0 | 0.0 |"},
		{"first place", report(80, 70, 85), "| 1 | **ours** | **80.0** | **70.0** | **85.0** |", "|  | Perfect | 100.0 | 100.0 | 100.0 |"},
		{"missing profile", Report{}, "| 14 | **ours** | **n/a** | **n/a** | **n/a** |", "|  | Null | 0.0 | 0.0 | 0.0 |"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := Table(&b, "ours", tc.r); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			if lines[0] != "| Rank | Detector | Standard | Reward low FP | Reward low FN |" {
				t.Errorf("header %q", lines[0])
			}
			if len(lines) != 2+len(Published)+1 {
				t.Fatalf("%d lines, want header, rule and %d rows:\n%s", len(lines), len(Published)+1, b.String())
			}
			i := indexOf(lines, tc.ours)
			if i < 0 {
				t.Fatalf("our row %q not in:\n%s", tc.ours, b.String())
			}
			if lines[i-1] != tc.after {
				t.Errorf("row above ours is %q, want %q:\n%s", lines[i-1], tc.after, b.String())
			}
			if n := strings.Count(b.String(), "**ours**"); n != 1 {
				t.Errorf("ours appears %d times", n)
			}
			// Ranks count the 13 published detectors and ours, not Perfect and Null.
			var last string
			for _, l := range lines[2:] {
				if cell := strings.TrimSpace(strings.Split(l, "|")[1]); cell != "" {
					last = cell
				}
			}
			if last != "14" {
				t.Errorf("last rank %s, want 14", last)
			}
		})
	}
}

func indexOf(lines []string, s string) int {
	for i, l := range lines {
		if l == s {
			return i
		}
	}
	return -1
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestTableWriteError(t *testing.T) {
	if err := Table(failWriter{}, "ours", report(1, 2, 3)); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Table error = %v, want the writer's", err)
	}
}

// TestPublishedOrder keeps the scoreboard sorted, which Table relies on.
func TestPublishedOrder(t *testing.T) {
	for i := 1; i < len(Published); i++ {
		if Published[i].Standard > Published[i-1].Standard {
			t.Errorf("%s (%g) above %s (%g)", Published[i].Detector, Published[i].Standard, Published[i-1].Detector, Published[i-1].Standard)
		}
	}
}
