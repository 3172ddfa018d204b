package baseline

import (
	"math"
	"slices"

	"github.com/agentwatch/agentwatch/pkg/features"
)

// Severity grades an alert-worthy window by its Score.
type Severity uint8

// The severities, lowest first. A window below AlertScore is None.
const (
	None Severity = iota
	Low
	Medium
	High
	Critical
)

// String returns the severity's lowercase name.
func (s Severity) String() string {
	switch s {
	case None:
		return "none"
	case Low:
		return "low"
	case Medium:
		return "medium"
	case High:
		return "high"
	case Critical:
		return "critical"
	}
	return "unknown"
}

// FeatureScore is how surprising one feature of a window is.
type FeatureScore struct {
	// Observed is the window's value, Expected the baseline's expectation of
	// it given the window's hour slot and Calls (for shares and per-call
	// sizes). For OffHours see Result.OffHours.
	Observed, Expected float64
	// P is the upper-tail probability of a value at least as high as
	// Observed: only more than expected is suspicious. 1 when not scored.
	P float64
	// Surprise is -ln P, >= 0.
	Surprise float64
}

// Result is the verdict on one window. It is a plain value.
type Result struct {
	// Score is -log10 of the combined p, in [0, 300].
	Score float64
	// P is the combined p, 10^-Score.
	P float64
	// Severity grades Score; None when the window is neither Anomalous nor
	// Drift, or is Usual.
	Severity Severity
	// Anomalous reports that the short-term baseline alone puts the window
	// at or above AlertScore. The engine trains anomalous windows with
	// AnomalousWeight.
	Anomalous bool
	// Drift reports that the long-horizon reference puts the window at or
	// above AlertScore while the short-term baseline does not: the
	// short-term level has been pulled up (a slow ramp, or a recent step
	// change). Score, Severity and Features then describe the comparison
	// with the reference. Drift windows are not Anomalous, so they train
	// normally and a legitimate change is eventually learnt.
	Drift bool
	// Usual reports that the window is Anomalous or Drift by AlertScore
	// but ordinary for this agent: its Score is not ScoreSigmas standard
	// deviations above the agent's own usual scores (LearnScore). Severity
	// is then None; the engine does not page on it, and still keeps an
	// Anomalous window out of the baseline.
	Usual bool
	// Features holds each feature's score, indexed by features.ID.
	Features [features.NumFeatures]FeatureScore
	// OffHours scores being active in this hour slot at all. Observed is the
	// model's (decayed) count of active windows in the slot, Expected that
	// of its busiest slot, P = (Observed+0.5)/(Expected+1).
	OffHours FeatureScore
}

// Top returns up to n features with the highest surprise, highest first,
// leaving out those with (almost) none. It allocates the returned slice.
func (r *Result) Top(n int) []features.ID {
	const eps = 1e-6
	ids := make([]features.ID, 0, nf)
	for i := range r.Features {
		if r.Features[i].Surprise > eps {
			ids = append(ids, features.ID(i))
		}
	}
	slices.SortStableFunc(ids, func(a, b features.ID) int {
		sa, sb := r.Features[a].Surprise, r.Features[b].Surprise
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
	return ids[:min(max(n, 0), len(ids))]
}

// Contribution returns feature id's share, 0..1, of the window's total
// surprise (the features' plus OffHours').
func (r *Result) Contribution(id features.ID) float64 {
	if id >= features.NumFeatures {
		return 0
	}
	return r.share(r.Features[id].Surprise)
}

// OffHoursContribution returns OffHours' share, 0..1, of the window's
// total surprise; with every feature's Contribution it sums to 1.
func (r *Result) OffHoursContribution() float64 {
	return r.share(r.OffHours.Surprise)
}

func (r *Result) share(s float64) float64 {
	total := r.OffHours.Surprise
	for i := range r.Features {
		total += r.Features[i].Surprise
	}
	if total <= 0 {
		return 0
	}
	return s / total
}

// youngIgnored reports features not scored on a model younger than Warmup:
// the engine's seen-sets are immature then, so everything looks new.
func youngIgnored(id features.ID) bool {
	return id == features.NewRoutes || id == features.NewIPs
}

// Score scores one active window starting at startMs (Unix ms) with feature
// values v against m. It does not modify m and does not allocate. An empty
// model scores every window 0.
func (m *Model) Score(p *Params, startMs int64, v *features.Vector) Result {
	var r Result
	r.P = 1
	for i := range r.Features {
		r.Features[i].P = 1
	}
	r.OffHours.P = 1
	if m.wS <= 0 {
		return r
	}
	slot := features.Slot(startMs)
	f := m.seasonFactor(slot)
	calls := clean(v, features.Calls)
	young := m.Windows() < p.Warmup

	var lnP [nf + 1]float64 // per test, short-term; the last is OffHours
	var used [nf + 1]bool
	for i := range nf {
		id := features.ID(i)
		r.Features[i] = m.scoreFeature(p, startMs, id, m.short[i], v, calls, f)
		lnP[i] = -r.Features[i].Surprise
		used[i] = !(young && youngIgnored(id))
		if !used[i] {
			r.Features[i].P, r.Features[i].Surprise, lnP[i] = 1, 0, 0
		}
	}

	r.OffHours.P = 1
	if m.n >= float64(p.OffHoursMinWindows) {
		var mx uint16
		for _, c := range m.active {
			mx = max(mx, c)
		}
		c := float64(m.active[slot])
		r.OffHours = FeatureScore{Observed: c, Expected: float64(mx)}
		r.OffHours.P = min((c+0.5)/(float64(mx)+1), 1)
		r.OffHours.Surprise = -math.Log(r.OffHours.P)
		lnP[nf], used[nf] = -r.OffHours.Surprise, true
	}

	lnComb := combine(&lnP, &used)
	r.Score = scoreOf(lnComb)
	r.Anomalous = r.Score >= p.AlertScore

	// Long-horizon reference: for each feature whose short-term level has
	// moved DriftFactor above it, score against the reference instead.
	if !r.Anomalous {
		var drift [nf]FeatureScore
		gated := false
		lnD := lnP
		for i := range nf {
			id := features.ID(i)
			if !used[i] || !m.drifted(p, id) {
				continue
			}
			drift[i] = m.scoreFeature(p, startMs, id, m.long[i], v, calls, f)
			if drift[i].Surprise > r.Features[i].Surprise {
				lnD[i] = -drift[i].Surprise
				gated = true
			} else {
				drift[i] = r.Features[i]
			}
		}
		if gated {
			if sD := scoreOf(combine(&lnD, &used)); sD >= p.AlertScore {
				r.Drift = true
				r.Score = sD
				for i := range nf {
					if lnD[i] != lnP[i] {
						r.Features[i] = drift[i]
					}
				}
			}
		}
	}

	r.P = math.Pow(10, -r.Score)
	switch {
	case (r.Anomalous || r.Drift) && m.usual(p, r.Score):
		r.Usual = true
	case r.Anomalous || r.Drift:
		r.Severity = max(p.Grade(r.Score), Low)
	}
	return r
}

// drifted reports whether feature id's short-term level has moved more than
// DriftFactor above the long-horizon reference.
func (m *Model) drifted(p *Params, id features.ID) bool {
	s, l := m.short[id], m.long[id]
	switch id.Kind() {
	case features.Share:
		return shareRate(s, p.MinRate) > p.DriftFactor*shareRate(l, p.MinRate)
	case features.Bytes:
		return float64(s.a)-float64(l.a) > math.Log(p.DriftFactor)
	default:
		return float64(s.a) > p.DriftFactor*max(float64(l.a), p.MinMean/4)
	}
}

// scoreFeature scores feature id of v against the statistics st.
func (m *Model) scoreFeature(p *Params, startMs int64, id features.ID, st stat, v *features.Vector, calls, f float64) FeatureScore {
	x := clean(v, id)
	fs := FeatureScore{Observed: v[id], P: 1}
	var lp float64
	// A value at or below its expectation is not surprising: only "more
	// than usual" is suspicious. Its tail is taken as P = 1 (surprise 0)
	// without computing it; the exact one-sided tail there is about 0.5 or
	// more (somewhat less for a skewed, overdispersed count), a surprise
	// below ~1 that is no evidence of anything. Tippett's combination (the
	// smallest P times the number of tests) is unchanged unless the
	// smallest P was one of these, and then it is above 1 and the window
	// scores 0 either way. Fisher's is conservative: each such feature
	// still counts as a test (two degrees of freedom) but adds nothing to
	// the sum of surprises, so the combined P can only grow: a window may
	// score slightly lower than with the exact tails, never higher. It
	// also skips the incomplete beta and gamma functions and lgamma calls
	// for most features of most windows.
	switch id.Kind() {
	case features.Count:
		scale := 1.0
		if id == features.Calls {
			scale = f
		}
		e := max(float64(st.a)*scale, p.MinMean)
		fs.Expected = e
		if k := math.Round(x); k > e {
			phi := float64(st.b) + m.slotUncertainty(id, features.Slot(startMs))*e
			phi = min(max(phi, 1), maxDispersion)
			lp = lnNegBinTail(k, e, phi)
		}
	case features.Share:
		n := math.Round(calls)
		k := min(math.Round(x), n)
		rate := shareRate(st, p.MinRate)
		fs.Expected = n * rate
		if n >= 1 && k > fs.Expected {
			lp = lnBinomTail(k, n, rate)
		}
	case features.Bytes:
		mu := float64(st.a)
		n, ok := sizeCalls(id, v)
		fs.Expected = math.Expm1(mu)
		if perCall(id) && n >= 1 {
			fs.Expected *= n
		}
		if st == unseenSize {
			fs.Expected = 0
		} else if ok {
			if y := logSize(id, x, n); y > mu {
				sd := max(math.Sqrt(sizeVar(id, float64(st.b), n, float64(m.short[features.Calls].a))), p.MinLogScale)
				lp = lnNormalTail((y - mu) / sd)
			}
		}
	}
	if lp < 0 {
		lp = max(lp, -maxScore*math.Ln10-10)
		fs.P = math.Exp(lp)
		fs.Surprise = -lp
	}
	return fs
}

// combine returns ln of the combined p of the used tests with log
// p-values lnP: twice the smaller of Fisher's and Tippett's (Bonferroni's)
// combinations, at most 1. Fisher catches many moderately surprising
// features, Tippett one very surprising feature; doubling pays for looking
// at both.
func combine(lnP *[nf + 1]float64, used *[nf + 1]bool) float64 {
	k := 0
	sum, minLn := 0.0, 0.0
	for i, u := range used {
		if !u {
			continue
		}
		k++
		sum -= lnP[i]
		minLn = min(minLn, lnP[i])
	}
	if k == 0 {
		return 0
	}
	lnFisher := lnFisherTail(sum, k)
	lnTippett := minLn + math.Log(float64(k))
	return min(math.Ln2+min(lnFisher, lnTippett), 0)
}

// lnFisherTail is lnChiSquareTail2k(x, k) computed with one logarithm
// instead of two per term: the terms x^j/j! of the closed form are summed
// as plain numbers while that cannot overflow, which for the 16 tests of a
// window and surprises capped near 700 each it never does.
func lnFisherTail(x float64, k int) float64 {
	if x <= 0 || k <= 0 {
		return 0
	}
	sum, t := 1.0, 1.0
	for j := 1; j < k; j++ {
		t *= x / float64(j)
		sum += t
	}
	if sum > math.MaxFloat64/4 { // also +Inf
		return lnChiSquareTail2k(x, k)
	}
	return min(-x+math.Log(sum), 0)
}

// scoreOf turns ln p into a Score: -log10 p, capped at maxScore.
func scoreOf(lnp float64) float64 {
	return min(max(-lnp/math.Ln10, 0), maxScore)
}
