// Package scenario judges a detector run against the simulator's labeled
// incidents: which incidents were caught, how fast, and which alerts belong
// to no incident. The demo, the detector's tests and the scenario
// evaluation share it, so they count the same way.
package scenario

import (
	"slices"
	"sort"
	"time"

	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// Catch says whether and how fast an injected incident was detected.
type Catch struct {
	Incident sim.Incident
	Caught   bool
	// Kinds are the anomaly kinds raised for it; First the kind of the
	// earliest (by window, then kind name).
	Kinds []string
	First string
	// Anomalies are the anomalies that belong to the incident, in the
	// order given to Match: what the responder would have put in the
	// incident's thread.
	Anomalies []anomaly.Anomaly
	// Windows is how many windows after the incident's start the first
	// anomaly's window began (0: the window the incident started in).
	Windows int
}

// Match matches anomalies to incidents: an anomaly about an incident's
// agent whose window overlaps the incident, or starts at most two windows
// after its end, catches it. It returns one Catch per incident and the
// number of anomalies that matched no incident (false alerts).
func Match(incidents []sim.Incident, as []anomaly.Anomaly, window time.Duration) ([]Catch, int) {
	w := window.Milliseconds()
	used := make([]bool, len(as))
	out := make([]Catch, 0, len(incidents))
	for _, inc := range incidents {
		c := Catch{Incident: inc}
		start := inc.Start.UnixMilli()
		first := int64(-1)
		for i, a := range as {
			if !belongs(inc, a, w) {
				continue
			}
			used[i] = true
			c.Caught = true
			c.Anomalies = append(c.Anomalies, a)
			if !slices.Contains(c.Kinds, a.Kind) {
				c.Kinds = append(c.Kinds, a.Kind)
			}
			if first < 0 || a.WindowStartMs < first || (a.WindowStartMs == first && a.Kind < c.First) {
				first = a.WindowStartMs
				c.First = a.Kind
			}
		}
		if c.Caught && first > start {
			c.Windows = int((first - (start - start%w)) / w)
		}
		sort.Strings(c.Kinds)
		out = append(out, c)
	}
	falseAlerts := 0
	for _, u := range used {
		if !u {
			falseAlerts++
		}
	}
	return out, falseAlerts
}

// Matched reports, for each anomaly, whether it belongs to one of the
// incidents by Match's rule.
func Matched(incidents []sim.Incident, as []anomaly.Anomaly, window time.Duration) []bool {
	w := window.Milliseconds()
	out := make([]bool, len(as))
	for _, inc := range incidents {
		for i, a := range as {
			out[i] = out[i] || belongs(inc, a, w)
		}
	}
	return out
}

// belongs is the matching rule: a is about inc's agent and its window
// overlaps inc or starts at most two windows (of wMs) after its end.
func belongs(inc sim.Incident, a anomaly.Anomaly, wMs int64) bool {
	return a.AgentID == inc.Agent && a.WindowEndMs > inc.Start.UnixMilli() && a.WindowStartMs <= inc.End.UnixMilli()+2*wMs
}
