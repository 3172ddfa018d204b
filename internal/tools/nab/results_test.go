package nab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteResults(t *testing.T) {
	c, err := Load("testdata/nab", ec2)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Series[0]
	scores := make([]float64, len(s.Values))
	for i := range scores {
		scores[i] = float64(i%7) / 8
	}
	dir := t.TempDir()
	if err := WriteResults(dir, s, scores); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "realKnownCause", "ec2_request_latency_system_failure.csv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != len(s.Values)+1 {
		t.Fatalf("%d lines, want a header and %d rows", len(lines), len(s.Values))
	}
	for i, want := range map[int]string{
		0:   "timestamp,value,anomaly_score",
		1:   "2014-03-07 03:41:00,45.868,0", // timestamps as in NAB's data
		2:   "2014-03-07 03:46:00,47.606,0.125",
		557: "2014-03-09 03:00:00,44.611999999999995,0.375", // NAB repeats this timestamp; so do we
		558: "2014-03-09 03:00:00,43.578,0.5",
	} {
		if lines[i] != want {
			t.Errorf("line %d = %q, want %q", i+1, lines[i], want)
		}
	}

	// The values and timestamps read back as the series they came from.
	var data strings.Builder
	data.WriteString("timestamp,value\n")
	for _, l := range lines[1:] {
		data.WriteString(l[:strings.LastIndexByte(l, ',')] + "\n")
	}
	again, err := parseSeries(s.Name, strings.NewReader(data.String()))
	if err != nil {
		t.Fatal(err)
	}
	for i := range s.Values {
		if !again.Times[i].Equal(s.Times[i]) || again.Values[i] != s.Values[i] {
			t.Fatalf("row %d reads back as %s,%v; want %s,%v", i, again.Times[i], again.Values[i], s.Times[i], s.Values[i])
		}
	}
}

func TestWriteResultsErrors(t *testing.T) {
	s := synth("c/f.csv", 10)
	for _, tc := range []struct {
		name   string
		s      Series
		scores []float64
		want   string
	}{
		{"short scores", s, make([]float64, 9), "9 scores for 10 rows"},
		{"name escapes dir", Series{Name: "../f.csv", Times: s.Times, Values: s.Values}, make([]float64, 10), "must be a relative path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := WriteResults(t.TempDir(), tc.s, tc.scores)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("WriteResults error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
