package detect

import (
	"hash/maphash"
	"slices"
	"strings"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/baseline"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/features"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// Settings are the processor's knobs (config keys detector.*).
type Settings struct {
	Features features.Config
	Baseline baseline.Params
	// NewAgentsPerWindow is how many never-seen agent ids one partition may
	// see in one window before an agent_flood anomaly is raised and the
	// flood's shadow-agent alerts are folded into it. 0 turns it off.
	NewAgentsPerWindow int
	// RuleRepeatMs is the least event time between two rule anomalies of
	// one kind for one agent, unless the rule hits a route the agent had
	// never called before.
	RuleRepeatMs int64
	// DriftRepeatMs and OffHoursRepeatMs are the least event time between
	// two drift, and two off_hours, anomalies of one agent; below
	// RuleRepeatMs (0 included), RuleRepeatMs applies. A drift or quiet
	// hour that has been told once is rarely news an hour later.
	DriftRepeatMs, OffHoursRepeatMs int64
	// OffHoursMinRatio is the least multiple of the hour's expected calls
	// an off_hours anomaly needs, however improbable the count (an agent
	// whose quiet hours are busy enough for 2× to be improbable is not
	// one working at an unusual hour); 0 for none.
	OffHoursMinRatio float64
	// IdleSourceMs is how long, in ingest time, a raw-log partition may
	// send nothing before the watermark stops waiting for it; default 60 s.
	IdleSourceMs int64
	// StartupHold is how many events a fresh partition takes (or
	// IdleSourceMs of ingest time) before its watermark moves, so that every
	// raw-log partition feeding it has shown up; default 2000, negative
	// for none.
	StartupHold int
	// NoveltyMatureMs is the seen-set age after which a first call to a
	// sensitive route alerts for an agent without an approved-routes list.
	NoveltyMatureMs int64
	// GlobalMinAgents and GlobalShare: when at least this many agents, and
	// this share of the agents active in a window of one partition, are
	// scored anomalous in that window, it is one global event (an upstream
	// outage, a bad deploy): one global_event anomaly replaces their
	// behaviour anomalies. GlobalMinAgents 0 turns grouping off.
	GlobalMinAgents int
	GlobalShare     float64
	// NewIPMaxKnown: a registered agent whose seen-set is mature and holds
	// at most this many source addresses raises new_source_ip when a new
	// one appears (a credential used from elsewhere). Agents that already
	// use more addresses (NAT pools, serverless) do not; 0 turns it off.
	NewIPMaxKnown int
	// GlobalGapMs is how long after a global window another one continues
	// the same event (folded, no new alert) rather than starting a new one.
	GlobalGapMs int64
	// FleetGauge turns on the per-partition fleet gauge: every closed
	// window's calls and 5xx answers summed over the partition's agents,
	// each followed by a baseline.Series with parameters Fleet (the zero
	// value means baseline.DefaultSeriesParams, the parameters the NAB
	// evaluation scores); an increase raises fleet_gauge.
	FleetGauge bool
	Fleet      baseline.SeriesParams
	// Risk is the per-agent risk (risk.go); the zero value turns it off.
	Risk RiskSettings
}

// Catalog gives the processor the current agent registry and route
// inventory; internal/platform/invwatch's Watcher provides them. Implementations
// must be safe for concurrent use.
type Catalog interface {
	Registry() *inventory.Registry
	Routes() *inventory.Inventory
}

// agentState is everything the detector keeps for one agent.
type agentState struct {
	id    string
	model baseline.Model
	seen  features.Seen
	// ruleAt holds, per rule kind, the window start of the agent's last
	// anomaly of that kind (0: never).
	ruleAt [numRules]int64
	// accs are the agent's open windows, oldest first; usually one.
	accs         []*features.Acc
	lastActiveMs int64
	// hourStart, hourActive and hourCalls count the agent's active
	// windows and calls in the current UTC hour, for the off-hours rule.
	hourStart  int64
	hourActive uint16
	hourCalls  uint32
	// hourLoad is the model's HourLoad (per-window calls, dispersion,
	// load, busiest slot's load) for this hour as it stood before the
	// hour's first window trained: off-hours activity must be judged
	// against the quiet hour it interrupts, not against what the model
	// has since learnt from that very activity.
	hourLoad    [4]float64
	pendingLate int
	dirty       bool
	// verdictAt and verdictID are the AtMs and ID of the last false-positive
	// verdict applied (ApplyVerdict): verdicts apply in (AtMs, ID) order,
	// each once.
	verdictAt int64
	verdictID string
	// risk is the agent's risk (risk.go); nil until its first anomaly,
	// so that the many agents that never have one pay a pointer for it.
	risk *riskState
}

// partition is one events-topic partition's windows and agents. Its
// windows close on its own watermark (the newest event time it has seen),
// so its results depend only on the order of its records: a replay gives
// what live processing gave.
type partition struct {
	id            int32
	watermark     int64
	closedThrough int64
	lastOffset    int64
	// replayThrough is the highest offset processed before the state was
	// restored: records up to it that fall in closed windows are replays,
	// not late arrivals.
	replayThrough int64
	agents        map[string]*agentState
	peers         map[string]*baseline.Model
	dirtyPeers    map[string]bool
	// open maps window starts (kept sorted in starts) to the agents with
	// an open window there.
	open      map[int64][]*agentState
	starts    []int64
	newAgents map[int64][]string
	// sources track, per raw-log partition feeding this partition, the
	// newest event time seen; the watermark is their minimum (see observe).
	sources   map[source]*sourceClock
	maxIngest int64
	// warming counts a fresh partition's first events (see observe);
	// firstIngest is the ingest time of its first.
	warming, hold int
	firstIngest   int64
	// idleSourceMs is Settings.IdleSourceMs; jumpMs (a window plus the
	// lateness) is the largest step a source clock takes on one event.
	idleSourceMs, jumpMs int64
	minSource            source
	sinceScan            int
	// globalAt is the start of the last window judged a global event,
	// globalFeat that event's top feature.
	globalAt   int64
	globalFeat string
	// fleet are the fleet gauges, one per fleetFeatures.
	fleet [numFleet]fleetGauge
}

// Processor turns partitions' ordered events into closed windows, scores
// and anomalies. The same records in the same per-partition order give the
// same results, whatever the interleaving of partitions. Not safe for
// concurrent use.
type Processor struct {
	set Settings
	// peerParams are the baseline parameters of peer-group models: many
	// agents train one model, so its half-lives span more windows.
	peerParams baseline.Params
	// repeatMs is, per rule, the least event time between two of its
	// anomalies for one agent: RuleRepeatMs, or a rule's own longer one.
	repeatMs [numRules]int64
	cat      Catalog
	parts    map[int32]*partition
	pool     []*features.Acc
	win      features.Window

	anomalies []anomaly.Anomaly
	scores    []anomaly.Score
	// held collects a closing window's behaviour anomalies until the
	// window is known not to be a global event (settleGlobal).
	held    []anomaly.Anomaly
	holding bool
	// shadows collects a closing window's shadow-agent hits until its
	// agents are all evaluated (settleShadows).
	shadows []shadowHit
	// peerRatios collects a closing window's agents' recent ratios by
	// role until its agents are all evaluated (settlePeers).
	peerRatios map[string][]float64

	stats Stats
	// Loader restores an evicted agent's state blob; nil or ok=false
	// starts the agent afresh.
	Loader func(agentID string) (blob []byte, ok bool)
	// Cap is the most agents held in memory (0: no cap). Past it, an
	// agent the registry does not know gets no state of its own while it
	// is new: it is counted towards its window's agent flood and its event
	// is dropped (Stats.Shed). Registered agents are always admitted; the
	// detector evicts to bring the count back under Cap.
	Cap int
	// evicted holds the hashes of agents whose state is in the store but
	// not in memory (evicted, or not loaded at restore; see MarkStored):
	// only those are looked up with Loader when they are seen.
	evicted map[uint64]struct{}
	seed    maphash.Seed
	now     func() int64
}

// Stats are the processor's running counters.
type Stats struct {
	Events, Unattributed, Late, Replayed, Windows, NewAgents, Evicted, Restored uint64
	// Shed counts events of unregistered newcomers dropped at the agent
	// cap (Processor.Cap); Expired counts agents removed by Forget.
	Shed, Expired uint64
	// Folded counts behaviour anomalies folded into global events.
	Folded uint64
	// Verdicts counts false-positive verdicts folded into baselines
	// (ApplyVerdict).
	Verdicts uint64
	// ShadowFolded counts unregistered agents whose shadow-agent finding
	// was folded into a grouped one (settleShadows).
	ShadowFolded uint64
	Anomalies    map[string]uint64
	// Agents is the number of agents held in memory.
	Agents int
}

// PeerHalfLifeFactor stretches the half-lives of peer-group models, which
// every agent of the group trains.
const PeerHalfLifeFactor = 20

// NewProcessor returns a processor with no partitions. now gives wall time
// in Unix ms; it stamps DetectedMs and caps the watermark, which correctly
// stamped input never reaches, so it changes no result of such input.
func NewProcessor(set Settings, cat Catalog, now func() int64) *Processor {
	if set.IdleSourceMs <= 0 {
		set.IdleSourceMs = 60_000
	}
	switch {
	case set.StartupHold == 0:
		set.StartupHold = 2000
	case set.StartupHold < 0:
		set.StartupHold = 0
	}
	if set.Fleet == (baseline.SeriesParams{}) {
		set.Fleet = baseline.DefaultSeriesParams()
	}
	pp := set.Baseline
	pp.HalfLife *= PeerHalfLifeFactor
	pp.LongHalfLife *= PeerHalfLifeFactor
	p := &Processor{
		set: set, peerParams: pp, cat: cat, parts: map[int32]*partition{}, now: now,
		evicted: map[uint64]struct{}{}, seed: maphash.MakeSeed(),
		stats: Stats{Anomalies: map[string]uint64{}},
	}
	for r := range p.repeatMs {
		p.repeatMs[r] = set.RuleRepeatMs
	}
	p.repeatMs[ruleDrift] = max(set.RuleRepeatMs, set.DriftRepeatMs)
	p.repeatMs[ruleOffHours] = max(set.RuleRepeatMs, set.OffHoursRepeatMs)
	return p
}

// Stats returns a copy of the counters.
func (p *Processor) Stats() Stats {
	s := p.stats
	s.Anomalies = maps2(p.stats.Anomalies)
	s.Agents = p.Agents()
	return s
}

func maps2(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Agents returns the number of agents held in memory.
func (p *Processor) Agents() int {
	n := 0
	for _, pt := range p.parts {
		n += len(pt.agents)
	}
	return n
}

// minPool is how many spare window accumulators TrimPool keeps at least.
const minPool = 1024

// TrimPool lets go of spare window accumulators beyond those that the
// windows open now would need again (at least minPool). Each closed window
// returns its accumulator to the pool for the agent's next window; without
// a trim, one busy minute of a million agents (or of a million fake ids)
// would keep a million accumulators, over a kilobyte each, for ever.
func (p *Processor) TrimPool() {
	open := 0
	for _, pt := range p.parts {
		for _, as := range pt.open {
			open += len(as)
		}
	}
	keep := max(open, minPool)
	if len(p.pool) <= keep {
		return
	}
	clear(p.pool[keep:])
	p.pool = slices.Clip(p.pool[:keep])
}

// MarkStored records that agent id has state in the store that is not in
// memory (a restore left it out to stay under the cap): when it is seen,
// Loader fetches it instead of starting it afresh. It costs a map entry of
// a hash, not the agent's state.
func (p *Processor) MarkStored(id string) {
	p.evicted[maphash.String(p.seed, id)] = struct{}{}
}

// Forget drops agent id from memory and from the stored-agent marks,
// unless it has an open window (then it returns false and keeps it): the
// caller is removing the agent's state from the store.
func (p *Processor) Forget(id string) bool {
	for _, pt := range p.parts {
		if a, ok := pt.agents[id]; ok {
			if len(a.accs) > 0 {
				return false
			}
			delete(pt.agents, id)
		}
	}
	delete(p.evicted, maphash.String(p.seed, id))
	p.stats.Expired++
	return true
}

// Unregistered reports whether id is an agent the registry does not know.
// Without a registry file nothing is known and nothing can be called
// unregistered, so it is false for every id: the removal of idle
// unregistered agents must not remove every baseline.
func (p *Processor) Unregistered(id string) bool {
	reg := p.cat.Registry()
	if !reg.Enabled() {
		return false
	}
	_, ok := reg.Lookup(id)
	return !ok
}

func (p *Processor) part(id int32) *partition {
	pt := p.parts[id]
	if pt == nil {
		pt = &partition{
			id: id, lastOffset: -1, replayThrough: -1,
			agents: map[string]*agentState{}, peers: map[string]*baseline.Model{},
			dirtyPeers: map[string]bool{}, open: map[int64][]*agentState{}, newAgents: map[int64][]string{},
			sources: map[source]*sourceClock{}, idleSourceMs: p.set.IdleSourceMs,
			jumpMs: p.set.Features.WindowMs + p.set.Features.LatenessMs, hold: p.set.StartupHold,
		}
		p.parts[id] = pt
	}
	return pt
}

// Add folds one event, read at offset of events-topic partition part, into
// its agent's window, then closes every window the partition's watermark
// has passed. (ev.Offset locates the raw line ingest parsed, not this
// record.)
func (p *Processor) Add(part int32, offset int64, ev *event.Event) {
	pt := p.part(part)
	p.stats.Events++
	if offset > pt.lastOffset {
		pt.lastOffset = offset
	}
	if ev.Unattributed || ev.AgentID == "" {
		// No agent to hold a baseline for; ingest keeps and flags them.
		p.stats.Unattributed++
		return
	}
	cfg := p.set.Features
	ws := cfg.WindowStart(ev.EventTimeMs)
	a := pt.agents[ev.AgentID]
	if ws < pt.closedThrough {
		if offset <= pt.replayThrough {
			p.stats.Replayed++
			return
		}
		// Late: its window is closed and scored. Count it on the agent's
		// next window rather than lose it silently.
		p.stats.Late++
		if a != nil {
			a.pendingLate++
		}
		return
	}
	if a == nil {
		if a = p.newAgent(pt, ev.AgentID, ws); a == nil {
			p.stats.Shed++
			return
		}
	}
	var ri features.RouteInfo
	if r, ok := p.cat.Routes().Lookup(ev.Route); ok {
		ri = features.RouteInfo{Sensitive: r.Sensitive, Deprecated: r.Deprecated}
	}
	p.accFor(pt, a, ws).Add(ev, offset, ri)
	a.lastActiveMs = max(a.lastActiveMs, ev.EventTimeMs)
	wm := pt.observe(ev)
	if wm > pt.watermark && p.now != nil {
		// Ingest's clock may run ahead of this one: the watermark, like
		// the idle flush, never passes the wall clock. Correctly stamped
		// input never reaches it, so replays still equal live runs.
		wm = min(wm, p.now())
	}
	if wm > pt.watermark {
		pt.watermark = wm
		p.advance(pt, cfg.WindowStart(pt.watermark-cfg.LatenessMs))
	}
}

func (p *Processor) newAgent(pt *partition, id string, ws int64) *agentState {
	// The decoded event's strings share one allocation, several hundred
	// bytes; an id kept for the agent's lifetime must not pin all of it.
	id = strings.Clone(id)
	h := maphash.String(p.seed, id)
	if _, was := p.evicted[h]; was && p.Loader != nil {
		if blob, ok := p.Loader(id); ok {
			a := &agentState{id: id}
			if err := a.unmarshal(blob); err == nil {
				delete(p.evicted, h)
				p.stats.Restored++
				pt.agents[id] = a
				return a
			}
		}
	}
	role := ""
	ag, registered := p.cat.Registry().Lookup(id)
	if registered {
		role = ag.Role
	}
	if !registered && p.Cap > 0 && p.Agents() >= p.Cap {
		// A flood of fake ids must not grow memory past the cap: the id
		// still counts towards the window's agent_flood, nothing else.
		pt.newAgents[ws] = append(pt.newAgents[ws], id)
		return nil
	}
	a := &agentState{id: id, dirty: true}
	// Cold start: begin from the peer group's baseline.
	if peer := p.peer(pt, role); peer != nil {
		a.model.Inherit(peer)
	}
	pt.agents[id] = a
	p.stats.NewAgents++
	pt.newAgents[ws] = append(pt.newAgents[ws], id)
	return a
}

func (p *Processor) accFor(pt *partition, a *agentState, ws int64) *features.Acc {
	i := len(a.accs)
	for i > 0 && a.accs[i-1].StartMs >= ws {
		if a.accs[i-1].StartMs == ws {
			return a.accs[i-1]
		}
		i--
	}
	var acc *features.Acc
	if n := len(p.pool); n > 0 {
		acc, p.pool = p.pool[n-1], p.pool[:n-1]
	} else {
		acc = new(features.Acc)
	}
	acc.Reset(ws)
	a.accs = slices.Insert(a.accs, i, acc)
	if _, ok := pt.open[ws]; !ok {
		j, _ := slices.BinarySearch(pt.starts, ws)
		pt.starts = slices.Insert(pt.starts, j, ws)
	}
	pt.open[ws] = append(pt.open[ws], a)
	return acc
}

// advance closes every open window starting before frontier.
func (p *Processor) advance(pt *partition, frontier int64) {
	if frontier <= pt.closedThrough {
		return
	}
	for len(pt.starts) > 0 && pt.starts[0] < frontier {
		ws := pt.starts[0]
		pt.starts = pt.starts[1:]
		p.closeWindow(pt, ws)
	}
	for ws := range pt.newAgents {
		if ws < frontier {
			delete(pt.newAgents, ws)
		}
	}
	pt.closedThrough = frontier
}

// Flush closes every open window of partition part, as if its watermark
// had jumped past them: at the end of a replay or backfill, when no more
// records will come. Later events for those windows count as late. A live
// partition that is only quiet uses FlushUntil.
func (p *Processor) Flush(part int32) {
	pt := p.parts[part]
	if pt == nil || len(pt.starts) == 0 {
		return
	}
	p.advance(pt, pt.starts[len(pt.starts)-1]+p.set.Features.WindowMs)
}

// FlushUntil closes partition part's open windows that ended at least the
// lateness before nowMs (wall time, Unix ms): what a quiet partition may
// close without waiting for its watermark. Unlike Flush it never closes a
// window the wall clock has not passed, so a single event stamped ahead
// (a gateway with a fast clock, a forged line) cannot make the correctly
// stamped events that follow it late: its own window stays open until the
// wall clock, or the watermark, reaches it.
func (p *Processor) FlushUntil(part int32, nowMs int64) {
	pt := p.parts[part]
	if pt == nil || len(pt.starts) == 0 {
		return
	}
	cfg := p.set.Features
	frontier := min(cfg.WindowStart(nowMs-cfg.LatenessMs), pt.starts[len(pt.starts)-1]+cfg.WindowMs)
	p.advance(pt, frontier)
}

// FlushAll flushes every partition.
func (p *Processor) FlushAll() {
	for _, id := range p.Partitions() {
		p.Flush(id)
	}
}

// Partitions returns the partitions held, sorted.
func (p *Processor) Partitions() []int32 {
	ids := make([]int32, 0, len(p.parts))
	for id := range p.parts {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (p *Processor) closeWindow(pt *partition, ws int64) {
	agents := pt.open[ws]
	delete(pt.open, ws)
	// Arrival order differs between a shuffled replay and live; agent
	// order must not, because peer models learn from every agent.
	slices.SortFunc(agents, func(x, y *agentState) int { return strings.Compare(x.id, y.id) })
	flood := p.set.NewAgentsPerWindow > 0 && len(pt.newAgents[ws]) > p.set.NewAgentsPerWindow
	if flood {
		p.emitFlood(pt, ws, pt.newAgents[ws])
	}
	p.holding = p.set.GlobalMinAgents > 0
	var sums [numFleet]float64
	for _, a := range agents {
		acc := a.accs[0]
		a.accs = a.accs[1:]
		if len(a.accs) == 0 {
			a.accs = nil
		}
		p.evaluate(pt, a, acc, flood)
		for i, id := range fleetFeatures {
			sums[i] += p.win.Values[id]
		}
		p.pool = append(p.pool, acc)
	}
	p.holding = false
	p.settleGlobal(pt, ws, len(agents))
	p.settleShadows(pt, ws)
	p.settlePeers(pt, ws)
	if p.set.FleetGauge {
		p.observeFleet(pt, ws, &sums, len(agents))
	}
}
