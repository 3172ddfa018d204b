package sim

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
)

// monday 00:00 UTC.
var monday = time.Date(2025, 3, 3, 0, 0, 0, 0, time.UTC)

func TestEvalScenario(t *testing.T) {
	cases := []struct {
		agents, history, test int
	}{
		{200, 14, 7}, {200, 1, 1}, {10, 3, 2}, {37, 7, 3}, {1000, 2, 5}, {12, 0, 14},
	}
	for _, c := range cases {
		for seed := uint64(1); seed <= 3; seed++ {
			sc := EvalScenario(seed, monday, c.agents, c.history, c.test)
			checkScenario(t, sc, c.agents, c.history, c.test)
		}
	}
}

func checkScenario(t *testing.T, sc Scenario, agents, historyDays, testDays int) {
	t.Helper()
	name := func() string {
		return fmt.Sprintf("seed %d, %d agents, %d+%d days", sc.Seed, agents, historyDays, testDays)
	}
	day := 24 * time.Hour
	end := sc.Start.Add(sc.Duration)
	if !sc.TestStart.Equal(monday.Add(time.Duration(historyDays)*day)) || sc.History != time.Duration(historyDays)*day || sc.Duration != time.Duration(historyDays+testDays)*day {
		t.Fatalf("%s: test start %s, history %s, duration %s", name(), sc.TestStart, sc.History, sc.Duration)
	}
	s, err := New(sc.Config)
	if err != nil {
		t.Fatalf("%s: New: %v", name(), err)
	}
	perKind := 1
	if testDays >= 2 {
		perKind = 2
	}
	counts := map[IncidentKind]int{}
	byAgent := map[string][]Incident{}
	business := map[IncidentKind]bool{}
	for _, inc := range s.Incidents() {
		counts[inc.Kind]++
		if inc.Start.Before(sc.TestStart) || inc.End.After(end) {
			t.Errorf("%s: %s at %s..%s outside the test days", name(), inc.ID, inc.Start, inc.End)
		}
		length := inc.End.Sub(inc.Start)
		switch inc.Kind {
		case OffHours:
			if h := inc.Start.Hour(); h < 2 || h >= 4 || inc.End.After(inc.Start.Truncate(day).Add(4*time.Hour)) {
				t.Errorf("%s: %s at %s..%s; want within 02:00-04:00 UTC", name(), inc.ID, inc.Start, inc.End)
			}
			if a, _ := s.Registry().Lookup(inc.Agent); a.Role == RoleITOps || a.Role == RoleBatchReporting {
				t.Errorf("%s: %s by %s, not a business-hours agent", name(), inc.ID, a.ID)
			}
		case SlowExfiltration:
			if length < 3*time.Hour || length > 6*time.Hour {
				t.Errorf("%s: %s lasts %s; want 3-6h", name(), inc.ID, length)
			}
		case LowAndSlow:
			checkLowAndSlow(t, s, sc, inc, name())
		default:
			if length < 10*time.Minute || length > 30*time.Minute {
				t.Errorf("%s: %s lasts %s; want 10-30 min", name(), inc.ID, length)
			}
		}
		if h := inc.Start.Hour(); h >= 8 && h < 17 {
			business[inc.Kind] = true
		}
		_, registered := s.Registry().Lookup(inc.Agent)
		if registered == (inc.Kind == UnregisteredAgent) {
			t.Errorf("%s: %s by %s, registered %v", name(), inc.ID, inc.Agent, registered)
		}
		for _, o := range byAgent[inc.Agent] {
			if inc.Start.Before(o.End) && o.Start.Before(inc.End) {
				t.Errorf("%s: %s and %s overlap on %s", name(), o.ID, inc.ID, inc.Agent)
			}
		}
		byAgent[inc.Agent] = append(byAgent[inc.Agent], inc)
	}
	for _, k := range AllIncidentKinds {
		if counts[k] < perKind {
			t.Errorf("%s: %d %s incidents; want %d at least", name(), counts[k], k, perKind)
		}
		if k != OffHours && !business[k] {
			t.Errorf("%s: no %s incident in business hours", name(), k)
		}
	}
	if agents >= 200 && len(byAgent) != len(s.Incidents()) {
		t.Errorf("%s: %d incidents on %d agents; want distinct culprits", name(), len(s.Incidents()), len(byAgent))
	}
	// Every speed and length of DefaultLongPlan where the days and the
	// fleet leave room (they always do from 30 agents on).
	if want := 9; counts[LowAndSlow] != want && (agents >= 30 || counts[LowAndSlow] > want) {
		t.Errorf("%s: %d low-and-slow incidents; want %d", name(), counts[LowAndSlow], want)
	}
	speeds := map[[2]float64]int{}
	for _, inc := range s.Incidents() {
		if inc.Kind == LowAndSlow {
			speeds[[2]float64{inc.Multiplier, inc.End.Sub(inc.Start).Hours()}]++
		}
	}
	if agents >= 30 && len(speeds) != 9 {
		t.Errorf("%s: low-and-slow speeds and lengths %v; want the 9 pairs", name(), speeds)
	}
	long := 0
	for _, b := range s.BenignEvents() {
		if !slices.Contains(LongBenignKinds, b.Kind) {
			continue
		}
		long++
		if len(b.Agents) != 1 || len(byAgent[b.Agents[0]]) != 0 || b.Start.Before(sc.TestStart) || !b.End.Equal(end) {
			t.Errorf("%s: %s on %v from %s to %s; want one agent with no incident, from a test day for good", name(), b.ID, b.Agents, b.Start, b.End)
		}
		if a, _ := s.Registry().Lookup(b.Agents[0]); b.Kind == NewBatchJob && a.Role != RoleITOps {
			t.Errorf("%s: batch job on %s, not an it_ops agent", name(), a.ID)
		}
	}
	if agents >= 30 && long != 2 {
		t.Errorf("%s: %d benign long changes; want a batch job and a rollout", name(), long)
	}
	kinds := func(before bool) map[BenignKind][]Benign {
		out := map[BenignKind][]Benign{}
		for _, b := range s.BenignEvents() {
			if b.Start.Before(sc.TestStart) == before {
				out[b.Kind] = append(out[b.Kind], b)
			}
		}
		return out
	}
	hist, test := kinds(true), kinds(false)
	delete(test, NewBatchJob)
	delete(test, TrafficRollout)
	if historyDays > 0 && (len(hist[RoleRollout]) != 1 || (historyDays >= 2) != (len(hist[Holiday]) == 1) || len(hist[UpstreamOutage]) != 0) {
		t.Errorf("%s: history has %+v; want a rollout and (2 days or more) a holiday", name(), hist)
	}
	if len(test[RoleRollout]) != 1 || len(test[UpstreamOutage]) != 1 || (testDays >= 3) != (len(test[Holiday]) == 1) {
		t.Errorf("%s: test days have %+v; want a rollout, an outage and (3 days or more) a holiday", name(), test)
	}
	if historyDays > 0 && hist[RoleRollout][0].Role == test[RoleRollout][0].Role {
		t.Errorf("%s: both rollouts are of %s", name(), hist[RoleRollout][0].Role)
	}
	for _, h := range append(hist[Holiday], test[Holiday]...) {
		if wd := h.Start.Weekday(); wd == time.Saturday || wd == time.Sunday || h.Start.Hour() != 0 || h.End.Sub(h.Start) != day {
			t.Errorf("%s: holiday %s..%s is not a whole weekday", name(), h.Start, h.End)
		}
	}
	for _, o := range test[UpstreamOutage] {
		if h := o.Start.Hour(); h < 9 || h >= 17 || o.End.Sub(o.Start) != 20*time.Minute {
			t.Errorf("%s: outage %s..%s; want 20 min in business hours", name(), o.Start, o.End)
		}
		if testDays < 2 {
			continue // no room to keep every incident clear of it
		}
		for _, inc := range s.Incidents() {
			if inc.Start.Before(o.End) && o.Start.Before(inc.End) {
				t.Errorf("%s: %s overlaps the outage", name(), inc.ID)
			}
		}
	}
}

// checkLowAndSlow checks a low-and-slow incident of an evaluation
// scenario: in business hours of a weekday that is no holiday, by an agent
// of a role that works them, and clear of the outage when the test days
// leave room.
func checkLowAndSlow(t *testing.T, s *Simulator, sc Scenario, inc Incident, name string) {
	t.Helper()
	day := inc.Start.Truncate(24 * time.Hour)
	if inc.Start.Before(day.Add(8*time.Hour+30*time.Minute)) || inc.End.After(day.Add(17*time.Hour+30*time.Minute)) {
		t.Errorf("%s: %s at %s..%s; want within 08:30-17:30", name, inc.ID, inc.Start, inc.End)
	}
	if wd := day.Weekday(); wd == time.Saturday || wd == time.Sunday {
		t.Errorf("%s: %s on a %s", name, inc.ID, wd)
	}
	for _, b := range s.BenignEvents() {
		if b.Kind == Holiday && b.Start.Equal(day) {
			t.Errorf("%s: %s on a holiday", name, inc.ID)
		}
		if b.Kind == UpstreamOutage && sc.Duration-sc.History >= 3*24*time.Hour && inc.Start.Before(b.End.Add(time.Hour)) && b.Start.Before(inc.End.Add(time.Hour)) {
			t.Errorf("%s: %s within an hour of the outage", name, inc.ID)
		}
	}
	if a, _ := s.Registry().Lookup(inc.Agent); !slices.Contains(lowAndSlowRoles, a.Role) {
		t.Errorf("%s: %s by %s of %s", name, inc.ID, a.ID, a.Role)
	}
	if l := inc.End.Sub(inc.Start); inc.Multiplier < 2 || inc.BytesMultiplier <= inc.Multiplier || (l != 2*time.Hour && l != 4*time.Hour && l != 8*time.Hour) {
		t.Errorf("%s: %s at %gx calls, %gx bytes for %s", name, inc.ID, inc.Multiplier, inc.BytesMultiplier, l)
	}
}

func TestEvalScenarioDeterminism(t *testing.T) {
	a, b := EvalScenario(5, monday, 200, 14, 7), EvalScenario(5, monday, 200, 14, 7)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("EvalScenario differs for one seed")
	}
	c := EvalScenario(6, monday, 200, 14, 7)
	same := 0
	for _, x := range c.Incidents {
		if slices.ContainsFunc(a.Incidents, func(y IncidentSpec) bool { return x.Agent == y.Agent && x.Offset == y.Offset }) {
			same++
		}
	}
	if same > len(c.Incidents)/10 || reflect.DeepEqual(a.Benign, c.Benign) {
		t.Errorf("seeds 5 and 6 share %d of %d incidents and benign %v", same, len(c.Incidents), reflect.DeepEqual(a.Benign, c.Benign))
	}
	if got := EvalScenario(5, monday, 0, 1, 1); got.Agents != EvalAgents {
		t.Errorf("agents 0 gave %d agents; want %d", got.Agents, EvalAgents)
	}
}

// TestEvalScenarioRun generates a small scenario: the history holds no
// incident line, and every incident makes lines.
func TestEvalScenarioRun(t *testing.T) {
	sc := EvalScenario(9, monday, 10, 1, 1)
	sc.RateScale = 0.3
	s := mustNew(t, sc.Config)
	lines := map[string]int{}
	for l := range s.All() {
		if l.Incident == "" {
			continue
		}
		if l.Event.EventTimeMs < sc.TestStart.UnixMilli() {
			t.Fatalf("incident line %s in the history", l.Incident)
		}
		lines[l.Incident]++
	}
	for _, inc := range s.Incidents() {
		if lines[inc.ID] == 0 {
			t.Errorf("%s (%s..%s) made no lines", inc.ID, inc.Start, inc.End)
		}
	}
}
