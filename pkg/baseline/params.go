package baseline

import (
	"errors"
	"fmt"
	"math"
)

// Params tunes learning and scoring. A Params value is read-only once passed
// to a Model, so one value may be shared by any number of goroutines. Get one
// from DefaultParams and change fields; check the result with Validate.
type Params struct {
	// HalfLife is the half-life of the short-term level, in active windows
	// (600 ≈ ten hours of an agent busy every minute, or about a week of
	// one busy an hour a day).
	HalfLife float64
	// LongHalfLife is the half-life of the long-horizon reference level, in
	// active windows. It is what a slow ramp cannot drag along.
	LongHalfLife float64
	// Warmup is how many active windows an agent needs before it is scored
	// against its own model; before that the engine scores it against its
	// peer group. NewRoutes and NewIPs are not scored on a model younger
	// than this.
	Warmup int
	// AnomalousWeight is the training weight the engine gives windows
	// scored anomalous. 0 means they do not train (the poisoning guard).
	AnomalousWeight float64
	// AlertScore is the Score (-log10 of the combined p) at or above which a
	// window is anomalous. 7 means p <= 1e-7.
	AlertScore float64
	// MediumScore, HighScore and CriticalScore are the Score thresholds of
	// the severities above Low (Low starts at AlertScore).
	MediumScore, HighScore, CriticalScore float64
	// DriftFactor is how far the short-term level must have moved above the
	// long-horizon reference (as a ratio; for sizes, of bytes per call)
	// before the reference is consulted for a feature.
	DriftFactor float64
	// Clip is the winsorising limit, in standard deviations: a value
	// further than that from the level trains as if it were at the limit.
	Clip float64
	// MinMean is the smallest expected value of a count feature, so that a
	// feature that has always been zero is not infinitely surprising.
	MinMean float64
	// MinRate is the smallest rate of a share feature (e.g. the share of
	// calls denied), for the same reason.
	MinRate float64
	// MinLogScale is the smallest standard deviation of a size feature on
	// the natural-log scale (0.2 ≈ ±22%).
	MinLogScale float64
	// SeasonRate is the slowest learning rate of one hour slot's seasonal
	// factor; a slot learns faster while it has seen few windows.
	SeasonRate float64
	// OffHoursMinWindows is how many windows a model must have trained on
	// before activity in a rarely active hour slot counts as surprising.
	OffHoursMinWindows int
	// ExcessThreshold is the decision level, in nats (natural-log
	// likelihood ratio), of the sequential tests that add up a sustained
	// excess of calls at ExcessRatio times the expected rate, or of bytes
	// per call at ExcessRatio times the usual (Accumulate). 0 turns the
	// tests off.
	ExcessThreshold float64
	// ExcessRatio is the excess those tests are tuned to: 2 detects a
	// doubling within about an hour of an agent making a call a minute,
	// and anything larger sooner.
	ExcessRatio float64
	// SlowExcessRatio and SlowExcessThreshold are the calls test at the
	// day horizon: a smaller excess, more evidence.
	SlowExcessRatio, SlowExcessThreshold float64
	// ExcessMinWindows is the fewest windows that can take a test from 0
	// to its threshold: one window adds at most threshold/ExcessMinWindows,
	// so no single window, however extreme, raises a sustained excess.
	ExcessMinWindows float64
	// ExcessMargin is the share of its threshold above which a test is
	// open: its windows then train with ExcessGuardWeight until the alarm,
	// so a slow attack cannot teach the baseline that it is normal.
	ExcessMargin, ExcessGuardWeight float64
	// ScoreSigmas calibrates a window's Score against the agent's own past
	// scores: a window at or above AlertScore is Usual, and does not page,
	// unless log1p(Score) is at least ScoreSigmas standard deviations above
	// the decaying mean of the log1p of the agent's own scores. So an agent
	// whose windows are routinely surprising needs a rarer window to page
	// than a smooth one. A window at or above HighScore always pages. 0
	// turns the calibration off.
	ScoreSigmas float64
	// ScoreHalfLife is the half-life, in active windows, of that summary
	// of the agent's own scores.
	ScoreHalfLife float64
	// ScoreWarmup is how many windows (decayed weight) the summary must
	// stand on before it is consulted; until then the agent is judged by
	// AlertScore alone.
	ScoreWarmup float64
}

// DefaultParams returns the defaults documented on each field.
func DefaultParams() Params {
	return Params{
		HalfLife:            600,
		LongHalfLife:        6000,
		Warmup:              120,
		AnomalousWeight:     0,
		AlertScore:          7,
		MediumScore:         12,
		HighScore:           25,
		CriticalScore:       60,
		DriftFactor:         1.5,
		Clip:                4,
		MinMean:             0.05,
		MinRate:             1e-3,
		MinLogScale:         0.2,
		SeasonRate:          0.001,
		OffHoursMinWindows:  1440,
		ExcessThreshold:     15,
		ExcessRatio:         2,
		SlowExcessRatio:     1.5,
		SlowExcessThreshold: 30,
		ExcessMinWindows:    10,
		ExcessMargin:        0.6,
		ExcessGuardWeight:   0.1,
		ScoreSigmas:         4,
		ScoreHalfLife:       4320,
		ScoreWarmup:         1440,
	}
}

// Validate reports every invalid field at once, each error prefixed with the
// field's name.
func (p Params) Validate() error {
	var errs []error
	bad := func(field string, v float64, want string) {
		errs = append(errs, fmt.Errorf("%s: must be %s, got %g", field, want, v))
	}
	finitePos := func(v float64) bool { return v > 0 && !math.IsInf(v, 1) }
	if !finitePos(p.HalfLife) || p.HalfLife < 1 {
		bad("HalfLife", p.HalfLife, "at least 1 window")
	}
	if !finitePos(p.LongHalfLife) || p.LongHalfLife < p.HalfLife {
		bad("LongHalfLife", p.LongHalfLife, "finite and at least HalfLife")
	}
	if p.Warmup < 0 {
		bad("Warmup", float64(p.Warmup), "non-negative")
	}
	if !(p.AnomalousWeight >= 0 && p.AnomalousWeight <= 1) {
		bad("AnomalousWeight", p.AnomalousWeight, "in [0, 1]")
	}
	if !finitePos(p.AlertScore) || p.AlertScore > maxScore {
		bad("AlertScore", p.AlertScore, fmt.Sprintf("in (0, %g]", float64(maxScore)))
	}
	if !(p.MediumScore >= p.AlertScore) || math.IsInf(p.MediumScore, 0) {
		bad("MediumScore", p.MediumScore, "finite and at least AlertScore")
	}
	if !(p.HighScore >= p.MediumScore) || math.IsInf(p.HighScore, 0) {
		bad("HighScore", p.HighScore, "finite and at least MediumScore")
	}
	if !(p.CriticalScore >= p.HighScore) || math.IsInf(p.CriticalScore, 0) {
		bad("CriticalScore", p.CriticalScore, "finite and at least HighScore")
	}
	if !(p.DriftFactor > 1) || math.IsInf(p.DriftFactor, 1) {
		bad("DriftFactor", p.DriftFactor, "finite and above 1")
	}
	if !finitePos(p.Clip) || p.Clip < 1 {
		bad("Clip", p.Clip, "finite and at least 1")
	}
	if !(p.MinMean > 0 && p.MinMean <= 1) {
		bad("MinMean", p.MinMean, "in (0, 1]")
	}
	if !(p.MinRate > 0 && p.MinRate < 0.5) {
		bad("MinRate", p.MinRate, "in (0, 0.5)")
	}
	if !(p.MinLogScale > 0 && p.MinLogScale <= 10) {
		bad("MinLogScale", p.MinLogScale, "in (0, 10]")
	}
	if !(p.SeasonRate > 0 && p.SeasonRate <= 1) {
		bad("SeasonRate", p.SeasonRate, "in (0, 1]")
	}
	if p.OffHoursMinWindows < 0 {
		bad("OffHoursMinWindows", float64(p.OffHoursMinWindows), "non-negative")
	}
	if !(p.ExcessThreshold >= 0) || math.IsInf(p.ExcessThreshold, 1) {
		bad("ExcessThreshold", p.ExcessThreshold, "finite and non-negative (0: off)")
	}
	if !(p.ExcessRatio > 1) || math.IsInf(p.ExcessRatio, 1) {
		bad("ExcessRatio", p.ExcessRatio, "finite and above 1")
	}
	if !(p.SlowExcessRatio > 1) || math.IsInf(p.SlowExcessRatio, 1) {
		bad("SlowExcessRatio", p.SlowExcessRatio, "finite and above 1")
	}
	if !(p.SlowExcessThreshold > 0) || math.IsInf(p.SlowExcessThreshold, 1) {
		bad("SlowExcessThreshold", p.SlowExcessThreshold, "finite and above 0")
	}
	if !(p.ExcessMinWindows >= 1) || math.IsInf(p.ExcessMinWindows, 1) {
		bad("ExcessMinWindows", p.ExcessMinWindows, "finite and at least 1")
	}
	if !(p.ExcessMargin >= 0 && p.ExcessMargin < 1) {
		bad("ExcessMargin", p.ExcessMargin, "in [0, 1)")
	}
	if !(p.ExcessGuardWeight >= 0 && p.ExcessGuardWeight <= 1) {
		bad("ExcessGuardWeight", p.ExcessGuardWeight, "in [0, 1]")
	}
	if !(p.ScoreSigmas >= 0) || math.IsInf(p.ScoreSigmas, 1) {
		bad("ScoreSigmas", p.ScoreSigmas, "finite and non-negative (0: off)")
	}
	if !finitePos(p.ScoreHalfLife) || p.ScoreHalfLife < 1 {
		bad("ScoreHalfLife", p.ScoreHalfLife, "finite and at least 1 window")
	}
	if !(p.ScoreWarmup >= 0) || math.IsInf(p.ScoreWarmup, 1) {
		bad("ScoreWarmup", p.ScoreWarmup, "finite and non-negative")
	}
	return errors.Join(errs...)
}
