package detect

import (
	"fmt"
	"strings"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/baseline"
	"github.com/agentwatch/agentwatch/pkg/features"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// placeExcess is where a sustained excess sits on the severity scale: as
// serious as a new source address (medium), higher up the band the more
// the agent pulled (see excessPlace).
var placeExcess = rulePlace{baseline.Medium, 0.4}

// excessPlace is placeExcess, raised to the top of the medium band and
// then into high as the larger of the calls and bytes ratios grows: an
// agent pulling 10 times its usual bytes for an hour is worth more than
// one at twice.
func excessPlace(ex *baseline.Excess) rulePlace {
	r := max(ex.CallsRatio, ex.BytesRatio)
	switch {
	case r >= 10:
		return rulePlace{baseline.High, 0.2}
	case r >= 4:
		return rulePlace{baseline.Medium, 0.8}
	}
	return placeExcess
}

// emitExcess raises the sustained_excess anomaly of an episode whose
// sequential test has just crossed its threshold in window w.
func (p *Processor) emitExcess(pt *partition, a *agentState, w *features.Window, ex *baseline.Excess, ag *inventory.Agent, known bool) {
	an := p.newAnomaly(pt, a, w, anomaly.SustainedExcess, ag, known)
	p.place(&an, excessPlace(ex))
	width := p.set.Features.WindowMs
	span := max(w.EndMs-ex.SinceMs, width)
	// Observed and expected are per window, averaged over the episode, as
	// every explanation's are (consumers render them as rates over the
	// anomaly's window); the summary has the totals. The surprises are
	// the tests' evidence over their thresholds.
	per := float64(span / width)
	an.Explanation = []anomaly.Feature{{
		Name: features.Calls.String(), Observed: round(ex.Calls / per), Expected: round(ex.ExpectedCalls / per),
		Surprise: round(max(ex.Evidence[0], ex.Evidence[1])),
	}}
	if ex.Bytes > 0 && ex.BytesRatio > 0 {
		an.Explanation = append(an.Explanation, anomaly.Feature{
			Name: features.RespBytes.String(), Observed: round(ex.Bytes / per), Expected: round(ex.Bytes / ex.BytesRatio / per),
			Surprise: round(ex.Evidence[2]),
		})
	}
	// Contributions are the shares of the evidence.
	total := 0.0
	for _, f := range an.Explanation {
		total += f.Surprise
	}
	for i := range an.Explanation {
		if total > 0 {
			an.Explanation[i].Contribution = round(an.Explanation[i].Surprise / total)
		}
	}
	if an.Explanation[0].Observed <= an.Explanation[0].Expected && len(an.Explanation) > 1 {
		// Bytes, not calls, carried it: name them first.
		an.Explanation[0], an.Explanation[1] = an.Explanation[1], an.Explanation[0]
	}
	an.Summary = excessSummary(an.AgentID, span, ex, w.TopRoutes)
	p.emit(an)
}

// excessSummary is the analyst's sentence: "for 3 h 10 min, 3.1× its
// usual calls and 4.2× its usual bytes, mostly on /x".
func excessSummary(agent string, spanMs int64, ex *baseline.Excess, top []features.RouteCalls) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Agent %q has run above its usual level for %s: %s its usual calls (%s against %s expected) and %s its usual response bytes (%s)",
		agent, formatSpan(spanMs), multiple(ex.CallsRatio), features.FormatNumber(round(ex.Calls)), features.FormatNumber(round1(ex.ExpectedCalls)),
		multiple(ex.BytesRatio), features.FormatBytes(ex.Bytes))
	if len(top) > 0 {
		fmt.Fprintf(&b, ", mostly on %s", top[0].Route)
	}
	b.WriteString(". No single minute stood out; the excess adds up over time (a low-and-slow pattern).")
	return b.String()
}

// multiple renders a ratio as "3.1×".
func multiple(r float64) string {
	switch {
	case !(r >= 0) || r > 1e9:
		return "?×"
	case r >= 10:
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.1f×", r)
}

// round1 rounds x to one decimal.
func round1(x float64) float64 { return round(x*10) / 10 }

// formatSpan renders a duration in ms as "3 h 10 min", "45 min" or
// "2 d 4 h".
func formatSpan(ms int64) string {
	mins := (ms + 30_000) / 60_000
	switch {
	case mins < 60:
		return fmt.Sprintf("%d min", mins)
	case mins < 24*60:
		if mins%60 == 0 {
			return fmt.Sprintf("%d h", mins/60)
		}
		return fmt.Sprintf("%d h %d min", mins/60, mins%60)
	}
	h := (mins + 30) / 60
	if h%24 == 0 {
		return fmt.Sprintf("%d d", h/24)
	}
	return fmt.Sprintf("%d d %d h", h/24, h%24)
}
