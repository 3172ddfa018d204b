// Package eval holds the detection-quality evaluations: the Numenta
// Anomaly Benchmark run through pkg/baseline (nab.go) and labeled agent
// attack scenarios run through the detector's real path (this file). Both
// are commands (detector eval nab|scenarios) and make targets, and their
// tables go into docs/evaluation.md.
package eval

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detect"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/tools/scenario"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/attack"
	"github.com/agentwatch/agentwatch/pkg/gateway"
)

// TrueClass is the attack class an incident card must name for each
// labelled incident kind: the scenario's truth for the class accuracy.
var TrueClass = map[sim.IncidentKind]attack.Class{
	sim.Exfiltration:       attack.Exfiltration,
	sim.SlowExfiltration:   attack.SlowExfiltration,
	sim.Enumeration:        attack.IDEnumeration,
	sim.AuthStorm:          attack.AuthStorm,
	sim.EndpointSprawl:     attack.ReconSprawl,
	sim.OutOfRoleSensitive: attack.OutOfRole,
	sim.OffHours:           attack.OffHours,
	sim.NewSourceAddress:   attack.CredentialReplay,
	sim.ZombieAPI:          attack.ZombieAPI,
	sim.UnregisteredAgent:  attack.ShadowAgent,
}

// ScenarioOptions says what to simulate and how to detect.
type ScenarioOptions struct {
	Seed        uint64
	Agents      int
	HistoryDays int
	TestDays    int
	// Start is the simulated time of the first history minute.
	Start time.Time
	// Partitions is how many events-topic partitions agents are keyed to,
	// as ingest does; each has its own watermark and peer models.
	Partitions int32
	// Settings are the detector's (detect.SettingsFrom of the config), so
	// the evaluated detector is the configured one.
	Settings detect.Settings
	// Progress gets a line per simulated day; nil for none.
	Progress io.Writer
	// Long is the plan of low-and-slow incidents and benign long changes;
	// nil means sim.DefaultLongPlan(), &sim.LongPlan{} none.
	Long *sim.LongPlan
}

// KindResult is the outcome for one incident kind.
type KindResult struct {
	Kind      sim.IncidentKind
	Incidents int
	Caught    int
	// Windows are the times to detect, in windows, of the caught ones.
	Windows []int
	// AlertKinds are the anomaly kinds that caught them; FirstKinds the
	// kinds of the first alert of each.
	AlertKinds, FirstKinds []string
	// Classes are the attack classes the incident cards of the caught
	// ones name (attack.Lead over the anomalies that caught each), in
	// the order of Windows; RightClass counts those that are the kind's
	// TrueClass.
	Classes    []attack.Class
	RightClass int
}

// BenignResult says how a benign labeled event was reported.
type BenignResult struct {
	sim.Benign
	// Grouped is the number of global_event alerts during it; PerAgent the
	// per-agent alerts that overlap it and belong to no incident; Fleet the
	// fleet_gauge alerts during it (grouped alerts of an upstream outage,
	// false alerts of any other event).
	Grouped, PerAgent, Fleet int
}

// LowSlowResult is the outcome of one low-and-slow incident.
type LowSlowResult struct {
	Incident sim.Incident
	Role     string
	Caught   bool
	// Minutes is the time to detect: from the incident's start to the end
	// of the window of its first alert (the earliest window end among the
	// alerts that belong to it), in whole minutes rounded up. It is taken
	// from the window's end, not its start, so an alert whose evidence
	// window began before the incident does not count as instant.
	Minutes int
	// First is the kind of that first alert; Kinds every kind raised for
	// it; Class the attack class its card would name (attack.Lead).
	First string
	Kinds []string
	Class attack.Class
}

// LongBenignResult says how a benign long change (a new batch job, a
// rollout that multiplies traffic for good) was reported: the per-agent
// alerts about each agent it concerns, from its start to the end of the
// run, that belong to no incident (all of them false alerts). The target
// is at most one per agent concerned.
type LongBenignResult struct {
	sim.Benign
	Role string
	// PerAgent counts those alerts by agent (every agent concerned has an
	// entry); Kinds by anomaly kind; First is the window start of the first.
	PerAgent map[string]int
	Kinds    map[string]int
	First    time.Time
}

// Alerts is the number of alerts about the change, over its agents.
func (b LongBenignResult) Alerts() int {
	n := 0
	for _, k := range b.PerAgent {
		n += k
	}
	return n
}

// ScenarioReport is the result of one scenario run.
type ScenarioReport struct {
	Seed                            uint64
	Agents, Roles                   int
	HistoryDays, TestDays           int
	Events                          int
	TestStart                       time.Time
	Kinds                           []KindResult
	Catches                         []scenario.Catch
	Benign                          []BenignResult
	Alerts, Matched, False, Grouped int
	// Fleet counts the fleet_gauge alerts; FleetGrouped those of them
	// that coincide with an upstream outage and count as its grouped
	// alerts (in Grouped). The others are false (in False).
	Fleet, FleetGrouped int
	// FalseByKind counts the false alerts by anomaly kind.
	FalseByKind map[string]int
	// MatchedBySeverity and FalseBySeverity count the per-agent alerts
	// that belong to an incident, and the false ones, by severity.
	MatchedBySeverity, FalseBySeverity map[string]int
	// FalseAlerts are the per-agent and fleet alerts that belong to no
	// incident or outage.
	FalseAlerts []anomaly.Anomaly
	// LowAndSlow are the low-and-slow incidents, apart from Kinds (they
	// do not count in its numbers: caught, time to detect, card class);
	// Long the benign long changes, apart from Benign. Alerts about either
	// count in Alerts, Matched and False as any others.
	LowAndSlow []LowSlowResult
	Long       []LongBenignResult
	Elapsed    time.Duration
}

// LowAndSlowSummary counts the low-and-slow incidents of at least minMult
// times the calls lasting at least minLen, those caught, and their median
// time to detect in minutes.
func (r ScenarioReport) LowAndSlowSummary(minMult float64, minLen time.Duration) (caught, total int, medianMin float64) {
	var ms []int
	for _, l := range r.LowAndSlow {
		if l.Incident.Multiplier < minMult || l.Incident.End.Sub(l.Incident.Start) < minLen {
			continue
		}
		total++
		if l.Caught {
			caught++
			ms = append(ms, l.Minutes)
		}
	}
	return caught, total, median(ms)
}

// Precision is the share of alerts that belong to an incident, over the
// per-agent alerts and the false fleet alerts (grouped alerts of an
// outage, global events and fleet alerts during it, are left out).
func (r ScenarioReport) Precision() float64 {
	if n := r.Matched + r.False; n > 0 {
		return float64(r.Matched) / float64(n)
	}
	return 1
}

// FalsePer100AgentDays is false alerts per 100 agent-days of test days.
func (r ScenarioReport) FalsePer100AgentDays() float64 {
	return 100 * float64(r.False) / float64(r.Agents*r.TestDays)
}

// ClassAccuracy is the share of caught incidents whose card names the
// right attack class, and the counts it is made of.
func (r ScenarioReport) ClassAccuracy() (share float64, right, caught int) {
	for _, k := range r.Kinds {
		right += k.RightClass
		caught += k.Caught
	}
	if caught == 0 {
		return 0, 0, 0
	}
	return float64(right) / float64(caught), right, caught
}

// MedianWindows is the median time to detect over all caught incidents.
func (r ScenarioReport) MedianWindows() float64 {
	var ws []int
	for _, k := range r.Kinds {
		ws = append(ws, k.Windows...)
	}
	return median(ws)
}

func median(ws []int) float64 {
	if len(ws) == 0 {
		return 0
	}
	ws = slices.Clone(ws)
	slices.Sort(ws)
	if n := len(ws); n%2 == 1 {
		return float64(ws[n/2])
	} else {
		return float64(ws[n/2-1]+ws[n/2]) / 2
	}
}

// RunScenario simulates o's scenario and runs every line through the
// detector's real path: the gateway parser (as ingest), partitioning by
// agent id (as ingest's producer), the detector's processor with the given
// settings, registry and route inventory. History days warm the baselines
// up; only the test days are judged.
func RunScenario(ctx context.Context, o ScenarioOptions) (ScenarioReport, error) {
	began := time.Now()
	if o.Partitions <= 0 {
		o.Partitions = 4
	}
	plan := sim.DefaultLongPlan()
	if o.Long != nil {
		plan = *o.Long
	}
	sc := sim.EvalScenarioPlan(o.Seed, o.Start, o.Agents, o.HistoryDays, o.TestDays, plan)
	s, err := sim.New(sc.Config)
	if err != nil {
		return ScenarioReport{}, fmt.Errorf("simulator: %w", err)
	}
	reg, inv, err := s.Catalog()
	if err != nil {
		return ScenarioReport{}, err
	}
	cat := detect.StaticCatalog{Reg: reg, Inv: inv}
	parser, err := gateway.NewParser(gateway.Options{})
	if err != nil {
		return ScenarioReport{}, err
	}
	proc := detect.NewProcessor(o.Settings, cat, nil)
	next := make([]int64, o.Partitions)
	var all []anomaly.Anomaly
	events := 0
	day := o.Start.Truncate(24 * time.Hour)
	total := o.HistoryDays + o.TestDays
	dayN := 0
	for {
		l, ok := s.Next()
		if !ok {
			break
		}
		if !l.Good {
			continue
		}
		// Parsed with "now" just after the event, as a live ingest would.
		ev, err := parser.Parse(l.Raw, gateway.Source{Topic: "raw", Offset: int64(events)}, time.UnixMilli(l.Event.EventTimeMs+1000))
		if err != nil {
			return ScenarioReport{}, fmt.Errorf("simulated line does not parse: %w: %.200s", err, l.Raw)
		}
		key := ev.AgentID
		if ev.Unattributed || key == "" {
			key = "unattributed/" + ev.SourceIP
		}
		part := kafka.PartitionFor(key, int(o.Partitions))
		proc.Add(part, next[part], &ev)
		next[part]++
		events++
		if events%4096 == 0 {
			as, _ := proc.Take()
			all = append(all, as...)
			if t := time.UnixMilli(ev.EventTimeMs).UTC(); t.Sub(day) >= 24*time.Hour {
				day = t.Truncate(24 * time.Hour)
				dayN++
				if o.Progress != nil {
					fmt.Fprintf(o.Progress, "scenario seed %d: day %d/%d simulated (%s), %d events, %d alerts so far, %.0f events/s\n",
						o.Seed, dayN, total, day.Format("2006-01-02"), events, len(all), float64(events)/time.Since(began).Seconds())
				}
			}
			if err := ctx.Err(); err != nil {
				return ScenarioReport{}, err
			}
		}
	}
	proc.FlushAll()
	as, _ := proc.Take()
	all = append(all, as...)

	r := ScenarioReport{
		Seed: o.Seed, Agents: sc.Agents, Roles: len(sim.Roles), HistoryDays: o.HistoryDays, TestDays: o.TestDays,
		Events: events, TestStart: sc.TestStart, FalseByKind: map[string]int{},
		MatchedBySeverity: map[string]int{}, FalseBySeverity: map[string]int{},
	}
	window := time.Duration(o.Settings.Features.WindowMs) * time.Millisecond
	var judged []anomaly.Anomaly
	testMs := sc.TestStart.UnixMilli()
	for _, a := range all {
		if a.WindowStartMs >= testMs {
			judged = append(judged, a)
		}
	}
	benign := s.BenignEvents()
	// Partitions that see one global event report their shares under one
	// group, which the responder joins into one incident and one alert. A fleet
	// alert is about a partition, not an agent: it belongs to an upstream
	// outage when it overlaps one (plus two windows), as a grouped alert;
	// any other is false, incidents included (an incident is one agent's,
	// and its own alerts catch it).
	var perAgent, fleet []anomaly.Anomaly
	globalIDs := map[string]bool{}
	for _, a := range judged {
		switch a.Kind {
		case anomaly.GlobalEvent:
			globalIDs[a.GroupKey()] = true
		case anomaly.FleetGauge:
			fleet = append(fleet, a)
		default:
			perAgent = append(perAgent, a)
		}
	}
	inOutage := func(a anomaly.Anomaly) bool {
		for _, b := range benign {
			if b.Kind == sim.UpstreamOutage && a.WindowEndMs > b.Start.UnixMilli() && a.WindowStartMs < b.End.UnixMilli()+2*window.Milliseconds() {
				return true
			}
		}
		return false
	}
	var fleetFalse []anomaly.Anomaly
	for _, a := range fleet {
		if inOutage(a) {
			r.FleetGrouped++
		} else {
			fleetFalse = append(fleetFalse, a)
		}
	}
	r.Fleet = len(fleet)
	r.Grouped = len(globalIDs) + r.FleetGrouped
	catches, _ := scenario.Match(s.Incidents(), perAgent, window)
	r.Catches = catches
	matched := scenario.Matched(s.Incidents(), perAgent, window)
	byKind := map[sim.IncidentKind]*KindResult{}
	for _, k := range sim.AllIncidentKinds {
		byKind[k] = &KindResult{Kind: k}
	}
	roleOf := func(id string) string {
		a, _ := s.Registry().Lookup(id)
		return string(a.Role)
	}
	for _, c := range catches {
		if c.Incident.Kind == sim.LowAndSlow {
			r.LowAndSlow = append(r.LowAndSlow, lowSlowResult(c, roleOf(c.Incident.Agent)))
			continue
		}
		k := byKind[c.Incident.Kind]
		k.Incidents++
		if c.Caught {
			k.Caught++
			k.Windows = append(k.Windows, c.Windows)
			k.FirstKinds = append(k.FirstKinds, c.First)
			// The card of an incident names the most telling class of
			// everything the responder has put in its thread by the end.
			class := attack.Lead(c.Anomalies)
			k.Classes = append(k.Classes, class)
			if class == TrueClass[c.Incident.Kind] {
				k.RightClass++
			}
			for _, ak := range c.Kinds {
				if !slices.Contains(k.AlertKinds, ak) {
					k.AlertKinds = append(k.AlertKinds, ak)
				}
			}
		}
	}
	for _, k := range sim.AllIncidentKinds {
		sort.Strings(byKind[k].AlertKinds)
		r.Kinds = append(r.Kinds, *byKind[k])
	}
	// A benign event is judged by the alerts it caused: for an outage or a
	// holiday, those in its span (plus two windows); for a rollout, those
	// about agents of its role in its first day. History-day events are
	// not judged.
	for _, b := range benign {
		if b.Start.Before(sc.TestStart) {
			continue
		}
		if slices.Contains(sim.LongBenignKinds, b.Kind) {
			lr := LongBenignResult{Benign: b, PerAgent: map[string]int{}, Kinds: map[string]int{}}
			if len(b.Agents) > 0 {
				lr.Role = roleOf(b.Agents[0])
			}
			for _, id := range b.Agents {
				lr.PerAgent[id] = 0
			}
			for i, a := range perAgent {
				if _, ok := lr.PerAgent[a.AgentID]; !ok || matched[i] || a.WindowEndMs <= b.Start.UnixMilli() {
					continue
				}
				if lr.Alerts() == 0 || a.WindowStartMs < lr.First.UnixMilli() {
					lr.First = time.UnixMilli(a.WindowStartMs).UTC()
				}
				lr.PerAgent[a.AgentID]++
				lr.Kinds[a.Kind]++
			}
			r.Long = append(r.Long, lr)
			continue
		}
		br := BenignResult{Benign: b}
		from, to := b.Start.UnixMilli(), b.End.UnixMilli()+2*window.Milliseconds()
		if b.Kind == sim.RoleRollout {
			to = min(to, b.Start.Add(24*time.Hour).UnixMilli())
		}
		ids := map[string]bool{}
		for _, a := range judged {
			if a.Kind == anomaly.GlobalEvent && a.WindowEndMs > from && a.WindowStartMs < to {
				ids[a.GroupKey()] = true
			}
		}
		br.Grouped = len(ids)
		for _, a := range fleet {
			if a.WindowEndMs > from && a.WindowStartMs < to {
				br.Fleet++
			}
		}
		if b.Kind == sim.UpstreamOutage {
			br.Grouped += br.Fleet
		}
		for i, a := range perAgent {
			if matched[i] || a.WindowEndMs <= from || a.WindowStartMs >= to {
				continue
			}
			if b.Kind == sim.RoleRollout && a.Role != string(b.Role) {
				continue
			}
			br.PerAgent++
		}
		r.Benign = append(r.Benign, br)
	}
	r.Alerts = len(perAgent) + r.Grouped + len(fleetFalse)
	for i, a := range perAgent {
		if matched[i] {
			r.Matched++
			r.MatchedBySeverity[a.Severity]++
			continue
		}
		r.False++
		r.FalseByKind[a.Kind]++
		r.FalseBySeverity[a.Severity]++
		r.FalseAlerts = append(r.FalseAlerts, a)
	}
	for _, a := range fleetFalse {
		r.False++
		r.FalseByKind[a.Kind]++
		r.FalseBySeverity[a.Severity]++
		r.FalseAlerts = append(r.FalseAlerts, a)
	}
	r.Elapsed = time.Since(began)
	return r, nil
}

// lowSlowResult judges the catch of a low-and-slow incident.
func lowSlowResult(c scenario.Catch, role string) LowSlowResult {
	l := LowSlowResult{Incident: c.Incident, Role: role, Caught: c.Caught, Kinds: c.Kinds}
	if !c.Caught {
		return l
	}
	first := c.Anomalies[0]
	for _, a := range c.Anomalies[1:] {
		if a.WindowEndMs < first.WindowEndMs || (a.WindowEndMs == first.WindowEndMs && a.Kind < first.Kind) {
			first = a
		}
	}
	l.First = first.Kind
	l.Minutes = int(math.Ceil(float64(first.WindowEndMs-c.Incident.Start.UnixMilli()) / 60_000))
	l.Class = attack.Lead(c.Anomalies)
	return l
}

// WriteScenarioTable writes the report as markdown.
func WriteScenarioTable(w io.Writer, r ScenarioReport) {
	fmt.Fprintf(w, "Seed %d: %d agents of %d roles, %d history days then %d test days, %d events (%s).\n\n",
		r.Seed, r.Agents, r.Roles, r.HistoryDays, r.TestDays, r.Events, r.Elapsed.Round(time.Second))
	fmt.Fprintln(w, "| incident kind | incidents | caught | time to detect (windows) | first alert | all alert kinds | card class (right) |")
	fmt.Fprintln(w, "|---|---:|---:|---|---|---|---|")
	for _, k := range r.Kinds {
		ttd, first, classes := "–", "–", "–"
		if len(k.Windows) > 0 {
			parts := make([]string, len(k.Windows))
			firsts := make([]string, len(k.Windows))
			cs := make([]string, len(k.Windows))
			for i, x := range k.Windows {
				parts[i] = fmt.Sprint(x)
				firsts[i] = k.FirstKinds[i]
				cs[i] = string(k.Classes[i])
			}
			ttd, first = strings.Join(parts, ", "), strings.Join(firsts, ", ")
			classes = fmt.Sprintf("%s (%d of %d)", strings.Join(cs, ", "), k.RightClass, k.Caught)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s |\n", k.Kind, k.Incidents, k.Caught, ttd, first, strings.Join(k.AlertKinds, ", "), classes)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| measure | value |\n|---|---|\n")
	fmt.Fprintf(w, "| alerts in the test days | %d (%d per-agent, %d grouped: %d global events and %d fleet gauge during the outage; %d other fleet gauge) |\n",
		r.Alerts, r.Alerts-r.Grouped-(r.Fleet-r.FleetGrouped), r.Grouped, r.Grouped-r.FleetGrouped, r.FleetGrouped, r.Fleet-r.FleetGrouped)
	fmt.Fprintf(w, "| precision (per-agent and other fleet alerts that belong to an incident) | %.1f%% (%d of %d) |\n", 100*r.Precision(), r.Matched, r.Matched+r.False)
	fmt.Fprintf(w, "| false alerts per 100 agent-days | %.2f (%d over %d agent-days) |\n", r.FalsePer100AgentDays(), r.False, r.Agents*r.TestDays)
	if len(r.Long) > 0 {
		n := 0
		for _, b := range r.Long {
			n += b.Alerts()
		}
		fmt.Fprintf(w, "| of which about the agents of benign long changes | %d |\n", n)
	}
	fmt.Fprintf(w, "| median time to detect | %.1f windows |\n", r.MedianWindows())
	share, right, caught := r.ClassAccuracy()
	fmt.Fprintf(w, "| caught incidents whose card names the right attack class | %.1f%% (%d of %d) |\n", 100*share, right, caught)
	for _, b := range r.Benign {
		span := b.Start.Format("Jan 2 15:04") + "–" + b.End.Format("15:04")
		if b.Kind == sim.RoleRollout {
			span = "from " + b.Start.Format("Jan 2 15:04") + ", first day"
		} else if b.Kind == sim.Holiday {
			span = b.Start.Format("Mon Jan 2")
		}
		fleetNote := fmt.Sprintf(", %d false fleet alert(s)", b.Fleet)
		if b.Kind == sim.UpstreamOutage {
			fleetNote = fmt.Sprintf(" (%d of them fleet gauge)", b.Fleet)
		}
		fmt.Fprintf(w, "| benign %s, %s%s | %d grouped alert(s)%s, %d false per-agent alert(s) |\n", b.Kind, span, roleNote(string(b.Role)), b.Grouped, fleetNote, b.PerAgent)
	}
	fmt.Fprintf(w, "| incident alerts by severity | %s |\n", bySeverity(r.MatchedBySeverity))
	fmt.Fprintf(w, "| false alerts by severity | %s |\n", bySeverity(r.FalseBySeverity))
	if len(r.FalseByKind) > 0 {
		kinds := make([]string, 0, len(r.FalseByKind))
		for k, n := range r.FalseByKind {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(kinds)
		fmt.Fprintf(w, "| false alerts by kind | %s |\n", strings.Join(kinds, ", "))
	}
	writeLowAndSlow(w, r)
}

// writeLowAndSlow writes the low-and-slow incidents' table and summary,
// and the benign long changes' table, when the run has them.
func writeLowAndSlow(w io.Writer, r ScenarioReport) {
	if len(r.LowAndSlow) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Low-and-slow incidents: calls and bytes at a multiple of what the agent's own profile expects at that time, on its usual routes or on one sensitive route it is approved for (route named), inside its working hours. Time to detect: minutes from the start to the end of the first alert's window.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| incident | agent (role) | calls × | bytes × | length | route | start | caught | time to detect (min) | first alert | all alert kinds | card class |")
		fmt.Fprintln(w, "|---|---|---:|---:|---|---|---|---|---:|---|---|---|")
		for _, l := range r.LowAndSlow {
			inc := l.Incident
			route, caught, ttd, first, class := "usual routes", "no", "–", "–", "–"
			if inc.Route != "" {
				route = "`" + inc.Route + "`"
			}
			if l.Caught {
				caught, ttd, first, class = "yes", fmt.Sprint(l.Minutes), l.First, string(l.Class)
			}
			kinds := strings.Join(l.Kinds, ", ")
			if kinds == "" {
				kinds = "–"
			}
			fmt.Fprintf(w, "| %s | %s (%s) | %g | %.2g | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				inc.ID, inc.Agent, l.Role, inc.Multiplier, inc.BytesMultiplier, hours(inc.End.Sub(inc.Start)), route,
				inc.Start.Format("Mon Jan 2 15:04"), caught, ttd, first, kinds, class)
		}
		fmt.Fprintln(w)
		c, n, med := r.LowAndSlowSummary(3, 2*time.Hour)
		fmt.Fprintf(w, "low-and-slow ≥3× for ≥2 h: caught %d of %d, median time to detect %s\n\n", c, n, minutes(c, med))
		c, n, med = r.LowAndSlowSummary(0, 0)
		fmt.Fprintf(w, "low-and-slow, all speeds: caught %d of %d, median time to detect %s\n", c, n, minutes(c, med))
	}
	if len(r.Long) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Benign long changes: alerts about each agent concerned, from the change's start to the end of the run, that belong to no incident (all false; they count in the false alerts above). Target: at most one per agent.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| benign change | agent (role) | from | alerts | first alert | alert kinds |")
		fmt.Fprintln(w, "|---|---|---|---:|---|---|")
		for _, b := range r.Long {
			what := string(b.Kind)
			switch b.Kind {
			case sim.NewBatchJob:
				what += fmt.Sprintf(" (%s of calls at %g× its peak rate every %s)", hours(sim.BatchBurst), b.Rate, hours(b.Every))
			case sim.TrafficRollout:
				what += fmt.Sprintf(" (%g× its calls)", b.Factor)
			}
			ids := make([]string, 0, len(b.PerAgent))
			for id := range b.PerAgent {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			agents := strings.Join(ids, ", ")
			if len(ids) > 3 {
				agents = fmt.Sprintf("%d agents", len(ids))
			}
			first, kinds := "–", "–"
			if b.Alerts() > 0 {
				first = b.First.Format("Mon Jan 2 15:04")
				var ks []string
				for k, n := range b.Kinds {
					ks = append(ks, fmt.Sprintf("%s %d", k, n))
				}
				sort.Strings(ks)
				kinds = strings.Join(ks, ", ")
			}
			alerts := fmt.Sprint(b.Alerts())
			if len(ids) > 1 {
				most := 0
				for _, n := range b.PerAgent {
					most = max(most, n)
				}
				alerts = fmt.Sprintf("%d (at most %d per agent)", b.Alerts(), most)
			}
			fmt.Fprintf(w, "| %s | %s (%s) | %s | %s | %s | %s |\n", what, agents, b.Role, b.Start.Format("Mon Jan 2 15:04"), alerts, first, kinds)
		}
	}
}

// hours renders a duration as "2 h", "90 min" or "5 min".
func hours(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%d h", d/time.Hour)
	}
	return fmt.Sprintf("%d min", d/time.Minute)
}

func minutes(caught int, m float64) string {
	if caught == 0 {
		return "– (none caught)"
	}
	return fmt.Sprintf("%g min", m)
}

// bySeverity renders counts by severity, most severe first.
func bySeverity(m map[string]int) string {
	known := []string{"critical", "high", "medium", "low"}
	var parts, other []string
	for _, s := range known {
		if m[s] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", s, m[s]))
		}
	}
	for s, n := range m {
		if !slices.Contains(known, s) {
			other = append(other, fmt.Sprintf("%q %d", s, n))
		}
	}
	sort.Strings(other)
	if parts = append(parts, other...); len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func roleNote(role string) string {
	if role == "" {
		return " (all agents)"
	}
	return " (" + role + ")"
}
