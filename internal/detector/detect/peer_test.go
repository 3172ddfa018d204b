package detect

import (
	"testing"
)

// TestAllAgentsPeerTrainsOnlyAsFallback: the all-agents peer model learns
// from the windows of agents without a role and of roles whose own peer
// model is still younger than Warmup (when peer falls back to it), not from
// every window; role models learn from all of their agents' windows.
func TestAllAgentsPeerTrainsOnlyAsFallback(t *testing.T) {
	rs, s := simRecords(t, twoDays(3))
	cat := simCatalog(t, s)
	set := testSettings()
	// Windows the sequential tests guard train with a fraction of a
	// window's weight, which Windows() counts as such; this test counts
	// whole windows.
	set.Baseline.ExcessThreshold = 0
	p := NewProcessor(set, cat, nil)
	_, ss := run(p, rs)
	trained, roleless := 0, 0
	for _, sc := range ss {
		if !sc.Trained {
			continue
		}
		trained++
		if ag, ok := cat.Reg.Lookup(sc.AgentID); !ok || ag.Role == "" {
			roleless++
		}
	}
	allAgents, roleWindows, bound := 0, 0, roleless
	for _, id := range p.Partitions() {
		for role, m := range p.parts[id].peers {
			if role == "" {
				allAgents += m.Windows()
				continue
			}
			roleWindows += m.Windows()
			bound += p.set.Baseline.Warmup // the role's young windows
		}
	}
	t.Logf("%d trained windows (%d without a role): role peer models %d, all-agents peer models %d (bound %d)",
		trained, roleless, roleWindows, allAgents, bound)
	if roleWindows != trained-roleless || allAgents == 0 {
		t.Fatalf("role peer models trained on %d windows, want %d; all-agents on %d", roleWindows, trained-roleless, allAgents)
	}
	if allAgents > bound {
		t.Errorf("all-agents peer models trained on %d windows, want at most %d (the fallback ones)", allAgents, bound)
	}
}
