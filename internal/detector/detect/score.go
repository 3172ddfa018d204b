package detect

import (
	"fmt"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/baseline"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// peer returns the warm peer model for role (its role's, else all agents'),
// or the all-agents model however young, or nil.
func (p *Processor) peer(pt *partition, role string) *baseline.Model {
	if role != "" {
		if m := pt.peers[role]; m != nil && m.Windows() >= p.set.Baseline.Warmup {
			return m
		}
	}
	return pt.peers[""]
}

func (p *Processor) evaluate(pt *partition, a *agentState, acc *features.Acc, flood bool) {
	set := &p.set
	w := &p.win
	acc.Close(set.Features.WindowMs, &a.seen, w)
	w.Late += a.pendingLate
	a.pendingLate = 0
	p.stats.Windows++

	ag, known := p.cat.Registry().Lookup(a.id)
	role := ""
	if known {
		role = ag.Role
	}
	usePeer := a.model.Windows() < set.Baseline.Warmup
	model, params := &a.model, &set.Baseline
	vals := w.Values
	if usePeer {
		if peer := p.peer(pt, role); peer != nil {
			model, params = peer, &p.peerParams
			// Everything is new to a new agent; its peers' novelty rates
			// say nothing about that.
			vals[features.NewRoutes], vals[features.NewIPs] = 0, 0
		}
	}
	res := model.Score(params, w.StartMs, &vals)
	// A model that has not learnt enough yet scores but never alerts. A
	// window that is ordinary for this agent (Usual: not rare next to its
	// own past scores) does not page either.
	cold := model.Windows() < set.Baseline.Warmup
	alert := !cold && !res.Usual && (res.Anomalous || (res.Drift && p.due(a, ruleDrift, w.StartMs, false)))

	if hs := w.StartMs - w.StartMs%3_600_000; hs != a.hourStart {
		a.hourStart, a.hourActive, a.hourCalls = hs, 0, 0
		pw, disp, load, busiest := a.model.HourLoad(w.StartMs)
		a.hourLoad = [4]float64{pw, disp, load, busiest}
	}

	// Drift windows train: a legitimate step change must become the new
	// normal. Only windows the short-term baseline finds anomalous are
	// kept out (the poisoning guard).
	weight := 1.0
	if res.Anomalous {
		weight = set.Baseline.AnomalousWeight
	}
	// The sequential tests add up what no single window shows; while one
	// is open its windows train with a small weight (the same guard).
	ex := a.model.Accumulate(&set.Baseline, w.StartMs, set.Features.WindowMs, &w.Values, !usePeer && !cold, weight, p.peersRatio(pt, role, w.StartMs))
	weight = min(weight, ex.Weight)
	// The summary of the agent's own scores learns only from windows scored
	// against its own model that are not anomalous for it, with the
	// sequential tests' guard: an attack must not raise its own bar.
	if !usePeer && !cold {
		if res.Ordinary() {
			a.model.LearnScore(&set.Baseline, res.Score, ex.Weight)
		}
		p.notePeer(role, &a.model)
	}
	if weight > 0 {
		a.model.Update(&set.Baseline, w.StartMs, &w.Values, weight)
		// The all-agents model "" is only the cold-start fallback: peer
		// uses it for agents without a role and for roles whose own peer
		// model is still younger than Warmup. So only those windows train
		// it; once a role's model is warm its windows no longer do. The
		// role model's age before this window decides, which depends only
		// on the partition's records in order, so results stay
		// deterministic.
		fallback := role == "" || p.peerYoung(pt, role)
		p.trainPeer(pt, role, w, weight)
		if role != "" && fallback {
			p.trainPeer(pt, "", w, weight)
		}
	}

	// One allocation for the score's three vectors; each is capped, so an
	// append to one cannot spill into the next.
	const nf = int(features.NumFeatures)
	vecs := make([]float64, 3*nf)
	sc := anomaly.Score{
		AgentID: a.id, WindowStartMs: w.StartMs, WindowEndMs: w.EndMs, Partition: pt.id,
		Score: res.Score, Severity: res.Severity.String(), Trained: weight > 0, PeerBaseline: usePeer, Late: w.Late,
		Values: vecs[:nf:nf], Expected: vecs[nf : 2*nf : 2*nf], Surprise: vecs[2*nf:],
	}
	for i := range features.NumFeatures {
		fs := res.Features[i]
		sc.Values[i], sc.Expected[i], sc.Surprise[i] = w.Values[i], fs.Expected, fs.Surprise
	}
	if cold {
		sc.Severity = baseline.Severity(0).String()
	}
	p.scores = append(p.scores, sc)

	if alert {
		kind := anomaly.Behaviour
		if res.Drift && !res.Anomalous {
			kind = anomaly.Drift
		}
		an := p.newAnomaly(pt, a, w, kind, ag, known)
		an.Score, an.Severity, an.PeerBaseline = res.Score, res.Severity.String(), usePeer
		an.Explanation = explain(&res, &w.Values)
		an.Summary = behaviourSummary(an, usePeer, role, offHoursNote(&res, w))
		if p.holding {
			p.held = append(p.held, an)
		} else {
			p.emit(an)
		}
	}
	if ex.Alarm {
		p.emitExcess(pt, a, w, &ex, ag, known)
	}
	a.noteHour(w.Values[features.Calls], alert || ex.Alarm)
	if !usePeer && !alert {
		p.offHours(pt, a, w, ag, known)
	}
	p.rules(pt, a, w, ag, known, flood)
	a.seen.Merge(acc)
	a.dirty = true
}

// peerYoung reports whether role's peer model is missing or younger than
// Warmup, so that peer falls back to the all-agents model for it.
func (p *Processor) peerYoung(pt *partition, role string) bool {
	m := pt.peers[role]
	return m == nil || m.Windows() < p.set.Baseline.Warmup
}

func (p *Processor) trainPeer(pt *partition, role string, w *features.Window, weight float64) {
	m := pt.peers[role]
	if m == nil {
		m = new(baseline.Model)
		pt.peers[role] = m
	}
	m.Update(&p.peerParams, w.StartMs, &w.Values, weight)
	pt.dirtyPeers[role] = true
}

// explainMax bounds an explanation's window features.
const explainMax = 5

// explain lists what made a window surprising, most surprising first: up
// to explainMax features whose observed value is above what the baseline
// expected (a feature at or below its expectation is no evidence, and
// listing it would read as the reason for the alert), then the hour-slot
// term when it counts. Contributions are shares of the window's whole
// surprise, so the listed ones sum to at most 1.
func explain(res *baseline.Result, v *features.Vector) []anomaly.Feature {
	var out []anomaly.Feature
	for _, id := range res.Top(int(features.NumFeatures)) {
		fs := res.Features[id]
		if !(v[id] > fs.Expected) || round(v[id]) <= round(fs.Expected) {
			continue
		}
		out = append(out, anomaly.Feature{
			Name: id.String(), Observed: v[id], Expected: round(fs.Expected), Surprise: round(fs.Surprise),
			Contribution: round(res.Contribution(id)),
		})
		if len(out) == explainMax {
			break
		}
	}
	if oh := res.OffHours; oh.Surprise > 1 {
		// Being active is the observation (1 window) and P, how often the
		// agent is active in this hour slot next to its busiest, the
		// expectation, so that the row reads like the others: more than
		// expected. The hour itself is in the summary.
		out = append(out, anomaly.Feature{
			Name: "off_hours", Observed: 1, Expected: round(oh.P), Surprise: round(oh.Surprise),
			Contribution: round(res.OffHoursContribution()),
		})
	}
	return out
}

// offHoursNote is the summary's clause on the hour slot, "" when the
// slot is not part of the explanation.
func offHoursNote(res *baseline.Result, w *features.Window) string {
	oh := res.OffHours
	if oh.Surprise <= 1 {
		return ""
	}
	day := [...]string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}[w.HourOfWeek/24%7]
	return fmt.Sprintf("active on a %s at %02d:00 UTC, an hour it is active in %s as often as in its busiest hour",
		day, w.HourOfWeek%24, features.FormatShare(oh.P))
}
