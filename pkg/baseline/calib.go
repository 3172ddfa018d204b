package baseline

import (
	"encoding/binary"
	"fmt"
	"math"
)

// calib is the decaying summary of an agent's own window scores that
// Score judges a window's score against (see Usual): the decayed weight
// of the windows behind it, and the mean and variance of log1p(Score)
// over them. It is learnt by LearnScore from windows that did not page.
type calib struct {
	w, mean, vr float32
}

// calibSize is calib's size in memory and in the encoding.
const calibSize = 3 * 4

// usual reports whether score, at or above AlertScore, is ordinary for
// this agent: less than ScoreSigmas standard deviations above the mean of
// the log1p of its own past scores. It is false when the calibration is
// off (ScoreSigmas 0), the summary stands on fewer than ScoreWarmup
// windows, or score is at or above HighScore (a high or critical window
// always pages).
func (m *Model) usual(p *Params, score float64) bool {
	bar, ok := m.cal.logBar(p)
	return ok && score < p.HighScore && math.Log1p(score) < bar
}

// logBar returns log1p of the score at or above which a window is rare
// for this agent, and false while the calibration is off (ScoreSigmas 0)
// or the summary stands on fewer than ScoreWarmup windows.
func (c calib) logBar(p *Params) (float64, bool) {
	if !(p.ScoreSigmas > 0) || float64(c.w) < p.ScoreWarmup {
		return 0, false
	}
	return float64(c.mean) + p.ScoreSigmas*math.Sqrt(float64(c.vr)), true
}

// ScoreBar returns the score at or above which a window is rare for this
// agent (see Result.Usual), and false while the calibration is off or
// warming up. It is for explanations and tests; Score applies it.
func (m *Model) ScoreBar(p *Params) (float64, bool) {
	bar, ok := m.cal.logBar(p)
	if !ok {
		return 0, false
	}
	return math.Expm1(bar), true
}

// Ordinary reports whether the window may train the summary of the
// agent's own scores: it is neither Anomalous nor Drift, or it is Usual
// (over AlertScore but ordinary for this agent). A window that pages never
// trains it, so an attack cannot raise its own bar.
func (r *Result) Ordinary() bool {
	return r.Usual || !(r.Anomalous || r.Drift)
}

// LearnScore trains the summary of the agent's own window scores on one
// window's Score with weight weight (1 for an ordinary window). The engine
// calls it only for windows scored against the agent's own model that did
// not page, so an attack cannot raise its own bar (the poisoning guard). A
// weight of 0 (or below, or NaN) leaves m unchanged. It does not allocate.
func (m *Model) LearnScore(p *Params, score, weight float64) {
	if !(weight > 0) || !(score >= 0) {
		return
	}
	weight = min(weight, 1)
	y := math.Log1p(min(score, maxScore))
	c := &m.cal
	if c.w <= 0 {
		*c = calib{w: float32(weight), mean: float32(y)}
		return
	}
	w := float64(c.w)*math.Exp2(-weight/p.ScoreHalfLife) + weight
	a := weight / w
	d := y - float64(c.mean)
	c.w = float32(w)
	c.mean = float32(float64(c.mean) + a*d)
	c.vr = float32((1 - a) * (float64(c.vr) + a*d*d))
}

// appendBinary appends c's calibSize bytes: weight, mean and variance
// (float32, little-endian).
func (c calib) appendBinary(dst []byte) []byte {
	for _, x := range [...]float32{c.w, c.mean, c.vr} {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(x))
	}
	return dst
}

// unmarshalBinary decodes calibSize bytes of b into c, rejecting negative,
// NaN or infinite values (the mean is of log1p of scores, never negative).
func (c *calib) unmarshalBinary(b []byte) error {
	f32 := func(i int) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])) }
	out := calib{w: f32(0), mean: f32(1), vr: f32(2)}
	if !nonNeg(float64(out.w)) || !nonNeg(float64(out.mean)) || !nonNeg(float64(out.vr)) {
		return fmt.Errorf("%w: score summary %g, %g, %g", ErrCorrupt, out.w, out.mean, out.vr)
	}
	*c = out
	return nil
}
