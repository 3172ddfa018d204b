package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
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

	// The kinds below came later. They are not in IncidentKinds, so the
	// default set stays as it was; they draw from a random stream of their
	// own, so injecting them leaves every other line alone.

	// SlowExfiltration: low and slow, over hours (4h, say), about one call
	// a minute to a sensitive route of the agent's own role, each answered
	// with a few MB: meant to stay under per-window thresholds.
	SlowExfiltration IncidentKind = "slow_exfiltration"
	// OutOfRoleSensitive: a handful of calls a minute to a sensitive route
	// of another role, which the agent is not approved for and never
	// called; responses of normal size.
	OutOfRoleSensitive IncidentKind = "out_of_role_sensitive"
	// Enumeration: the agent walks resource ids under one of its own {id}
	// routes, sequentially or at random, about 20 distinct ids a minute,
	// mostly answered 200, some 404.
	Enumeration IncidentKind = "enumeration"
	// NewSourceAddress: the agent's credential is replayed from a new
	// source address in 198.51.100.0/24: ordinary calls of the agent's
	// usual routes at about its peak rate, all from that address, beside
	// its normal traffic from its usual one.
	NewSourceAddress IncidentKind = "new_source_address"
)

// IncidentKinds lists the kinds of the default set (DefaultIncidents), in
// its order. AllIncidentKinds lists every kind.
var IncidentKinds = []IncidentKind{Exfiltration, EndpointSprawl, AuthStorm, ZombieAPI, UnregisteredAgent, OffHours}

// AllIncidentKinds lists every kind the simulator can inject: IncidentKinds,
// then the kinds added for detection-quality evaluation.
var AllIncidentKinds = []IncidentKind{
	Exfiltration, EndpointSprawl, AuthStorm, ZombieAPI, UnregisteredAgent, OffHours,
	SlowExfiltration, OutOfRoleSensitive, Enumeration, NewSourceAddress,
}

// addedKind reports whether k is one of the kinds not in IncidentKinds,
// which draw from Simulator.extra.
func addedKind(k IncidentKind) bool {
	switch k {
	case SlowExfiltration, OutOfRoleSensitive, Enumeration, NewSourceAddress:
		return true
	}
	return false
}

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
	// Rate is the incident's extra calls per minute (0 = the kind's
	// default; for NewSourceAddress the agent's own peak rate). LowAndSlow
	// has none: its rate is relative (Multiplier).
	Rate float64
	// Multiplier and BytesMultiplier are a LowAndSlow's calls and bytes
	// over what the agent's profile expects (0: 3 and 4/3 of Multiplier);
	// Focus puts its excess on one sensitive route the agent is approved
	// for and calls (its usual routes when it has none).
	Multiplier, BytesMultiplier float64
	Focus                       bool
}

// Incident is one injected incident: the label a detector is scored against.
type Incident struct {
	// ID is unique in a run; Line.Incident holds it.
	ID    string
	Kind  IncidentKind
	Agent string
	Start time.Time
	End   time.Time
	// Route is the route template a SlowExfiltration, OutOfRoleSensitive
	// or Enumeration incident revolves around, "" for the other kinds.
	// (omitempty keeps the JSON of the original kinds as it was.)
	Route string `json:",omitempty"`
	// SourceIP is the new address of a NewSourceAddress incident, ""
	// for the other kinds.
	SourceIP string `json:",omitempty"`
	// Multiplier and BytesMultiplier are a LowAndSlow's calls and bytes
	// over the agent's expected ones; 0 for the other kinds.
	Multiplier      float64 `json:",omitempty"`
	BytesMultiplier float64 `json:",omitempty"`
}

type incident struct {
	Incident
	a    *agent
	op   *op        // the route abused, when the kind has one
	rng  *rand.Rand // s.traffic for the kinds of IncidentKinds, else s.extra
	rate float64    // calls per minute
	from int64      // Unix ms
	to   int64      // Unix ms
	seq  int        // calls so far, to vary recon paths
	next int64      // Enumeration: the next id of a sequential walk; 0 for random ids
	// scale multiplies the response sizes of a LowAndSlow's extra calls.
	scale float64
}

// defaultRate is each kind's calls per minute. NewSourceAddress has none:
// it replays at the agent's own peak rate.
var defaultRate = map[IncidentKind]float64{
	Exfiltration:       25,
	EndpointSprawl:     15,
	OffHours:           4,
	AuthStorm:          30,
	ZombieAPI:          2,
	UnregisteredAgent:  3,
	SlowExfiltration:   1,
	OutOfRoleSensitive: 4,
	Enumeration:        20,
	NewSourceAddress:   0,
	LowAndSlow:         0,
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
	return labels(s.incidents, func(inc *incident) Incident { return inc.Incident })
}

// labels copies the labelled part of each of a run's incidents or benign
// changes, in order, so that callers never share the generator's state.
func labels[T, L any](xs []*T, label func(*T) L) []L {
	out := make([]L, len(xs))
	for i, x := range xs {
		out[i] = label(x)
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
	SlowExfiltration:  {RoleHR, RoleFinance, RoleCustomerService},
	// Any role can reach for another's data; these have plenty of agents
	// and a sensitive route of their own to tell apart from the foreign one.
	OutOfRoleSensitive: {RoleCustomerService, RoleITOps, RoleBatchReporting},
	// Roles with a numeric-id route among their ordinary ones.
	Enumeration:      {RoleCustomerService, RoleHR, RoleITOps},
	NewSourceAddress: {RoleFinance, RoleCustomerService, RoleITOps},
	LowAndSlow:       lowAndSlowRoles,
}

// schedule resolves specs into incidents, picking distinct agents where the
// spec leaves it open. fleet is the generator the fleet was built with: the
// original kinds draw from it, the added ones from s.extra.
func (s *Simulator) schedule(fleet *rand.Rand, specs []IncidentSpec) error {
	used := map[string]bool{}
	for _, sp := range specs {
		if sp.Agent != "" {
			used[sp.Agent] = true
		}
	}
	counts := map[IncidentKind]int{}
	for i, sp := range specs {
		if _, ok := defaultRate[sp.Kind]; !ok {
			return fmt.Errorf("incidents[%d].kind: unknown kind %q; use one of %v", i, sp.Kind, append(slices.Clone(AllIncidentKinds), LowAndSlow))
		}
		if sp.Duration <= 0 || sp.Offset < 0 {
			return fmt.Errorf("incidents[%d]: offset must be >= 0 and duration > 0, got %s and %s", i, sp.Offset, sp.Duration)
		}
		if sp.Offset < s.cfg.History {
			return fmt.Errorf("incidents[%d]: %s at offset %s starts inside the incident-free history of %s; move it later or shorten history", i, sp.Kind, sp.Offset, s.cfg.History)
		}
		rng := fleet
		counts[sp.Kind]++
		inc := &incident{rate: sp.Rate, rng: s.traffic}
		if addedKind(sp.Kind) {
			rng, inc.rng = s.extra, s.extra
		}
		if sp.Kind == LowAndSlow {
			rng, inc.rng = s.long, s.long
		}
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
		switch sp.Kind {
		case LowAndSlow:
			if err := s.lowAndSlow(inc, sp); err != nil {
				return fmt.Errorf("incidents[%d]: %w", i, err)
			}
		case OutOfRoleSensitive:
			inc.op = foreignSensitiveOp(rng, inc.a)
		case Enumeration:
			inc.op = enumerableOp(rng, inc.a)
			if rng.IntN(2) == 0 {
				inc.next = 100000 + rng.Int64N(800000) // a sequential walk from here
			}
		case NewSourceAddress:
			inc.SourceIP = s.newSourceIP(rng)
			if inc.rate == 0 {
				inc.rate = max(1, baseRate[inc.a.Role]*inc.a.activity*s.cfg.RateScale)
			}
		default:
			inc.op = abusedOp(inc.a, sp.Kind)
		}
		switch sp.Kind {
		case Exfiltration, ZombieAPI, SlowExfiltration, OutOfRoleSensitive, Enumeration:
			if inc.op == nil {
				return fmt.Errorf("incidents[%d]: role %s of agent %s has no route for %s", i, inc.a.Role, inc.a.ID, sp.Kind)
			}
			if addedKind(sp.Kind) {
				inc.Route = inc.op.template
			}
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
		case k == Exfiltration && ops[i].sensitive, k == ZombieAPI && ops[i].deprecated,
			k == SlowExfiltration && ops[i].sensitive:
			return &ops[i]
		}
	}
	return nil
}

// foreignSensitiveOp picks a sensitive op of another role than a's that a
// is not approved for and its role never uses, nil if there is none.
func foreignSensitiveOp(rng *rand.Rand, a *agent) *op {
	var cands []*op
	for _, r := range Roles {
		if r == a.Role {
			continue
		}
		ops := catalog[r]
		for i := range ops {
			o := &ops[i]
			if o.sensitive && !slices.Contains(a.ApprovedRoutes, o.template) && !roleUses(a.Role, o.template) {
				cands = append(cands, o)
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[rng.IntN(len(cands))]
}

// roleUses reports whether a route of role r has template t.
func roleUses(r Role, t string) bool {
	return slices.ContainsFunc(catalog[r], func(o op) bool { return o.template == t })
}

// enumerableOp picks the route an Enumeration by a walks: a GET of a
// numeric {id} among a's own ops, else among its role's (rollout and
// deprecated routes aside), nil if the role has none.
func enumerableOp(rng *rand.Rand, a *agent) *op {
	fits := func(o *op) bool {
		return o.method == "GET" && o.ids == idNumeric && strings.Contains(o.template, "{id}") && !o.deprecated && !o.rollout
	}
	var cands []*op
	for _, o := range a.ops {
		if fits(o) {
			cands = append(cands, o)
		}
	}
	if len(cands) == 0 {
		ops := catalog[a.Role]
		for i := range ops {
			if fits(&ops[i]) {
				cands = append(cands, &ops[i])
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[rng.IntN(len(cands))]
}

// newSourceIP picks an address in 198.51.100.0/24 (TEST-NET-2) that no
// other incident of the run uses yet.
func (s *Simulator) newSourceIP(rng *rand.Rand) string {
	for {
		ip := "198.51.100." + strconv.Itoa(1+rng.IntN(254))
		if !slices.ContainsFunc(s.incidents, func(inc *incident) bool { return inc.SourceIP == ip }) {
			return ip
		}
	}
}

// incidentTraffic appends inc's calls that fall in [from, to).
func (s *Simulator) incidentTraffic(inc *incident, from, to int64) {
	lo, hi := max(from, inc.from), min(to, inc.to)
	if lo >= hi {
		return
	}
	rng := inc.rng
	if inc.Kind == Enumeration {
		s.enumerate(inc, lo, hi)
		return
	}
	n := poisson(rng, inc.rate*float64(hi-lo)/60_000)
	for range n {
		at := lo + rng.Int64N(hi-lo)
		a := inc.a
		ev := s.add(a, inc.ID)
		switch inc.Kind {
		case Exfiltration:
			s.bulkRead(rng, ev, a, at, inc.op, 30<<20, 0.5, 4000)
		case EndpointSprawl:
			s.reconEvent(ev, inc, at)
		case AuthStorm:
			s.normalEvent(rng, ev, a, at, a.ops[pick(rng, a.cum)])
			ev.Status = 401
			if rng.IntN(5) < 2 {
				ev.Status = 403
			}
			ev.ResponseBytes = uint64(logNormal(rng, 120, 0.2))
			ev.DurationUs = latencyUs(logNormal(rng, 4, 0.4))
		case ZombieAPI:
			s.normalEvent(rng, ev, a, at, inc.op)
		case SlowExfiltration:
			s.bulkRead(rng, ev, a, at, inc.op, 3<<20, 0.4, 900)
		case OutOfRoleSensitive:
			s.normalEvent(rng, ev, a, at, inc.op)
		case NewSourceAddress:
			s.normalEvent(rng, ev, a, at, a.ops[pick(rng, a.cum)])
			ev.SourceIP = inc.SourceIP
		default: // OffHours, UnregisteredAgent: ordinary calls, wrong time or wrong agent
			s.normalEvent(rng, ev, a, at, a.ops[pick(rng, a.cum)])
		}
	}
}

// enumerate appends the calls of Enumeration inc in [lo, hi): spread
// evenly, so a sequential walk's ids rise with time; a random walk misses
// more often than a sequential one.
func (s *Simulator) enumerate(inc *incident, lo, hi int64) {
	rng := inc.rng
	n := int64(poisson(rng, inc.rate*float64(hi-lo)/60_000))
	o := inc.op
	miss := 25 // percent of ids answered 404
	if inc.next != 0 {
		miss = 10
	}
	for k := range n {
		at := lo + k*(hi-lo)/n + rng.Int64N(max((hi-lo)/n, 1))
		ev := s.add(inc.a, inc.ID)
		s.baseEvent(rng, ev, inc.a, at)
		ev.Method = o.method
		ev.Route = o.template
		ev.Upstream = o.service
		id := inc.next
		if id == 0 {
			id = 100000 + rng.Int64N(900000)
		} else {
			inc.next++
		}
		ev.Path = fillID(o.template, id)
		if rng.IntN(100) < miss {
			ev.Status = 404
			ev.ResponseBytes = uint64(logNormal(rng, 160, 0.3))
			ev.DurationUs = latencyUs(logNormal(rng, 8, 0.4))
		} else {
			ev.Status = 200
			ev.ResponseBytes = uint64(logNormal(rng, o.respMed, 0.8))
			ev.DurationUs = latencyUs(logNormal(rng, o.latMedMs, 0.5))
		}
	}
}

// fillID replaces every {id} in t with id.
func fillID(t string, id int64) string {
	var buf [128]byte
	b := buf[:0]
	for i := 0; i < len(t); i++ {
		if t[i] == '{' {
			for i < len(t) && t[i] != '}' {
				i++
			}
			b = strconv.AppendInt(b, id, 10)
			continue
		}
		b = append(b, t[i])
	}
	return string(b)
}

// bulkRead makes ev a successful read of o whose size and duration are
// log-normal around bytes (spread bytesSigma) and ms: both exfiltration
// kinds, at their own scale. The draws are in the order the generator has
// always made them, so a seed gives the same traffic.
func (s *Simulator) bulkRead(rng *rand.Rand, ev *event.Event, a *agent, at int64, o *op, bytes, bytesSigma, ms float64) {
	s.normalEvent(rng, ev, a, at, o)
	ev.Status = 200
	ev.ResponseBytes = uint64(logNormal(rng, bytes, bytesSigma))
	ev.DurationUs = latencyUs(logNormal(rng, ms, 0.4))
}

// reconEvent is one probe of a route nobody has: a known scanner target or
// an invented numbered variant, mostly answered 404.
func (s *Simulator) reconEvent(ev *event.Event, inc *incident, at int64) {
	rng := s.traffic
	s.baseEvent(rng, ev, inc.a, at)
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
