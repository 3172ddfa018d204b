package detect

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
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
}

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

// source is one raw-log partition (ingest's input) as named in the
// events it produced.
type source struct {
	topic     string
	partition int32
}

type sourceClock struct {
	maxEvent, lastIngest int64
	// pending is an unconfirmed jump ahead (0: none).
	pending int64
}

// observe folds ev into the partition's source clocks and returns the
// watermark: the smallest newest-event-time over the raw-log partitions
// that are still sending. Ingest reads its raw partitions at different
// paces, above all while catching up a backlog, so one partition's events
// can run hours ahead of another's on the events topic; taking the maximum
// would make the slower partition's events late. Each event time is also
// capped at the time ingest parsed it: one log line claiming to be from
// ten minutes ahead must not close everyone's windows early.
func (pt *partition) observe(ev *event.Event) int64 {
	at := ev.EventTimeMs
	if ev.IngestTimeMs > 0 && ev.IngestTimeMs < at {
		// The line claims a time after ingest parsed it: a skewed or
		// forged clock. It counts in its window but not for the watermark.
		at = math.MinInt64
	}
	if ev.IngestTimeMs > pt.maxIngest {
		pt.maxIngest = ev.IngestTimeMs
	}
	if pt.warming < pt.hold {
		// A fresh partition does not know its raw sources yet: had the
		// first one seen set the watermark, the others' older events would
		// all be late. Hold it for the first events, or a while of ingest
		// time, so every raw partition shows up first.
		if pt.warming == 0 {
			pt.firstIngest = ev.IngestTimeMs
		}
		pt.warming++
		if pt.warming < pt.hold && ev.IngestTimeMs-pt.firstIngest < pt.idleSourceMs {
			pt.observeSource(ev, at)
			return pt.watermark
		}
		pt.warming = pt.hold
		pt.sinceScan = 1 << 30
	}
	return pt.observeSource(ev, at)
}

func (pt *partition) observeSource(ev *event.Event, at int64) int64 {
	key := source{ev.Topic, ev.Partition}
	c := pt.sources[key]
	if c == nil {
		if at == math.MinInt64 {
			return pt.watermark
		}
		c = &sourceClock{maxEvent: at}
		pt.sources[key] = c
		pt.sinceScan = 1 << 30 // rescan: a new source may hold the minimum
	}
	c.lastIngest = max(c.lastIngest, ev.IngestTimeMs)
	grew := false
	switch {
	case at <= c.maxEvent:
	case at <= c.maxEvent+pt.jumpMs:
		c.maxEvent, grew = at, true
	case c.pending != 0 && at >= c.pending-pt.jumpMs && at <= c.pending+pt.jumpMs:
		// A jump a second event close to it has confirmed (a source
		// back from a pause).
		c.maxEvent, grew = max(at, c.pending), true
	default:
		// A jump: wait for a second event near it to confirm it, so that
		// mis-stamped lines, each far ahead somewhere else, cannot move
		// the clock.
		c.pending = at
	}
	if c.pending != 0 && c.maxEvent >= c.pending-pt.jumpMs {
		c.pending = 0
	}
	pt.sinceScan++
	// Rescan when the slowest source moved, and every so often to retire
	// sources that went quiet.
	if (grew && key == pt.minSource) || pt.sinceScan >= 1024 {
		pt.sinceScan = 0
		wm, found := int64(0), false
		for k, sc := range pt.sources {
			if sc.lastIngest < pt.maxIngest-pt.idleSourceMs && len(pt.sources) > 1 {
				continue
			}
			if !found || sc.maxEvent < wm || (sc.maxEvent == wm && (k.topic < pt.minSource.topic || (k.topic == pt.minSource.topic && k.partition < pt.minSource.partition))) {
				wm, found, pt.minSource = sc.maxEvent, true, k
			}
		}
		if found {
			return wm
		}
	}
	return pt.watermark
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
	cat        Catalog
	parts      map[int32]*partition
	pool       []*features.Acc
	win        features.Window

	anomalies []anomaly.Anomaly
	scores    []anomaly.Score
	// held collects a closing window's behaviour anomalies until the
	// window is known not to be a global event (settleGlobal).
	held    []anomaly.Anomaly
	holding bool

	stats Stats
	// Loader restores an evicted agent's state blob; nil or ok=false
	// starts the agent afresh.
	Loader  func(agentID string) (blob []byte, ok bool)
	evicted map[uint64]struct{}
	seed    maphash.Seed
	now     func() int64
}

// Stats are the processor's running counters.
type Stats struct {
	Events, Unattributed, Late, Replayed, Windows, NewAgents, Evicted, Restored uint64
	// Folded counts behaviour anomalies folded into global events.
	Folded uint64
	// Verdicts counts false-positive verdicts folded into baselines
	// (ApplyVerdict).
	Verdicts  uint64
	Anomalies map[string]uint64
	// Agents is the number of agents held in memory.
	Agents int
}

// PeerHalfLifeFactor stretches the half-lives of peer-group models, which
// every agent of the group trains.
const PeerHalfLifeFactor = 20

// NewProcessor returns a processor with no partitions. now gives wall time
// in Unix ms; it only stamps DetectedMs and never changes a result.
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
	return &Processor{
		set: set, peerParams: pp, cat: cat, parts: map[int32]*partition{}, now: now,
		evicted: map[uint64]struct{}{}, seed: maphash.MakeSeed(),
		stats: Stats{Anomalies: map[string]uint64{}},
	}
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
		a = p.newAgent(pt, ev.AgentID, ws)
	}
	var ri features.RouteInfo
	if r, ok := p.cat.Routes().Lookup(ev.Route); ok {
		ri = features.RouteInfo{Sensitive: r.Sensitive, Deprecated: r.Deprecated}
	}
	p.accFor(pt, a, ws).Add(ev, offset, ri)
	a.lastActiveMs = max(a.lastActiveMs, ev.EventTimeMs)
	if wm := pt.observe(ev); wm > pt.watermark {
		pt.watermark = wm
		p.advance(pt, cfg.WindowStart(pt.watermark-cfg.LatenessMs))
	}
}

func (p *Processor) newAgent(pt *partition, id string, ws int64) *agentState {
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
	a := &agentState{id: id, dirty: true}
	role := ""
	if ag, ok := p.cat.Registry().Lookup(id); ok {
		role = ag.Role
	}
	// Cold start: begin from the peer group's baseline.
	if peer := p.peer(pt, role); peer != nil {
		a.model.Inherit(peer)
	}
	pt.agents[id] = a
	p.stats.NewAgents++
	pt.newAgents[ws] = append(pt.newAgents[ws], id)
	return a
}

// peer returns the warm peer model for role (its role's, else all agents'),
// or the all-agents model however young, or nil.
func (p *Processor) peer(pt *partition, role string) *baseline.Model {
	if role != "" {
		if m := pt.peers[role]; m != nil && m.Windows() >= p.set.Baseline.Warmup {
			return m
		}
	}
	return pt.peers[""]
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
// had jumped past them: at the end of a replay or backfill, or when the
// partition has been idle. Later events for those windows count as late.
func (p *Processor) Flush(part int32) {
	pt := p.parts[part]
	if pt == nil || len(pt.starts) == 0 {
		return
	}
	p.advance(pt, pt.starts[len(pt.starts)-1]+p.set.Features.WindowMs)
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
	if p.set.FleetGauge {
		p.observeFleet(pt, ws, &sums, len(agents))
	}
}

// settleGlobal decides whether the behaviour anomalies of window ws, held
// while its agents were evaluated, are one global event. Many agents
// turning anomalous in the same minute for the same reason (their top
// feature) is not many incidents: it is an upstream outage or a platform
// change, and one alert says so where one per agent would bury the
// analyst. While an event lasts (windows within GlobalGapMs of its last
// global window), anomalies whose top feature is the event's are folded
// into it even when too few for a global window of their own: the event's
// ragged start and end. Anomalies for other reasons still alert.
func (p *Processor) settleGlobal(pt *partition, ws int64, active int) {
	held := p.held
	p.held = p.held[:0]
	if len(held) == 0 {
		return
	}
	set := &p.set
	byTop := map[string]int{}
	for _, h := range held {
		byTop[topFeature(h)]++
	}
	feat, n := "", 0
	for f, c := range byTop {
		if c > n || (c == n && f < feat) {
			feat, n = f, c
		}
	}
	global := n >= set.GlobalMinAgents && float64(n) >= set.GlobalShare*float64(active)
	ongoing := pt.globalAt != 0 && ws > pt.globalAt && ws-pt.globalAt <= set.GlobalGapMs
	if global && ongoing && feat != pt.globalFeat {
		ongoing = false // a different event
	}
	if !global && !ongoing {
		for _, an := range held {
			p.emit(an)
		}
		return
	}
	if !global {
		feat = pt.globalFeat
	}
	var folded []anomaly.Anomaly
	for _, an := range held {
		if topFeature(an) == feat {
			folded = append(folded, an)
			p.stats.Folded++
		} else {
			p.emit(an)
		}
	}
	if !global {
		return
	}
	pt.globalAt, pt.globalFeat = ws, feat
	if ongoing {
		return
	}
	// Partitions judge their agents apart; the id depends on the event's
	// hour (GlobalGapMs) and feature only, so the partitions that see one
	// outage report it under one id and consumers deduplicate it.
	bucket := ws
	if set.GlobalGapMs > 0 {
		bucket = ws - ws%set.GlobalGapMs
	}
	agentID := "*global/" + feat
	an := anomaly.Anomaly{
		V: anomaly.Version, ID: anomaly.ID(agentID, bucket, anomaly.GlobalEvent), AgentID: agentID, Kind: anomaly.GlobalEvent,
		WindowStartMs: ws, WindowEndMs: ws + set.Features.WindowMs, Count: len(folded), Partition: pt.id,
	}
	// The explanation sums each feature's contribution over the agents, so
	// it names what the event is (5xx, latency, calls) rather than anyone.
	type agg struct {
		anomaly.Feature
		n int
	}
	byName := map[string]*agg{}
	ids := make([]string, 0, len(folded))
	for _, h := range folded {
		ids = append(ids, h.AgentID)
		if h.Score > an.Score {
			an.Score, an.Severity = h.Score, h.Severity
		}
		for _, f := range h.Explanation {
			g := byName[f.Name]
			if g == nil {
				g = &agg{Feature: anomaly.Feature{Name: f.Name}}
				byName[f.Name] = g
			}
			g.n++
			g.Observed += f.Observed
			g.Expected += f.Expected
			g.Surprise += f.Surprise
			g.Contribution += f.Contribution
		}
	}
	feats := make([]*agg, 0, len(byName))
	for _, g := range byName {
		feats = append(feats, g)
	}
	slices.SortFunc(feats, func(x, y *agg) int {
		return cmp.Or(cmp.Compare(y.n, x.n), cmp.Compare(y.Contribution, x.Contribution), strings.Compare(x.Name, y.Name))
	})
	names := make([]string, 0, 3)
	for _, g := range feats[:min(5, len(feats))] {
		an.Explanation = append(an.Explanation, anomaly.Feature{
			Name: g.Name, Observed: round(g.Observed), Expected: round(g.Expected), Surprise: round(g.Surprise / float64(g.n)),
			Contribution: round(g.Contribution / float64(len(folded))),
		})
		if len(names) < 3 {
			names = append(names, fmt.Sprintf("%s (%d agents)", g.Name, g.n))
		}
	}
	slices.Sort(ids)
	more := ""
	if len(ids) > 8 {
		more = ", …"
	}
	an.Summary = fmt.Sprintf("%d of %d active agents on partition %d turned anomalous in the same window, most for %s: a global event (upstream outage or platform change), not %d incidents; their alerts are folded into this one while it lasts. Features: %s. Agents: %s%s.",
		len(folded), active, pt.id, feat, len(folded), strings.Join(names, ", "), strings.Join(ids[:min(8, len(ids))], ", "), more)
	p.emit(an)
}

// topFeature names an anomaly's most contributing feature.
func topFeature(an anomaly.Anomaly) string {
	if len(an.Explanation) == 0 {
		return ""
	}
	return an.Explanation[0].Name
}

func (p *Processor) evaluate(pt *partition, a *agentState, acc *features.Acc, flood bool) {
	set := &p.set
	w := &p.win
	acc.Close(set.Features.WindowMs, &a.seen, w)
	w.Late += a.pendingLate
	a.pendingLate = 0
	p.stats.Windows++

	ag, known := p.cat.Registry().Lookup(a.id)
	role := ""
	if known {
		role = ag.Role
	}
	usePeer := a.model.Windows() < set.Baseline.Warmup
	model, params := &a.model, &set.Baseline
	vals := w.Values
	if usePeer {
		if peer := p.peer(pt, role); peer != nil {
			model, params = peer, &p.peerParams
			// Everything is new to a new agent; its peers' novelty rates
			// say nothing about that.
			vals[features.NewRoutes], vals[features.NewIPs] = 0, 0
		}
	}
	res := model.Score(params, w.StartMs, &vals)
	// A model that has not learnt enough yet scores but never alerts.
	cold := model.Windows() < set.Baseline.Warmup
	alert := !cold && (res.Anomalous || (res.Drift && p.due(a, ruleDrift, w.StartMs, false)))

	if hs := w.StartMs - w.StartMs%3_600_000; hs != a.hourStart {
		a.hourStart, a.hourActive, a.hourCalls = hs, 0, 0
		pw, disp, load, busiest := a.model.HourLoad(w.StartMs)
		a.hourLoad = [4]float64{pw, disp, load, busiest}
	}

	// Drift windows train: a legitimate step change must become the new
	// normal. Only windows the short-term baseline finds anomalous are
	// kept out (the poisoning guard).
	weight := 1.0
	if res.Anomalous {
		weight = set.Baseline.AnomalousWeight
	}
	if weight > 0 {
		a.model.Update(&set.Baseline, w.StartMs, &w.Values, weight)
		// The all-agents model "" is only the cold-start fallback: peer
		// uses it for agents without a role and for roles whose own peer
		// model is still younger than Warmup. So only those windows train
		// it; once a role's model is warm its windows no longer do. The
		// role model's age before this window decides, which depends only
		// on the partition's records in order, so results stay
		// deterministic.
		fallback := role == "" || p.peerYoung(pt, role)
		p.trainPeer(pt, role, w, weight)
		if role != "" && fallback {
			p.trainPeer(pt, "", w, weight)
		}
	}

	// One allocation for the score's three vectors; each is capped, so an
	// append to one cannot spill into the next.
	const nf = int(features.NumFeatures)
	vecs := make([]float64, 3*nf)
	sc := anomaly.Score{
		AgentID: a.id, WindowStartMs: w.StartMs, WindowEndMs: w.EndMs, Partition: pt.id,
		Score: res.Score, Severity: res.Severity.String(), Trained: weight > 0, PeerBaseline: usePeer, Late: w.Late,
		Values: vecs[:nf:nf], Expected: vecs[nf : 2*nf : 2*nf], Surprise: vecs[2*nf:],
	}
	for i := range features.NumFeatures {
		fs := res.Features[i]
		sc.Values[i], sc.Expected[i], sc.Surprise[i] = w.Values[i], fs.Expected, fs.Surprise
	}
	if cold {
		sc.Severity = baseline.Severity(0).String()
	}
	p.scores = append(p.scores, sc)

	if alert {
		kind := anomaly.Behaviour
		if res.Drift && !res.Anomalous {
			kind = anomaly.Drift
		}
		an := p.newAnomaly(pt, a, w, kind, ag, known)
		an.Score, an.Severity, an.PeerBaseline = res.Score, res.Severity.String(), usePeer
		for _, id := range res.Top(5) {
			fs := res.Features[id]
			an.Explanation = append(an.Explanation, anomaly.Feature{
				Name: id.String(), Observed: w.Values[id], Expected: round(fs.Expected), Surprise: round(fs.Surprise),
				Contribution: round(res.Contribution(id)),
			})
		}
		if res.OffHours.Surprise > 1 {
			an.Explanation = append(an.Explanation, anomaly.Feature{
				Name: "off_hours", Observed: float64(w.HourOfWeek), Expected: round(res.OffHours.Expected), Surprise: round(res.OffHours.Surprise),
			})
		}
		an.Summary = behaviourSummary(an, usePeer, role)
		if p.holding {
			p.held = append(p.held, an)
		} else {
			p.emit(an)
		}
	}
	a.hourActive++
	a.hourCalls += uint32(w.Values[features.Calls])
	if !usePeer && !alert {
		p.offHours(pt, a, w, ag, known)
	}
	p.rules(pt, a, w, ag, known, flood)
	a.seen.Merge(acc)
	a.dirty = true
}

// peerYoung reports whether role's peer model is missing or younger than
// Warmup, so that peer falls back to the all-agents model for it.
func (p *Processor) peerYoung(pt *partition, role string) bool {
	m := pt.peers[role]
	return m == nil || m.Windows() < p.set.Baseline.Warmup
}

func (p *Processor) trainPeer(pt *partition, role string, w *features.Window, weight float64) {
	m := pt.peers[role]
	if m == nil {
		m = new(baseline.Model)
		pt.peers[role] = m
	}
	m.Update(&p.peerParams, w.StartMs, &w.Values, weight)
	pt.dirtyPeers[role] = true
}

// rules raises the anomalies that need no statistics.
func (p *Processor) rules(pt *partition, a *agentState, w *features.Window, ag *inventory.Agent, known, flood bool) {
	reg := p.cat.Registry()
	isNew := func(route string) bool { _, ok := slices.BinarySearch(w.NewRouteNames, route); return ok }
	if reg.Enabled() && !known && !flood && p.due(a, ruleShadow, w.StartMs, a.seen.SinceMs == 0) {
		an := p.newAnomaly(pt, a, w, anomaly.ShadowAgent, ag, known)
		an.Score, an.Severity, an.Count = 8, "high", int(w.Values[features.Calls])
		an.Summary = fmt.Sprintf("Agent %q is not in the agent registry but made %d calls in the window (%s).",
			a.id, an.Count, routeList(w.TopRoutes))
		p.emit(an)
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
			an.Score, an.Severity = 6, "medium"
			an.Routes = routeCounts(bad)
			for _, r := range bad {
				an.Count += r.Calls
			}
			an.Summary = fmt.Sprintf("Agent %q (role %s) called %d route(s) outside its approved routes: %s.",
				a.id, ag.Role, len(bad), routeList(bad))
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
			an.Score, an.Severity, an.Count = 5, "medium", int(w.Values[features.DeprecatedCalls])
			an.Routes = routeCounts(hit)
			an.Summary = fmt.Sprintf("Agent %q called deprecated (zombie) route(s) %d time(s): %s.", a.id, an.Count, routeList(hit))
			p.emit(an)
		}
	}
	if known && p.set.NewIPMaxKnown > 0 && len(w.NewIPNames) > 0 && w.SeenAgeMs >= p.set.NoveltyMatureMs &&
		len(a.seen.IPs) <= p.set.NewIPMaxKnown && p.due(a, ruleNewIP, w.StartMs, false) {
		an := p.newAnomaly(pt, a, w, anomaly.NewSourceIP, ag, known)
		an.Score, an.Severity, an.Count = 6, "medium", int(w.Values[features.NewIPs])
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
			an.Score, an.Severity = 6, "medium"
			an.Routes = routeCounts(hit)
			for _, r := range hit {
				an.Count += r.Calls
			}
			an.Summary = fmt.Sprintf("Agent %q called sensitive route(s) it had never called before: %s.", a.id, routeList(hit))
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
// agent is quiet in is raised once, a stray call at night is not.
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
	lnP := baseline.LogUpperTail(k, lambda, disp)
	score := -lnP / math.Ln10
	if score < OffHoursAlertScore || !p.due(a, ruleOffHours, w.StartMs, false) {
		return
	}
	an := p.newAnomaly(pt, a, w, anomaly.OffHours, ag, known)
	an.Score, an.Severity, an.Count = round(min(score, 300)), "medium", int(k)
	day := "weekday"
	if w.Slot >= 24 {
		day = "weekend"
	}
	an.Explanation = []anomaly.Feature{{Name: "calls_this_hour", Observed: k, Expected: round(lambda), Surprise: round(-lnP)}}
	an.Summary = fmt.Sprintf("Agent %q has made %.0f calls so far in the %02d:00 UTC hour on a %s, an hour it is usually quiet in (%.1f calls expected): %s.",
		a.id, k, w.Slot%24, day, lambda, routeList(w.TopRoutes))
	p.emit(an)
}

// due reports whether a rule anomaly of this kind may be raised for the
// agent now, and records it if so.
func (p *Processor) due(a *agentState, rule int, ws int64, fresh bool) bool {
	last := a.ruleAt[rule]
	if !fresh && last != 0 && ws-last < p.set.RuleRepeatMs {
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
		WindowStartMs: w.StartMs, WindowEndMs: w.EndMs, Score: 9, Severity: "high", Count: len(ids), Partition: pt.id,
	}
	sample := slices.Clone(ids)
	slices.Sort(sample)
	an.Summary = fmt.Sprintf("%d never-seen agent ids appeared in one window on partition %d (limit %d): possible fake-id flood. First ids: %s.",
		len(ids), pt.id, p.set.NewAgentsPerWindow, strings.Join(sample[:min(5, len(sample))], ", "))
	p.emit(an)
}

func (p *Processor) newAnomaly(pt *partition, a *agentState, w *features.Window, kind string, ag *inventory.Agent, known bool) anomaly.Anomaly {
	an := anomaly.Anomaly{
		V: anomaly.Version, ID: anomaly.ID(a.id, w.StartMs, kind), AgentID: a.id, Kind: kind,
		WindowStartMs: w.StartMs, WindowEndMs: w.EndMs, Partition: pt.id,
		Routes:           routeCounts(w.TopRoutes),
		SampleRequestIDs: slices.Clone(w.RequestIDs), SampleEventIDs: slices.Clone(w.EventIDs),
	}
	if known {
		an.Role, an.Owner, an.CredentialID = ag.Role, ag.Owner, ag.CredentialID
	}
	return an
}

func (p *Processor) emit(an anomaly.Anomaly) {
	p.stats.Anomalies[an.Kind]++
	if p.now != nil {
		an.DetectedMs = p.now()
	}
	p.anomalies = append(p.anomalies, an)
}

// Take returns and forgets the anomalies and scores produced since the
// last call. The caller owns the returned slices.
func (p *Processor) Take() ([]anomaly.Anomaly, []anomaly.Score) {
	as, ss := p.anomalies, p.scores
	p.anomalies, p.scores = nil, nil
	return as, ss
}

// Pending reports how many results wait to be taken.
func (p *Processor) Pending() int { return len(p.anomalies) + len(p.scores) }

func routeCounts(rs []features.RouteCalls) []anomaly.RouteCount {
	out := make([]anomaly.RouteCount, 0, min(len(rs), features.MaxTopRoutes))
	for _, r := range rs[:min(len(rs), features.MaxTopRoutes)] {
		out = append(out, anomaly.RouteCount{Route: r.Route, Calls: r.Calls})
	}
	return out
}

func routeList(rs []features.RouteCalls) string {
	var b strings.Builder
	for i, r := range rs[:min(len(rs), 3)] {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s ×%d", r.Route, r.Calls)
	}
	if len(rs) > 3 {
		fmt.Fprintf(&b, " and %d more", len(rs)-3)
	}
	return b.String()
}

func behaviourSummary(an anomaly.Anomaly, peer bool, role string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Agent %q behaved unusually (score %.1f, %s)", an.AgentID, an.Score, an.Severity)
	if an.Kind == anomaly.Drift {
		b.WriteString(", a slow drift away from its long-term baseline")
	}
	b.WriteString(": ")
	for i, f := range an.Explanation[:min(3, len(an.Explanation))] {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s %s vs %s expected", f.Name, num(f.Observed), num(f.Expected))
	}
	b.WriteString(".")
	if peer {
		if role == "" {
			role = "all agents"
		}
		fmt.Fprintf(&b, " Still warming up: compared with its peer group (%s).", role)
	}
	return b.String()
}

func num(x float64) string {
	if x == math.Trunc(x) && math.Abs(x) < 1e15 {
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	return strconv.FormatFloat(x, 'g', 3, 64)
}

func round(x float64) float64 {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return 0
	}
	return math.Round(x*1000) / 1000
}

// agent state serialisation: version, model, seen-set, rule times, last
// activity, hour load (version 2 on), last applied verdict (version 3 on).
const agentStateVersion = 3

func (a *agentState) marshal(dst []byte) []byte {
	return a.marshalAs(dst, agentStateVersion)
}

// marshalAs writes version 1 (six rule times), 2 (hour load) or 3 (last
// verdict); only tests write the older ones.
func (a *agentState) marshalAs(dst []byte, version byte) []byte {
	rules := numRules
	if version == 1 {
		rules = rulesV1
	}
	dst = append(dst, version)
	mb := a.model.AppendBinary(nil)
	dst = binary.AppendUvarint(dst, uint64(len(mb)))
	dst = append(dst, mb...)
	dst = a.seen.AppendBinary(dst)
	for _, t := range a.ruleAt[:rules] {
		dst = binary.AppendVarint(dst, t)
	}
	dst = binary.AppendVarint(dst, a.lastActiveMs)
	dst = binary.AppendVarint(dst, a.hourStart)
	dst = binary.AppendUvarint(dst, uint64(a.hourActive))
	dst = binary.AppendUvarint(dst, uint64(a.hourCalls))
	if version >= 2 {
		for _, x := range a.hourLoad {
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(x))
		}
	}
	if version >= 3 {
		dst = binary.AppendVarint(dst, a.verdictAt)
		dst = binary.AppendUvarint(dst, uint64(len(a.verdictID)))
		dst = append(dst, a.verdictID...)
	}
	return dst
}

func (a *agentState) unmarshal(b []byte) error {
	if len(b) < 1 || b[0] < 1 || b[0] > agentStateVersion {
		return errors.New("agent state: unknown version")
	}
	version := b[0]
	rules := numRules
	if version == 1 {
		rules = rulesV1
	}
	a.ruleAt = [numRules]int64{}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return errors.New("agent state: truncated model")
	}
	if err := a.model.UnmarshalBinary(b[k : k+int(n)]); err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	b = b[k+int(n):]
	used, err := a.seen.UnmarshalBinary(b)
	if err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	b = b[used:]
	for i := range rules {
		t, k := binary.Varint(b)
		if k <= 0 {
			return errors.New("agent state: truncated rule times")
		}
		a.ruleAt[i], b = t, b[k:]
	}
	var vs [2]int64
	for i := range vs {
		t, k := binary.Varint(b)
		if k <= 0 {
			return errors.New("agent state: truncated")
		}
		vs[i], b = t, b[k:]
	}
	a.lastActiveMs, a.hourStart = vs[0], vs[1]
	h, k := binary.Uvarint(b)
	if k <= 0 || h > math.MaxUint16 {
		return errors.New("agent state: truncated")
	}
	a.hourActive = uint16(h)
	b = b[k:]
	c, k := binary.Uvarint(b)
	if k <= 0 || c > math.MaxUint32 {
		return errors.New("agent state: truncated")
	}
	a.hourCalls = uint32(c)
	b = b[k:]
	a.hourLoad = [4]float64{}
	if version >= 2 {
		if len(b) < 8*len(a.hourLoad) {
			return errors.New("agent state: truncated hour load")
		}
		for i := range a.hourLoad {
			a.hourLoad[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
		b = b[8*len(a.hourLoad):]
	}
	a.verdictAt, a.verdictID = 0, ""
	if version >= 3 {
		at, k := binary.Varint(b)
		if k <= 0 {
			return errors.New("agent state: truncated verdict time")
		}
		b = b[k:]
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return errors.New("agent state: truncated verdict id")
		}
		a.verdictAt, a.verdictID = at, string(b[k:k+int(l)])
	}
	return nil
}

// marshalSources serialises the partition's watermark sources, so that a
// restored partition holds its watermark back exactly as before, its
// global event and (version 3 on) its fleet gauge.
func (pt *partition) marshalSources(dst []byte) []byte {
	return pt.marshalSourcesAs(dst, partitionStateVersion)
}

// partitionStateVersion is the version marshalSources writes: 1 lacked
// the global event, 2 the fleet gauge.
const partitionStateVersion = 3

// marshalSourcesAs writes version 2 or 3; only tests write 2.
func (pt *partition) marshalSourcesAs(dst []byte, version byte) []byte {
	keys := make([]source, 0, len(pt.sources))
	for k := range pt.sources {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y source) int {
		return cmp.Or(cmp.Compare(x.topic, y.topic), cmp.Compare(x.partition, y.partition))
	})
	dst = append(dst, version)
	dst = binary.AppendVarint(dst, pt.globalAt)
	dst = binary.AppendUvarint(dst, uint64(len(pt.globalFeat)))
	dst = append(dst, pt.globalFeat...)
	dst = binary.AppendVarint(dst, pt.maxIngest)
	dst = binary.AppendVarint(dst, int64(pt.sinceScan))
	dst = binary.AppendUvarint(dst, uint64(len(pt.minSource.topic)))
	dst = append(dst, pt.minSource.topic...)
	dst = binary.AppendVarint(dst, int64(pt.minSource.partition))
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		c := pt.sources[k]
		dst = binary.AppendUvarint(dst, uint64(len(k.topic)))
		dst = append(dst, k.topic...)
		dst = binary.AppendVarint(dst, int64(k.partition))
		dst = binary.AppendVarint(dst, c.maxEvent)
		dst = binary.AppendVarint(dst, c.lastIngest)
		dst = binary.AppendVarint(dst, c.pending)
	}
	if version < 3 {
		return dst
	}
	return pt.appendFleet(dst)
}

func (pt *partition) unmarshalSources(b []byte) error {
	bad := errors.New("truncated or corrupt")
	// Version 1 lacked globalAt, version 2 the fleet gauge (it starts
	// afresh).
	if len(b) < 1 || b[0] < 1 || b[0] > partitionStateVersion {
		return errors.New("unknown version")
	}
	version := b[0]
	b = b[1:]
	varint := func() (int64, bool) {
		v, k := binary.Varint(b)
		if k <= 0 {
			return 0, false
		}
		b = b[k:]
		return v, true
	}
	str := func() (string, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < l {
			return "", false
		}
		s := string(b[k : k+int(l)])
		b = b[k+int(l):]
		return s, true
	}
	var globalAt int64
	var globalFeat string
	if version >= 2 {
		g, ok := varint()
		f, okF := str()
		if !ok || !okF {
			return bad
		}
		globalAt, globalFeat = g, f
	}
	maxIngest, ok := varint()
	sinceScan, okS := varint()
	minTopic, okT := str()
	minPart, okP := varint()
	if !ok || !okS || !okT || !okP {
		return bad
	}
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 1<<20 {
		return bad
	}
	b = b[k:]
	srcs := make(map[source]*sourceClock, n)
	for range n {
		topic, okT := str()
		if !okT {
			return bad
		}
		part, ok1 := varint()
		maxEvent, ok2 := varint()
		lastIngest, ok3 := varint()
		pending, ok4 := varint()
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return bad
		}
		srcs[source{topic, int32(part)}] = &sourceClock{maxEvent: maxEvent, lastIngest: lastIngest, pending: pending}
	}
	var fleet [numFleet]fleetGauge
	if version >= 3 {
		var err error
		if fleet, _, err = readFleet(b); err != nil {
			return err
		}
	}
	pt.fleet = fleet
	pt.sources, pt.maxIngest, pt.sinceScan, pt.globalAt, pt.globalFeat = srcs, maxIngest, int(sinceScan), globalAt, globalFeat
	pt.warming = pt.hold
	pt.minSource = source{minTopic, int32(minPart)}
	return nil
}

// peerKey names a peer model's state row: peers are per partition.
func peerKey(part int32, role string) string { return strconv.Itoa(int(part)) + "/" + role }

// Snapshot returns the partition's checkpoint and the state rows changed
// since the last snapshot, and marks them clean. The checkpoint's
// ResumeOffset is the first offset of a window still open.
func (p *Processor) Snapshot(part int32, group, topic string, nowMs int64) (detstate.Checkpoint, []detstate.State) {
	pt := p.part(part)
	cp := detstate.Checkpoint{
		Group: group, Topic: topic, Partition: part, ClosedThroughMs: pt.closedThrough, WatermarkMs: pt.watermark,
		ResumeOffset: pt.lastOffset + 1, LastOffset: pt.lastOffset, UpdatedMs: nowMs,
	}
	if pt.lastOffset < 0 {
		cp.ResumeOffset = -1
	}
	for _, agents := range pt.open {
		for _, a := range agents {
			for _, acc := range a.accs {
				if acc.MinOffset >= 0 && acc.MinOffset < cp.ResumeOffset {
					cp.ResumeOffset = acc.MinOffset
				}
			}
		}
	}
	var states []detstate.State
	for _, a := range pt.agents {
		if !a.dirty {
			continue
		}
		states = append(states, detstate.State{Topic: topic, Partition: part, Kind: detstate.KindAgent, Key: a.id, UpdatedMs: nowMs, Blob: a.marshal(nil)})
		a.dirty = false
	}
	for role := range pt.dirtyPeers {
		states = append(states, detstate.State{Topic: topic, Partition: part, Kind: detstate.KindPeer, Key: peerKey(part, role), UpdatedMs: nowMs, Blob: pt.peers[role].AppendBinary(nil)})
	}
	clear(pt.dirtyPeers)
	states = append(states, detstate.State{Topic: topic, Partition: part, Kind: detstate.KindPartition, Key: strconv.Itoa(int(part)), UpdatedMs: nowMs, Blob: pt.marshalSources(nil)})
	slices.SortFunc(states, func(x, y detstate.State) int { return cmp.Or(cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Key, y.Key)) })
	return cp, states
}

// Restore replaces partition part's state with a checkpoint and its state
// rows (ok=false: nothing saved, start empty). Rows that do not decode are
// reported and skipped, so one corrupt row costs one agent's history, not
// the partition.
func (p *Processor) Restore(part int32, cp detstate.Checkpoint, ok bool, states []detstate.State) []error {
	delete(p.parts, part)
	pt := p.part(part)
	if ok {
		pt.closedThrough, pt.watermark = cp.ClosedThroughMs, cp.WatermarkMs
		pt.replayThrough, pt.lastOffset = cp.LastOffset, cp.LastOffset
		if cp.LastOffset < 0 {
			// Written by a backfill (no topic offsets): any event of a
			// closed window is one the backfill already counted.
			pt.replayThrough = math.MaxInt64
		}
	}
	var errs []error
	for _, s := range states {
		switch s.Kind {
		case detstate.KindAgent:
			a := &agentState{id: s.Key}
			if err := a.unmarshal(s.Blob); err != nil {
				errs = append(errs, fmt.Errorf("agent %q: %w", s.Key, err))
				continue
			}
			pt.agents[s.Key] = a
		case detstate.KindPartition:
			if err := pt.unmarshalSources(s.Blob); err != nil {
				errs = append(errs, fmt.Errorf("partition %d watermark sources: %w", part, err))
			}
		case detstate.KindPeer:
			_, role, found := strings.Cut(s.Key, "/")
			if !found {
				errs = append(errs, fmt.Errorf("peer state key %q: want partition/role", s.Key))
				continue
			}
			m := new(baseline.Model)
			if err := m.UnmarshalBinary(s.Blob); err != nil {
				errs = append(errs, fmt.Errorf("peer %q: %w", s.Key, err))
				continue
			}
			pt.peers[role] = m
		}
	}
	return errs
}

// OpenFrom returns the start of partition part's earliest open window, or
// -1 when none is open.
func (p *Processor) OpenFrom(part int32) int64 {
	if pt := p.parts[part]; pt != nil && len(pt.starts) > 0 {
		return pt.starts[0]
	}
	return -1
}

// Drop forgets partition part (revoked). Its state must have been saved.
func (p *Processor) Drop(part int32) { delete(p.parts, part) }

// Evict drops the least recently active agents without an open window
// until at most keep remain, returning their state rows to be saved first.
// An evicted agent that returns is restored through Loader.
func (p *Processor) Evict(keep int, topic string, nowMs int64) []detstate.State {
	total := p.Agents()
	if total <= keep {
		return nil
	}
	type cand struct {
		pt *partition
		a  *agentState
	}
	var cs []cand
	for _, pt := range p.parts {
		for _, a := range pt.agents {
			if len(a.accs) == 0 {
				cs = append(cs, cand{pt, a})
			}
		}
	}
	slices.SortFunc(cs, func(x, y cand) int {
		return cmp.Or(cmp.Compare(x.a.lastActiveMs, y.a.lastActiveMs), strings.Compare(x.a.id, y.a.id))
	})
	var out []detstate.State
	for _, c := range cs[:min(len(cs), total-keep)] {
		out = append(out, detstate.State{Topic: topic, Partition: c.pt.id, Kind: detstate.KindAgent, Key: c.a.id, UpdatedMs: nowMs, Blob: c.a.marshal(nil)})
		delete(c.pt.agents, c.a.id)
		p.evicted[maphash.String(p.seed, c.a.id)] = struct{}{}
		p.stats.Evicted++
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
