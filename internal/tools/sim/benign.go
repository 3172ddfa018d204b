package sim

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
)

// BenignKind names a kind of labeled benign change: traffic that departs
// from an agent's own history for a reason a detector should stay quiet
// about, at least per agent.
type BenignKind string

// The benign changes the simulator can inject.
const (
	// RoleRollout: from its start on, every registered agent of one role
	// also calls a route new to the role, at a rate comparable to the
	// role's ordinary routes. The change was approved ahead: the route is
	// in those agents' ApprovedRoutes and in Simulator.Routes from the
	// start of the run.
	RoleRollout BenignKind = "role_rollout"
	// Holiday: a weekday on which agents follow their weekend curve.
	Holiday BenignKind = "holiday"
	// UpstreamOutage: the services behind the gateway fail; calls are
	// answered 502, 503 or 504 fast with small bodies, and agents retry,
	// calling about 1.5 times as often as usual.
	UpstreamOutage BenignKind = "upstream_outage"
)

// Benign changes shape normal traffic only: calls of incidents keep their
// shape through a holiday or an outage, so an incident keeps its label's
// promise wherever it is put.

// BenignKinds lists every benign kind.
var BenignKinds = []BenignKind{RoleRollout, Holiday, UpstreamOutage, NewBatchJob, TrafficRollout}

// BenignSpec asks for one benign change.
type BenignSpec struct {
	Kind BenignKind
	// Role is the role affected. RoleRollout needs one; for Holiday and
	// UpstreamOutage "" means every role.
	Role Role
	// Offset is when the change starts, from Config.Start.
	Offset time.Duration
	// Duration is how long it lasts: typically 24h for a Holiday (start it
	// at midnight UTC), some minutes for an UpstreamOutage. For a
	// RoleRollout, 0 means until the end of the run; a positive Duration
	// rolls it back then (the route stays approved). NewBatchJob and
	// TrafficRollout are the same: 0 means for good.
	Duration time.Duration
	// Agent is the agent a NewBatchJob or TrafficRollout concerns; ""
	// means every registered agent of Role. The other kinds take none.
	Agent string
	// Factor is a TrafficRollout's multiplier of the agent's rate
	// (0: 2). Every is how often a NewBatchJob runs (0: hourly), Rate its
	// burst's rate in times the agent's peak rate (0: BatchRate).
	Factor float64
	Every  time.Duration
	Rate   float64
}

// Benign is one injected benign change: a label a detector is scored
// against, as a period in which it should not page about the agents
// affected. Calls it adds or changes carry no Line.Incident.
type Benign struct {
	// ID is unique in a run, such as "holiday-1".
	ID   string
	Kind BenignKind
	// Role is the role affected, "" for every role.
	Role Role
	// Route is the route template a RoleRollout rolls out, "" for the
	// other kinds.
	Route string
	// Start and End bound the change; End is at most the end of the run.
	Start time.Time
	End   time.Time
	// Agents are the agents a NewBatchJob or TrafficRollout concerns,
	// Factor a TrafficRollout's multiplier, Every how often a
	// NewBatchJob runs and Rate its burst's rate (times the agent's peak
	// rate); empty for the other kinds.
	Agents []string      `json:",omitempty"`
	Factor float64       `json:",omitempty"`
	Every  time.Duration `json:",omitempty"`
	Rate   float64       `json:",omitempty"`
}

// maxRollouts is how many rollouts a role can have in one run: one per
// rollout op of the role in the catalog.
func maxRollouts(r Role) int {
	n := 0
	for _, o := range catalog[r] {
		if o.rollout {
			n++
		}
	}
	return n
}

// validateBenign checks specs against a run of length d.
func validateBenign(specs []BenignSpec, d time.Duration) []error {
	var errs []error
	rollouts := map[Role]int{}
	for i, sp := range specs {
		key := fmt.Sprintf("benign[%d]", i)
		if !slices.Contains(BenignKinds, sp.Kind) {
			errs = append(errs, fmt.Errorf("%s.kind: unknown kind %q; use one of %v", key, sp.Kind, BenignKinds))
			continue
		}
		if sp.Role != "" && !slices.Contains(Roles, sp.Role) {
			errs = append(errs, fmt.Errorf("%s.role: unknown role %q; use one of %v", key, sp.Role, Roles))
			continue
		}
		if sp.Offset < 0 || sp.Offset >= d {
			errs = append(errs, fmt.Errorf("%s.offset: must be in [0, %s), got %s", key, d, sp.Offset))
		}
		if sp.Agent != "" && !slices.Contains(LongBenignKinds, sp.Kind) {
			errs = append(errs, fmt.Errorf("%s.agent: a %s concerns whole roles; leave agent empty", key, sp.Kind))
		}
		switch sp.Kind {
		case NewBatchJob, TrafficRollout:
			if sp.Agent == "" && sp.Role == "" {
				errs = append(errs, fmt.Errorf("%s: a %s needs the agent (or the role) it concerns", key, sp.Kind))
			}
			if sp.Duration < 0 {
				errs = append(errs, fmt.Errorf("%s.duration: must be >= 0 (0 = until the end), got %s", key, sp.Duration))
			}
			if sp.Factor != 0 && sp.Factor <= 1 {
				errs = append(errs, fmt.Errorf("%s.factor: must be > 1 (0 = 2), got %g", key, sp.Factor))
			}
			if sp.Rate < 0 {
				errs = append(errs, fmt.Errorf("%s.rate: must be >= 0 (0 = %g), got %g", key, BatchRate, sp.Rate))
			}
			if sp.Every != 0 && sp.Every < BatchBurst {
				errs = append(errs, fmt.Errorf("%s.every: must be at least the %s burst (0 = hourly), got %s", key, BatchBurst, sp.Every))
			}
		case RoleRollout:
			if sp.Role == "" {
				errs = append(errs, fmt.Errorf("%s.role: a %s needs the role that rolls out", key, sp.Kind))
				continue
			}
			if sp.Duration < 0 {
				errs = append(errs, fmt.Errorf("%s.duration: must be >= 0 (0 = until the end), got %s", key, sp.Duration))
			}
			if rollouts[sp.Role]++; rollouts[sp.Role] > maxRollouts(sp.Role) {
				errs = append(errs, fmt.Errorf("%s: role %s has only %d rollout routes; drop a rollout of it", key, sp.Role, maxRollouts(sp.Role)))
			}
		default:
			if sp.Duration <= 0 {
				errs = append(errs, fmt.Errorf("%s.duration: must be positive, got %s", key, sp.Duration))
			}
		}
	}
	return errs
}

// benign is a Benign with what the generator needs to produce it.
type benign struct {
	Benign
	roles    [8]bool // by roleIdx: the roles affected
	from, to int64   // Unix ms
	// RoleRollout: the op rolled out, the agents that take it up and the
	// rate of each at it, as a fraction of the agent's normal rate.
	op     *op
	agents []*agent
	share  []float64
	// NewBatchJob: how often it runs.
	every time.Duration
}

// resolveBenign turns specs (already validated) into benign changes. A
// RoleRollout approves its route for every registered agent of its role,
// so it must run before the registry is built.
func (s *Simulator) resolveBenign(specs []BenignSpec) error {
	counts := map[BenignKind]int{}
	rolled := map[Role]int{}
	end := s.cfg.Start.Add(s.cfg.Duration)
	for i, sp := range specs {
		counts[sp.Kind]++
		b := &benign{}
		b.ID = string(sp.Kind) + "-" + strconv.Itoa(counts[sp.Kind])
		b.Kind, b.Role = sp.Kind, sp.Role
		b.Start = s.cfg.Start.Add(sp.Offset).UTC()
		b.End = b.Start.Add(sp.Duration)
		if ((sp.Kind == RoleRollout || slices.Contains(LongBenignKinds, sp.Kind)) && sp.Duration == 0) || b.End.After(end) {
			b.End = end.UTC()
		}
		b.from, b.to = b.Start.UnixMilli(), b.End.UnixMilli()
		for k, r := range Roles {
			b.roles[k] = sp.Role == "" || sp.Role == r
		}
		if slices.Contains(LongBenignKinds, sp.Kind) {
			if err := s.resolveLong(b, sp); err != nil {
				return fmt.Errorf("benign[%d]: %w", i, err)
			}
		}
		if sp.Kind == RoleRollout {
			b.op = rolloutOp(sp.Role, rolled[sp.Role])
			rolled[sp.Role]++
			if b.op == nil {
				return fmt.Errorf("benign[%d]: role %s has no rollout route left", i, sp.Role)
			}
			b.Route = b.op.template
			if s.rolledOut == nil {
				s.rolledOut = map[string]bool{}
			}
			s.rolledOut[b.op.template] = true
			for _, a := range s.agents {
				if !a.registered || a.Role != sp.Role {
					continue
				}
				a.ApprovedRoutes = append(a.ApprovedRoutes, b.op.template)
				// Agents differ in how much they use it, as they do for
				// every other route.
				w := b.op.weight * math.Exp(0.6*s.extra.NormFloat64())
				b.agents = append(b.agents, a)
				b.share = append(b.share, w/a.cum[len(a.cum)-1])
			}
		}
		s.benign = append(s.benign, b)
	}
	slices.SortStableFunc(s.benign, func(a, b *benign) int { return int(a.from - b.from) })
	return nil
}

// rolloutOp returns the n-th rollout op of role r, nil if it has fewer.
func rolloutOp(r Role, n int) *op {
	ops := catalog[r]
	for i := range ops {
		if ops[i].rollout {
			if n == 0 {
				return &ops[i]
			}
			n--
		}
	}
	return nil
}

// BenignEvents returns the labeled benign changes of this run, in start
// order.
func (s *Simulator) BenignEvents() []Benign {
	return labels(s.benign, func(b *benign) Benign { return b.Benign })
}

// effects is what benign changes do to the normal traffic of one simulated
// minute, by roleIdx. Its zero value changes nothing.
type effects struct {
	on bool // some change is active in the minute
	// keep is the chance a call survives a holiday (the weekend rate over
	// the weekday rate) within [holFrom, holTo); 0 for no holiday.
	keep           [8]float64
	holFrom, holTo [8]int64
	// [downFrom, downTo) is an upstream outage; empty for none.
	downFrom, downTo [8]int64
}

// minuteEffects fills fx with the changes active in [from, to), whose
// fractional hour is hour. Where changes of one kind overlap for a role,
// it takes the span of them.
func (s *Simulator) minuteEffects(fx *effects, from, to int64, hour float64, weekend bool) {
	for _, b := range s.benign {
		if b.to <= from || b.from >= to {
			continue
		}
		switch b.Kind {
		case RoleRollout:
			fx.on = true // its calls come in benignTraffic
		case Holiday:
			if weekend {
				continue // the weekend curve already applies
			}
			for k, r := range Roles {
				keep := diurnal(r, hour, true) / diurnal(r, hour, false)
				if !b.roles[k] || keep >= 1 {
					continue
				}
				fx.on = true
				if fx.keep[k] == 0 {
					fx.holFrom[k], fx.holTo[k] = b.from, b.to
				}
				fx.keep[k] = keep
				fx.holFrom[k], fx.holTo[k] = min(fx.holFrom[k], b.from), max(fx.holTo[k], b.to)
			}
		case UpstreamOutage:
			for k := range Roles {
				if !b.roles[k] {
					continue
				}
				fx.on = true
				if fx.downTo[k] == 0 {
					fx.downFrom[k], fx.downTo[k] = b.from, b.to
				}
				fx.downFrom[k], fx.downTo[k] = min(fx.downFrom[k], b.from), max(fx.downTo[k], b.to)
			}
		}
	}
}

// affect applies fx to ev, the newest item in buf, a call of agent a: a
// holiday drops it (from buf) with the right chance, an outage fails it.
func (s *Simulator) affect(fx *effects, ev *event.Event, a *agent) {
	k, at := a.roleIdx, ev.EventTimeMs
	if fx.keep[k] > 0 && at >= fx.holFrom[k] && at < fx.holTo[k] && s.extra.Float64() >= fx.keep[k] {
		s.buf = s.buf[:len(s.buf)-1]
		return
	}
	if at >= fx.downFrom[k] && at < fx.downTo[k] {
		s.failed(ev)
	}
}

// failed turns ev into a call the gateway answered itself because the
// upstream was down: a fast 502, 503 or 504 with a small error body.
func (s *Simulator) failed(ev *event.Event) {
	rng := s.extra
	ev.Status = 502 + uint16(rng.IntN(3))
	ev.ResponseBytes = uint64(logNormal(rng, 150, 0.3))
	ev.DurationUs = latencyUs(logNormal(rng, 5, 0.5))
}

// outageRetry is the share of extra calls an agent makes while its calls
// fail: it retries, so it calls about 1.5 times as often as usual.
const outageRetry = 0.5

// benignTraffic appends the calls benign changes add in [from, to): the
// retries of an outage and the calls of rolled-out routes. roleRate is the
// minute's normal rate by roleIdx. They draw only from s.extra, so they
// leave the normal traffic as it would be without them.
func (s *Simulator) benignTraffic(fx *effects, roleRate *[8]float64, from, to int64) {
	rng := s.extra
	span := float64(to - from)
	for _, a := range s.agents {
		k := a.roleIdx
		lo, hi := max(from, fx.downFrom[k]), min(to, fx.downTo[k])
		if !a.registered || lo >= hi {
			continue
		}
		lambda := outageRetry * roleRate[k] * a.activity * float64(hi-lo) / span
		for range poisson(rng, lambda) {
			ev := s.add(a, "")
			s.normalEvent(rng, ev, a, lo+rng.Int64N(hi-lo), a.ops[pick(rng, a.cum)])
			s.affect(fx, ev, a)
		}
	}
	for _, b := range s.benign {
		lo, hi := max(from, b.from), min(to, b.to)
		if b.Kind != RoleRollout || lo >= hi {
			continue
		}
		for i, a := range b.agents {
			lambda := roleRate[a.roleIdx] * a.activity * b.share[i] * float64(hi-lo) / span
			for range poisson(rng, lambda) {
				ev := s.add(a, "")
				s.normalEvent(rng, ev, a, lo+rng.Int64N(hi-lo), b.op)
				s.affect(fx, ev, a)
			}
		}
	}
}
