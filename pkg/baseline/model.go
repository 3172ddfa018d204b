package baseline

import (
	"math"

	"github.com/agentwatch/agentwatch/pkg/features"
)

const (
	nf = int(features.NumFeatures)
	// seasonScale is the quantum of a stored seasonal log factor: 1/4096
	// of a natural-log unit, so int16 spans factors e^±8.
	seasonScale = 4096
	// activityCap: when a slot's activity count reaches it, all slots are
	// halved (an exponential forgetting that needs no clock).
	activityCap = math.MaxUint16
	// inheritWeight is the weight, in windows, a cold-start model gives the
	// levels copied from its peer group: the agent's own windows outweigh
	// them after a few dozen windows.
	inheritWeight = 30
	// inheritActivity is the busiest slot's count after Inherit scales the
	// peer's activity profile down to a prior.
	inheritActivity = 60
	// maxScore caps Score; p below 1e-300 is reported as 1e-300.
	maxScore = 300
	// maxDispersion caps the variance-to-mean ratio of a count.
	maxDispersion = 1e4
)

// stat is one feature's running statistics. What a and b hold depends on
// the feature's kind:
//
//	Count: a = level (for Calls, deseasonalised), b = dispersion: the
//	       running mean of squared Pearson residuals, i.e. variance/mean
//	Share: a = running mean of the count, b = running mean of Calls;
//	       the rate is a/b
//	Bytes: a = mean of the log1p value; b = its variance, for per-call
//	       sums times the window's calls (see sizeVar)
type stat struct {
	a, b float32
}

// Model is one agent's (or one peer group's) baseline. The zero value is an
// empty model. A Model is a compact value with no pointers (SizeBytes), so
// it can be copied by assignment. It is not safe for concurrent use.
type Model struct {
	// n counts trained windows (sum of weights, not decayed).
	n float64
	// wS and wL are the decayed sums of weights behind short and long: the
	// effective number of windows each level stands on.
	wS, wL float32
	short  [nf]stat
	long   [nf]stat
	// season is the log factor of expected Calls per slot, times
	// seasonScale.
	season [features.SlotsPerWeek]int16
	// active counts trained windows per slot, halved when one is full.
	active [features.SlotsPerWeek]uint16
	// ev is the sequential tests' state (Accumulate).
	ev evidence
	// cal summarises the agent's own window scores (LearnScore).
	cal calib
}

// SizeBytes is the in-memory size of a Model, for memory accounting: its
// fields, padded to a multiple of 8 bytes.
const SizeBytes = (8 + 4 + 4 + 2*nf*8 + features.SlotsPerWeek*2 + features.SlotsPerWeek*2 + (evidenceSize+7)&^7 + calibSize + 7) &^ 7

// Windows returns the number of active windows the model has trained on,
// each counted with its weight and rounded. Inherit resets it to 0.
func (m *Model) Windows() int {
	return int(min(m.n+0.5, math.MaxInt32))
}

// Inherit makes m a cold-start copy of peer: peer's levels, dispersions,
// seasonal profile and (scaled down) activity profile, standing on the
// weight of only a few dozen windows so that the agent's own windows soon
// dominate. Windows() becomes 0, so warm-up counts the agent's own windows.
func (m *Model) Inherit(peer *Model) {
	*m = *peer
	m.n = 0
	// The wall-clock rates and tests are the agent's own from the start.
	m.ev = evidence{}
	m.cal = calib{}
	m.wS = min(m.wS, inheritWeight)
	m.wL = min(m.wL, inheritWeight)
	var mx uint16
	for _, c := range m.active {
		mx = max(mx, c)
	}
	if mx > inheritActivity {
		for s, c := range m.active {
			m.active[s] = uint16(uint32(c) * inheritActivity / uint32(mx))
		}
	}
}

// seasonFactor returns the Calls seasonal factor of slot s.
func (m *Model) seasonFactor(s int) float64 {
	return math.Exp(float64(m.season[s]) / seasonScale)
}

// slotUncertainty returns the relative variance of feature id's seasonal
// factor in slot s: 1/(windows seen in the slot + 1) for Calls, 0 for
// features without a seasonal factor. A count with expectation e is scored
// with variance-to-mean ratio phi + tau·e, so an hour the agent has rarely
// been active in is judged leniently (its first windows are about as wide
// as a geometric distribution) instead of locking out everything it does
// there.
func (m *Model) slotUncertainty(id features.ID, s int) float64 {
	if id != features.Calls {
		return 0
	}
	return 1 / (float64(m.active[s]) + 1)
}

// clean returns v[id] as a usable non-negative finite number.
func clean(v *features.Vector, id features.ID) float64 {
	x := v[id]
	if !(x > 0) { // also NaN
		return 0
	}
	return min(x, math.MaxFloat32/4)
}

// sizeCalls returns how many calls size feature id averages over in v,
// and false when the window says nothing about it. Request bytes are
// summed over write calls and judged per write call: reads carry no body,
// so averaging over all calls would make any write by a read-mostly agent
// look like a huge upload.
func sizeCalls(id features.ID, v *features.Vector) (float64, bool) {
	calls := clean(v, features.Calls)
	switch id {
	case features.RespBytesMax:
		return 1, calls >= 1
	case features.ReqBytes:
		// The detector sums request bytes over write calls only. A window
		// whose writes carried no body at all (DELETEs, gateways that do
		// not log request size) says nothing about upload sizes.
		w := clean(v, features.WriteCalls)
		return w, w >= 1 && clean(v, id) > 0
	}
	return calls, calls >= 1
}

// logSize returns a size feature on the scale it is modelled on: log1p of
// bytes per call (n calls, from sizeCalls) for sums, log1p of the value
// for RespBytesMax.
func logSize(id features.ID, x, n float64) float64 {
	if perCall(id) && n >= 1 {
		x /= n
	}
	return math.Log1p(x)
}

// unseenSize marks a size statistic with no observation yet (a log size is
// never negative); it scores nothing. priorLogVar is the variance a size
// starts with at its first observation: a factor of e per standard
// deviation, learnt down from there.
var unseenSize = stat{-1, 0}

const priorLogVar = 1

// perCall reports whether size feature id is a per-call average (a sum
// divided by calls) rather than a single value.
func perCall(id features.ID) bool {
	return id != features.RespBytesMax
}

// sizeVar returns the variance of a size feature's log value in a window of
// the given calls, from the stored variance b and the typical calls per
// window typical. A per-call average of n calls varies like σ²/n plus a
// window-to-window part; b is learnt as the mean of d²·n, so b/min(n,
// typical) never understates either part: busy windows are not judged by
// the spread of quiet ones, nor quiet ones by the spread of busy ones.
func sizeVar(id features.ID, b, calls, typical float64) float64 {
	if !perCall(id) {
		return b
	}
	return b / min(max(calls, 1), max(typical, 1))
}

// sizeWeight is the factor a per-call size's squared deviation is learnt
// with: the window's calls, capped so one huge burst cannot swamp it.
func sizeWeight(id features.ID, calls, typical float64) float64 {
	if !perCall(id) {
		return 1
	}
	return min(max(calls, 1), 4*max(typical, 1))
}

// countSD is the standard deviation used to winsorise a count with
// expectation e and dispersion phi; the +1 keeps small counts from being
// clipped to fractions.
func countSD(e, phi float64) float64 {
	return math.Sqrt(max(phi, 1)*e + 1)
}

// shareRate returns the rate held by st, floored at minRate.
func shareRate(st stat, minRate float64) float64 {
	if st.b <= 0 {
		return minRate
	}
	return min(max(float64(st.a)/float64(st.b), minRate), 1-1e-9)
}

// Update trains m on one active window starting at startMs (Unix ms) with
// feature values v and training weight weight: 1 for a normal window,
// p.AnomalousWeight for one scored anomalous. A weight of 0 (or below, or
// NaN) leaves m unchanged. Update does not allocate.
func (m *Model) Update(p *Params, startMs int64, v *features.Vector, weight float64) {
	if !(weight > 0) {
		return
	}
	weight = min(weight, 1e6)
	slot := features.Slot(startMs)
	first := m.wS <= 0
	m.n += weight
	m.wS = float32(float64(m.wS)*math.Exp2(-weight/p.HalfLife) + weight)
	m.wL = float32(float64(m.wL)*math.Exp2(-weight/p.LongHalfLife) + weight)
	aS := min(weight/float64(m.wS), 1)
	aL := min(weight/float64(m.wL), 1)
	calls := clean(v, features.Calls)
	f := m.seasonFactor(slot)

	if first {
		for i := range nf {
			id := features.ID(i)
			x := clean(v, id)
			var st stat
			switch id.Kind() {
			case features.Count:
				if id == features.Calls {
					x /= f
				}
				st = stat{float32(x), 1}
			case features.Share:
				st = stat{float32(min(x, calls)), float32(calls)}
			case features.Bytes:
				st = unseenSize
				if n, ok := sizeCalls(id, v); ok {
					st = stat{float32(logSize(id, x, n)), priorLogVar}
				}
			}
			m.short[i], m.long[i] = st, st
		}
		m.bumpActivity(slot, weight)
		return
	}

	// The seasonal factor learns from the expectation before this window.
	eCalls := max(float64(m.short[features.Calls].a)*f, p.MinMean)
	typical := float64(m.short[features.Calls].a)
	for i := range nf {
		id := features.ID(i)
		x := clean(v, id)
		switch id.Kind() {
		case features.Count:
			scale := 1.0
			if id == features.Calls {
				scale = f
			}
			r2 := 0.0
			m.short[i], r2 = updateCount(m.short[i], x, scale, aS, p, m.slotUncertainty(id, slot))
			lb := m.long[i].b
			m.long[i], _ = updateCount(m.long[i], x, scale, aL, p, m.slotUncertainty(id, slot))
			m.long[i].b = refNoise(lb, r2, max(float64(lb), 1), aL)
		case features.Share:
			k := min(x, calls)
			m.short[i] = updateShare(m.short[i], k, calls, aS, p)
			m.long[i] = updateShare(m.long[i], k, calls, aL, p)
		case features.Bytes:
			n, ok := sizeCalls(id, v)
			if !ok {
				continue
			}
			y := logSize(id, x, n)
			if m.short[i] == unseenSize || m.long[i] == unseenSize {
				// First observation of this size: start wide, so the next
				// few are not judged by a spread nobody has measured.
				m.short[i], m.long[i] = stat{float32(y), priorLogVar}, stat{float32(y), priorLogVar}
				continue
			}
			wd := sizeWeight(id, n, typical)
			d2 := 0.0
			m.short[i], d2 = updateSize(m.short[i], id, y, n, typical, wd, aS, p)
			lb := m.long[i].b
			m.long[i], _ = updateSize(m.long[i], id, y, n, typical, wd, aL, p)
			m.long[i].b = refNoise(lb, d2*wd, max(float64(lb), p.MinLogScale*p.MinLogScale), aL)
		}
	}

	// Seasonal factor of this slot: a multiplicative step towards the
	// observed/expected ratio (clipped), fast while the slot is new.
	ratio := min(max(calls/eCalls, 1.0/8), 8)
	eta := min(weight*max(1/(float64(m.active[slot])+1), p.SeasonRate), 1)
	g := float64(m.season[slot]) + seasonScale*math.Log1p(eta*(ratio-1))
	m.season[slot] = int16(min(max(math.Round(g), math.MinInt16), math.MaxInt16))
	m.bumpActivity(slot, weight)
	m.normaliseSeason()
}

// updateCount is one robust exponentially weighted step of a count's level
// and dispersion with rate a, winsorised at Clip standard deviations. scale
// is the seasonal factor (1 except for Calls), tau the slot uncertainty
// (slotUncertainty). It also returns the squared Pearson residual learnt.
func updateCount(st stat, x, scale, a float64, p *Params, tau float64) (stat, float64) {
	e := max(float64(st.a)*scale, p.MinMean)
	sd := countSD(e, float64(st.b)+tau*e)
	xc := min(max(x, e-p.Clip*sd), e+p.Clip*sd)
	r2 := (xc - e) * (xc - e) / e
	level := float64(st.a) + a*(xc/scale-float64(st.a))
	disp := float64(st.b) + a*(r2-float64(st.b))
	return stat{float32(max(level, 0)), float32(min(max(disp, 0), maxDispersion))}, r2
}

// refNoise is one step of the reference's noise b (a count's dispersion, a
// size's variance) with rate a towards the squared residual r2 of the
// short-term model, clipped at 4·floor (two standard deviations). So the
// noise a ramp adds (the short-term level lags behind it) widens the
// reference only slowly, while ordinary noise is learnt with little bias.
func refNoise(b float32, r2, floor, a float64) float32 {
	r2 = min(r2, 4*floor)
	return float32(min(max(float64(b)+a*(r2-float64(b)), 0), maxDispersion))
}

// updateShare is one robust step of a share's running count and calls.
func updateShare(st stat, k, n, a float64, p *Params) stat {
	r := shareRate(st, p.MinRate)
	hi := n*r + p.Clip*math.Sqrt(n*r*(1-r)+1)
	kc := min(k, hi)
	return stat{
		float32(float64(st.a) + a*(kc-float64(st.a))),
		float32(float64(st.b) + a*(n-float64(st.b))),
	}
}

// updateSize is one robust exponentially weighted Welford step of a log
// size's mean and variance, winsorised at Clip standard deviations; wd is
// the sizeWeight of the squared deviation. It also returns the squared
// (winsorised) deviation from the mean before the step.
func updateSize(st stat, id features.ID, y, calls, typical, wd, a float64, p *Params) (stat, float64) {
	mu := float64(st.a)
	sd := max(math.Sqrt(sizeVar(id, float64(st.b), calls, typical)), p.MinLogScale)
	m, v, d2 := welford(mu, float64(st.b), y, sd, a, p.Clip, wd)
	return stat{float32(m), float32(v)}, d2
}

// bumpActivity counts a trained window in slot s. A window counts when its
// weight is at least one half, so down-weighted anomalous windows do not
// teach the model new hours.
func (m *Model) bumpActivity(s int, weight float64) {
	if weight < 0.5 {
		return
	}
	if m.active[s] >= activityCap-1 {
		for i := range m.active {
			m.active[i] /= 2
		}
	}
	m.active[s]++
}

// normaliseSeason keeps the activity-weighted mean of the seasonal log
// factors at 0 by moving any common offset into the Calls levels, so the
// factors cannot wander off together.
func (m *Model) normaliseSeason() {
	var sum, wsum float64
	for s, c := range m.active {
		sum += float64(c) * float64(m.season[s])
		wsum += float64(c)
	}
	if wsum == 0 {
		return
	}
	mean := math.Round(sum / wsum)
	if math.Abs(mean) < seasonScale/64 {
		return
	}
	for s, c := range m.active {
		if c > 0 { // an unseen slot stays at the average, factor 1
			m.season[s] = int16(min(max(float64(m.season[s])-mean, math.MinInt16), math.MaxInt16))
		}
	}
	// Only the short-term level absorbs the offset: the reference keeps its
	// level, so a ramp learnt by the seasonal factors cannot leak into it.
	m.short[features.Calls].a *= float32(math.Exp(mean / seasonScale))
}

// SlotActivity returns how many active windows the model has trained in
// the seasonal slot of startMs, and in its busiest slot (both decayed the
// same way). The detector's off-hours rule compares them.
func (m *Model) SlotActivity(startMs int64) (slot, busiest float64) {
	var mx uint16
	for _, c := range m.active {
		mx = max(mx, c)
	}
	return float64(m.active[features.Slot(startMs)]), float64(mx)
}

// HourLoad describes the seasonal slot of startMs for the detector's
// off-hours rule: perWindow is the expected calls in an active window of
// the slot, dispersion the calls' variance-to-mean ratio, and load and
// busiest are expected calls times active windows counted, for this slot
// and for the busiest one (their ratio says how quiet the hour is).
func (m *Model) HourLoad(startMs int64) (perWindow, dispersion, load, busiest float64) {
	level := float64(m.short[features.Calls].a)
	// The busiest slot without a math.Exp for every slot: a slot whose
	// windows times the largest factor of any active slot cannot beat the
	// best so far is skipped (rounding is monotone, so the maximum is the
	// same as computing every slot's).
	var top int16 = math.MinInt16
	for s, c := range m.active {
		if c > 0 {
			top = max(top, m.season[s])
		}
	}
	upper := level * math.Exp(float64(top)/seasonScale)
	for s, c := range m.active {
		if c == 0 || upper*float64(c) <= busiest {
			continue
		}
		busiest = max(busiest, level*m.seasonFactor(s)*float64(c))
	}
	s := features.Slot(startMs)
	perWindow = level * m.seasonFactor(s)
	return perWindow, min(max(float64(m.short[features.Calls].b), 1), maxDispersion), perWindow * float64(m.active[s]), busiest
}

// LogUpperTail returns ln P(X >= k) for a count X with mean mean and
// variance-to-mean ratio dispersion: negative binomial, or Poisson when
// dispersion is 1 or less.
func LogUpperTail(k, mean, dispersion float64) float64 {
	mean = max(mean, 1e-9)
	if dispersion <= 1 {
		return lnPoissonTail(k, mean)
	}
	return lnNegBinTail(k, mean, min(dispersion, maxDispersion))
}
