package baseline

import (
	"errors"
	"fmt"
	"math"

	"github.com/agentwatch/agentwatch/pkg/features"
)

// SeriesParams tunes a Series. Get one from DefaultSeriesParams.
type SeriesParams struct {
	// HalfLife is the half-life of the level and scale, in points.
	HalfLife float64
	// Clip is the winsorising limit in standard deviations, as Params.Clip.
	Clip float64
	// MinRelScale is the smallest standard deviation, relative to the
	// series' typical magnitude, so a flat series is not infinitely
	// surprised by its first wiggle.
	MinRelScale float64
	// Warmup is how many points a Series needs before it scores.
	Warmup int
	// ShortPoints is how many recent points the short-term surprise
	// averages over (the evidence of a change that no single point shows).
	ShortPoints float64
	// LikelihoodHalfLife is the half-life, in points, of the long-run
	// distribution the short-term surprise is judged against.
	LikelihoodHalfLife float64
	// AnomalousWeight is the training weight of a point scored anomalous,
	// as Params.AnomalousWeight (the poisoning guard).
	AnomalousWeight float64
	// AlertScore is the reported score at or above which a point is an
	// alert: the fleet gauge pages at it.
	AlertScore float64
	// GuardScore is the Score at or above which a point is anomalous: it
	// trains with AnomalousWeight, starts the refractory period, counts
	// towards a change point and towards the series' report count. It is
	// below AlertScore so that the guard holds before a point is worth a
	// page.
	GuardScore float64
	// RecentHalfLife is the half-life, in points, of the decaying maximum
	// of recent scores that a score must top to be reported: one change is
	// one detection.
	RecentHalfLife float64
	// SettlePoints is how many points a Series learns before its scores
	// count towards the decaying maximum that later reports must top.
	SettlePoints int
	// Refractory is how many points after an anomalous report nothing is
	// reported: a change's rising scores are one detection, not a burst.
	// It is the quiet period of a series that has not reported lately;
	// ReportRefractory lengthens it for one that has.
	Refractory int
	// ReportHalfLife is the half-life, in points, of the series' count of
	// its own recent anomalous reports (after SettlePoints).
	ReportHalfLife float64
	// ReportRefractory calibrates the report rule per series: after a
	// report, a series waits Refractory × (1 + ReportRefractory × its
	// recent report count) points before it reports again. A bursty
	// series that has paged often must be quiet for longer, a smooth one
	// that never paged reports the next change as soon as before (0: the
	// same Refractory for every series).
	ReportRefractory float64
	// PredictorSlack: predictors whose residual scale is within this
	// factor of the best one's also get a say (the least surprised wins).
	PredictorSlack float64
	// ChangePoints is how many points in a row must score anomalous before
	// the series accepts a change point: the level restarts from the
	// recent values, so a lasting shift becomes the new normal instead of
	// alerting for ever (0: never). The same-time-yesterday and last-week
	// predictors start over.
	ChangePoints int
	// SeasonRate is the learning rate of an hour slot's seasonal offset.
	SeasonRate float64
	// SeasonMinPoints is how many points a slot needs before its offset is
	// used.
	SeasonMinPoints int
	// TailSurprise is where a point's surprise (-ln p) stops counting in
	// full before it is averaged: beyond it the surprise grows with its
	// logarithm (tailSurprise). A normal tail makes a burst of a bursty
	// series thousands of units surprising, and one such point would hold
	// the short-term average, and so the score, at its cap for hundreds of
	// points; compressed, a burst still scores far above any ordinary
	// point but fades with it (0: no compression).
	TailSurprise float64
	// RarityReports is the rarity bar: a series whose decaying count of
	// its own pages (anomalous reports after SettlePoints, half-life
	// RarityHalfLife) has reached it stops paging until the count decays
	// below it again; the points it holds back are Muted. A bursty or
	// sparse series that pages on every burst is muted after
	// RarityReports of them, so one threshold means the same rarity on a
	// bursty series and a smooth one; a smooth series that pages now and
	// then never reaches it (0: no bar).
	RarityReports float64
	// RarityHalfLife is the half-life, in points, of the count the rarity
	// bar is judged on. It is shorter than ReportHalfLife: the bar holds
	// only while a series pages densely, where the quiet period remembers
	// for longer.
	RarityHalfLife float64
}

// DefaultSeriesParams returns the defaults.
func DefaultSeriesParams() SeriesParams {
	return SeriesParams{
		HalfLife:           3000,
		Clip:               4,
		MinRelScale:        0.01,
		Warmup:             60,
		ShortPoints:        20,
		LikelihoodHalfLife: 800,
		AnomalousWeight:    0.1,
		AlertScore:         3,
		GuardScore:         2,
		RecentHalfLife:     2000,
		SettlePoints:       500,
		Refractory:         48,
		ReportHalfLife:     10000,
		ReportRefractory:   0.5,
		PredictorSlack:     1.2,
		SeasonRate:         0.02,
		SeasonMinPoints:    20,
		ChangePoints:       288,
		TailSurprise:       60,
		RarityReports:      8,
		RarityHalfLife:     4000,
	}
}

// Validate reports every invalid field at once.
func (p SeriesParams) Validate() error {
	var errs []error
	// One check per key, alike in shape only (like respbench's table rows).
	pos := func(name string, v float64) {
		if !(v > 0) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("%s: must be a positive number, got %g", name, v))
		}
	}
	pos("half_life", p.HalfLife)
	pos("clip", p.Clip)
	pos("min_rel_scale", p.MinRelScale)
	pos("short_points", p.ShortPoints)
	pos("likelihood_half_life", p.LikelihoodHalfLife)
	pos("alert_score", p.AlertScore)
	pos("guard_score", p.GuardScore)
	pos("season_rate", p.SeasonRate)
	pos("recent_half_life", p.RecentHalfLife)
	pos("report_half_life", p.ReportHalfLife)
	pos("rarity_half_life", p.RarityHalfLife)
	if !(p.ReportRefractory >= 0) || math.IsInf(p.ReportRefractory, 0) {
		errs = append(errs, fmt.Errorf("report_refractory: must be a number >= 0, got %g", p.ReportRefractory))
	}
	if !(p.RarityReports >= 0) || math.IsInf(p.RarityReports, 0) {
		errs = append(errs, fmt.Errorf("rarity_reports: must be a number >= 0, got %g", p.RarityReports))
	}
	if !(p.TailSurprise >= 0) || math.IsInf(p.TailSurprise, 0) {
		errs = append(errs, fmt.Errorf("tail_surprise: must be a number >= 0, got %g", p.TailSurprise))
	}
	if !(p.PredictorSlack >= 1) {
		errs = append(errs, fmt.Errorf("predictor_slack: must be at least 1, got %g", p.PredictorSlack))
	}
	if p.Warmup < 0 || p.SeasonMinPoints < 0 || p.ChangePoints < 0 || p.Refractory < 0 || p.SettlePoints < 0 {
		errs = append(errs, errors.New("warmup, season_min_points, change_points, refractory, settle_points: must not be negative"))
	}
	if p.AnomalousWeight < 0 || p.AnomalousWeight > 1 {
		errs = append(errs, fmt.Errorf("anomalous_weight: must be in [0, 1], got %g", p.AnomalousWeight))
	}
	return errors.Join(errs...)
}

// Series is the baseline of one continuous gauge sampled one point at a
// time (a latency, a utilisation, a queue length): where Model judges an
// agent's per-window counts, shares and sizes, Series judges a value that
// can be any real number. It is built from the same parts: a level and
// scale learnt by the robust exponentially weighted Welford step Model uses
// for sizes, a seasonal profile over the same 48 hour-of-week slots, the
// same tail probabilities turned into surprises and combined by the same
// Fisher/Tippett rule, and the same poisoning guard. On top it keeps a
// short-term average of the surprise judged against its own long-run
// distribution, so a series that is always noisy does not page and a
// sustained change that no single point shows does; a count of its own
// recent reports that stretches the quiet period after the next one, so a
// series that pages often pages less; and a shorter-lived count of the
// same reports that mutes a series paging on every burst (the rarity bar).
//
// The zero value is an empty Series. It is not safe for concurrent use.
type Series struct {
	n     float64
	last  float64
	level mv // of the deseasonalised value
	// res are the residual statistics of the other predictors, nRes how
	// many residuals each has learnt.
	res  [numPredictors]mv
	nRes [numPredictors]float64
	mag  float64 // typical magnitude, for the scale floor
	// season is the additive seasonal offset per hour-of-week slot.
	season [features.SlotsPerWeek]float32
	seen   [features.SlotsPerWeek]uint16
	// lagDay and lagWeek hold the newest normal value at each second of
	// the day and of the week, for the seasonal-naive predictors.
	lagDay, lagWeek map[int32]float64

	avg  float64 // short-term average of the surprise
	lik  mv      // long-run mean and variance of avg
	nLik float64

	recent float64 // decaying maximum of recent scores
	// fast is a short-term mean and variance of the deseasonalised value,
	// run the number of anomalous points in a row: a change point
	// restarts the level from fast.
	fast mv
	run  int
	// sinceReport counts points since the last anomalous report.
	sinceReport int
	// reports is the decaying count of the series' own anomalous reports
	// (half-life ReportHalfLife): how often this series pages, which
	// stretches its quiet period after the next one.
	reports float64
	// rarity counts the same reports as reports, with half-life
	// RarityHalfLife: the count the rarity bar is judged on. Muted points
	// do not count, so it decays while the series is held back.
	rarity float64
}

// The predictors a Series weighs: the seasonal level, the previous value,
// the value at the same time yesterday and a week ago. Whichever currently
// explains the series best (smallest residual variance) sets the bar, and
// a point is only as surprising as the least surprised of the predictors
// nearly as good: a daily pattern is not news to the same-time-yesterday
// predictor, a random walk's drift not to the previous-value one.
const (
	predLevel = iota
	predStep
	predDay
	predWeek
	numPredictors
)

// SeriesResult is the verdict on one point.
type SeriesResult struct {
	// Score is -log10 of the point's p-value, in [0, maxScore].
	Score float64
	// Expected is the value the best predictor expected and Scale its
	// standard deviation.
	Expected, Scale float64
	// Surprise is the point's own surprise (-ln p), before the short-term
	// average is judged.
	Surprise float64
	// Reported is Score when it tops the decaying maximum of recent
	// scores and the series has been quiet since its last anomalous
	// report (Refractory points, longer for a series that reports often:
	// ReportRefractory) and, for an anomalous point, has not paged too
	// often lately (RarityReports), else 0: one change is one detection.
	Reported float64
	// Anomalous: Score >= GuardScore.
	Anomalous bool
	// Muted: the point would have been reported as anomalous, but the
	// series has paged RarityReports times lately (its decaying count,
	// half-life RarityHalfLife) and the rarity bar held it back; Reported
	// is 0.
	Muted bool
	// ChangePoint: this point completed ChangePoints anomalous points in a
	// row and the series restarted its level from the recent values.
	ChangePoint bool
}

// Observe scores the point x at time tMs (Unix ms) against the series'
// past only, then learns it.
func (s *Series) Observe(p *SeriesParams, tMs int64, x float64) SeriesResult {
	var r SeriesResult
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return r
	}
	slot := features.Slot(tMs)
	sec := tMs / 1000
	dayKey, weekKey := int32(((sec%86400)+86400)%86400), int32(((sec%604800)+604800)%604800)
	if s.n == 0 {
		s.level = mv{x, 0}
		s.mag = math.Abs(x)
		s.last = x
		s.n = 1
		s.lagDay, s.lagWeek = map[int32]float64{dayKey: x}, map[int32]float64{weekKey: x}
		return r
	}
	off := 0.0
	if int(s.seen[slot]) >= p.SeasonMinPoints {
		off = float64(s.season[slot])
	}
	floor := p.MinRelScale*s.mag + 1e-9

	// Each predictor's residual and scale; ok says it has a prediction
	// and enough history to judge it.
	var resid, sds [numPredictors]float64
	var avail, ok [numPredictors]bool
	resid[predLevel], avail[predLevel] = x-(s.level.m+off), true
	resid[predStep], avail[predStep] = x-s.last, true
	if y, found := s.lagDay[dayKey]; found {
		resid[predDay], avail[predDay] = x-y, true
	}
	if y, found := s.lagWeek[weekKey]; found {
		resid[predWeek], avail[predWeek] = x-y, true
	}
	for k := range numPredictors {
		v := s.res[k].v
		if k == predLevel {
			v = s.level.v
		}
		sds[k] = max(math.Sqrt(v), floor)
		ok[k] = avail[k] && s.nRes[k] >= p.ShortPoints
	}

	// Two tests, combined as Model combines features: the step test
	// catches jumps and spikes; the seasonal test, the least surprised of
	// the seasonal predictors whose scale is within PredictorSlack of the
	// best one's, catches a level or a daily shape that is off for longer.
	var lnP [nf + 1]float64
	var used [nf + 1]bool
	if ok[predStep] {
		lnP[0], used[0] = twoSided((resid[predStep]-s.res[predStep].m)/sds[predStep]), true
		r.Expected, r.Scale = x-resid[predStep], sds[predStep]
	}
	best := -1
	for _, k := range seasonal {
		if ok[k] && (best < 0 || sds[k] < sds[best]) {
			best = k
		}
	}
	if best >= 0 {
		lnS := math.Inf(-1)
		for _, k := range seasonal {
			if ok[k] && sds[k] <= p.PredictorSlack*sds[best] {
				lnS = max(lnS, twoSided((resid[k]-s.resMean(k))/sds[k]))
			}
		}
		lnP[1], used[1] = lnS, true
		r.Expected, r.Scale = x-resid[best], sds[best]
	}
	r.Surprise = -combine(&lnP, &used)

	// The short-term average surprise against its own long-run
	// distribution: a series that is always jumpy is not news, a run of
	// unusual points is.
	s.avg += (tailSurprise(r.Surprise, p.TailSurprise) - s.avg) / p.ShortPoints
	scoring := s.n >= float64(p.Warmup)
	if scoring && s.nLik >= p.ShortPoints {
		z := (s.avg - s.lik.m) / math.Sqrt(max(s.lik.v, 1e-6))
		r.Score = scoreOf(lnNormalTail(z))
	}
	r.Anomalous = r.Score >= p.GuardScore
	s.recent *= math.Exp2(-1 / p.RecentHalfLife)
	s.reports *= math.Exp2(-1 / p.ReportHalfLife)
	s.rarity *= math.Exp2(-1 / p.RarityHalfLife)
	s.sinceReport++
	quiet := float64(p.Refractory) * (1 + p.ReportRefractory*s.reports)
	// The rarity bar: a series that has paged too often lately for one
	// more page to be rare is muted, and its quiet period does not start.
	report := r.Score > s.recent+1 && float64(s.sinceReport) > quiet
	r.Muted = report && r.Anomalous && p.RarityReports > 0 && s.rarity >= p.RarityReports
	if report && !r.Muted {
		r.Reported = r.Score
	}
	if report && !r.Muted && r.Anomalous {
		s.sinceReport = 0
		if s.n >= float64(p.SettlePoints) {
			s.reports++
			s.rarity++
		}
	}
	// A young model's surprises say more about the model than about the
	// series: they are reported, but do not raise the bar for later ones.
	if s.n >= float64(p.SettlePoints) {
		s.recent = max(s.recent, r.Score)
	}

	// A change point: the anomaly has lasted, so it is the new normal.
	if r.Anomalous {
		s.run++
	} else {
		s.run = 0
	}
	if p.ChangePoints > 0 && s.run >= p.ChangePoints {
		s.level = mv{s.fast.m, max(s.fast.v, s.level.v)}
		s.res[predStep].v = max(s.res[predStep].v, s.fast.v)
		// The lagged values are from before the change; kept, they would
		// be the best predictors and never stop being surprised.
		clear(s.lagDay)
		clear(s.lagWeek)
		s.nRes[predDay], s.nRes[predWeek] = 0, 0
		s.avg = s.lik.m
		s.run = 0
		r.ChangePoint = true
	}
	af := 1 / p.ShortPoints
	s.fast = s.fast.step(x-off, math.Sqrt(max(s.fast.v, 0))+floor, af, math.Inf(1))

	// Learn: anomalous points with a small weight (the poisoning guard),
	// the rest fully; fast while young so the first points set the scale.
	w := 1.0
	if r.Anomalous {
		w = p.AnomalousWeight
	}
	a := w * max(math.Ln2/p.HalfLife, 1/(s.n+1))
	s.level = s.level.step(x-off, sds[predLevel], a, p.Clip)
	s.mag += a * (math.Abs(x) - s.mag)
	for k := range numPredictors {
		if !avail[k] {
			continue
		}
		if k != predLevel {
			ak := w * max(math.Ln2/p.HalfLife, 1/(s.nRes[k]+1))
			s.res[k] = s.res[k].step(resid[k], sds[k], ak, p.Clip)
		}
		s.nRes[k]++
	}
	if scoring {
		al := w * max(math.Ln2/p.LikelihoodHalfLife, 1/(s.nLik+1))
		s.lik = s.lik.step(s.avg, math.Sqrt(max(s.lik.v, 1e-6)), al, p.Clip)
		s.nLik++
	}
	if w >= 0.5 {
		rate := max(p.SeasonRate, 1/(float64(s.seen[slot])+1))
		s.season[slot] += float32(rate * (x - s.level.m - float64(s.season[slot])))
		if s.seen[slot] < math.MaxUint16 {
			s.seen[slot]++
		}
	}
	// An anomalous value does not replace a normal one as "what this time
	// of day looks like", but it is better than nothing.
	if _, found := s.lagDay[dayKey]; w >= 0.5 || !found {
		s.lagDay[dayKey] = x
	}
	if _, found := s.lagWeek[weekKey]; w >= 0.5 || !found {
		s.lagWeek[weekKey] = x
	}
	s.last = x
	s.n++
	return r
}

// tailSurprise returns the surprise sur as the short-term average counts
// it: in full up to t, beyond it t·(1 + ln(sur/t)), which is continuous
// with a slope of 1 at t and grows only logarithmically after (t = 0: in
// full).
func tailSurprise(sur, t float64) float64 {
	if t <= 0 || sur <= t {
		return sur
	}
	return t * (1 + math.Log(sur/t))
}

// seasonal are the predictors of the seasonal test.
var seasonal = [...]int{predLevel, predDay, predWeek}

func (s *Series) resMean(k int) float64 {
	if k == predLevel {
		return 0 // the level predictor's mean is the level itself
	}
	return s.res[k].m
}

// twoSided returns ln of the two-sided normal tail of z.
func twoSided(z float64) float64 {
	return min(math.Ln2+lnNormalTail(math.Abs(z)), 0)
}

// mv is a mean and variance in full precision: a Series' values span any
// magnitude, where Model's stats are logs and counts that float32 holds.
type mv struct{ m, v float64 }

// welford is one robust exponentially weighted Welford step of mean mu and
// variance v towards y with rate a, the deviation winsorised at clip
// standard deviations sd and its square weighted wd in the variance. It
// returns the new mean and variance and the squared winsorised deviation.
// Model's size features learn with the same step (updateSize).
func welford(mu, v, y, sd, a, clip, wd float64) (float64, float64, float64) {
	d := min(max(y, mu-clip*sd), mu+clip*sd) - mu
	return mu + a*d, (1 - a) * (v + a*d*d*wd), d * d
}

func (x mv) step(y, sd, a, clip float64) mv {
	m, v, _ := welford(x.m, x.v, y, sd, a, clip, 1)
	return mv{m, v}
}
