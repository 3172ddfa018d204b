package sim

import (
	"math/rand/v2"
	"slices"
	"time"
)

// evalStream selects the random stream EvalScenario places things with.
const evalStream = 0xda942042e4dd58b5

// EvalAgents is the fleet size EvalScenario uses when asked for agents <= 0.
const EvalAgents = 200

// Scenario is a Config made for detection-quality evaluation, with where
// its judged part begins. It is a plain value; New(sc.Config) runs it.
type Scenario struct {
	Config
	// TestStart is the start of the first test day: Config.Start plus
	// Config.History. No incident starts before it.
	TestStart time.Time
}

// EvalScenario returns a ready-made detection-quality evaluation scenario of
// agents agents (EvalAgents if agents <= 0; 200 or more gives every kind
// distinct culprits of fitting roles, 10 or more still avoids overlaps):
//
//   - historyDays of normal traffic from start, with NO incidents (the
//     returned Config's History covers them, so New enforces it). It is not
//     unrealistically clean, though: it holds one RoleRollout and one
//     Holiday (a weekday other than the first day, when it has one).
//   - then testDays of traffic with incidents of every kind in
//     AllIncidentKinds: one of each when testDays is 1, else
//     2 + (testDays-2)/3 of each, spread over the test days. OffHours ones
//     start between 02:00 and 04:00 UTC and end by 04:00; SlowExfiltration
//     lasts 3 to 6 hours; every other incident 10 to 30 minutes. Half of
//     each kind's incidents start in business hours (09:00-17:00 UTC), the
//     rest at any hour (SlowExfiltration: starting 08:00-12:00, or at any
//     hour). Culprits are distinct where the fleet allows; incidents of one
//     agent are always at least an hour apart, and none comes within an
//     hour of the outage unless the test days leave no room for it (with
//     one test day, the business-hours slow exfiltration cannot avoid it).
//   - in the test days also one UpstreamOutage of 20 minutes for every
//     role in business hours, one RoleRollout of another role than the
//     history's, and, when testDays >= 3, a Holiday (a weekday).
//
// Incidents use their kinds' default rates, in calls a minute: exfiltration
// 25, endpoint_sprawl 15, auth_storm 30, zombie_api 2, unregistered_agent 3,
// off_hours 4, slow_exfiltration 1, out_of_role_sensitive 4, enumeration
// 20, new_source_address the agent's own peak rate (at least 1). TestStart is
// where the test days begin: start plus historyDays days. The result is
// deterministic per seed, and different seeds move times and culprits. Days are 24-hour blocks; holidays and hours of day follow UTC
// midnights, so start at a UTC midnight for whole calendar days.
//
// On top of that come DefaultLongPlan's low-and-slow incidents and benign
// long changes (see EvalScenarioPlan).
func EvalScenario(seed uint64, start time.Time, agents, historyDays, testDays int) Scenario {
	return EvalScenarioPlan(seed, start, agents, historyDays, testDays, DefaultLongPlan())
}

// EvalScenarioPlan is EvalScenario with the given plan of low-and-slow
// incidents and benign long changes (LongPlan{} for none), placed in the
// test days as placeLong says. They are placed after everything else,
// from a random stream of their own, so the other incidents and benign
// changes are the same whatever the plan.
func EvalScenarioPlan(seed uint64, start time.Time, agents, historyDays, testDays int, plan LongPlan) Scenario {
	const day = 24 * time.Hour
	if agents <= 0 {
		agents = EvalAgents
	}
	historyDays, testDays = max(historyDays, 0), max(testDays, 0)
	start = start.UTC()
	hist := time.Duration(historyDays) * day
	total := hist + time.Duration(testDays)*day
	cfg := Config{Seed: seed, Agents: agents, Start: start, Duration: total, History: hist, Incidents: []IncidentSpec{}}
	rng := rand.New(rand.NewPCG(seed, evalStream))
	testStart, end := start.Add(hist), start.Add(total)
	at := func(t time.Time) time.Duration { return t.Sub(start) }

	// Benign changes. Holidays are whole weekdays; the others take a
	// weekday that is not a holiday where there is one.
	var holidays []time.Time
	histRole := Roles[rng.IntN(len(Roles))]
	if historyDays > 0 {
		// Not on the first day, which stays plain baseline.
		if days := weekdays(start.Add(day), testStart); len(days) > 0 {
			h := days[rng.IntN(len(days))]
			holidays = append(holidays, h)
			cfg.Benign = append(cfg.Benign, BenignSpec{Kind: Holiday, Offset: at(h), Duration: day})
		}
		t := pickDay(rng, start, testStart, holidays).Add(9*time.Hour + time.Duration(rng.IntN(120))*time.Minute)
		t = clampTime(t, start, testStart.Add(-time.Minute))
		cfg.Benign = append(cfg.Benign, BenignSpec{Kind: RoleRollout, Role: histRole, Offset: at(t)})
	}
	var outFrom, outTo time.Time
	if testDays > 0 {
		if testDays >= 3 {
			if days := weekdays(testStart, end); len(days) > 0 {
				h := days[rng.IntN(len(days))]
				holidays = append(holidays, h)
				cfg.Benign = append(cfg.Benign, BenignSpec{Kind: Holiday, Offset: at(h), Duration: day})
			}
		}
		outFrom = pickDay(rng, testStart, end, holidays).Add(10*time.Hour + time.Duration(rng.IntN(300))*time.Minute)
		outFrom = clampTime(outFrom, testStart, end.Add(-20*time.Minute))
		outTo = outFrom.Add(20 * time.Minute)
		cfg.Benign = append(cfg.Benign, BenignSpec{Kind: UpstreamOutage, Offset: at(outFrom), Duration: 20 * time.Minute})
		role := Roles[(slices.Index(Roles, histRole)+1+rng.IntN(len(Roles)-1))%len(Roles)]
		t := pickDay(rng, testStart, end, holidays).Add(9*time.Hour + time.Duration(rng.IntN(120))*time.Minute)
		t = clampTime(t, testStart, end.Add(-time.Minute))
		cfg.Benign = append(cfg.Benign, BenignSpec{Kind: RoleRollout, Role: role, Offset: at(t)})
	}
	if testDays == 0 {
		return Scenario{cfg, testStart}
	}

	// Incidents.
	perKind := 1
	if testDays >= 2 {
		perKind = 2 + (testDays-2)/3
	}
	byRole := map[Role][]string{}
	for i := range agents {
		byRole[Roles[i%len(Roles)]] = append(byRole[Roles[i%len(Roles)]], agentID(i))
	}
	busy := map[string][][2]time.Time{} // agent -> incident spans
	const gap = time.Hour               // between incidents of one agent
	free := func(id string, from, to time.Time) bool {
		for _, sp := range busy[id] {
			if from.Before(sp[1].Add(gap)) && sp[0].Before(to.Add(gap)) {
				return false
			}
		}
		return true
	}
	base := testStart.Truncate(day) // the UTC midnight on or before the test start
	for _, k := range AllIncidentKinds {
		var cands []string
		for _, r := range preferredRoles[k] { // OffHours: business-hours roles only
			cands = append(cands, byRole[r]...)
		}
		if len(cands) == 0 { // a fleet too small for the fitting roles
			for i := range agents {
				cands = append(cands, agentID(i))
			}
		}
		for j := range perKind {
			var sp IncidentSpec
			placed := false
			for try := 0; try < 200 && !placed; try++ {
				// The j-th incident of a kind goes to the j-th share of the
				// test days; a partial day at either end counts too.
				days := testDays + 1
				d := j*days/perKind + rng.IntN(max(days/perKind, 1))
				from, length := base.Add(time.Duration(d)*day), time.Duration(10+rng.IntN(21))*time.Minute
				switch {
				case k == OffHours:
					from = from.Add(2*time.Hour + time.Duration(rng.IntN(int((2*time.Hour-length)/time.Minute)+1))*time.Minute)
				case k == SlowExfiltration:
					length = time.Duration(180+rng.IntN(181)) * time.Minute
					if j%2 == 0 {
						from = from.Add(8*time.Hour + time.Duration(rng.IntN(240))*time.Minute)
					} else {
						from = from.Add(time.Duration(rng.IntN(24*60)) * time.Minute)
					}
				case j%2 == 0:
					from = from.Add(9*time.Hour + time.Duration(rng.IntN(8*60-30))*time.Minute)
				default:
					from = from.Add(time.Duration(rng.IntN(24*60)) * time.Minute)
				}
				to := from.Add(length)
				// Keep clear of the outage, unless the test days leave no
				// room (one test day and hours of slow exfiltration).
				nearOutage := from.Before(outTo.Add(gap)) && outFrom.Before(to.Add(gap))
				if from.Before(testStart) || to.After(end) || (nearOutage && try < 150) {
					continue
				}
				sp = IncidentSpec{Kind: k, Offset: at(from), Duration: length}
				if k == UnregisteredAgent {
					sp.Agent = "shadow-agent-" + alnum(rng, 6)
					placed = true
					break
				}
				// A culprit not used yet, else one free at that time; if
				// every candidate is busy then, try another time.
				var fresh, idle []string
				for _, id := range cands {
					switch {
					case len(busy[id]) == 0:
						fresh = append(fresh, id)
					case free(id, from, to):
						idle = append(idle, id)
					}
				}
				switch {
				case len(fresh) > 0:
					sp.Agent = fresh[rng.IntN(len(fresh))]
				case len(idle) > 0:
					sp.Agent = idle[rng.IntN(len(idle))]
				default:
					continue
				}
				busy[sp.Agent] = append(busy[sp.Agent], [2]time.Time{from, to})
				placed = true
			}
			if placed {
				cfg.Incidents = append(cfg.Incidents, sp)
			}
		}
	}
	placeLong(&cfg, seed, plan, testStart, end, holidays, outFrom, outTo, busy)
	return Scenario{cfg, testStart}
}

// weekdays returns the UTC midnights m of Monday to Friday with
// from <= m and m+24h <= to.
func weekdays(from, to time.Time) []time.Time {
	var out []time.Time
	m := from.UTC().Truncate(24 * time.Hour)
	if m.Before(from) {
		m = m.Add(24 * time.Hour)
	}
	for ; !m.Add(24 * time.Hour).After(to); m = m.Add(24 * time.Hour) {
		if wd := m.Weekday(); wd != time.Saturday && wd != time.Sunday {
			out = append(out, m)
		}
	}
	return out
}

// pickDay returns the UTC midnight of a day in [from, to): a weekday that
// is not in skip where there is one (past the first day where it can), else
// the midnight on or before from.
func pickDay(rng *rand.Rand, from, to time.Time, skip []time.Time) time.Time {
	days := slices.DeleteFunc(weekdays(from, to), func(m time.Time) bool { return slices.ContainsFunc(skip, m.Equal) })
	if len(days) > 1 && days[0].Equal(from.UTC().Truncate(24*time.Hour)) {
		days = days[1:]
	}
	if len(days) == 0 {
		return from.UTC().Truncate(24 * time.Hour)
	}
	return days[rng.IntN(len(days))]
}

func clampTime(t, lo, hi time.Time) time.Time {
	if t.Before(lo) {
		return lo
	}
	if t.After(hi) {
		return hi
	}
	return t
}
