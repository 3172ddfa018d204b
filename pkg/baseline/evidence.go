package baseline

import (
	"math"

	"github.com/agentwatch/agentwatch/pkg/features"
)

// Accumulating evidence: sequential tests (one-sided CUSUMs) that add up
// small excesses over many windows, for the low-and-slow case no single
// window shows. See Accumulate and docs/detection.md.

// The tests, each a one-sided CUSUM of log-likelihood ratios.
const (
	// testCallsFast: calls per minute of wall time at ExcessRatio times
	// the expected rate, against the expected rate (about an hour).
	testCallsFast = iota
	// testCallsSlow: the same at SlowExcessRatio (about a day).
	testCallsSlow
	// testBytes: response bytes per call at ExcessRatio times the usual.
	testBytes
	numTests
)

const (
	// evHourMs is an hour in Unix ms.
	evHourMs = 3_600_000
	// maxGapHours bounds the idle gap walked hour by hour; a longer gap
	// ends any episode and ages the rates as whole weeks.
	maxGapHours = 7 * 24
	// rateMemory is the most minutes a slot's rate averages over (then it
	// forgets exponentially): about a week of a weekday hour. Shorter is
	// noisier; longer keeps a lasting change an excess for longer.
	rateMemory = 300
	// rateMinMinutes is how many minutes of a slot the rate profile must
	// have learnt before the calls tests use it there: three days.
	rateMinMinutes = 180
	// levelMemory is the memory, in minutes, of the recent level
	// (evidence.recentObs): a day.
	levelMemory = 1440
	// quietMemory is the memory, in minutes, of the quiet test; below
	// quietRatio of the calls expected over it (and with at least
	// quietMinExpected expected) the slots do not learn.
	quietMemory      = 120
	quietRatio       = 0.4
	quietMinExpected = 10
	// minRate is the least expected calls per minute the calls tests use,
	// so that a slot the agent has (almost) never called in does not make
	// every call evidence.
	minRate = 1e-3
)

// evidence is a Model's sequential-test state: a wall-clock rate profile
// and the open episode's CUSUMs and sums. The zero value is empty.
type evidence struct {
	// rate is the expected calls per minute of wall time in each seasonal
	// slot, idle minutes included; seen counts the minutes learnt into
	// it, up to rateMemory.
	rate [features.SlotsPerWeek]float32
	seen [features.SlotsPerWeek]uint16
	// size is each slot's log factor of response bytes per call over the
	// model's (unseasonal) level, times seasonScale: a nightly batch job's
	// answers may be larger than the same agent's daytime ones.
	size [features.SlotsPerWeek]int16
	// recentObs and recentExp are the calls observed and expected by the
	// slots' rates over about the last day (decayed per minute with
	// levelMemory): their ratio, when above 1, scales every slot's rate,
	// so a lasting rise learnt in the hours it began in is expected in the
	// others too (a doubling on a Monday is not news on Saturday).
	recentObs, recentExp float32
	// quietObs and quietExp are the same over about two hours
	// (quietMemory): while the calls of those hours are far below what
	// the slots expected (a holiday, an outage upstream of the agent),
	// the slots do not learn (see learning).
	quietObs, quietExp float32
	// s are the CUSUM statistics, in nats, indexed by test.
	s [numTests]float32
	// obs and exp are the calls observed and expected since the episode
	// began; bytes the response bytes observed; sizeDev and sizeN the
	// call-weighted sum of log size excess (log bytes per call over the
	// usual) and its weight; base the calls expected by the slots' rates
	// alone (times the peers' factor, without the recent level), for the
	// page's level (see repeats).
	obs, exp, bytes, sizeDev, sizeN, base float32
	// lastEnd is the end of the last window accumulated (Unix ms), 0 for
	// none; since the start of the open episode (0: none); alarmAt the
	// start of the window that raised its alarm (0: not raised).
	lastEnd, since, alarmAt int64
	// paged is the start of the window that last raised an alarm (0:
	// never); pagedCalls and pagedSize the level of that page: its
	// episode's obs over base and response bytes per call. See page.
	paged                 int64
	pagedCalls, pagedSize float32
}

// Excess is the sequential tests' verdict on one window. It is a plain
// value.
type Excess struct {
	// Open reports that a test stands above ExcessMargin of its
	// threshold: the window is part of a possible sustained excess and
	// should train with at most Weight.
	Open bool
	// Weight is the most the window may train the baseline with: 1, or
	// ExcessGuardWeight while a test is open and has not alarmed.
	Weight float64
	// Alarm reports that this window took a test over its threshold for
	// the first time in the episode: raise one anomaly. Later windows of
	// the same episode do not alarm again.
	Alarm bool
	// SinceMs is the start of the episode (the last minute every test
	// stood at zero), 0 when none is open.
	SinceMs int64
	// Calls and ExpectedCalls are the calls observed and expected since
	// SinceMs, idle minutes counted; Bytes the response bytes observed.
	Calls, ExpectedCalls, Bytes float64
	// CallsRatio is Calls/ExpectedCalls; SizeRatio the geometric mean of
	// bytes per call over the usual; BytesRatio their product, the
	// response bytes over the usual.
	CallsRatio, SizeRatio, BytesRatio float64
	// Evidence is each test's statistic over its threshold (1 at the
	// threshold), indexed calls-fast, calls-slow, bytes.
	Evidence [numTests]float64
}

// leak is each test's horizon, in minutes of wall time: its statistic
// decays by e every that many minutes, so that what it adds up is the
// last few hours (or day) and weak evidence left over from yesterday
// evening cannot meet this morning's. A sustained excess gains far faster
// than this loses.
var leak = [numTests]float64{180, 1440, 180}

// pageHoldOffMs is how long after a page a new episode pages only if its
// calls, or its response bytes per call, are at least ExcessRatio times
// the level of that page: a week.
const pageHoldOffMs = 7 * 24 * evHourMs

// minEvidence is the statistic, in nats, below which a leaking test
// counts as back at zero.
const minEvidence = 0.05

// ExcessTests names the tests of Excess.Evidence, in order.
var ExcessTests = [numTests]string{"calls_hour", "calls_day", "response_bytes"}

// thresholds returns each test's decision level in nats.
func (p *Params) thresholds() [numTests]float64 {
	return [numTests]float64{p.ExcessThreshold, p.SlowExcessThreshold, p.ExcessThreshold}
}

// ratios returns each calls test's alternative rate ratio.
func (p *Params) ratios() [2]float64 {
	return [2]float64{p.ExcessRatio, p.SlowExcessRatio}
}

// Accumulate runs the sequential tests on the window starting at startMs
// (Unix ms, windows windowMs wide) with feature values v, and learns the
// wall-clock rate profile. Call it once per active window of the agent, in
// time order, before Update, and train with at most the returned Weight.
// test false (a model still warming up, or the agent scored against its
// peer group) only learns: the tests stand still and nothing alarms.
// anomalousWeight is the weight the caller gives the window otherwise (the
// short-term score's poisoning guard), so that the rate profile is guarded
// the same way. peers is the agent's peer group's recent ratio of calls
// over their own expectations (PeersRatio of the group's model; 1 or less
// for none): the tests expect the agent's own rate times it (at most
// ExcessRatio), so that a change that lifts every agent of the group (a
// route rolled out to the whole role, the day after a holiday) is not
// each agent's excess. With ExcessThreshold 0 the tests are off and
// Weight is 1. Accumulate does not allocate.
func (m *Model) Accumulate(p *Params, startMs, windowMs int64, v *features.Vector, test bool, anomalousWeight, peers float64) Excess {
	ev := &m.ev
	ex := Excess{Weight: 1}
	if windowMs <= 0 {
		return ex
	}
	f := peerFactor(p, peers)
	on := test && p.ExcessThreshold > 0 && m.wS > 0
	h := p.thresholds()
	phi := 1.0
	if m.wS > 0 {
		phi = min(max(float64(m.short[features.Calls].b), 1), maxDispersion)
	}

	// Idle minutes since the last window: no calls, each of them evidence
	// against an excess of calls. They train the rates with the weight the
	// open episode's windows get: learning its quiet minutes at full
	// weight and its busy ones at the guard's would pull the expected rate
	// down, and keep the episode open for ever.
	if ev.lastEnd != 0 && startMs > ev.lastEnd {
		iw := 1.0
		if ev.guarding(p, h) {
			iw = p.ExcessGuardWeight
		}
		m.idle(p, ev.lastEnd, startMs, windowMs, phi, on, iw, f)
	} else if ev.lastEnd != 0 && startMs < ev.lastEnd {
		// Out of order (a restored state replaying): learn nothing twice.
		return ex
	}
	ev.lastEnd = startMs + windowMs
	ev.decay(float64(windowMs) / 60_000)

	slot := features.Slot(startMs)
	calls := clean(v, features.Calls)
	lambda := m.rateAt(startMs) * f
	if on && ev.seen[slot] >= rateMinMinutes {
		for j, rho := range p.ratios() {
			inc := (calls*math.Log(rho) - (rho-1)*lambda) / phi
			ev.s[j] = float32(max(float64(ev.s[j])+min(inc, h[j]/p.ExcessMinWindows), 0))
		}
	}
	sizeDev, n, raw := m.sizeStep(p, v, slot, h[testBytes], on)
	if on && ev.open() {
		if ev.since == 0 {
			ev.since = startMs
		}
		ev.obs += float32(calls)
		ev.exp += float32(lambda)
		ev.base += float32(lambda / ev.level())
		ev.bytes += float32(clean(v, features.RespBytes))
		ev.sizeDev += float32(sizeDev)
		ev.sizeN += float32(n)
	} else {
		ev.endEpisode()
	}

	if ev.since != 0 {
		ex.SinceMs = ev.since
		ex.Calls, ex.ExpectedCalls, ex.Bytes = float64(ev.obs), float64(ev.exp), float64(ev.bytes)
		ex.CallsRatio = ex.Calls / max(ex.ExpectedCalls, minRate)
		ex.SizeRatio = 1
		if ev.sizeN > 0 {
			ex.SizeRatio = math.Exp(float64(ev.sizeDev) / float64(ev.sizeN))
		}
		ex.BytesRatio = ex.CallsRatio * ex.SizeRatio
		over := false
		for j := range numTests {
			ex.Evidence[j] = float64(ev.s[j]) / h[j]
			over = over || ex.Evidence[j] >= 1
			ex.Open = ex.Open || ex.Evidence[j] > p.ExcessMargin
		}
		switch {
		case over && ev.alarmAt == 0:
			ev.alarmAt = startMs
			// Within a week of a page, only calls or bytes per call at
			// ExcessRatio times the level of that page page again: what
			// is left of a lasting change the baseline is still learning
			// (a new hour of the week, the day after a holiday, a new mix
			// of routes) has been told already, an escalation has not. A
			// held-back episode still counts as alarmed, so that the
			// baseline learns on; it pages later if it grows into an
			// escalation (below).
			ex.Alarm = ev.page(p, startMs)
		case ev.alarmAt != 0:
			if ev.paged < ev.alarmAt {
				ex.Alarm = ev.page(p, startMs)
			}
			// Told once: cap the statistics at their thresholds, so that
			// once the baseline has learnt a lasting change they fall
			// back; when all are below their margins the episode ends and
			// the tests re-arm (from where they stand).
			low := true
			for j := range numTests {
				ev.s[j] = float32(min(float64(ev.s[j]), h[j]))
				low = low && float64(ev.s[j]) <= p.ExcessMargin*h[j]
			}
			if low {
				ev.endEpisode()
			}
		}
	}
	// The poisoning guard: while a test is open and has not alarmed, the
	// window trains with a small weight. After the alarm (the analyst has
	// been told) it trains normally, so a lasting benign change is learnt.
	if ex.Open && ev.alarmAt == 0 {
		ex.Weight = p.ExcessGuardWeight
		if ex.Weight < 0.5 && anomalousWeight >= 0.5 {
			// The guard holds the levels back, not the hours: the window
			// still counts as activity in its slot (Update counts only
			// windows of weight one half or more), or the quiet-hours
			// rule would take the agent's own busy hour for a quiet one.
			m.bumpActivity(slot, 1)
		}
	}
	wt := min(ex.Weight, anomalousWeight)
	// The slot learns the calls over the recent level, the level the calls
	// over the slot's rate: a lasting rise is then learnt by the level, in
	// about a day, for every hour of the week at once.
	lv := ev.level()
	quiet := ev.quiet()
	ev.learnLevel(1, calls, float64(ev.rate[slot]), min(max(wt, 0), 1))
	if !quiet {
		m.learnRate(slot, calls/lv, wt)
	}
	if sw := min(anomalousWeight, 1); n > 0 && sw > 0 {
		// The slot's size factor follows the window's log size excess. It
		// is not held back by the tests' guard: it learns slowly anyway
		// (a two-hundredth a window), and held back it would keep a job
		// whose answers are always larger at night an excess for ever.
		a := max(1/(float64(m.active[slot])+1), 1.0/200) * sw
		g := float64(ev.size[slot]) + seasonScale*a*(raw-float64(ev.size[slot])/seasonScale)
		ev.size[slot] = int16(min(max(math.Round(g), math.MinInt16), math.MaxInt16))
	}
	return ex
}

// page decides whether the open episode, alarmed, pages at startMs (see
// repeats), and records the page if so. The episode's level is its calls
// over what the slots' rates expected without the recent level (times the
// peers' factor: a doubling for good reads 2 whether or not the recent
// level has learnt it yet) and its response bytes per call.
func (ev *evidence) page(p *Params, startMs int64) bool {
	calls := ratio(ev.obs, ev.base)
	size := 0.0
	if ev.obs > 0 {
		size = float64(ev.bytes) / float64(ev.obs)
	}
	if ev.repeats(p, startMs, calls, size) {
		return false
	}
	ev.paged, ev.pagedCalls, ev.pagedSize = startMs, float32(calls), float32(size)
	return true
}

// repeats reports whether an alarm at startMs whose calls are calls times
// the agent's profile and whose response bytes per call are size repeats
// the last page: it falls within pageHoldOffMs of it, and neither is at
// least ExcessRatio times that page's.
func (ev *evidence) repeats(p *Params, startMs int64, calls, size float64) bool {
	if ev.paged == 0 || startMs-ev.paged >= pageHoldOffMs {
		return false
	}
	more := calls >= p.ExcessRatio*float64(ev.pagedCalls) ||
		(ev.pagedSize > 0 && size >= p.ExcessRatio*float64(ev.pagedSize))
	return !more
}

// peerFactor is the factor on the agent's expected rate that its peers'
// ratio gives: the ratio, from 1 (peers at or below their usual) to
// ExcessRatio (a group that rose more still leaves an agent at twice the
// group's level an excess).
func peerFactor(p *Params, peers float64) float64 {
	if !(peers > 1) {
		return 1
	}
	return min(peers, p.ExcessRatio)
}

// rateAt returns the expected calls per minute at startMs: its slot's
// rate, or more where the neighbouring hour's is higher and startMs is
// near it (linear interpolation between the hours' middles). A ramp (a
// nightly job starting at one, a business day ending) does not follow the
// hours: without this, the last minutes before a busy hour would look like
// an excess of the quiet one.
func (m *Model) rateAt(startMs int64) float64 {
	ev := &m.ev
	slot := features.Slot(startMs)
	r := float64(ev.rate[slot])
	pos := float64(((startMs%evHourMs)+evHourMs)%evHourMs)/evHourMs - 0.5 // -0.5..0.5 around the middle
	next := startMs + evHourMs
	if pos < 0 {
		next = startMs - evHourMs
	}
	w := math.Abs(pos)
	if n := float64(ev.rate[features.Slot(next)]); n > r {
		r = (1-w)*r + w*n
	}
	return max(r*ev.level(), minRate)
}

// level is the recent level's factor on the slots' rates: observed over
// expected calls of about the last day, never below 1 (a quiet day must
// not make the next ordinary one look like an excess).
func (ev *evidence) level() float64 {
	return max(ratio(ev.recentObs, ev.recentExp), 1)
}

// quiet reports whether the last two hours or so fell far short of what
// the slots expected: then the slots do not learn, so that a holiday or an
// outage is not learnt as the usual of the hours it fell on (the next
// ordinary day would look like an excess). A lasting fall to less than
// quietRatio of the usual is therefore never learnt by the slots: the
// tests keep expecting more, which makes them less sensitive, never
// noisier.
func (ev *evidence) quiet() bool {
	return ev.quietExp >= quietMinExpected && float64(ev.quietObs) < quietRatio*float64(ev.quietExp)
}

// ratio is o/e, or 1 when nothing was expected.
func ratio(o, e float32) float64 {
	if !(e > 0) {
		return 1
	}
	return float64(o) / float64(e)
}

// learnLevel decays the recent levels by k minutes and adds calls
// observed and expected (by the slot's rate, before the level) with
// weight. While quiet (see quiet) the day's level stands still, like the
// slots: a holiday must not make the agent forget a rise it had learnt
// before it (a doubling learnt on Tuesday is still expected on the Friday
// after a Thursday holiday).
func (ev *evidence) learnLevel(k, calls, expected, weight float64) {
	if !ev.quiet() {
		d := math.Pow(1-1.0/levelMemory, k)
		ev.recentObs = float32(float64(ev.recentObs)*d + weight*calls)
		ev.recentExp = float32(float64(ev.recentExp)*d + weight*expected)
	}
	d := math.Pow(1-1.0/quietMemory, k)
	ev.quietObs = float32(float64(ev.quietObs)*d + weight*calls)
	ev.quietExp = float32(float64(ev.quietExp)*d + weight*expected)
}

// guarding reports whether the episode's windows train with the guard's
// weight: a test stands above its margin and the alarm has not been
// raised.
func (ev *evidence) guarding(p *Params, h [numTests]float64) bool {
	if ev.alarmAt != 0 {
		return false
	}
	for j, s := range ev.s {
		if float64(s) > p.ExcessMargin*h[j] {
			return true
		}
	}
	return false
}

// decay applies the tests' leak over the given minutes.
func (ev *evidence) decay(minutes float64) {
	for j := range ev.s {
		if ev.s[j] > 0 {
			ev.s[j] = float32(float64(ev.s[j]) * math.Exp(-minutes/leak[j]))
			if ev.s[j] < minEvidence {
				ev.s[j] = 0 // gone: let the episode end
			}
		}
	}
}

// open reports whether any test stands above zero.
func (ev *evidence) open() bool {
	for _, s := range ev.s {
		if s > 0 {
			return true
		}
	}
	return false
}

// endEpisode clears the episode's sums and re-arms the alarm.
func (ev *evidence) endEpisode() {
	ev.since, ev.alarmAt = 0, 0
	ev.obs, ev.exp, ev.bytes, ev.sizeDev, ev.sizeN, ev.base = 0, 0, 0, 0, 0, 0
}

// sizeTestMinSD is the least standard deviation, in natural-log units,
// the bytes test gives a window's log bytes per call: the model's own
// floor (MinLogScale) suits one window, but a test that adds windows up
// would turn a small lasting misfit of the hour's usual size into
// evidence.
const sizeTestMinSD = 0.35

// sizeStep is the bytes test's step on v (when on): a Gaussian
// log-likelihood ratio of log bytes per call at ln(ExcessRatio) above the
// usual for the slot against that usual, winsorised like training and
// capped per window. It returns the window's log size excess over the
// slot's usual times its calls, and its calls, for the episode's size
// ratio, and the excess over the model's unseasonal level, which the
// slot's factor learns (0, 0, 0 when the window says nothing about sizes).
func (m *Model) sizeStep(p *Params, v *features.Vector, slot int, h float64, on bool) (dev, n, raw float64) {
	const id = features.RespBytes
	st := m.short[id]
	n, ok := sizeCalls(id, v)
	if !ok || st == unseenSize || m.wS <= 0 {
		return 0, 0, 0
	}
	vr := max(sizeVar(id, float64(st.b), n, float64(m.short[features.Calls].a)), p.MinLogScale*p.MinLogScale, sizeTestMinSD*sizeTestMinSD)
	sd := math.Sqrt(vr)
	mu := float64(st.a)
	ref := mu + float64(m.ev.size[slot])/seasonScale
	y := logSize(id, clean(v, id), n)
	raw = min(max(y, mu-p.Clip*sd), mu+p.Clip*sd) - mu
	y = min(max(y, ref-p.Clip*sd), ref+p.Clip*sd)
	if on {
		delta := math.Log(p.ExcessRatio)
		inc := delta * (y - ref - delta/2) / vr
		m.ev.s[testBytes] = float32(max(float64(m.ev.s[testBytes])+min(inc, h/p.ExcessMinWindows), 0))
	}
	return (y - ref) * n, n, raw
}

// idle applies the idle minutes from fromMs to toMs (window starts on the
// windowMs grid): each is a minute without calls, evidence against an
// excess of calls (when on) and a zero the rate profile learns; f is the
// peers' factor on the expected rate.
func (m *Model) idle(p *Params, fromMs, toMs, windowMs int64, phi float64, on bool, weight, f float64) {
	ev := &m.ev
	if toMs-fromMs > maxGapHours*evHourMs {
		// A week or more without a call: whatever was open is over. Age
		// every slot by the whole weeks, then walk the rest.
		weeks := (toMs - fromMs) / (7 * 24 * evHourMs)
		for s := range ev.rate {
			perWeek := int64(60) * 5 // a weekday hour, in minutes
			if s >= features.SlotsPerWeek/2 {
				perWeek = 60 * 2
			}
			m.idleSlot(s, float64(weeks*perWeek*60_000/windowMs))
		}
		ev.s = [numTests]float32{}
		ev.endEpisode()
		fromMs += weeks * 7 * 24 * evHourMs
	}
	r := p.ratios()
	for t := fromMs; t < toMs; {
		end := min(t-t%evHourMs+evHourMs, toMs)
		k := float64((end - t) / windowMs)
		s := features.Slot(t)
		ev.learnLevel(k, 0, float64(ev.rate[s])*k, weight)
		ev.decay(k * float64(windowMs) / 60_000)
		if on && ev.seen[s] >= rateMinMinutes && ev.open() {
			lam := max(float64(ev.rate[s])*ev.level(), minRate) * f * k
			ev.s[testCallsFast] = float32(max(float64(ev.s[testCallsFast])-(r[0]-1)*lam/phi, 0))
			ev.s[testCallsSlow] = float32(max(float64(ev.s[testCallsSlow])-(r[1]-1)*lam/phi, 0))
			ev.exp += float32(lam)
			ev.base += float32(lam / ev.level())
		}
		if !ev.quiet() {
			m.idleSlot(s, k*weight)
		}
		t = end
	}
	if !ev.open() {
		ev.endEpisode()
	}
}

// idleSlot learns k idle minutes into slot s's rate: a running mean while
// the slot has seen fewer than rateMemory minutes, then an exponential
// forgetting with that memory.
func (m *Model) idleSlot(s int, k float64) {
	ev := &m.ev
	if k <= 0 {
		return
	}
	seen := float64(ev.seen[s])
	if seen < rateMemory {
		j := min(k, rateMemory-seen)
		ev.rate[s] = float32(float64(ev.rate[s]) * seen / (seen + j))
		ev.seen[s] = uint16(seen + j)
		k -= j
	}
	if k > 0 {
		ev.rate[s] = float32(float64(ev.rate[s]) * math.Pow(1-1.0/rateMemory, k))
	}
}

// learnRate learns one active minute with calls calls into slot s's
// rate, with weight (a window trained at weight below one half moves the
// rate by that share of a minute and does not count as seen).
func (m *Model) learnRate(s int, calls, weight float64) {
	ev := &m.ev
	if !(weight > 0) {
		return
	}
	weight = min(weight, 1)
	seen := float64(ev.seen[s])
	a := 1.0 / rateMemory
	if seen < rateMemory {
		a = 1 / (seen + 1)
	}
	ev.rate[s] = float32(float64(ev.rate[s]) + weight*a*(calls-float64(ev.rate[s])))
	if weight >= 0.5 && seen < rateMemory {
		ev.seen[s]++
	}
}

// ExpectedRate returns the calls per minute of wall time the sequential
// tests expect in the seasonal slot of startMs (idle minutes counted), and
// how many minutes of that slot the estimate stands on.
func (m *Model) ExpectedRate(startMs int64) (perMinute float64, minutes int) {
	s := features.Slot(startMs)
	return float64(m.ev.rate[s]), int(m.ev.seen[s])
}
