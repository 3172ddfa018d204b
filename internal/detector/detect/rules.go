package detect

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/baseline"
	"github.com/agentwatch/agentwatch/pkg/features"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

const (
	ruleShadow = iota
	ruleUnapproved
	ruleZombie
	ruleSensitive
	ruleDrift
	ruleOffHours
	ruleNewIP
	numRules
)

// rulesV1 is how many rule times version 1 of the agent state held.
const rulesV1 = 6

// rules raises the anomalies that need no statistics.
func (p *Processor) rules(pt *partition, a *agentState, w *features.Window, ag *inventory.Agent, known, flood bool) {
	reg := p.cat.Registry()
	isNew := func(route string) bool { _, ok := slices.BinarySearch(w.NewRouteNames, route); return ok }
	if first := a.seen.SinceMs == 0; reg.Enabled() && !known && !flood && p.due(a, ruleShadow, w.StartMs, first) {
		an := p.newAnomaly(pt, a, w, anomaly.ShadowAgent, ag, known)
		p.place(&an, placeShadow)
		an.Count = int(w.Values[features.Calls])
		an.Summary = fmt.Sprintf("Agent %q is not in the agent registry but made %d calls in the window (%s).",
			a.id, an.Count, routeList(w.TopRoutes))
		// Held: the window's other unregistered agents may fold with it.
		p.shadows = append(p.shadows, shadowHit{an: an, cred: w.CredentialID, ip: w.SourceIP, first: first})
	}
	if known {
		var bad []features.RouteCalls
		fresh := false
		for _, r := range w.Routes {
			if ok, listed := reg.Approved(a.id, r.Route); listed && !ok {
				bad = append(bad, r)
				fresh = fresh || isNew(r.Route)
			}
		}
		if len(bad) > 0 && p.due(a, ruleUnapproved, w.StartMs, fresh) {
			an := p.newAnomaly(pt, a, w, anomaly.UnapprovedRoute, ag, known)
			an.Routes = routeCounts(bad)
			ok := 0
			for _, r := range bad {
				an.Count += r.Calls
				ok += r.OK
			}
			if ok > 0 {
				p.place(&an, placeUnapprovedOK)
			} else {
				p.place(&an, placeUnapprovedDeny)
			}
			an.Summary = fmt.Sprintf("Agent %q (role %s) called %d route(s) outside its approved routes: %s; %s.",
				a.id, ag.Role, len(bad), routeList(bad), outcome(ok, an.Count))
			p.emit(an)
		}
	}
	if len(w.DeprecatedRoutes) > 0 {
		fresh := false
		var hit []features.RouteCalls
		for _, r := range w.Routes {
			if slices.Contains(w.DeprecatedRoutes, r.Route) {
				hit = append(hit, r)
				fresh = fresh || isNew(r.Route)
			}
		}
		if p.due(a, ruleZombie, w.StartMs, fresh) {
			an := p.newAnomaly(pt, a, w, anomaly.ZombieRoute, ag, known)
			p.place(&an, placeZombie)
			an.Count = int(w.Values[features.DeprecatedCalls])
			an.Routes = routeCounts(hit)
			an.Summary = fmt.Sprintf("Agent %q called deprecated (zombie) route(s) %d time(s): %s.", a.id, an.Count, routeList(hit))
			p.emit(an)
		}
	}
	if known && p.set.NewIPMaxKnown > 0 && len(w.NewIPNames) > 0 && w.SeenAgeMs >= p.set.NoveltyMatureMs &&
		len(a.seen.IPs) <= p.set.NewIPMaxKnown && p.due(a, ruleNewIP, w.StartMs, false) {
		an := p.newAnomaly(pt, a, w, anomaly.NewSourceIP, ag, known)
		p.place(&an, placeNewSourceIP)
		an.Count = int(w.Values[features.NewIPs])
		an.SourceIPs = slices.Clone(w.NewIPNames)
		an.Summary = fmt.Sprintf("Agent %q (credential %s) made calls from source address(es) it had never used: %s; it had used %d address(es) before. A stolen credential replayed from elsewhere looks like this.",
			a.id, orNone(ag.CredentialID), strings.Join(w.NewIPNames, ", "), len(a.seen.IPs))
		p.emit(an)
	}
	if len(w.SensitiveFirst) > 0 {
		var hit []features.RouteCalls
		for _, r := range w.Routes {
			if !slices.Contains(w.SensitiveFirst, r.Route) {
				continue
			}
			approved, listed := false, false
			if known {
				approved, listed = reg.Approved(a.id, r.Route)
			}
			switch {
			case listed && !approved:
				hit = append(hit, r)
			case !listed && w.SeenAgeMs >= p.set.NoveltyMatureMs:
				hit = append(hit, r)
			}
		}
		if len(hit) > 0 {
			an := p.newAnomaly(pt, a, w, anomaly.FirstSensitive, ag, known)
			an.Routes = routeCounts(hit)
			ok := 0
			for _, r := range hit {
				an.Count += r.Calls
				ok += r.OK
			}
			if ok > 0 {
				p.place(&an, placeSensitiveOK)
			} else {
				p.place(&an, placeSensitiveDeny)
			}
			an.Summary = fmt.Sprintf("Agent %q called sensitive route(s) it had never called before: %s; %s.", a.id, routeList(hit), outcome(ok, an.Count))
			p.emit(an)
			a.ruleAt[ruleSensitive] = w.StartMs
		}
	}
}

// Off-hours rule. For an agent watched for at least OffHoursMinAge (a full
// week for weekend hours), in an hour-of-day slot whose expected load
// (calls per active window times active windows) is at most
// OffHoursQuietShare of its busiest slot's, the calls so far in the current
// hour are compared with the slot's usual calls per hour (negative binomial
// tail with the agent's dispersion, over the hour): a burst in an hour the
// agent is quiet in is raised once, a stray call at night is not. The
// count must also be at least Settings.OffHoursMinRatio times the usual,
// and leaves out the calls of windows that raised an anomaly of their own
// (behaviour, drift, sustained_excess): those have been told.
const (
	OffHoursQuietShare = 0.1
	OffHoursMinAge     = 2 * 24 * time.Hour
	// OffHoursAlertScore is -log10 of the tail that raises it.
	OffHoursAlertScore = 7
	// OffHoursMinDays is how many times the hour slot must have been
	// watched, and OffHoursMinCalls the least calls in the hour, before
	// the rule speaks.
	OffHoursMinDays  = 2
	OffHoursMinCalls = 10
)

// slotDays counts the days in [fromMs, toMs) whose hour slot (the hour of
// day, on a weekday or a weekend day, as features.Slot) has fully passed:
// how many times the agent could have been seen in it.
func slotDays(fromMs, toMs int64, slot int) float64 {
	const dayMs, hourMs = 86_400_000, 3_600_000
	n := 0
	first := fromMs - ((fromMs%dayMs)+dayMs)%dayMs
	for d := first; d < toMs && n < 10_000; d += dayMs {
		at := d + int64(slot%24)*hourMs
		if at >= fromMs && at+hourMs <= toMs && features.Slot(at) == slot {
			n++
		}
	}
	return float64(n)
}

func (p *Processor) offHours(pt *partition, a *agentState, w *features.Window, ag *inventory.Agent, known bool) {
	minAge := OffHoursMinAge
	if w.Slot >= 24 {
		minAge = 7 * 24 * time.Hour
	}
	if a.model.Windows() < p.set.Baseline.Warmup || w.SeenAgeMs < minAge.Milliseconds() {
		return
	}
	perWindow, disp, load, busiest := a.hourLoad[0], a.hourLoad[1], a.hourLoad[2], a.hourLoad[3]
	if busiest <= 0 || load > OffHoursQuietShare*busiest {
		return
	}
	active, _ := a.model.SlotActivity(w.StartMs)
	// The model has already learnt this hour's windows: take them out.
	prior := max(active-float64(a.hourActive), 0)
	days := slotDays(w.StartMs-w.SeenAgeMs, w.StartMs, w.Slot)
	k := float64(a.hourCalls)
	if days < OffHoursMinDays || k < OffHoursMinCalls {
		return
	}
	lambda := max(perWindow, 0.05) * (prior + 0.5) / days
	lnP, raise := offHoursTail(k, lambda, disp, p.set.OffHoursMinRatio)
	if !raise || !p.due(a, ruleOffHours, w.StartMs, false) {
		return
	}
	score := -lnP / math.Ln10
	an := p.newAnomaly(pt, a, w, anomaly.OffHours, ag, known)
	p.placeEvidence(&an, placeOffHoursBand, score, OffHoursAlertScore)
	an.Count = int(k)
	day := "weekday"
	if w.Slot >= 24 {
		day = "weekend"
	}
	an.Explanation = []anomaly.Feature{{Name: "calls_this_hour", Observed: k, Expected: round(lambda), Surprise: round(-lnP)}}
	an.Summary = fmt.Sprintf("Agent %q has made %.0f calls so far in the %02d:00 UTC hour on a %s, an hour it is usually quiet in (%.1f calls expected): %s.",
		a.id, k, w.Slot%24, day, lambda, routeList(w.TopRoutes))
	p.emit(an)
}

// offHoursTail returns the log upper tail of k calls in an hour expected
// to hold lambda (negative binomial with dispersion disp), and whether it
// raises off_hours: improbable enough (OffHoursAlertScore) and at least
// minRatio times lambda.
func offHoursTail(k, lambda, disp, minRatio float64) (lnP float64, raise bool) {
	if k < minRatio*lambda {
		return 0, false
	}
	lnP = baseline.LogUpperTail(k, lambda, disp)
	return lnP, -lnP/math.Ln10 >= OffHoursAlertScore
}

// noteHour counts a window in the agent's current hour for the off-hours
// rule: always as activity, its calls only if it raised no anomaly of its
// own (told), so that one burst is not told twice.
func (a *agentState) noteHour(calls float64, told bool) {
	a.hourActive++
	if !told {
		a.hourCalls += uint32(calls)
	}
}

// due reports whether a rule anomaly of this kind may be raised for the
// agent now, and records it if so.
func (p *Processor) due(a *agentState, rule int, ws int64, fresh bool) bool {
	last := a.ruleAt[rule]
	if !fresh && last != 0 && ws-last < p.repeatMs[rule] {
		return false
	}
	a.ruleAt[rule] = ws
	return true
}

func (p *Processor) emitFlood(pt *partition, ws int64, ids []string) {
	w := features.Window{StartMs: ws, EndMs: ws + p.set.Features.WindowMs}
	agentID := "*flood/p" + strconv.Itoa(int(pt.id))
	an := anomaly.Anomaly{
		V: anomaly.Version, ID: anomaly.ID(agentID, ws, anomaly.AgentFlood), AgentID: agentID, Kind: anomaly.AgentFlood,
		WindowStartMs: w.StartMs, WindowEndMs: w.EndMs, Count: len(ids), Partition: pt.id,
	}
	p.place(&an, placeFlood)
	sample := slices.Clone(ids)
	slices.Sort(sample)
	an.AgentIDs = slices.Clone(sample[:min(len(sample), anomaly.MaxAgentIDs)])
	an.Summary = fmt.Sprintf("%d never-seen agent ids appeared in one window on partition %d (limit %d): possible fake-id flood. First ids: %s.",
		len(ids), pt.id, p.set.NewAgentsPerWindow, strings.Join(sample[:min(5, len(sample))], ", "))
	p.emit(an)
}

// outcome says how the calls a route rule saw were answered: whether any
// got through decides how serious the finding is.
func outcome(ok, calls int) string {
	switch {
	case ok == 0:
		return "all refused or failed, none answered 2xx"
	case ok == calls:
		return fmt.Sprintf("all %d answered 2xx (served)", calls)
	}
	return fmt.Sprintf("%d of %d answered 2xx (served)", ok, calls)
}
