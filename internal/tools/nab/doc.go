// Package nab reads the Numenta Anomaly Benchmark (NAB) corpus, writes a
// detector's scores in NAB's results layout, scores them with NAB's own
// method, and draws the scoreboard and per-file plots.
//
// # How NAB scores a detector
//
// NAB is 58 time series (365,558 rows) in which people marked 116 anomaly
// windows. A detector gives every row an anomaly score between 0 and 1; a
// row is a detection when its score reaches a threshold.
//
//   - Learning time. The first 15% of each file (at most 750 rows) is the
//     probation period. Detections there count for nothing, good or bad.
//   - Early beats late. Inside a window only the first detection counts. It
//     earns up to the profile's true-positive weight: the full weight at the
//     window's first row, falling along a sigmoid towards 0 at its last row.
//     More detections in the same window add nothing.
//   - Missing costs. A window with no detection costs the false-negative
//     weight.
//   - Crying wolf costs. A detection outside every window costs up to the
//     false-positive weight: the full weight before the first window or well
//     after a window, less just after one (a late but nearly right alarm).
//   - One threshold. The threshold is the single value, for the whole corpus,
//     that gives the best total. NAB finds it by sweeping down through every
//     distinct score. Each file is then scored at that threshold and the
//     scores are added up.
//   - Three profiles weigh the mistakes differently: standard (a false
//     positive costs 0.11 of a true positive), reward low FP (0.22) and
//     reward low FN (a missed window costs 2).
//   - The total is normalised so that a detector that never fires scores 0
//     and a perfect one scores 100: 100 × (raw − null) / (perfect − null).
//     The perfect score is the number of windows times the true-positive
//     weight, as if every window were caught at its first row. A detector
//     whose false alarms outweigh its catches scores below 0.
//
// # Sources
//
// This follows NAB v1.1 (github.com/numenta/NAB) rather than the paper where
// they differ: nab/sweeper.py (scaledSigmoid, calcSweepScore,
// calcScoreByThreshold: the per-row weights and the threshold sweep),
// nab/optimizer.py (the best threshold: the sweep's list sorted by score
// with Python's stable sort, so a tie goes to the higher threshold),
// nab/scorer.py (per-file scores at that threshold, summed), nab/runner.py
// (normalize: perfect = number of windows in the label file × tpWeight; null
// = the null detector's total, which is −fnWeight per window) and
// nab/util.py (getProbationPeriod). Two details that are easy to get wrong:
// NAB divides a true positive's weight by the sigmoid's value at the left
// edge, so a detection at a window's first row earns exactly tpWeight, not
// 0.9866 of it; and positions are counted in rows, not time.
package nab
