package detect

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/baseline"
)

// RiskSettings are the per-agent risk's knobs (config keys
// detector.risk.*). An agent's risk at time t is the sum, over its
// anomalies i, of Weights[severity_i] · 2^(−(t − t_i)/HalfLife), t_i being
// the anomaly's window end: each anomaly raises it by its weight, and it
// halves every HalfLife of event time in between. docs/detection.md#risk
// explains the defaults.
type RiskSettings struct {
	// HalfLifeMs is the event time in which the risk halves; 0 turns the
	// risk off (no Risk on anomalies, no elevated_risk).
	HalfLifeMs int64
	// Weights are what an anomaly of severity low, medium, high and
	// critical adds, in that order.
	Weights [4]float64
	// Level is the risk at or above which an agent's risk counts as
	// elevated: elevated_risk is raised when the risk reaches it, and
	// anomalies carry since when (and until when, at least) it stays there.
	Level float64
}

// DefaultRiskSettings are the defaults of detector.risk.*: weights 1, 3,
// 6 and 10, a half-life of 6 hours and the level 8. One medium anomaly
// (3) stays well under 8, two (at most 6) too; three within two hours
// (at least 3·(1 + 2^(−1/6) + 2^(−2/6)) = 8.05) or four within six
// reach it. A single critical one (10) is above the level by itself, but
// raises no elevated_risk (see riskState.add): it alerted at its own
// severity already.
func DefaultRiskSettings() RiskSettings {
	return RiskSettings{HalfLifeMs: (6 * time.Hour).Milliseconds(), Weights: [4]float64{1, 3, 6, 10}, Level: 8}
}

// On reports whether the risk is kept.
func (s *RiskSettings) On() bool { return s.HalfLifeMs > 0 && s.Level > 0 }

// weight is what an anomaly of severity sev adds; none adds nothing.
func (s *RiskSettings) weight(sev baseline.Severity) float64 {
	if sev < baseline.Low || sev > baseline.Critical {
		return 0
	}
	return s.Weights[sev-baseline.Low]
}

// decay returns risk v after dtMs of event time.
func (s *RiskSettings) decay(v float64, dtMs int64) float64 {
	if dtMs <= 0 {
		return v
	}
	return v * math.Exp2(-float64(dtMs)/float64(s.HalfLifeMs))
}

// untilMs is when risk v at atMs falls below the level without another
// anomaly: atMs + HalfLife · log2(v/Level). Only for v ≥ Level.
func (s *RiskSettings) untilMs(v float64, atMs int64) int64 {
	return atMs + int64(math.Ceil(float64(s.HalfLifeMs)*math.Log2(v/s.Level)))
}

const (
	// riskClearShare: an episode of elevated risk ends, and elevated_risk
	// may be raised again, once the risk has fallen below this share of
	// the level (one half-life below it): the hysteresis that keeps a risk
	// hovering around the level from raising it again and again.
	riskClearShare = 0.5
	// riskKeep is how many of its latest anomalies an agent's risk
	// remembers, for elevated_risk's explanation only (the risk itself is
	// one number).
	riskKeep = 8
	// riskExplainHalfLives: the explanation lists the remembered
	// anomalies of the last four half-lives, those that still carry at
	// least a sixteenth of their weight.
	riskExplainHalfLives = 4
	// maxRiskKind bounds a remembered kind name in the state codec.
	maxRiskKind = 64
)

// riskHit is one anomaly that raised the risk.
type riskHit struct {
	atMs int64
	sev  baseline.Severity
	kind string
}

// riskState is an agent's risk. It changes only when the agent has an
// anomaly: in between, its value is known from value, atMs and the
// half-life, so nothing runs on a timer and a replay gives the same risk.
type riskState struct {
	// value is the risk at atMs, the window end of the agent's latest
	// anomaly.
	value float64
	atMs  int64
	// sinceMs is when the risk last reached the level and has stayed at
	// or above it since; 0 while below.
	sinceMs int64
	// raised says that this episode of elevated risk has had its
	// elevated_risk (or did not need one); it is cleared when the risk
	// falls below riskClearShare of the level.
	raised bool
	// hits are the latest anomalies, oldest first, at most riskKeep.
	hits []riskHit
}

// at returns the risk at tMs (not before atMs).
func (r *riskState) at(s *RiskSettings, tMs int64) float64 {
	return s.decay(r.value, tMs-r.atMs)
}

// add raises the risk by an anomaly of severity sev and kind whose window
// ended at tMs, and reports whether the agent's elevated_risk is due now:
// the risk has reached the level, this episode has had none yet, and it
// took more than this one anomaly to get there (an anomaly whose weight
// alone reaches the level has alerted at its own severity; the episode it
// opens raises none). Because the risk only falls between anomalies, the
// episode bookkeeping done here, at anomalies only, is exact: the risk
// was below a threshold at some time since the last anomaly if and only
// if it is below it now, before this one adds.
func (r *riskState) add(s *RiskSettings, tMs int64, sev baseline.Severity, kind string) (due bool) {
	tMs = max(tMs, r.atMs) // an agent's anomalies come in window order; never decay backwards
	v := r.at(s, tMs)
	r.below(s, v)
	w := s.weight(sev)
	r.value, r.atMs = v+w, tMs
	if len(kind) > maxRiskKind {
		kind = kind[:maxRiskKind]
	}
	if len(r.hits) == riskKeep {
		r.hits = append(r.hits[:0], r.hits[1:]...)
	}
	r.hits = append(r.hits, riskHit{atMs: tMs, sev: sev, kind: kind})
	if r.value < s.Level {
		return false
	}
	if r.sinceMs == 0 {
		r.sinceMs = tMs
	}
	if r.raised {
		return false
	}
	r.raised = true
	return w < s.Level
}

// retract takes back what the anomaly of kind whose window ended at endMs
// added, decayed to r.atMs, when it is among the remembered ones (an
// analyst said it was a false positive), and reports whether it was. A
// risk brought below the level ends the episode as add would.
func (r *riskState) retract(s *RiskSettings, endMs int64, kind string) bool {
	if len(kind) > maxRiskKind { // as add kept it
		kind = kind[:maxRiskKind]
	}
	i := slices.IndexFunc(r.hits, func(h riskHit) bool { return h.atMs == endMs && h.kind == kind })
	if i < 0 {
		return false
	}
	h := r.hits[i]
	r.value = max(0, r.value-s.decay(s.weight(h.sev), r.atMs-h.atMs))
	r.hits = slices.Delete(r.hits, i, i+1)
	r.below(s, r.value)
	return true
}

// below ends the episode's bookkeeping for a risk of v: below the level
// it is no longer above since anything, and below riskClearShare of it
// the next crossing may raise elevated_risk again.
func (r *riskState) below(s *RiskSettings, v float64) {
	if v < s.Level {
		r.sinceMs = 0
	}
	if v < s.Level*riskClearShare {
		r.raised = false
	}
}

// stamp writes the risk after an anomaly at r.atMs onto an.
func (r *riskState) stamp(s *RiskSettings, an *anomaly.Anomaly) {
	an.Risk, an.RiskLevel = round(r.value), s.Level
	an.RiskAboveSinceMs, an.RiskAboveUntilMs = 0, 0
	if r.value >= s.Level && r.sinceMs > 0 {
		an.RiskAboveSinceMs, an.RiskAboveUntilMs = r.sinceMs, s.untilMs(r.value, r.atMs)
	}
}

// explain is elevated_risk's account of the anomalies that added up, from
// the remembered ones of the last riskExplainHalfLives:
// "3 medium anomalies since 10:14 UTC (behaviour ×2, off_hours)".
func (r *riskState) explain(s *RiskSettings) string {
	from := r.atMs - riskExplainHalfLives*s.HalfLifeMs
	var bySev [baseline.Critical + 1]int
	var kinds []string
	perKind := map[string]int{}
	n, first := 0, int64(0)
	for _, h := range r.hits {
		if h.atMs < from || h.sev < baseline.Low || h.sev > baseline.Critical {
			continue
		}
		if n == 0 {
			first = h.atMs
		}
		n++
		bySev[h.sev]++
		if perKind[h.kind] == 0 {
			kinds = append(kinds, h.kind)
		}
		perKind[h.kind]++
	}
	if n == 0 {
		return "no recent anomaly remembered"
	}
	var sevs []string
	for sev := baseline.Critical; sev >= baseline.Low; sev-- {
		if bySev[sev] > 0 {
			sevs = append(sevs, fmt.Sprintf("%d %s", bySev[sev], sev))
		}
	}
	for i, k := range kinds {
		if perKind[k] > 1 {
			kinds[i] = fmt.Sprintf("%s ×%d", k, perKind[k])
		}
	}
	noun := "anomalies"
	if n == 1 {
		noun = "anomaly"
	}
	return fmt.Sprintf("%s %s since %s UTC (%s)", joinAnd(sevs), noun,
		time.UnixMilli(first).UTC().Format("Jan 2 15:04"), strings.Join(kinds, ", "))
}

// joinAnd joins "a", "a and b", "a, b and c".
func joinAnd(ss []string) string {
	if len(ss) <= 1 {
		return strings.Join(ss, "")
	}
	return strings.Join(ss[:len(ss)-1], ", ") + " and " + ss[len(ss)-1]
}

// addRisk raises agent a's risk by an (an anomaly about a alone), stamps
// the risk on it and returns the elevated_risk anomaly when one is due.
func (p *Processor) addRisk(a *agentState, an *anomaly.Anomaly) (anomaly.Anomaly, bool) {
	s := &p.set.Risk
	sev, _ := baseline.ParseSeverity(an.Severity)
	if a.risk == nil {
		a.risk = new(riskState)
	}
	r := a.risk
	due := r.add(s, an.WindowEndMs, sev, an.Kind)
	r.stamp(s, an)
	a.dirty = true
	if !due {
		return anomaly.Anomaly{}, false
	}
	el := anomaly.Anomaly{
		V: anomaly.Version, ID: anomaly.ID(a.id, an.WindowStartMs, anomaly.ElevatedRisk), AgentID: a.id,
		Role: an.Role, Owner: an.Owner, CredentialID: an.CredentialID, Kind: anomaly.ElevatedRisk,
		WindowStartMs: an.WindowStartMs, WindowEndMs: an.WindowEndMs, Partition: an.Partition,
		Routes: append([]anomaly.RouteCount(nil), an.Routes...), SampleRequestIDs: append([]string(nil), an.SampleRequestIDs...),
		SampleEventIDs: append([]string(nil), an.SampleEventIDs...),
	}
	r.stamp(s, &el)
	// An accumulation of medium anomalies is worth a look (medium); one
	// at twice the level, say six medium in a few hours, is high. Inside
	// the band, a higher risk ranks higher.
	band := baseline.Medium
	if r.value >= 2*s.Level {
		band = baseline.High
	}
	p.placeEvidence(&el, band, r.value, s.Level)
	hl := time.Duration(s.HalfLifeMs) * time.Millisecond
	el.Summary = fmt.Sprintf("Agent %q has a risk of %.1f (level %g): %s; each anomaly adds by its severity and the risk halves every %s. It stays at or above the level until at least %s UTC.",
		a.id, r.value, s.Level, r.explain(s), fmtHalfLife(hl), time.UnixMilli(el.RiskAboveUntilMs).UTC().Format("Jan 2 15:04"))
	return el, true
}

// fmtHalfLife writes 6h rather than 6h0m0s.
func fmtHalfLife(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return strings.TrimSuffix(d.String(), "0s")
	}
	return d.String()
}
