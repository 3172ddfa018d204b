// Package baseline learns what normal looks like for one agent (or one peer
// group of agents) and scores how surprising a window of its behaviour is.
// It is pure: no I/O, no clock, no randomness; the window's start time is
// passed in. A Model is about 900 bytes and is not safe for concurrent use;
// Params are read-only and may be shared.
//
// # How the baseline works
//
// The detector cuts each agent's traffic into one-minute windows and, for
// every window in which the agent made at least one call, computes fifteen
// features (package features). The baseline therefore describes "how this
// agent behaves when it is active"; idle minutes are never learnt or scored.
//
// Levels. For every feature the model keeps a level that follows slow change:
// an exponentially weighted average whose weight halves every HalfLife
// active windows (default 600, about ten busy hours). Early on it is a plain
// average of the windows seen. Updates are winsorised: a value more than
// Clip (4) standard deviations from the level is learnt as if it were at
// that limit, so one odd window cannot drag the level far.
//
// Each feature is judged the way it is distributed:
//
//   - Counts (calls, distinct routes, new routes, ids per route, source
//     addresses) are Poisson around the level, or negative binomial when the
//     model has seen more spread than Poisson allows (the dispersion,
//     variance/mean, is learnt alongside the level). Expected values never go
//     below MinMean (0.05), so a count that was always zero is not infinitely
//     surprising.
//   - Shares (sensitive, deprecated, 4xx, 401/403, 5xx and write calls) are
//     judged as "k of this window's calls", binomial with the agent's learnt
//     rate, never below MinRate (0.1%).
//   - Sizes (response bytes per call, largest response, and request bytes
//     per write call: uploads) are judged on a log scale against a normal
//     distribution whose spread is learnt, never below MinLogScale (0.2,
//     about ±22%). Averages over few calls vary more than averages over
//     many, and the model allows for it. A size seen for the first time
//     (an agent's first write) is not scored; its spread starts wide.
//
// Time of day. Expected calls are level × the factor of the window's hour
// slot: 24 hours of a weekday and 24 of a weekend day. The factors are learnt
// slowly (SeasonRate) and stored as 2-byte logarithms, so a business-hours
// agent is expected to be busy at 14:00 and quiet at 03:00. An hour the agent
// has rarely been active in is judged leniently at first. The model also
// counts how often the agent has been active in each slot; once it has seen
// OffHoursMinWindows windows, activity in an hour it is hardly ever active in
// gets an "off hours" surprise: P = (windows in this slot + 0.5) / (windows
// in the busiest slot + 1).
//
// Scoring. Every feature gets P, the probability of a value at least as high
// as observed (only "more than usual" is suspicious), and a surprise, -ln P.
// The P values of all features and the off-hours P are combined twice:
// Fisher's method (many features moderately high) and Tippett's (one feature
// extremely high: the smallest P times the number of features). The
// combined P is twice the smaller of the two, and the Score is -log10 of it
// (at most 300). A window with Score at or above AlertScore (7, a one in ten
// million event) is anomalous; MediumScore, HighScore and CriticalScore
// grade severity. New routes and new source addresses are not scored until
// the model has Warmup windows, because then everything still looks new.
//
// Poisoning. An attacker could raise their activity slowly so that the
// baseline learns it. Two guards stop that. Anomalous windows do not train
// the model (the engine passes AnomalousWeight, default 0). And the model
// keeps a second, long-horizon reference of every level, with ten times the
// half-life, whose noise is learnt slowly and robustly. When the short-term
// level of a feature has risen more than DriftFactor (1.5×) above the
// reference, the window is also scored against the reference; if that makes
// it reach AlertScore while the short-term model did not, the window is
// flagged as Drift. In the tests a ramp of 3–5% per hour is flagged at 2.6–4.2×
// the normal rate; without the reference it is never flagged. Drift windows
// are not Anomalous and keep training, so a legitimate lasting change is
// flagged for a while, not forever: in the tests a sudden tripling of an
// agent's traffic is flagged on its first four days (most on the first),
// a doubling not at all.
//
// Accumulating evidence. Accumulate runs one-sided CUSUM tests over calls
// per minute of wall time (idle minutes included) against a learnt
// hour-of-week rate profile times a recent level, and over log bytes per
// call against the usual for the hour, so that an excess of a few times
// the usual kept up for hours is detected although no window is extreme.
// It reports one alarm per episode and, while a test is open, the training
// weight the poisoning guard allows (docs/detection.md).
//
// Cold start. A new agent is scored against its peer group's model (the same
// type, trained on every window of every agent of the role) until it has
// Warmup windows of its own. Inherit starts its own model from the peer
// group's levels with the weight of only a few dozen windows, so its own
// behaviour takes over quickly.
package baseline
