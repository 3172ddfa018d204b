package baseline

import "math"

// A peer group's recent ratio: how far the group's agents, together, run
// above (or below) what their own profiles expect. The sequential tests
// judge an agent's excess relative to it (Accumulate's peers), so that a
// change that lifts every agent of a role at once (a route rolled out to
// the whole role, the first day after a holiday) is not each agent's
// excess. The state is the group model's evidence fields, which a group
// model (trained by Update only) does not otherwise use: recentObs and
// recentExp hold the exponentially weighted sum of the ratios and of
// their weights, lastEnd the end of the last window folded in. So it is
// saved and restored with the group's model, and Inherit does not pass it
// on to an agent.

const (
	// peerMemory is the memory, in minutes of wall time, of a group's
	// recent ratio. The agents' own ratios (RecentRatio) already average
	// about two hours.
	peerMemory = 30
	// peerMinWeight is the least weight (of at most 1) the ratio must
	// stand on: below it (a group just started, or whose agents have
	// been silent for a while) PeersRatio is 1.
	peerMinWeight = 0.5
	// peerMaxRatio bounds a window's ratio, so that one corrupt or
	// extreme window cannot hold a group's ratio up for long.
	peerMaxRatio = 100
)

// RecentRatio returns the agent's calls over about the last two hours
// (idle minutes counted) over what its rate profile and recent level
// expected, and the calls expected: the agent's part in its peer group's
// ratio. With nothing expected it returns 1, 0. It reads the state
// Accumulate keeps.
func (m *Model) RecentRatio() (ratio, expected float64) {
	ev := &m.ev
	if !(ev.quietExp > 0) {
		return 1, 0
	}
	return float64(ev.quietObs) / float64(ev.quietExp) / ev.level(), float64(ev.quietExp)
}

// AccumulatePeers folds into m, a peer group's model, the group's ratio
// in the window starting at startMs (windowMs wide): typically the median
// of its active agents' RecentRatio. Windows must come in time order; an
// earlier one is ignored. It does not allocate.
func (m *Model) AccumulatePeers(startMs, windowMs int64, ratio float64) {
	ev := &m.ev
	if windowMs <= 0 || startMs < ev.lastEnd || math.IsNaN(ratio) {
		return
	}
	ratio = min(max(ratio, 0), peerMaxRatio)
	ev.peerDecay(startMs)
	d := math.Exp(-float64(windowMs) / 60_000 / peerMemory)
	ev.recentObs = float32(d*float64(ev.recentObs) + (1-d)*ratio)
	ev.recentExp = float32(d*float64(ev.recentExp) + (1 - d))
	ev.lastEnd = startMs + windowMs
}

// PeersRatio returns a peer group's recent ratio at atMs (Unix ms), as
// AccumulatePeers learnt it, or 1 when it stands on too little.
func (m *Model) PeersRatio(atMs int64) float64 {
	ev := &m.ev
	if !(float64(ev.recentExp)*ev.peerDecayFactor(atMs) >= peerMinWeight) {
		return 1
	}
	return float64(ev.recentObs) / float64(ev.recentExp)
}

// peerDecayFactor is the decay of a group's ratio sums over the wall time
// from its last window to atMs.
func (ev *evidence) peerDecayFactor(atMs int64) float64 {
	if ev.lastEnd == 0 || atMs <= ev.lastEnd {
		return 1
	}
	return math.Exp(-float64(atMs-ev.lastEnd) / 60_000 / peerMemory)
}

// peerDecay decays a group's ratio sums to atMs.
func (ev *evidence) peerDecay(atMs int64) {
	d := ev.peerDecayFactor(atMs)
	ev.recentObs = float32(d * float64(ev.recentObs))
	ev.recentExp = float32(d * float64(ev.recentExp))
}
