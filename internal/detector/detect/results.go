package detect

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/features"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

func (p *Processor) newAnomaly(pt *partition, a *agentState, w *features.Window, kind string, ag *inventory.Agent, known bool) anomaly.Anomaly {
	an := anomaly.Anomaly{
		V: anomaly.Version, ID: anomaly.ID(a.id, w.StartMs, kind), AgentID: a.id, Kind: kind,
		WindowStartMs: w.StartMs, WindowEndMs: w.EndMs, Partition: pt.id,
		Routes:           routeCounts(w.TopRoutes),
		SampleRequestIDs: slices.Clone(w.RequestIDs), SampleEventIDs: slices.Clone(w.EventIDs),
	}
	if known {
		an.Role, an.Owner, an.CredentialID = ag.Role, ag.Owner, ag.CredentialID
	}
	return an
}

// emit publishes an. An anomaly about one agent first raises the agent's
// risk, carries it, and may bring the agent's elevated_risk along.
func (p *Processor) emit(an anomaly.Anomaly) {
	var el anomaly.Anomaly
	elevated := false
	if p.set.Risk.On() && !an.Grouped() && an.Kind != anomaly.ElevatedRisk {
		if pt := p.parts[an.Partition]; pt != nil {
			if a := pt.agents[an.AgentID]; a != nil {
				el, elevated = p.addRisk(a, &an)
			}
		}
	}
	p.record(an)
	if elevated {
		p.record(el)
	}
}

func (p *Processor) record(an anomaly.Anomaly) {
	p.stats.Anomalies[an.Kind]++
	if p.now != nil {
		an.DetectedMs = p.now()
	}
	p.anomalies = append(p.anomalies, an)
}

// Take returns and forgets the anomalies and scores produced since the
// last call. The caller owns the returned slices.
func (p *Processor) Take() ([]anomaly.Anomaly, []anomaly.Score) {
	as, ss := p.anomalies, p.scores
	p.anomalies, p.scores = nil, nil
	return as, ss
}

// Pending reports how many results wait to be taken.
func (p *Processor) Pending() int { return len(p.anomalies) + len(p.scores) }

func routeCounts(rs []features.RouteCalls) []anomaly.RouteCount {
	out := make([]anomaly.RouteCount, 0, min(len(rs), features.MaxTopRoutes))
	for _, r := range rs[:min(len(rs), features.MaxTopRoutes)] {
		out = append(out, anomaly.RouteCount{Route: r.Route, Calls: r.Calls, Succeeded: r.OK})
	}
	return out
}

func routeList(rs []features.RouteCalls) string {
	var b strings.Builder
	for i, r := range rs[:min(len(rs), 3)] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s ×%d", r.Route, r.Calls)
	}
	if len(rs) > 3 {
		fmt.Fprintf(&b, " and %d more", len(rs)-3)
	}
	return b.String()
}

func behaviourSummary(an anomaly.Anomaly, peer bool, role, offHours string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Agent %q behaved unusually (score %.1f, %s)", an.AgentID, an.Score, an.Severity)
	if an.Kind == anomaly.Drift {
		b.WriteString(", a slow drift away from its long-term baseline")
	}
	b.WriteString(": ")
	width := an.WindowEndMs - an.WindowStartMs
	n := 0
	for _, f := range an.Explanation {
		if f.Name == "off_hours" || n == 3 {
			continue // said below, in words
		}
		if n > 0 {
			b.WriteString("; ")
		}
		b.WriteString(f.Name + " " + features.FormatVersus(f.Name, f.Observed, f.Expected, width))
		n++
	}
	if offHours != "" {
		if n > 0 {
			b.WriteString("; ")
		}
		b.WriteString(offHours)
	}
	b.WriteString(".")
	if peer {
		if role == "" {
			role = "all agents"
		}
		fmt.Fprintf(&b, " Still warming up: compared with its peer group (%s).", role)
	}
	return b.String()
}

func round(x float64) float64 {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return 0
	}
	return math.Round(x*1000) / 1000
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
