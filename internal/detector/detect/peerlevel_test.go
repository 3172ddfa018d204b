package detect

import (
	"math"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/baseline"
)

// TestPeerLevel: a window's ratios make the role's median when at least
// peerMinAgents agents gave one; the level follows the medians, is saved
// with the role's peer model, and stays 1 for agents without a role.
func TestPeerLevel(t *testing.T) {
	p := NewProcessor(testSettings(), nil, nil)
	pt := p.part(0)
	pt.peers["customer_service"] = new(baseline.Model)
	const t0 = int64(1_792_400_000_000)
	ws := t0
	window := func(rs ...float64) {
		p.peerRatios = map[string][]float64{"customer_service": rs, "hr": {2, 2, 2, 2, 2}}
		p.settlePeers(pt, ws)
		ws += 60_000
	}
	for range 60 {
		window(1.4, 1.5, 1.3, 4, 1.5) // one agent far above: the median does not follow it
	}
	got := p.peersRatio(pt, "customer_service", ws)
	if math.Abs(got-1.5) > 0.01 {
		t.Errorf("after an hour of medians 1.5: %g", got)
	}
	if !pt.dirtyPeers["customer_service"] {
		t.Errorf("the role's peer model was not marked for saving")
	}
	if r := p.peersRatio(pt, "hr", ws); r != 1 {
		t.Errorf("a role without a peer model: %g, want 1", r)
	}
	if r := p.peersRatio(pt, "", ws); r != 1 {
		t.Errorf("no role: %g, want 1", r)
	}
	for range 60 {
		window(3, 3, 3) // too few agents: the level stands still, then fades
	}
	if r := p.peersRatio(pt, "customer_service", ws); r != 1 {
		t.Errorf("an hour with too few agents: %g, want 1", r)
	}
	// Saved and restored with the peer model.
	var back baseline.Model
	window(1.4, 1.5, 1.3, 4, 1.5)
	if err := back.UnmarshalBinary(pt.peers["customer_service"].AppendBinary(nil)); err != nil {
		t.Fatal(err)
	}
	if a, b := back.PeersRatio(ws), pt.peers["customer_service"].PeersRatio(ws); a != b {
		t.Errorf("restored level %g, want %g", a, b)
	}
}
