package nab

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlot(t *testing.T) {
	c, err := Load("testdata/nab", ec2, noAnomaly)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		series    string
		threshold float64
	}{
		{"windows and detections", ec2, 0.9},
		{"no windows", noAnomaly, 0.9},
		{"detect nothing", ec2, noDetection},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // drawing is slow under -race
			s, _ := c.Lookup(tc.series)
			scores := make([]float64, len(s.Values))
			for i := range scores {
				if i%400 == 0 {
					scores[i] = 1
				}
			}
			path := filepath.Join(t.TempDir(), "plot.png")
			if err := Plot(path, s, scores, tc.threshold); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("not a PNG: %v", err)
			}
			if r := img.Bounds(); r.Dx() < 800 || r.Dy() < 400 || len(b) < 10_000 {
				t.Fatalf("PNG is %dx%d and %d bytes; want a full-size chart", r.Dx(), r.Dy(), len(b))
			}
		})
	}
}

func TestPlotErrors(t *testing.T) {
	s := synth("c/f.csv", 10)
	err := Plot(filepath.Join(t.TempDir(), "p.png"), s, make([]float64, 3), 0.5)
	if err == nil || !strings.Contains(err.Error(), "3 scores for 10 rows") {
		t.Fatalf("Plot error = %v, want a length mismatch", err)
	}
	err = Plot(filepath.Join(t.TempDir(), "no", "such", "dir.png"), s, make([]float64, 10), 0.5)
	if err == nil {
		t.Fatal("Plot into a missing directory succeeded")
	}
}
