package detect

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// settleGlobal decides whether the behaviour anomalies of window ws, held
// while its agents were evaluated, are one global event. Many agents
// turning anomalous in the same minute for the same reason (their top
// feature) is not many incidents: it is an upstream outage or a platform
// change, and one alert says so where one per agent would bury the
// analyst. While an event lasts (windows within GlobalGapMs of its last
// global window), anomalies whose top feature is the event's are folded
// into it even when too few for a global window of their own: the event's
// ragged start and end. Anomalies for other reasons still alert.
func (p *Processor) settleGlobal(pt *partition, ws int64, active int) {
	held := p.held
	p.held = p.held[:0]
	if len(held) == 0 {
		return
	}
	set := &p.set
	byTop := map[string]int{}
	for _, h := range held {
		byTop[h.TopFeature()]++
	}
	feat, n := "", 0
	for f, c := range byTop {
		if c > n || (c == n && f < feat) {
			feat, n = f, c
		}
	}
	global := n >= set.GlobalMinAgents && float64(n) >= set.GlobalShare*float64(active)
	ongoing := pt.globalAt != 0 && ws > pt.globalAt && ws-pt.globalAt <= set.GlobalGapMs
	if global && ongoing && feat != pt.globalFeat {
		ongoing = false // a different event
	}
	if !global && !ongoing {
		for _, an := range held {
			p.emit(an)
		}
		return
	}
	if !global {
		feat = pt.globalFeat
	}
	var folded []anomaly.Anomaly
	for _, an := range held {
		if an.TopFeature() == feat {
			folded = append(folded, an)
			p.stats.Folded++
		} else {
			p.emit(an)
		}
	}
	if !global {
		return
	}
	pt.globalAt, pt.globalFeat = ws, feat
	if ongoing {
		return
	}
	// Partitions judge their agents apart, each its own share of the
	// event. The group depends on the event's hour (GlobalGapMs) and
	// feature only, so the partitions that see one outage report it under
	// one group; each share's id adds the partition, so that no share
	// replaces another where ids are deduplicated (the responder joins
	// them into one incident by group).
	bucket := ws
	if set.GlobalGapMs > 0 {
		bucket = ws - ws%set.GlobalGapMs
	}
	agentID := "*global/" + feat
	group := anomaly.ID(agentID, bucket, anomaly.GlobalEvent)
	an := anomaly.Anomaly{
		V: anomaly.Version, ID: anomaly.ShareID(group, pt.id), Group: group, AgentID: agentID, Kind: anomaly.GlobalEvent,
		WindowStartMs: ws, WindowEndMs: ws + set.Features.WindowMs, Count: len(folded), Partition: pt.id,
	}
	// The explanation sums each feature's contribution over the agents, so
	// it names what the event is (5xx, latency, calls) rather than anyone.
	type agg struct {
		anomaly.Feature
		n int
	}
	byName := map[string]*agg{}
	ids := make([]string, 0, len(folded))
	for _, h := range folded {
		ids = append(ids, h.AgentID)
		an.Score = max(an.Score, h.Score)
		for _, f := range h.Explanation {
			g := byName[f.Name]
			if g == nil {
				g = &agg{Feature: anomaly.Feature{Name: f.Name}}
				byName[f.Name] = g
			}
			g.n++
			g.Observed += f.Observed
			g.Expected += f.Expected
			g.Surprise += f.Surprise
			g.Contribution += f.Contribution
		}
	}
	feats := make([]*agg, 0, len(byName))
	for _, g := range byName {
		feats = append(feats, g)
	}
	slices.SortFunc(feats, func(x, y *agg) int {
		return cmp.Or(cmp.Compare(y.n, x.n), cmp.Compare(y.Contribution, x.Contribution), strings.Compare(x.Name, y.Name))
	})
	names := make([]string, 0, 3)
	for _, g := range feats[:min(5, len(feats))] {
		if features.UnitOf(g.Name) == features.UnitShare {
			// A share summed over agents is no share: average it.
			g.Observed, g.Expected = g.Observed/float64(g.n), g.Expected/float64(g.n)
		}
		an.Explanation = append(an.Explanation, anomaly.Feature{
			Name: g.Name, Observed: round(g.Observed), Expected: round(g.Expected), Surprise: round(g.Surprise / float64(g.n)),
			Contribution: round(g.Contribution / float64(len(folded))),
		})
		if len(names) < 3 {
			names = append(names, fmt.Sprintf("%s (%d agents)", g.Name, g.n))
		}
	}
	// The event is as serious as its most serious agent, graded on the
	// one scale like every anomaly.
	an.Severity = p.grade(an.Score)
	slices.Sort(ids)
	more := ""
	if len(ids) > 8 {
		more = ", …"
	}
	an.Summary = fmt.Sprintf("%d of %d active agents on partition %d turned anomalous in the same window, most for %s: a global event (upstream outage or platform change), not %d incidents; their alerts are folded into this one while it lasts. Features: %s. Agents: %s%s.",
		len(folded), active, pt.id, feat, len(folded), strings.Join(names, ", "), strings.Join(ids[:min(8, len(ids))], ", "), more)
	p.emit(an)
}
