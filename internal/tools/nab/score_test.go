package nab

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// nabProfiles are the cost matrices of NAB's config/profiles.json.
var nabProfiles = map[string]Profile{
	"standard":           {TP: 1, FN: 1, FP: 0.11, TN: 1},
	"reward_low_FP_rate": {TP: 1, FN: 1, FP: 0.22, TN: 1},
	"reward_low_FN_rate": {TP: 1, FN: 2, FP: 0.11, TN: 1},
}

var t0 = time.Date(2014, 4, 1, 0, 0, 0, 0, time.UTC)

// synth is a series of n rows five minutes apart, with windows given as
// [first row, last row].
func synth(name string, n int, windows ...[2]int) Series {
	s := Series{Name: name, Times: make([]time.Time, n), Values: make([]float64, n)}
	for i := range n {
		s.Times[i] = t0.Add(time.Duration(i) * 5 * time.Minute)
		s.Values[i] = math.Sin(float64(i) / 20)
	}
	for _, w := range windows {
		s.Windows = append(s.Windows, [2]time.Time{s.Times[w[0]], s.Times[w[1]]})
	}
	return s
}

func corpusOf(ss ...Series) *Corpus {
	return &Corpus{Series: ss, Profiles: nabProfiles}
}

// detections is a score slice of n rows with 1 at the given rows.
func detections(n int, rows ...int) []float64 {
	sc := make([]float64, n)
	for _, r := range rows {
		sc[r] = 1
	}
	return sc
}

// scoreAt scores at a fixed threshold, skipping the sweep, so a single
// detection's weight can be checked even where it lowers the score.
func scoreAt(t *testing.T, c *Corpus, scores map[string][]float64, thr float64) Report {
	t.Helper()
	pr, err := prepare(c, scores)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	for _, name := range profileOrder(c.Profiles) {
		rep.Profiles = append(rep.Profiles, pr.at(name, c.Profiles[name], thr))
	}
	return rep
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12 }

func TestScaledSigmoid(t *testing.T) {
	for _, tc := range []struct{ x, want float64 }{
		{-1, 0.9866142981514305},   // 2*sigmoid(5)-1: a window's left edge
		{-0.5, 0.8482836399575129}, // halfway in, tanh(1.25)
		{0, 0},                     // right edge
		{-0.1, 0.24491866240370913},
		{1, -0.9866142981514305},
		{3, -math.Tanh(7.5)}, // still on the curve at exactly 3
		{3.0000001, -1},      // past 3: flat -1
		{1e9, -1},
	} {
		if got := scaledSigmoid(tc.x); !near(got, tc.want) {
			t.Errorf("scaledSigmoid(%g) = %.17g, want %.17g", tc.x, got, tc.want)
		}
	}
}

func TestProbation(t *testing.T) {
	for _, tc := range []struct{ n, want int }{
		{0, 0}, {1, 0}, {6, 0}, {7, 1}, {20, 3}, {100, 15}, {1000, 150},
		{4032, 604},                            // 604.8: most NAB files
		{5000, 750}, {5001, 750}, {22695, 750}, // capped at 0.15*5000
	} {
		if got := Probation(tc.n); got != tc.want {
			t.Errorf("Probation(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

// TestDetectionWeights checks single detections against hand-computed NAB
// values. The series has 1000 rows (probation 150) and one window at rows
// 500-509, ten rows wide. Raw scores include the window's own -fnWeight
// when it is missed.
func TestDetectionWeights(t *testing.T) {
	const n = 1000
	s := synth("cat/one.csv", n, [2]int{500, 509})
	// Weights relative to the window, per profile: standard, low FP, low FN.
	type want struct{ std, lowFP, lowFN float64 }
	far := want{-1 - 0.11, -1 - 0.22, -2 - 0.11}
	for _, tc := range []struct {
		name   string
		rows   []int
		want   want
		tp, fp int
	}{
		// NAB divides by the sigmoid at the left edge, so the first row
		// earns exactly tpWeight, not 0.9866 of it.
		{"first row of window", []int{500}, want{1, 1, 1}, 1, 0},
		// Last row: position -1/10, tanh(0.25)/tanh(2.5).
		{"last row of window", []int{509}, want{0.24824154977542992, 0.24824154977542992, 0.24824154977542992}, 1, 0},
		// Row 504: position -6/10, tanh(1.5)/tanh(2.5).
		{"middle of window", []int{504}, want{0.9174286804284078, 0.9174286804284078, 0.9174286804284078}, 1, 0},
		{"only the earliest detection counts", []int{506, 504, 509}, want{0.9174286804284078, 0.9174286804284078, 0.9174286804284078}, 1, 0},
		{"missed window", nil, want{-1, -1, -2}, 0, 0},
		{"FP before any window", []int{300}, far, 0, 1},
		{"FP far after the window", []int{900}, far, 0, 1}, // (900-509)/9 > 3
		// Row 510: 1/9 past the right edge (width-1 = 9): -tanh(5/18).
		{"FP just after the window", []int{510}, want{-1 + 0.11*-0.2708471185167214, -1 + 0.22*-0.2708471185167214, -2 + 0.11*-0.2708471185167214}, 0, 1},
		{"detection in probation is ignored", []int{0, 149}, want{-1, -1, -2}, 0, 0},
		{"first row after probation counts", []int{150}, far, 0, 1},
		{"TP and FP add up", []int{500, 900}, want{1 - 0.11, 1 - 0.22, 1 - 0.11}, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := corpusOf(s)
			rep := scoreAt(t, c, map[string][]float64{s.Name: detections(n, tc.rows...)}, 0.5)
			for i, w := range []float64{tc.want.std, tc.want.lowFP, tc.want.lowFN} {
				r := rep.Profiles[i]
				if !near(r.Raw, w) {
					t.Errorf("%s: raw %.17g, want %.17g", r.Name, r.Raw, w)
				}
				if r.TP != tc.tp || r.FP != tc.fp || r.FN != 1-tc.tp {
					t.Errorf("%s: TP %d FP %d FN %d, want %d %d %d", r.Name, r.TP, r.FP, r.FN, tc.tp, tc.fp, 1-tc.tp)
				}
				if got := r.PerFile[s.Name]; got != r.Raw {
					t.Errorf("%s: per-file %g, corpus %g: one file, so they must be equal", r.Name, got, r.Raw)
				}
			}
		})
	}
}

// TestWeightsOfAWideWindow: in a NAB-sized window (400 rows) a detection
// on the last row is worth about 0: tanh(2.5/400)/tanh(2.5).
func TestWeightsOfAWideWindow(t *testing.T) {
	const n = 4000
	s := synth("cat/wide.csv", n, [2]int{1000, 1399})
	rep := scoreAt(t, corpusOf(s), map[string][]float64{s.Name: detections(n, 1399)}, 1)
	if r := rep.Profiles[0]; !near(r.Raw, 0.006334713203298768) {
		t.Errorf("raw %.17g, want 0.006334713203298768", r.Raw)
	}
}

// TestPerfectAndNull: NAB's scale runs from the detector that never fires
// (0) to the one that fires on each window's first row and nowhere else
// (100), under every profile.
func TestPerfectAndNull(t *testing.T) {
	hand := corpusOf(
		synth("a/two.csv", 1000, [2]int{300, 349}, [2]int{700, 779}),
		synth("a/none.csv", 500),
		synth("b/late.csv", 6000, [2]int{5000, 5499}),
	)
	real, err := Load("testdata/nab")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		c      *Corpus
		detect func(s Series) []float64
		thr    float64
		norm   float64
	}{
		{"perfect, hand-made", hand, perfect, 1, 100},
		{"perfect, NAB files", real, perfect, 1, 100},
		{"null, hand-made", hand, constant(0), noDetection, 0},
		{"null, NAB files", real, constant(0), noDetection, 0},
		// NAB's null detector says 0.5 everywhere: firing on every row is
		// worse than silence, so the sweep keeps "detect nothing".
		{"constant 0.5, NAB files", real, constant(0.5), noDetection, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			scores := map[string][]float64{}
			windows := 0
			for _, s := range tc.c.Series {
				scores[s.Name] = tc.detect(s)
				windows += len(s.Windows)
			}
			rep, err := ScoreCorpus(tc.c, scores)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Profiles) != 3 {
				t.Fatalf("got %d profiles, want 3", len(rep.Profiles))
			}
			for i, r := range rep.Profiles {
				p := nabProfiles[r.Name]
				if r.Name != ProfileNames[i] {
					t.Errorf("profile %d is %s, want %s", i, r.Name, ProfileNames[i])
				}
				if r.Normalized != tc.norm || r.Threshold != tc.thr {
					t.Errorf("%s: normalized %.17g at threshold %g, want %g at %g", r.Name, r.Normalized, r.Threshold, tc.norm, tc.thr)
				}
				if r.Perfect != float64(windows)*p.TP || r.Null != -float64(windows)*p.FN {
					t.Errorf("%s: perfect %g null %g, want %g and %g", r.Name, r.Perfect, r.Null, float64(windows)*p.TP, -float64(windows)*p.FN)
				}
			}
		})
	}
}

func perfect(s Series) []float64 {
	sc := make([]float64, len(s.Values))
	ws, _ := windowRows(s)
	for _, w := range ws {
		sc[w.start] = 1
	}
	return sc
}

func constant(v float64) func(Series) []float64 {
	return func(s Series) []float64 {
		sc := make([]float64, len(s.Values))
		for i := range sc {
			sc[i] = v
		}
		return sc
	}
}

// TestSweep checks the threshold each profile picks on a hand-made corpus:
// 400 rows (probation 60), window A at rows 100-119 and B at 300-319.
//
//	0.8 at row 100: catches A on its first row (+1)
//	0.6 at row 110: a second, later detection in A (+0, so it ties 0.8)
//	0.5 at row 300: catches B on its first row (+1), but 0.5 also fires on
//	    rows 200-209, ten FPs far from A ((200-119)/19 > 3, -fpWeight each)
//
// Totals by threshold:
//
//	          1.1   0.8        0.6        0.5         0.0
//	standard  -2    1-1=0      0          2-1.1=0.9   worse
//	low FP    -2    0          0          2-2.2=-0.2  worse
//	low FN    -4    1-2=-1     -1         2-1.1=0.9   worse
//
// so standard and low FN take 0.5, and low FP ties at 0.8 and 0.6 and,
// like NAB's stable sort, keeps the higher.
func TestSweep(t *testing.T) {
	const n = 400
	s := synth("cat/sweep.csv", n, [2]int{100, 119}, [2]int{300, 319})
	sc := make([]float64, n)
	sc[100], sc[110], sc[300] = 0.8, 0.6, 0.5
	for i := 200; i < 210; i++ {
		sc[i] = 0.5
	}
	rep, err := ScoreCorpus(corpusOf(s), map[string][]float64{s.Name: sc})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		profile    string
		thr, raw   float64
		tp, fp, fn int
	}{
		{"standard", 0.5, 0.9, 2, 10, 0},
		{"reward_low_FP_rate", 0.8, 0, 1, 0, 1},
		{"reward_low_FN_rate", 0.5, 0.9, 2, 10, 0},
	} {
		r, ok := rep.Profile(want.profile)
		if !ok {
			t.Fatalf("no %s profile", want.profile)
		}
		if r.Threshold != want.thr || !near(r.Raw, want.raw) || r.TP != want.tp || r.FP != want.fp || r.FN != want.fn {
			t.Errorf("%s: threshold %g raw %.17g TP %d FP %d FN %d; want %g %g %d %d %d",
				r.Name, r.Threshold, r.Raw, r.TP, r.FP, r.FN, want.thr, want.raw, want.tp, want.fp, want.fn)
		}
	}
}

// TestSweepMatchesBruteForce: on random corpora the sweep's threshold gives
// the best corpus score among all candidate thresholds, each scored from
// scratch, and the highest threshold among equal bests.
func TestSweepMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 30 {
		var ss []Series
		scores := map[string][]float64{}
		for f := range 3 {
			n := 200 + rng.IntN(300)
			a := 40 + rng.IntN(n/3)
			b := a + 30 + rng.IntN(n/3)
			s := synth(strings.Repeat("x", f+1)+"/f.csv", n, [2]int{a, a + 5 + rng.IntN(20)}, [2]int{b, min(n-1, b+5+rng.IntN(20))})
			sc := make([]float64, n)
			for i := range sc {
				sc[i] = float64(rng.IntN(12)) / 11 // coarse, so thresholds tie
			}
			ss = append(ss, s)
			scores[s.Name] = sc
		}
		c := corpusOf(ss...)
		rep, err := ScoreCorpus(c, scores)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Profiles {
			nothing, _ := scoreAt(t, c, scores, noDetection).Profile(r.Name)
			bestThr, best := noDetection, nothing.Raw
			for k := 11; k >= 0; k-- { // high to low, so a tie keeps the higher
				thr := float64(k) / 11
				got, _ := scoreAt(t, c, scores, thr).Profile(r.Name)
				if got.Raw > best+1e-9 {
					bestThr, best = thr, got.Raw
				}
			}
			if r.Threshold != bestThr || !near(r.Raw, best) {
				t.Errorf("trial %d %s: sweep chose %g (raw %g), brute force %g (raw %g)", trial, r.Name, r.Threshold, r.Raw, bestThr, best)
			}
			// The sweep's running total is the corpus score at its threshold.
			pr, err := prepare(c, scores)
			if err != nil {
				t.Fatal(err)
			}
			if thr, score := sweep(pr.points, pr.scorable, c.Profiles[r.Name]); thr != r.Threshold || math.Abs(score-r.Raw) > 1e-9 {
				t.Errorf("trial %d %s: sweep total %.17g at %g, per-file sum %.17g", trial, r.Name, score, thr, r.Raw)
			}
		}
	}
}

func TestScoreCorpusErrors(t *testing.T) {
	s := synth("cat/a.csv", 100, [2]int{50, 59})
	ok := detections(100)
	for _, tc := range []struct {
		name   string
		c      *Corpus
		scores map[string][]float64
		want   string
	}{
		{"missing series", corpusOf(s), map[string][]float64{}, "cat/a.csv: no scores"},
		{"unknown series", corpusOf(s), map[string][]float64{s.Name: ok, "cat/b.csv": ok}, `"cat/b.csv": no such series`},
		{"wrong length", corpusOf(s), map[string][]float64{s.Name: ok[:99]}, "99 scores for 100 rows"},
		{"above 1", corpusOf(s), map[string][]float64{s.Name: append(detections(99), 1.5)}, "row 99: score 1.5 is not in [0, 1]"},
		{"negative", corpusOf(s), map[string][]float64{s.Name: append(detections(99), -0.1)}, "not in [0, 1]"},
		{"NaN", corpusOf(s), map[string][]float64{s.Name: append(detections(99), math.NaN())}, "score NaN"},
		{"no windows", corpusOf(synth("cat/n.csv", 100)), map[string][]float64{"cat/n.csv": ok}, "no labelled windows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ScoreCorpus(tc.c, tc.scores)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ScoreCorpus error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestWindowRowsErrors(t *testing.T) {
	s := synth("cat/a.csv", 100)
	at := func(i int) time.Time { return s.Times[i] }
	dup := synth("cat/dup.csv", 100)
	dup.Times[40] = dup.Times[39] // as in a few NAB files, but on a bound here
	for _, tc := range []struct {
		name    string
		s       Series
		windows [][2]time.Time
		want    string
	}{
		{"bound between rows", s, [][2]time.Time{{at(10).Add(time.Minute), at(20)}}, "is not a row of the file"},
		{"bound after the data", s, [][2]time.Time{{at(10), at(99).Add(time.Hour)}}, "is not a row of the file"},
		{"repeated bound", dup, [][2]time.Time{{dup.Times[39], dup.Times[50]}}, "occurs 2 times"},
		{"overlapping", s, [][2]time.Time{{at(10), at(20)}, {at(20), at(30)}}, "not after the previous window's end"},
		{"out of order", s, [][2]time.Time{{at(50), at(60)}, {at(10), at(20)}}, "not after the previous window's end"},
		{"reversed", s, [][2]time.Time{{at(20), at(10)}}, "comes before start row"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			s.Windows = tc.windows
			_, err := windowRows(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("windowRows error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// BenchmarkScoreCorpus scores a corpus the size of NAB (58 files, 365k
// rows, two windows each) under the three profiles.
func BenchmarkScoreCorpus(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 4))
	var ss []Series
	scores := map[string][]float64{}
	for f := range 58 {
		const n = 6303
		s := synth(strings.Repeat("f", f+1)+"/s.csv", n, [2]int{2000, 2300}, [2]int{5000, 5300})
		sc := make([]float64, n)
		for i := range sc {
			sc[i] = rng.Float64()
		}
		ss = append(ss, s)
		scores[s.Name] = sc
	}
	c := corpusOf(ss...)
	b.SetBytes(58 * 6303 * 8)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ScoreCorpus(c, scores); err != nil {
			b.Fatal(err)
		}
	}
}
