package nab

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
)

// ProfileNames are NAB's three application profiles in the order the NAB
// scoreboard lists them.
var ProfileNames = []string{"standard", "reward_low_FP_rate", "reward_low_FN_rate"}

// probationPercent and probationCap are NAB's: the first 15% of each file,
// but never more than 15% of 5000 rows, is for the detector to learn in.
const (
	probationPercent = 0.15
	probationCap     = probationPercent * 5000
)

// noDetection is the threshold NAB's sweep starts from (sweeper.py,
// calcScoreByThreshold): above every score, so nothing is detected. A
// detector that does no better than detecting nothing gets it as its best
// threshold.
const noDetection = 1.1

// Probation returns how many rows at the start of an n-row file NAB ignores:
// min(floor(0.15*n), 0.15*5000), as in util.getProbationPeriod. The float
// product is the one Python computes, so the floor agrees with NAB's.
func Probation(n int) int {
	return int(math.Min(math.Floor(probationPercent*float64(n)), probationCap))
}

// scaledSigmoid is NAB's weighting of a detection by its position relative
// to a window's right edge (sweeper.py): 2*sigmoid(-5x)-1, and -1 past x=3.
// x=-1 is the window's left edge (0.98661), x=0 its right edge (0), and
// x>0 a false positive after it. The operations are in Python's order so the
// floats come out the same.
func scaledSigmoid(x float64) float64 {
	if x > 3 {
		return -1
	}
	return 2*(1/(1+math.Exp(5*x))) - 1
}

// maxTP is scaledSigmoid at a window's left edge. NAB divides in-window
// weights by it, so the earliest possible detection earns exactly tpWeight.
var maxTP = scaledSigmoid(-1)

// window is a labelled window as row indices, both inclusive.
type window struct{ start, end int }

func (w window) width() int { return w.end - w.start + 1 }

// windowRows turns s.Windows into row indices. NAB's sweeper finds a bound
// by the first row with that exact timestamp and walks windows in label
// order, so the bounds must be rows of the file, in order and disjoint. It
// also asks that each bound's timestamp occur only once in the file: NAB
// measures a window's width from the first occurrence, which for a repeated
// timestamp is not the row it entered the window at. NAB's own labels meet
// all of this (checked on all 116 windows), so an error means a label file
// that NAB would score wrongly or not at all.
func windowRows(s Series) ([]window, error) {
	if len(s.Times) != len(s.Values) {
		return nil, fmt.Errorf("%d timestamps but %d values", len(s.Times), len(s.Values))
	}
	// Keyed by instant, not by time.Time, whose location would split equal
	// instants; and not by UnixNano, which overflows outside 1678-2262.
	type instant struct {
		sec  int64
		nsec int
	}
	first := make(map[instant]int, len(s.Times)) // → first row
	count := make(map[instant]int, len(s.Times))
	for i, t := range s.Times {
		k := instant{t.Unix(), t.Nanosecond()}
		if _, ok := first[k]; !ok {
			first[k] = i
		}
		count[k]++
	}
	out := make([]window, 0, len(s.Windows))
	prevEnd := -1
	for i, w := range s.Windows {
		var rows [2]int
		for j, t := range w {
			k := instant{t.Unix(), t.Nanosecond()}
			row, ok := first[k]
			switch {
			case !ok:
				return nil, fmt.Errorf("window %d: %s is not a row of the file; window bounds must be timestamps of the data", i, formatTime(t))
			case count[k] > 1:
				return nil, fmt.Errorf("window %d: %s occurs %d times in the file; a window bound must be a unique timestamp", i, formatTime(t), count[k])
			}
			rows[j] = row
		}
		if rows[1] < rows[0] {
			return nil, fmt.Errorf("window %d: end row %d comes before start row %d", i, rows[1], rows[0])
		}
		if rows[0] <= prevEnd {
			return nil, fmt.Errorf("window %d: starts at row %d, not after the previous window's end (row %d); windows must be in file order and disjoint", i, rows[0], prevEnd)
		}
		prevEnd = rows[1]
		out = append(out, window{rows[0], rows[1]})
	}
	return out, nil
}

// rowWeights fills weight with each row's NAB sweep score before the
// profile's weights (sweeper.py, calcSweepScore) and win with the index of
// the window the row is in, or -1 outside windows. The caller multiplies by
// tpWeight/maxTP inside windows and by fpWeight outside.
//
// Outside a window, a detection is a false positive weighted by its distance
// past the previous window's right edge, abs(prevEnd-i)/(prevWidth-1); before
// the first window it weighs -1, as if far away. For a previous window one
// row wide NAB divides by zero and stops; here the division gives +Inf and
// the detection weighs -1.
func rowWeights(n int, ws []window, weight []float64, win []int32) {
	next := 0 // next window to enter
	for i := range n {
		if next < len(ws) && i == ws[next].start {
			next++
		}
		cur := next - 1 // the last window entered
		if cur >= 0 && i <= ws[cur].end {
			w := ws[cur]
			weight[i] = scaledSigmoid(-float64(w.end-i+1) / float64(w.width()))
			win[i] = int32(cur)
			continue
		}
		win[i] = -1
		if cur < 0 {
			weight[i] = -1
			continue
		}
		w := ws[cur] // the window this row comes after
		weight[i] = scaledSigmoid(math.Abs(float64(w.end-i)) / float64(w.width()-1))
	}
}

// Report is the NAB result of one detector on a corpus: one ProfileResult
// per profile, NAB's three first in ProfileNames order, then any others by
// name.
type Report struct {
	Profiles []ProfileResult
}

// Profile returns the result for the named profile. It only looks like
// sim's Registry.Lookup: a lookup by name in an unrelated type.
func (r Report) Profile(name string) (ProfileResult, bool) {
	if i := slices.IndexFunc(r.Profiles, func(p ProfileResult) bool { return p.Name == name }); i >= 0 {
		return r.Profiles[i], true
	}
	return ProfileResult{}, false
}

// ProfileResult is a detector's NAB score under one profile.
type ProfileResult struct {
	Name string
	// Threshold is the one corpus-wide threshold that maximises the raw
	// score; a row is a detection when its score is >= Threshold. 1.1 means
	// no threshold beat detecting nothing.
	Threshold float64
	// Raw is the sum of the per-file scores at Threshold; Null is that of
	// the detector that never detects (-fnWeight per window); Perfect is
	// tpWeight per window of the corpus, as NAB's runner.normalize counts
	// the windows of its label file, and is what a detection on the first
	// row of every window and nowhere else scores. Normalized =
	// 100*(Raw-Null)/(Perfect-Null): 100 is perfect, 0 is no better than
	// silence, and it can go below 0.
	Raw, Null, Perfect, Normalized float64
	// TP and FN count windows detected and missed (a window whose rows all
	// fall in the probation period counts as neither, as in NAB). FP counts
	// detected rows outside every window, after probation. NAB's own results
	// CSV counts TP and FN in rows instead.
	TP, FP, FN int
	// PerFile is each series' score at Threshold, by name.
	PerFile map[string]float64
}

// point is one scorable row in the corpus-wide sweep.
type point struct {
	score  float64
	weight float64 // unweighted sweep score, see rowWeights
	window int32   // corpus-wide window index, or -1 outside windows
}

// ScoreCorpus scores a detector on c the way NAB v1.1 does (see the package
// comment). scores holds, for every series in c by name, one anomaly score
// in [0, 1] per row. It is safe for concurrent use and does not keep scores.
func ScoreCorpus(c *Corpus, scores map[string][]float64) (Report, error) {
	pr, err := prepare(c, scores)
	if err != nil {
		return Report{}, err
	}
	var rep Report
	for _, name := range profileOrder(c.Profiles) {
		p := c.Profiles[name]
		thr, _ := sweep(pr.points, pr.scorable, p)
		rep.Profiles = append(rep.Profiles, pr.at(name, p, thr))
	}
	return rep, nil
}

// ScoreCorpusAt scores a detector on c as ScoreCorpus does, but at the
// given threshold per profile instead of the one NAB's sweep would pick on
// c: to judge a held-out part at the thresholds chosen on the tuning part.
// A profile without a threshold in thresholds is swept as in ScoreCorpus.
func ScoreCorpusAt(c *Corpus, scores map[string][]float64, thresholds map[string]float64) (Report, error) {
	pr, err := prepare(c, scores)
	if err != nil {
		return Report{}, err
	}
	var rep Report
	for _, name := range profileOrder(c.Profiles) {
		p := c.Profiles[name]
		thr, ok := thresholds[name]
		if !ok {
			thr, _ = sweep(pr.points, pr.scorable, p)
		}
		rep.Profiles = append(rep.Profiles, pr.at(name, p, thr))
	}
	return rep, nil
}

// prepared is a detector's scores on a corpus, checked and laid out for
// scoring under any profile.
type prepared struct {
	c        *Corpus
	scores   map[string][]float64
	files    []fileInfo // as c.Series
	nWindows int
	points   []point // every row after probation, highest score first
	scorable []bool  // by corpus-wide window index: has a row after probation
}

type fileInfo struct {
	windows   []window
	winBase   int // corpus-wide index of this file's first window
	probation int
	weight    []float64 // see rowWeights
	win       []int32
}

func prepare(c *Corpus, scores map[string][]float64) (*prepared, error) {
	var errs []error
	for name := range scores {
		if _, ok := c.Lookup(name); !ok {
			errs = append(errs, fmt.Errorf("scores for %q: no such series in the corpus", name))
		}
	}
	pr := &prepared{c: c, scores: scores, files: make([]fileInfo, len(c.Series))}
	nPoints := 0
	names := make(map[string]bool, len(c.Series))
	for fi, s := range c.Series {
		if names[s.Name] {
			errs = append(errs, fmt.Errorf("%s: two series of that name in the corpus", s.Name))
			continue
		}
		names[s.Name] = true
		sc, ok := scores[s.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: no scores; score every series of the corpus", s.Name))
			continue
		}
		if len(sc) != len(s.Values) {
			errs = append(errs, fmt.Errorf("%s: %d scores for %d rows", s.Name, len(sc), len(s.Values)))
			continue
		}
		// NaN fails both comparisons, so it is caught here too.
		if i := slices.IndexFunc(sc, func(v float64) bool { return !(v >= 0 && v <= 1) }); i >= 0 {
			errs = append(errs, fmt.Errorf("%s: row %d: score %g is not in [0, 1]", s.Name, i, sc[i]))
			continue
		}
		ws, err := windowRows(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
			continue
		}
		n := len(s.Values)
		f := fileInfo{windows: ws, winBase: pr.nWindows, probation: Probation(n),
			weight: make([]float64, n), win: make([]int32, n)}
		rowWeights(n, ws, f.weight, f.win)
		pr.files[fi] = f
		pr.nWindows += len(ws)
		nPoints += n - f.probation
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("score corpus: %w", err)
	}
	if pr.nWindows == 0 {
		return nil, errors.New("score corpus: no labelled windows, so NAB's normalisation (perfect minus null) is zero; score a corpus with at least one anomaly window")
	}

	// One sorted list of every scorable row serves all profiles: only the
	// weights differ between them.
	pr.points = make([]point, 0, nPoints)
	pr.scorable = make([]bool, pr.nWindows)
	for fi, s := range c.Series {
		f := pr.files[fi]
		sc := scores[s.Name]
		for i := f.probation; i < len(sc); i++ {
			w := int32(-1)
			if f.win[i] >= 0 {
				w = int32(f.winBase) + f.win[i]
				pr.scorable[w] = true
			}
			pr.points = append(pr.points, point{score: sc[i], weight: f.weight[i], window: w})
		}
	}
	slices.SortFunc(pr.points, func(a, b point) int { return cmp.Compare(b.score, a.score) })
	return pr, nil
}

// at scores every file under profile p with detections at scores >= thr
// and sums them into the corpus score, as NAB's scorer.py and
// runner.normalize do. (NAB takes each file's score from a per-file sweep,
// at the row for thr or the next higher threshold; that is the same set of
// detections.)
func (pr *prepared) at(name string, p Profile, thr float64) ProfileResult {
	res := ProfileResult{Name: name, Threshold: thr, PerFile: make(map[string]float64, len(pr.c.Series)),
		Perfect: float64(pr.nWindows) * p.TP}
	for fi, s := range pr.c.Series {
		f := pr.files[fi]
		sc := pr.scores[s.Name]
		best := make([]float64, len(f.windows))
		seen := make([]bool, len(f.windows)) // has a row after probation
		hit := make([]bool, len(f.windows))
		null, total := 0.0, 0.0
		for i := f.probation; i < len(sc); i++ {
			k := f.win[i]
			if k >= 0 && !seen[k] {
				seen[k], best[k] = true, -p.FN
				null -= p.FN
			}
			if sc[i] < thr {
				continue
			}
			if k < 0 {
				total += f.weight[i] * p.FP
				res.FP++
				continue
			}
			best[k] = max(best[k], f.weight[i]*p.TP/maxTP)
			hit[k] = true
		}
		for k, b := range best {
			switch {
			case !seen[k]: // window inside probation: NAB ignores it
			case hit[k]:
				res.TP++
				total += b
			default:
				res.FN++
				total += b
			}
		}
		res.PerFile[s.Name] = total
		res.Raw += total
		res.Null += null
	}
	res.Normalized = 100 * (res.Raw - res.Null) / (res.Perfect - res.Null)
	return res
}

// sweep returns the threshold that maximises the corpus score under p, the
// way NAB's sweeper.calcScoreByThreshold and optimizer.optimizeThreshold
// find it: start above every score (nothing detected, each window -fnWeight),
// lower the threshold to each distinct score in turn, and keep the best. At
// each threshold a window is worth its earliest detection, which is also its
// highest-weighted one, and a false positive adds its weight. NAB sorts the
// (threshold, score) list by score with Python's stable sort, so among equal
// scores the highest threshold wins; the strict > below does the same. pts
// must be sorted by score, highest first. It also returns the corpus score
// at that threshold, which is NAB's optimizer score.
func sweep(pts []point, scorable []bool, p Profile) (threshold, score float64) {
	best := make([]float64, len(scorable))
	winSum := 0.0
	for k, ok := range scorable {
		if ok {
			best[k] = -p.FN
			winSum -= p.FN
		}
	}
	fpSum := 0.0
	bestScore, bestThr := fpSum+winSum, noDetection
	for i := 0; i < len(pts); {
		thr := pts[i].score
		for ; i < len(pts) && pts[i].score == thr; i++ {
			pt := pts[i]
			if pt.window < 0 {
				fpSum += pt.weight * p.FP
				continue
			}
			if w := pt.weight * p.TP / maxTP; w > best[pt.window] {
				winSum += w - best[pt.window]
				best[pt.window] = w
			}
		}
		if s := fpSum + winSum; s > bestScore {
			bestScore, bestThr = s, thr
		}
	}
	return bestThr, bestScore
}

// profileOrder lists NAB's profiles first, in scoreboard order, then any
// others by name.
func profileOrder(ps map[string]Profile) []string {
	var out []string
	for _, n := range ProfileNames {
		if _, ok := ps[n]; ok {
			out = append(out, n)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(ps)) {
		if !slices.Contains(ProfileNames, n) {
			out = append(out, n)
		}
	}
	return out
}
