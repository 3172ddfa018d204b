package eval

import (
	"bytes"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/tools/nab"
	"github.com/agentwatch/agentwatch/pkg/baseline"
)

// TestNABParts: the whole corpus, its tuning part and its held-out part
// are each scored on their own windows, and the held-out part again at the
// tuning part's thresholds; the summary prints all of them.
func TestNABParts(t *testing.T) {
	c, err := nab.Load(filepath.Join("..", "nab", "testdata", "nab"))
	if err != nil {
		t.Fatal(err)
	}
	// The three test files are all in the tuning part; hold the one with
	// anomaly windows at the end out under a held-out file's name.
	held := c.Series[2]
	if len(held.Windows) == 0 {
		t.Fatalf("%s has no windows", held.Name)
	}
	held.Name = nab.HoldoutFiles[0]
	c.Series[2] = held
	p := baseline.DefaultSeriesParams()
	scores := map[string][]float64{}
	for _, s := range c.Series {
		scores[s.Name] = ScoreSeries(&p, s.Times, s.Values)
	}
	parts, err := scoreParts(c, scores)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 3 {
		t.Fatalf("%d parts, want all, tune, holdout", len(parts))
	}
	for i, want := range []struct {
		split       nab.Split
		files, wins int
		alone       *nab.Corpus
		atTune      bool
	}{
		{nab.SplitAll, 3, len(c.Series[1].Windows) + len(held.Windows), c, false},
		{nab.SplitTune, 2, len(c.Series[1].Windows), c.Subset(nab.SplitTune), false},
		{nab.SplitHoldout, 1, len(held.Windows), c.Subset(nab.SplitHoldout), true},
	} {
		got := parts[i]
		if got.Split != want.split || got.Files != want.files || got.Windows != want.wins || (got.AtTune != nil) != want.atTune {
			t.Fatalf("part %d: %s, %d files, %d windows, at-tune %v; want %s, %d, %d, %v",
				i, got.Split, got.Files, got.Windows, got.AtTune != nil, want.split, want.files, want.wins, want.atTune)
		}
		sc := map[string][]float64{}
		for _, s := range want.alone.Series {
			sc[s.Name] = scores[s.Name]
		}
		rep, err := nab.ScoreCorpus(want.alone, sc)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := got.Report.Entry(""), rep.Entry(""); g != w {
			t.Errorf("%s: %+v, scoring the part alone gives %+v", got.Split, g, w)
		}
	}
	for i, pr := range parts[2].AtTune.Profiles {
		if pr.Threshold != parts[1].Report.Profiles[i].Threshold {
			t.Errorf("%s held out at threshold %g, the tuning part picked %g", pr.Name, pr.Threshold, parts[1].Report.Profiles[i].Threshold)
		}
	}
	var out bytes.Buffer
	writeNABParts(&out, parts)
	for _, want := range []string{"| all | 3 |", "| tune | 2 |", "| holdout | 1 |", "| holdout at the tune thresholds | 1 |", "holdout@tune standard"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

// TestScoreSeriesCountsMuted: a series of a burst every 150 points pages
// until the rarity bar mutes it; scoreSeries counts those points, and its
// scores are ScoreSeries'. Without the bar nothing is muted.
func TestScoreSeriesCountsMuted(t *testing.T) {
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	times := make([]time.Time, 288*30)
	values := make([]float64, len(times))
	for i := range times {
		times[i] = t0.Add(time.Duration(i) * 5 * time.Minute)
		values[i] = 50 + 20*math.Sin(2*math.Pi*float64(i)/288) + math.Sin(float64(i)*1.7)
		if i >= 1000 && i%150 < 3 {
			values[i] += 40
		}
	}
	p := baseline.DefaultSeriesParams()
	sc, muted := scoreSeries(&p, times, values)
	if !slices.Equal(sc, ScoreSeries(&p, times, values)) {
		t.Fatal("scoreSeries and ScoreSeries score differently")
	}
	want := 0
	var s baseline.Series
	for i, v := range values {
		if s.Observe(&p, times[i].UnixMilli(), v).Muted {
			want++
		}
	}
	if muted != want || muted == 0 {
		t.Fatalf("scoreSeries counted %d muted points, Observe marked %d; want the same, and some", muted, want)
	}
	p.RarityReports = 0
	if _, n := scoreSeries(&p, times, values); n != 0 {
		t.Fatalf("%d points muted with RarityReports 0", n)
	}
}
