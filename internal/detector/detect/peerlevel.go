package detect

import (
	"github.com/agentwatch/agentwatch/pkg/baseline"
)

// The peers' level: for each role of a partition, how far its agents,
// together, run above what their own profiles expect (the median of the
// active agents' baseline.Model.RecentRatio), followed window by window
// in the role's peer model (baseline.Model.AccumulatePeers). The
// sequential tests judge each agent's excess relative to it, so that a
// route rolled out to every customer-service agent, or the first day after
// a holiday, is not an excess of each of them, while one agent's excess
// stands out from its peers. The level is state of the peer model (saved
// and restored with it); the window's ratios are gathered as the window
// closes and folded in after its last agent, so every agent of a window
// is judged against the level of the windows before it.

const (
	// peerMinAgents is the fewest agents of a role, each with at least
	// peerMinExpected calls expected over its recent hours, whose ratios
	// make a window's median: fewer say too little about the group.
	peerMinAgents   = 4
	peerMinExpected = 10
)

// peersRatio returns the recent ratio of role's peers in partition pt at
// atMs, 1 for agents without a role or a role without a peer model.
func (p *Processor) peersRatio(pt *partition, role string, atMs int64) float64 {
	if role == "" {
		return 1
	}
	if m := pt.peers[role]; m != nil {
		return m.PeersRatio(atMs)
	}
	return 1
}

// notePeer adds the ratio of an agent of role, just tested, to the
// closing window's.
func (p *Processor) notePeer(role string, m *baseline.Model) {
	if role == "" {
		return
	}
	r, exp := m.RecentRatio()
	if exp < peerMinExpected {
		return
	}
	if p.peerRatios == nil {
		p.peerRatios = map[string][]float64{}
	}
	p.peerRatios[role] = append(p.peerRatios[role], r)
}

// settlePeers folds the closing window's ratios into the roles' peer
// models and empties them for the next window.
func (p *Processor) settlePeers(pt *partition, ws int64) {
	for role, rs := range p.peerRatios {
		if m := pt.peers[role]; m != nil && len(rs) >= peerMinAgents {
			m.AccumulatePeers(ws, p.set.Features.WindowMs, baseline.Median(rs))
			pt.dirtyPeers[role] = true
		}
		p.peerRatios[role] = rs[:0]
	}
}
