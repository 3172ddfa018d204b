package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
)

// IncidentKind names a kind of injected misbehaviour.
type IncidentKind string

// The incident kinds the simulator can inject.
const (
	// Exfiltration: many calls to a sensitive route with huge responses.
	Exfiltration IncidentKind = "exfiltration"
	// EndpointSprawl: reconnaissance, many never-seen routes, mostly 404s.
	EndpointSprawl IncidentKind = "endpoint_sprawl"
	// OffHours: a business-hours agent busy in the middle of the night.
	OffHours IncidentKind = "off_hours"
	// AuthStorm: a burst of calls answered 401 or 403.
	AuthStorm IncidentKind = "auth_storm"
	// ZombieAPI: calls to a deprecated route.
	ZombieAPI IncidentKind = "zombie_api"
	// UnregisteredAgent: traffic from an agent id the registry lacks.
	UnregisteredAgent IncidentKind = "unregistered_agent"
)

// IncidentKinds lists every kind, in the order of the default set.
var IncidentKinds = []IncidentKind{Exfiltration, EndpointSprawl, AuthStorm, ZombieAPI, UnregisteredAgent, OffHours}

// IncidentSpec asks for one incident.
type IncidentSpec struct {
	Kind IncidentKind
	// Agent is the registered agent that misbehaves; "" lets the simulator
	// pick one of a fitting role. For UnregisteredAgent it is the unknown
	// id to use ("" invents one).
	Agent string
	// Offset is when the incident starts, from Config.Start.
	Offset time.Duration
	// Duration is how long it lasts.
	Duration time.Duration
	// Rate is the incident's extra calls per minute (0 = the kind's default).
	Rate float64
}

// Incident is one injected incident: the label a detector is scored against.
type Incident struct {
	// ID is unique in a run; Line.Incident holds it.
	ID    string
	Kind  IncidentKind
	Agent string
	Start time.Time
	End   time.Time
}

type incident struct {
	Incident
	a    *agent
	op   *op     // the route abused, when the kind has one
	rate float64 // calls per minute
	from int64   // Unix ms
	to   int64   // Unix ms
	seq  int     // calls so far, to vary recon paths
}

// defaultRate is each kind's calls per minute.
var defaultRate = map[IncidentKind]float64{
	Exfiltration:      25,
	EndpointSprawl:    15,
	OffHours:          4,
	AuthStorm:         30,
	ZombieAPI:         2,
	UnregisteredAgent: 3,
}

// DefaultIncidents returns one incident of each kind spread over the second
// two thirds of the run, so the first part is clean baseline. OffHours is
// placed at the first 03:00 UTC in that part when there is one, else at its
// quietest business hour.
func DefaultIncidents(start time.Time, d time.Duration) []IncidentSpec {
	length := min(d/12, 20*time.Minute)
	length = max(length, min(d, time.Minute))
	var specs []IncidentSpec
	for i, k := range IncidentKinds {
		off := time.Duration(float64(d) * (0.35 + 0.1*float64(i)))
		if k == OffHours {
			// Truncating to the hour can land before start+d/3, even
			// before start (a start at 03:15 with a short run): step on.
			night := start.Add(d / 3).UTC().Truncate(time.Hour)
			if night.Before(start.Add(d / 3)) {
				night = night.Add(time.Hour)
			}
			for night.Hour() != 3 {
				night = night.Add(time.Hour)
			}
			if o := night.Sub(start); o+length <= d {
				off = o
			} else {
				off = quietest(start, d/3, d-length)
			}
		}
		off = min(off, d-length).Truncate(time.Second)
		specs = append(specs, IncidentSpec{Kind: k, Offset: off, Duration: length})
	}
	return specs
}

// quietest returns the offset in [from, to] where business-hours traffic is
// lowest, searched in 10-minute steps.
func quietest(start time.Time, from, to time.Duration) time.Duration {
	best, bestRate := from, math.Inf(1)
	for o := from; o <= to; o += 10 * time.Minute {
		t := start.Add(o).UTC()
		weekend := t.Weekday() == time.Saturday || t.Weekday() == time.Sunday
		if r := diurnal(RoleFinance, float64(t.Hour())+float64(t.Minute())/60, weekend); r < bestRate {
			best, bestRate = o, r
		}
	}
	return best
}

// Incidents returns the labeled incidents of this run, in start order.
func (s *Simulator) Incidents() []Incident {
	out := make([]Incident, len(s.incidents))
	for i, inc := range s.incidents {
		out[i] = inc.Incident
	}
	return out
}

// preferredRoles says whose misbehaviour each kind is most plausible for.
var preferredRoles = map[IncidentKind][]Role{
	Exfiltration:      {RoleCustomerService, RoleFinance, RoleHR},
	EndpointSprawl:    {RoleITOps, RoleBatchReporting},
	OffHours:          {RoleFinance, RoleHR, RoleCustomerService},
	AuthStorm:         {RoleBatchReporting, RoleITOps, RoleCustomerService},
	ZombieAPI:         {RoleBatchReporting, RoleFinance, RoleCustomerService},
	UnregisteredAgent: {RoleCustomerService},
}

// schedule resolves specs into incidents, picking distinct agents where the
// spec leaves it open.
func (s *Simulator) schedule(rng *rand.Rand, specs []IncidentSpec) error {
	used := map[string]bool{}
	for _, sp := range specs {
		if sp.Agent != "" {
			used[sp.Agent] = true
		}
	}
	counts := map[IncidentKind]int{}
	for i, sp := range specs {
		if _, ok := defaultRate[sp.Kind]; !ok {
			return fmt.Errorf("incidents[%d].kind: unknown kind %q; use one of %v", i, sp.Kind, IncidentKinds)
		}
		if sp.Duration <= 0 || sp.Offset < 0 {
			return fmt.Errorf("incidents[%d]: offset must be >= 0 and duration > 0, got %s and %s", i, sp.Offset, sp.Duration)
		}
		counts[sp.Kind]++
		inc := &incident{rate: sp.Rate}
		if inc.rate == 0 {
			inc.rate = defaultRate[sp.Kind]
		}
		inc.Kind = sp.Kind
		inc.ID = string(sp.Kind) + "-" + strconv.Itoa(counts[sp.Kind])
		inc.Start = s.cfg.Start.Add(sp.Offset).UTC()
		inc.End = inc.Start.Add(sp.Duration)
		inc.from, inc.to = inc.Start.UnixMilli(), inc.End.UnixMilli()
		if sp.Kind == UnregisteredAgent {
			inc.a = s.unregistered(rng, sp.Agent)
		} else {
			a, err := s.chooseAgent(rng, sp, used)
			if err != nil {
				return fmt.Errorf("incidents[%d]: %w", i, err)
			}
			inc.a = a
		}
		inc.Agent = inc.a.ID
		inc.op = abusedOp(inc.a, sp.Kind)
		if inc.op == nil && (sp.Kind == Exfiltration || sp.Kind == ZombieAPI) {
			return fmt.Errorf("incidents[%d]: role %s of agent %s has no route for %s", i, inc.a.Role, inc.a.ID, sp.Kind)
		}
		s.incidents = append(s.incidents, inc)
	}
	slices.SortStableFunc(s.incidents, func(a, b *incident) int { return int(a.from - b.from) })
	return nil
}

func (s *Simulator) chooseAgent(rng *rand.Rand, sp IncidentSpec, used map[string]bool) (*agent, error) {
	if sp.Agent != "" {
		for _, a := range s.agents {
			if a.ID == sp.Agent && a.registered {
				return a, nil
			}
		}
		return nil, fmt.Errorf("agent %q is not in the registry; leave it empty to let the simulator pick", sp.Agent)
	}
	var fallback *agent
	for _, r := range preferredRoles[sp.Kind] {
		var cands []*agent
		for _, a := range s.agents {
			if !a.registered || a.Role != r {
				continue
			}
			if !used[a.ID] {
				cands = append(cands, a)
			} else if fallback == nil {
				fallback = a
			}
		}
		if len(cands) > 0 {
			a := cands[rng.IntN(len(cands))]
			used[a.ID] = true
			return a, nil
		}
	}
	if fallback == nil {
		// Too few agents for distinct culprits of fitting roles: any will do.
		fallback = s.agents[rng.IntN(len(s.agents))]
		if !fallback.registered {
			fallback = s.agents[0]
		}
	}
	return fallback, nil
}

// unregistered makes the agent of an UnregisteredAgent incident: it behaves
// like an ordinary agent of some role, but no registry lists it.
func (s *Simulator) unregistered(rng *rand.Rand, id string) *agent {
	n := len(s.agents)
	a := newAgent(rng, n, s.cfg.Formats, s.cfg.Start, s.cfg.Start.Add(s.cfg.Duration))
	if id == "" {
		id = "shadow-agent-" + alnum(rng, 6)
	}
	a.ID = id
	a.registered = false
	a.SourceIP = fmt.Sprintf("192.0.2.%d", 10+rng.IntN(240))
	a.CredentialID, a.ident, a.eventCred = identityFor(rng, id, a.Format, a.Carrier, s.cfg.Start, s.cfg.Start.Add(s.cfg.Duration))
	s.agents = append(s.agents, a)
	return a
}

// abusedOp returns the op an incident of kind k by agent a revolves around,
// or nil when the kind has none or a's role offers none.
func abusedOp(a *agent, k IncidentKind) *op {
	ops := catalog[a.Role]
	for i := range ops {
		switch {
		case k == Exfiltration && ops[i].sensitive, k == ZombieAPI && ops[i].deprecated:
			return &ops[i]
		}
	}
	return nil
}

// incidentTraffic appends inc's calls that fall in [from, to).
func (s *Simulator) incidentTraffic(inc *incident, from, to int64) {
	lo, hi := max(from, inc.from), min(to, inc.to)
	if lo >= hi {
		return
	}
	rng := s.traffic
	n := poisson(rng, inc.rate*float64(hi-lo)/60_000)
	for range n {
		at := lo + rng.Int64N(hi-lo)
		a := inc.a
		ev := s.add(a, inc.ID)
		switch inc.Kind {
		case Exfiltration:
			s.normalEvent(ev, a, at, inc.op)
			ev.Status = 200
			ev.ResponseBytes = uint64(logNormal(rng, 30<<20, 0.5))
			ev.DurationUs = latencyUs(logNormal(rng, 4000, 0.4))
		case EndpointSprawl:
			s.reconEvent(ev, inc, at)
		case AuthStorm:
			s.normalEvent(ev, a, at, a.ops[pick(rng, a.cum)])
			ev.Status = 401
			if rng.IntN(5) < 2 {
				ev.Status = 403
			}
			ev.ResponseBytes = uint64(logNormal(rng, 120, 0.2))
			ev.DurationUs = latencyUs(logNormal(rng, 4, 0.4))
		case ZombieAPI:
			s.normalEvent(ev, a, at, inc.op)
		default: // OffHours, UnregisteredAgent: ordinary calls, wrong time or wrong agent
			s.normalEvent(ev, a, at, a.ops[pick(rng, a.cum)])
		}
	}
}

// reconEvent is one probe of a route nobody has: a known scanner target or
// an invented numbered variant, mostly answered 404.
func (s *Simulator) reconEvent(ev *event.Event, inc *incident, at int64) {
	rng := s.traffic
	s.baseEvent(ev, inc.a, at)
	inc.seq++
	if inc.seq <= len(reconPaths) {
		ev.Path = reconPaths[inc.seq-1]
	} else {
		ev.Path = fmt.Sprintf("/internal/svc%d/%s", inc.seq, [...]string{"status", "config", "users", "dump"}[rng.IntN(4)])
	}
	ev.Route = ev.Path
	ev.Method = "GET"
	if rng.IntN(6) == 0 {
		ev.Method = "POST"
		ev.RequestBytes = uint64(logNormal(rng, 200, 0.5)) + 1
	}
	ev.Upstream = "default"
	switch x := rng.IntN(20); {
	case x < 15:
		ev.Status = 404
	case x < 18:
		ev.Status = 403
	case x < 19:
		ev.Status = 401
	default:
		ev.Status = 405
	}
	ev.ResponseBytes = uint64(logNormal(rng, 180, 0.3))
	ev.DurationUs = latencyUs(math.Max(1, logNormal(rng, 6, 0.5)))
}
