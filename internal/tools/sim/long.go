package sim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
)

// LowAndSlow: for hours, an agent calls at a few times the rate its own
// seasonal profile expects at that time of day, weekend or holiday
// (Multiplier times it), and
// its responses add up to a few times its usual bytes (BytesMultiplier
// times them), on its usual routes or, with Focus, on one sensitive route it
// is approved for and already calls. Nothing in it is new to the agent: no
// unapproved or first-seen route, no new address, and placed in its working
// hours no off-hours call either. No single window is extreme; only the
// excess adding up over hours gives it away.
//
// It is not in AllIncidentKinds: the evaluation reports it apart, by speed
// and length. It draws from a random stream of its own (as do the benign
// long changes below), so adding it leaves every other line as it was.
const LowAndSlow IncidentKind = "low_and_slow"

// The benign long changes: an agent's traffic changes for good, for a
// reason a detector should page about at most once (or not at all).
const (
	// NewBatchJob: from its start on, the agent (or every agent of the
	// role) also runs a job every Every (default an hour): a burst of
	// BatchBurst of calls on its usual routes at Rate times its own peak
	// rate (default BatchRate, and batchMin calls a minute at least),
	// normal sizes, on top of its ordinary traffic.
	NewBatchJob BenignKind = "new_batch_job"
	// TrafficRollout: from its start on, the agent (or every agent of the
	// role) calls Factor times (default 2) as often as before, on its
	// usual routes, following its seasonal profile: a rollout that puts
	// more work on it for good.
	TrafficRollout BenignKind = "traffic_rollout"
)

// LongBenignKinds are the benign changes that last for good and concern
// named agents. They are in BenignKinds too.
var LongBenignKinds = []BenignKind{NewBatchJob, TrafficRollout}

// The shape of a NewBatchJob burst.
const (
	BatchBurst = 5 * time.Minute
	BatchRate  = 4.0 // times the agent's peak rate during a burst
	batchMin   = 3.0 // calls a minute at least during a burst
)

// longStream selects the random stream of Simulator.long.
const longStream = 0x14057b7ef767814f

// defaultLowAndSlow are a LowAndSlow's multipliers when a spec leaves them
// 0: 3 times the calls, and 4/3 as many times the bytes (4 times).
const defaultLowAndSlow = 3.0

// lowAndSlow resolves a LowAndSlow spec for inc, whose agent is set:
// the multipliers, the focused route if any, and the response scale of
// the extra calls that gives the bytes multiplier.
func (s *Simulator) lowAndSlow(inc *incident, sp IncidentSpec) error {
	m, b := sp.Multiplier, sp.BytesMultiplier
	if m == 0 {
		m = defaultLowAndSlow
	}
	if b == 0 {
		b = m * 4 / 3
	}
	if m <= 1 || b < 1 {
		return fmt.Errorf("%s needs multiplier > 1 and bytes_multiplier >= 1, got %g and %g", sp.Kind, m, b)
	}
	inc.Multiplier, inc.BytesMultiplier = m, b
	a := inc.a
	// The mean response size of the agent's mix, by median (the spread is
	// the same for every op).
	mean, prev := 0.0, 0.0
	for i, o := range a.ops {
		mean += (a.cum[i] - prev) * o.respMed
		prev = a.cum[i]
	}
	mean /= a.cum[len(a.cum)-1]
	// The extra (m-1) calls carry the extra (b-1) of bytes.
	inc.scale = (b - 1) / (m - 1)
	if sp.Focus {
		var cands []*op
		for _, o := range a.ops {
			if o.sensitive && o.method == "GET" {
				cands = append(cands, o)
			}
		}
		if len(cands) > 0 {
			inc.op = cands[s.long.IntN(len(cands))]
			inc.Route = inc.op.template
			inc.scale *= mean / inc.op.respMed
		}
	}
	return nil
}

// lowAndSlowTraffic appends inc's calls in [from, to): (Multiplier-1)
// times what the agent's profile expects there, roleRate being the
// minute's rate of each role at activity 1 and fx the minute's benign
// changes (a holiday lowers what is expected).
func (s *Simulator) lowAndSlowTraffic(inc *incident, fx *effects, roleRate *[8]float64, from, to int64) {
	lo, hi := max(from, inc.from), min(to, inc.to)
	if lo >= hi {
		return
	}
	rng, a := s.long, inc.a
	lambda := (inc.Multiplier - 1) * roleRate[a.roleIdx] * a.activity * float64(hi-lo) / float64(to-from)
	if k := a.roleIdx; fx.keep[k] > 0 && lo >= fx.holFrom[k] && lo < fx.holTo[k] {
		lambda *= fx.keep[k]
	}
	for range poisson(rng, lambda) {
		ev := s.add(a, inc.ID)
		o := inc.op
		if o == nil {
			o = a.ops[pick(rng, a.cum)]
		}
		s.normalEvent(rng, ev, a, lo+rng.Int64N(hi-lo), o)
		if ev.Status < 300 {
			ev.ResponseBytes = uint64(float64(ev.ResponseBytes) * inc.scale)
		}
	}
}

// resolveLong fills in b, a NewBatchJob or TrafficRollout of spec sp: the
// agents it concerns and the job's minute in the hour.
func (s *Simulator) resolveLong(b *benign, sp BenignSpec) error {
	for _, a := range s.agents {
		if a.registered && (a.ID == sp.Agent || (sp.Agent == "" && a.Role == sp.Role)) {
			b.agents = append(b.agents, a)
			b.Agents = append(b.Agents, a.ID)
		}
	}
	if len(b.agents) == 0 {
		return fmt.Errorf("agent %q is not in the registry", sp.Agent)
	}
	switch sp.Kind {
	case NewBatchJob:
		b.every = sp.Every
		if b.every == 0 {
			b.every = time.Hour
		}
		b.Every = b.every
		b.Rate = sp.Rate
		if b.Rate == 0 {
			b.Rate = BatchRate
		}
	case TrafficRollout:
		b.Factor = sp.Factor
		if b.Factor == 0 {
			b.Factor = 2
		}
	}
	return nil
}

// longTraffic appends the calls the benign long changes add in [from, to):
// the bursts of new batch jobs and the extra calls of traffic rollouts. An
// outage fails them as it fails every call; a holiday thins the rollout's
// extra calls as it thins the agent's own, not a batch job's. They draw
// only from s.long.
func (s *Simulator) longTraffic(fx *effects, roleRate *[8]float64, from, to int64) {
	rng := s.long
	span := float64(to - from)
	for _, b := range s.benign {
		lo, hi := max(from, b.from), min(to, b.to)
		if lo >= hi {
			continue
		}
		switch b.Kind {
		case TrafficRollout:
			for _, a := range b.agents {
				lambda := (b.Factor - 1) * roleRate[a.roleIdx] * a.activity * float64(hi-lo) / span
				for range poisson(rng, lambda) {
					ev := s.add(a, "")
					s.normalEvent(rng, ev, a, lo+rng.Int64N(hi-lo), a.ops[pick(rng, a.cum)])
					s.affectLong(fx, ev, a, true)
				}
			}
		case NewBatchJob:
			// Bursts start every b.every from the change's start.
			every := b.every.Milliseconds()
			burst := BatchBurst.Milliseconds()
			for k := (lo - b.from - burst) / every; ; k++ {
				bf := b.from + max(k, 0)*every
				if bf >= hi {
					break
				}
				blo, bhi := max(lo, bf), min(hi, bf+burst)
				if blo >= bhi {
					continue
				}
				for _, a := range b.agents {
					rate := max(batchMin, b.Rate*baseRate[a.Role]*a.activity*s.cfg.RateScale)
					for range poisson(rng, rate*float64(bhi-blo)/60_000) {
						ev := s.add(a, "")
						s.normalEvent(rng, ev, a, blo+rng.Int64N(bhi-blo), a.ops[pick(rng, a.cum)])
						s.affectLong(fx, ev, a, false)
					}
				}
			}
		}
	}
}

// affectLong is affect for the calls of benign long changes, drawing from
// s.long: an outage fails ev, a holiday drops it (if holiday) with the
// chance it drops the agent's own calls.
func (s *Simulator) affectLong(fx *effects, ev *event.Event, a *agent, holiday bool) {
	if !fx.on {
		return
	}
	k, at := a.roleIdx, ev.EventTimeMs
	if holiday && fx.keep[k] > 0 && at >= fx.holFrom[k] && at < fx.holTo[k] && s.long.Float64() >= fx.keep[k] {
		s.buf = s.buf[:len(s.buf)-1]
		return
	}
	if at >= fx.downFrom[k] && at < fx.downTo[k] {
		ev.Status = 502 + uint16(s.long.IntN(3))
		ev.ResponseBytes = uint64(logNormal(s.long, 150, 0.3))
		ev.DurationUs = latencyUs(logNormal(s.long, 5, 0.5))
	}
}

// LongPlan says where EvalScenario puts its low-and-slow incidents and
// benign long changes.
type LongPlan struct {
	// Multipliers and Lengths: one LowAndSlow incident per pair, per
	// Repeat.
	Multipliers []float64
	Lengths     []time.Duration
	Repeat      int
	// BatchJob and Rollout add one NewBatchJob (hourly, BatchRate its
	// burst rate, 0 for the default) and one TrafficRollout (factor 2),
	// each on an agent of its own.
	BatchJob, Rollout bool
	BatchRate         float64
}

// DefaultLongPlan is the evaluation's plan: 2, 3 and 4 times the calls for
// 2, 4 and 8 hours, once each, plus a new batch job and a rollout that
// doubles an agent's traffic.
func DefaultLongPlan() LongPlan {
	return LongPlan{
		Multipliers: []float64{2, 3, 4},
		Lengths:     []time.Duration{2 * time.Hour, 4 * time.Hour, 8 * time.Hour},
		Repeat:      1,
		BatchJob:    true, Rollout: true,
	}
}

// lowAndSlowRoles are the roles whose agents take low-and-slow incidents
// and long changes: those with working hours long enough for 8 hours of
// it (a batch_reporting agent works 4 hours a night).
var lowAndSlowRoles = []Role{RoleCustomerService, RoleFinance, RoleHR, RoleITOps}

// placeLong adds p's incidents and benign changes to cfg, drawing from a
// stream of its own (so the rest of the scenario is placed as without
// them). Low-and-slow incidents go on weekdays of the test days that are
// not holidays, inside business hours (starting at 08:30 at the earliest
// and ending by 17:30), clear of the outage by an hour where the days
// allow (with one test day, by the outage rather than not at all; with
// more, an incident that finds no room is left out), each on an agent with no other incident (else one free then, an
// hour apart). The benign long changes go on agents with no incident;
// the batch job on an it_ops agent (busy at every hour, so its nightly
// bursts are not off-hours calls), the rollout on an agent of any of
// lowAndSlowRoles. Both start in the first half of the test days.
func placeLong(cfg *Config, seed uint64, p LongPlan, testStart, end time.Time, holidays []time.Time, outFrom, outTo time.Time, busy map[string][][2]time.Time) {
	const day = 24 * time.Hour
	rng := rand.New(rand.NewPCG(seed, longStream))
	at := func(t time.Time) time.Duration { return t.Sub(cfg.Start) }
	days := slices.DeleteFunc(weekdays(testStart.Truncate(day), end), func(m time.Time) bool {
		return slices.ContainsFunc(holidays, m.Equal)
	})
	if len(days) == 0 {
		for m := testStart.Truncate(day); m.Before(end); m = m.Add(day) {
			days = append(days, m)
		}
	}
	var cands []string
	for i := range cfg.Agents {
		if slices.Contains(lowAndSlowRoles, Roles[i%len(Roles)]) {
			cands = append(cands, agentID(i))
		}
	}
	const gap = time.Hour
	free := func(id string, from, to time.Time) bool {
		for _, sp := range busy[id] {
			if from.Before(sp[1].Add(gap)) && sp[0].Before(to.Add(gap)) {
				return false
			}
		}
		return true
	}
	n := 0
	for range max(p.Repeat, 0) {
		for _, length := range p.Lengths {
			for _, m := range p.Multipliers {
				for try := 0; try < 200; try++ {
					d := days[(n+try)%len(days)]
					latest := 17*time.Hour + 30*time.Minute - length
					earliest := 8*time.Hour + 30*time.Minute
					if latest < earliest {
						latest = earliest
					}
					from := d.Add(earliest + time.Duration(rng.IntN(int((latest-earliest)/time.Minute)+1))*time.Minute)
					to := from.Add(length)
					nearOutage := from.Before(outTo.Add(gap)) && outFrom.Before(to.Add(gap))
					// Only a single test day may leave no room but the outage's.
					if from.Before(testStart) || to.After(end) || (nearOutage && (try < 150 || end.Sub(testStart) > day)) {
						continue
					}
					var fresh, idle []string
					for _, id := range cands {
						switch {
						case len(busy[id]) == 0:
							fresh = append(fresh, id)
						case free(id, from, to):
							idle = append(idle, id)
						}
					}
					var id string
					switch {
					case len(fresh) > 0:
						id = fresh[rng.IntN(len(fresh))]
					case len(idle) > 0:
						id = idle[rng.IntN(len(idle))]
					default:
						continue
					}
					busy[id] = append(busy[id], [2]time.Time{from, to})
					cfg.Incidents = append(cfg.Incidents, IncidentSpec{
						Kind: LowAndSlow, Agent: id, Offset: at(from), Duration: length,
						Multiplier: m, BytesMultiplier: m * 4 / 3,
						// One of each speed on a sensitive route: the 4-hour ones.
						Focus: length == 4*time.Hour,
					})
					break
				}
				n++
			}
		}
	}
	// The long changes, on agents with no incident at all.
	untouched := func(role func(Role) bool) string {
		var ids []string
		for i := range cfg.Agents {
			if id := agentID(i); role(Roles[i%len(Roles)]) && len(busy[id]) == 0 {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			return ""
		}
		id := ids[rng.IntN(len(ids))]
		busy[id] = append(busy[id], [2]time.Time{testStart, end})
		return id
	}
	firstHalf := func() time.Time {
		k := max(len(days)/2, 1)
		return clampTime(days[rng.IntN(k)].Add(9*time.Hour+time.Duration(rng.IntN(120))*time.Minute), testStart, end.Add(-time.Minute))
	}
	if p.BatchJob {
		if id := untouched(func(r Role) bool { return r == RoleITOps }); id != "" {
			cfg.Benign = append(cfg.Benign, BenignSpec{Kind: NewBatchJob, Agent: id, Offset: at(firstHalf()), Rate: p.BatchRate})
		}
	}
	if p.Rollout {
		if id := untouched(func(r Role) bool { return slices.Contains(lowAndSlowRoles, r) }); id != "" {
			cfg.Benign = append(cfg.Benign, BenignSpec{Kind: TrafficRollout, Agent: id, Offset: at(firstHalf()), Factor: 2})
		}
	}
}
