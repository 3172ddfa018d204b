package baseline

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestGrade(t *testing.T) {
	p := DefaultParams()
	for _, c := range []struct {
		score float64
		want  Severity
	}{
		{math.NaN(), None}, {-1, None}, {0, None}, {6.999, None},
		{7, Low}, {11.99, Low}, {12, Medium}, {24.99, Medium},
		{25, High}, {59.99, High}, {60, Critical}, {300, Critical}, {math.Inf(1), Critical},
	} {
		if got := p.Grade(c.score); got != c.want {
			t.Errorf("Grade(%g) = %s, want %s", c.score, got, c.want)
		}
	}
	// Coinciding thresholds: the higher severity wins.
	p.HighScore, p.CriticalScore = 30, 30
	if got := p.Grade(30); got != Critical {
		t.Errorf("Grade(30) with High = Critical = 30: %s, want critical", got)
	}
}

// TestBandScoreGradesBack: a rule placed in a band at any fraction grades
// as that band's severity, on the default scale and on random valid ones.
func TestBandScoreGradesBack(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	scales := []Params{DefaultParams()}
	for range 200 {
		p := DefaultParams()
		p.AlertScore = 0.5 + 20*rng.Float64()
		p.MediumScore = p.AlertScore + 0.01 + 20*rng.Float64()
		p.HighScore = p.MediumScore + 0.01 + 40*rng.Float64()
		p.CriticalScore = p.HighScore + 0.01 + 100*rng.Float64()
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		scales = append(scales, p)
	}
	fracs := []float64{math.NaN(), -1, 0, 0.3, 0.5, 0.99, 1, 2}
	for _, p := range scales {
		for s := Low; s <= Critical; s++ {
			prev := math.Inf(-1)
			for _, f := range fracs {
				sc := p.BandScore(s, f)
				if got := p.Grade(sc); got != s {
					t.Fatalf("thresholds %g/%g/%g/%g: BandScore(%s, %g) = %g grades %s",
						p.AlertScore, p.MediumScore, p.HighScore, p.CriticalScore, s, f, sc, got)
				}
				if !math.IsNaN(f) && sc < prev {
					t.Fatalf("BandScore(%s, %g) = %g below the score at a smaller fraction (%g)", s, f, sc, prev)
				}
				if !math.IsNaN(f) {
					prev = sc
				}
			}
		}
	}
}

// TestEvidenceScore: evidence orders findings inside the band and never
// leaves it.
func TestEvidenceScore(t *testing.T) {
	p := DefaultParams()
	const floor = 7
	prev := 0.0
	for _, e := range []float64{math.NaN(), 0, 6, 7, 8, 14, 30, 100, 300, math.Inf(1)} {
		sc := p.EvidenceScore(Medium, e, floor)
		if p.Grade(sc) != Medium {
			t.Errorf("EvidenceScore(medium, %g) = %g grades %s", e, sc, p.Grade(sc))
		}
		if sc < prev {
			t.Errorf("EvidenceScore(medium, %g) = %g, below %g for weaker evidence", e, sc, prev)
		}
		prev = sc
	}
	if lo := p.EvidenceScore(Medium, floor, floor); lo != p.MediumScore {
		t.Errorf("evidence at the floor scores %g, want the band's lowest %g", lo, p.MediumScore)
	}
	if a, b := p.EvidenceScore(Medium, 30, floor), p.EvidenceScore(Medium, 300, floor); !(a < b) {
		t.Errorf("evidence 30 scores %g, 300 scores %g: want increasing", a, b)
	}
}

func TestParseSeverity(t *testing.T) {
	for s := None; s <= Critical; s++ {
		if got, ok := ParseSeverity(s.String()); !ok || got != s {
			t.Errorf("ParseSeverity(%q) = %s, %v", s.String(), got, ok)
		}
	}
	for _, bad := range []string{"", "HIGH", "severe", "unknown"} {
		if _, ok := ParseSeverity(bad); ok {
			t.Errorf("ParseSeverity(%q) accepted", bad)
		}
	}
}
