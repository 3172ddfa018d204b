package baseline

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/features"
)

// calibWindow returns a model trained on a synthetic agent and a window
// of it, with denials added until the window scores between AlertScore
// and MediumScore + 4: over the absolute threshold, graded low or medium.
func calibWindow(t *testing.T, p *Params) (*Model, int64, features.Vector) {
	t.Helper()
	a := newSim(21, 20, officeCycle)
	m, t0 := trained(t, a, p)
	ts := t0 + 11*hourMs
	v0, _ := a.window(ts, 1)
	for k := 1.0; k < 200; k++ {
		v := v0
		v[features.Calls] += k
		v[features.Denials] += k
		v[features.Client4xx] += k
		if s := m.Score(p, ts, &v).Score; s >= p.AlertScore+1 && s < p.MediumScore+4 {
			return m, ts, v
		}
	}
	t.Fatal("no window scores between AlertScore and MediumScore")
	return nil, 0, features.Vector{}
}

// learnScores trains m's summary on n window scores expm1(N(mu, sd)) of
// log1p(score).
func learnScores(m *Model, p *Params, seed uint64, n int, mu, sd float64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for range n {
		m.LearnScore(p, math.Expm1(max(mu+sd*rng.NormFloat64(), 0)), 1)
	}
}

// TestScoreCalibration: the same window, over AlertScore, does not page
// for an agent whose windows routinely score near the threshold and pages
// for a smooth one; an agent still warming up, or with the calibration
// off, is judged by AlertScore alone; a high window always pages.
func TestScoreCalibration(t *testing.T) {
	p := DefaultParams()
	m, ts, v := calibWindow(t, &p)
	base := m.Score(&p, ts, &v)
	if !base.Anomalous || base.Usual || base.Severity < Low {
		t.Fatalf("window before any score history: %+v, want anomalous and paged", base)
	}
	// Noisy: log1p(score) around 1.6 ± 0.45, i.e. scores of 2 to 10 are
	// everyday for it.
	noisy := *m
	learnScores(&noisy, &p, 1, 5000, 1.6, 0.45)
	// Smooth: scores around 0.2.
	smooth := *m
	learnScores(&smooth, &p, 2, 5000, 0.2, 0.1)
	young := *m
	learnScores(&young, &p, 3, int(p.ScoreWarmup)/2, 1.6, 0.45)
	off := p
	off.ScoreSigmas = 0

	for _, c := range []struct {
		name  string
		m     *Model
		p     *Params
		pages bool
	}{
		{"noisy agent", &noisy, &p, false},
		{"smooth agent", &smooth, &p, true},
		{"noisy agent in warm-up", &young, &p, true},
		{"noisy agent, calibration off", &noisy, &off, true},
	} {
		r := c.m.Score(c.p, ts, &v)
		if r.Score != base.Score || !r.Anomalous {
			t.Errorf("%s: score %.2f anomalous %v; the calibration must not change the score (%.2f)", c.name, r.Score, r.Anomalous, base.Score)
		}
		bar, warm := c.m.ScoreBar(c.p)
		if pages := !r.Usual; pages != c.pages {
			t.Errorf("%s: score %.2f (bar %.2f, warm %v) pages = %v, want %v", c.name, r.Score, bar, warm, pages, c.pages)
		}
		if r.Usual != (r.Severity == None) {
			t.Errorf("%s: usual %v with severity %v; a usual window has none", c.name, r.Usual, r.Severity)
		}
		t.Logf("%s: score %.2f, bar %.2f (warm %v), usual %v", c.name, r.Score, bar, warm, r.Usual)
	}
	if bar, _ := noisy.ScoreBar(&p); !(bar > p.HighScore) {
		t.Fatalf("noisy bar %.2f, want it above HighScore for the next check", bar)
	}
	if noisy.usual(&p, p.HighScore) || !noisy.usual(&p, p.HighScore-0.01) {
		t.Errorf("a score at HighScore must page whatever the agent's history")
	}
}

// TestScoreCalibrationGuard runs the engine's loop on a noisy agent: a
// window that pages does not train the summary of its own scores, so a
// run of attack windows leaves its bar where it was; a usual window
// trains it.
func TestScoreCalibrationGuard(t *testing.T) {
	p := DefaultParams()
	m, ts, v := calibWindow(t, &p)
	smooth := *m
	learnScores(&smooth, &p, 2, 5000, 0.2, 0.1)
	before := smooth.cal
	engine := func(m *Model) Result {
		r := m.Score(&p, ts, &v)
		if r.Ordinary() {
			m.LearnScore(&p, r.Score, 1)
		}
		return r
	}
	for i := range 500 {
		if r := engine(&smooth); r.Usual || !r.Anomalous {
			t.Fatalf("attack window %d: usual %v anomalous %v, want paged", i, r.Usual, r.Anomalous)
		}
	}
	if smooth.cal != before {
		t.Errorf("500 paged windows moved the summary from %+v to %+v", before, smooth.cal)
	}
	noisy := *m
	learnScores(&noisy, &p, 1, 5000, 1.6, 0.45)
	before = noisy.cal
	if r := engine(&noisy); !r.Usual {
		t.Fatalf("noisy agent: window not usual")
	}
	if noisy.cal == before {
		t.Errorf("a usual window did not train the summary")
	}
	// Weight 0, NaN or a negative score leave it alone.
	before = noisy.cal
	noisy.LearnScore(&p, 5, 0)
	noisy.LearnScore(&p, math.NaN(), 1)
	noisy.LearnScore(&p, -1, 1)
	if noisy.cal != before {
		t.Errorf("an ignored LearnScore changed the summary")
	}
}

// TestScoreSummaryLearns: the summary's mean and variance are those of
// log1p of the scores it was fed, and it forgets with ScoreHalfLife.
func TestScoreSummaryLearns(t *testing.T) {
	p := DefaultParams()
	var m Model
	learnScores(&m, &p, 4, 20000, 1.0, 0.3)
	if mu, sd := float64(m.cal.mean), math.Sqrt(float64(m.cal.vr)); math.Abs(mu-1) > 0.03 || math.Abs(sd-0.3) > 0.03 {
		t.Errorf("summary mean %.3f sd %.3f, want 1 and 0.3", mu, sd)
	}
	if w, want := float64(m.cal.w), (1-math.Exp2(-20000/p.ScoreHalfLife))/(1-math.Exp2(-1/p.ScoreHalfLife)); math.Abs(w-want) > 0.01*want {
		t.Errorf("summary weight %.0f, want about %.0f (the decayed count)", w, want)
	}
	// A ScoreHalfLife later, half the weight is on the new scores.
	learnScores(&m, &p, 5, int(p.ScoreHalfLife), 2.0, 0.3)
	if mu := float64(m.cal.mean); math.Abs(mu-1.5) > 0.05 {
		t.Errorf("after one half-life of scores around 2, mean %.3f, want about 1.5", mu)
	}
	var in Model
	in.Inherit(&m)
	if in.cal != (calib{}) {
		t.Errorf("Inherit kept the peer's score summary")
	}
}

// TestBinaryVersions decodes a model saved by each version: what the
// version did not save starts empty, the rest is kept.
func TestBinaryVersions(t *testing.T) {
	p := DefaultParams()
	m, _ := sample(t)
	learnScores(m, &p, 6, 3000, 0.5, 0.2)
	m.ev.recentObs, m.ev.pagedCalls = 12, 3 // some evidence to lose
	enc := m.AppendBinary(nil)
	for _, c := range []struct {
		version byte
		cut     int // bytes of the current encoding the version lacks
		want    func(m Model) Model
	}{
		{4, 0, func(m Model) Model { return m }},
		{3, calibSize, func(m Model) Model { m.cal = calib{}; return m }},
		{2, calibSize + evidenceSize - evidenceV2Size, func(m Model) Model {
			m.cal = calib{}
			m.ev.pagedCalls, m.ev.pagedSize, m.ev.base = 0, 0, m.ev.exp
			return m
		}},
		{1, calibSize + evidenceSize, func(m Model) Model { m.cal, m.ev = calib{}, evidence{}; return m }},
	} {
		blob := append([]byte{c.version}, enc[1:len(enc)-c.cut]...)
		var got Model
		if err := got.UnmarshalBinary(blob); err != nil {
			t.Errorf("version %d: %v", c.version, err)
			continue
		}
		if want := c.want(*m); got != want {
			t.Errorf("version %d decoded differently: summary %+v, want %+v", c.version, got.cal, want.cal)
		}
		if re := got.AppendBinary(nil); re[0] != Version || !bytes.Equal(re[1:len(blob)], blob[1:]) && c.version >= 3 {
			t.Errorf("version %d: re-encoding changed the part it had", c.version)
		}
	}
	if m.cal == (calib{}) {
		t.Fatal("the sample has no score summary to round-trip")
	}
	bad := bytes.Clone(enc)
	copy(bad[len(enc)-4:], []byte{0, 0, 0x80, 0xBF}) // variance -1
	var got Model
	if err := got.UnmarshalBinary(bad); err == nil {
		t.Errorf("negative score variance decoded without error")
	}
}
