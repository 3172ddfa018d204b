package config

import (
	"math"
	"time"
)

// validate checks the detector.risk.* keys.
func (r Risk) validate(bad func(key, format string, a ...any)) {
	if r.HalfLife != 0 && (r.HalfLife < time.Minute || r.HalfLife > 720*time.Hour) {
		bad("detector.risk.half_life", "must be 0 (off) or in [1m, 720h], got %s", r.HalfLife)
	}
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	if !(r.Level > 0) || !finite(r.Level) {
		bad("detector.risk.level", "must be a positive number, got %g", r.Level)
	}
	ws := []struct {
		key string
		v   float64
	}{
		{"detector.risk.weight_low", r.WeightLow}, {"detector.risk.weight_medium", r.WeightMedium},
		{"detector.risk.weight_high", r.WeightHigh}, {"detector.risk.weight_critical", r.WeightCritical},
	}
	for i, w := range ws {
		switch {
		case !(w.v >= 0) || !(w.v <= 1000):
			bad(w.key, "must be in [0, 1000], got %g", w.v)
		case i > 0 && w.v < ws[i-1].v:
			// A more severe anomaly must not count for less.
			bad(w.key, "must be at least %s (%g), got %g", ws[i-1].key, ws[i-1].v, w.v)
		}
	}
	if r.Level > 0 && r.WeightMedium >= r.Level {
		bad("detector.risk.level", "must be above detector.risk.weight_medium (%g), got %g: a single medium anomaly would make an agent's risk elevated on its own", r.WeightMedium, r.Level)
	}
}
