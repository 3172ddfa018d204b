package detect

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/features"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// benchRawPartitions is how many raw-log partitions the benchmark events
// claim to come from: each events-topic partition then tracks that many
// watermark sources, as behind a real ingest.
const benchRawPartitions = 6

type benchData struct {
	rs  []rec
	cat StaticCatalog
	// spanMs is what a pass over rs adds to event times so that the next
	// pass continues the same agents' history (whole days: the seasonal
	// slot of an hour stays put).
	spanMs int64
	// perPart is how many records each partition holds, to offset a pass.
	perPart [testPartitions]int64
	windows int
}

var (
	benchMu    sync.Mutex
	benchCache = map[float64]*benchData{}
)

// benchRecords simulates 100 agents over two days at rate scale (1: the
// simulator's default traffic, about 2 events per agent-minute), with its
// default incidents, as events-topic records stamped like ingest stamps
// them. Cached: simulating takes seconds.
func benchRecords(b *testing.B, scale float64) *benchData {
	b.Helper()
	benchMu.Lock()
	defer benchMu.Unlock()
	if d := benchCache[scale]; d != nil {
		return d
	}
	const days = 2
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	rs, s := simRecords(b, sim.Config{Seed: 7, Agents: 100, Start: start, Duration: days * 24 * time.Hour, RateScale: scale})
	d := &benchData{rs: rs, cat: simCatalog(b, s), spanMs: days * 24 * time.Hour.Milliseconds()}
	type aw struct {
		agent string
		ws    int64
	}
	wins := map[aw]struct{}{}
	for i := range rs {
		ev := &rs[i].ev
		ev.IngestTimeMs = ev.EventTimeMs + 800
		ev.Topic, ev.Partition = "raw", int32(i%benchRawPartitions)
		d.perPart[rs[i].part]++
		if !ev.Unattributed && ev.AgentID != "" {
			wins[aw{ev.AgentID, ev.EventTimeMs / 60_000}] = struct{}{}
		}
	}
	d.windows = len(wins)
	benchCache[scale] = d
	return d
}

// BenchmarkProcessorAdd is the detector's hot path on realistic traffic:
// Processor.Add on simulated events of 100 agents (two days, looped with
// event times moved on by two days each pass, so the same agents keep
// learning), including the window closes, scoring, training, rules and
// the result slices those produce. One op is one event; events/s is per
// core. scale sets the traffic density (events per agent-window).
func BenchmarkProcessorAdd(b *testing.B) {
	for _, scale := range []float64{1, 10} {
		b.Run(fmt.Sprintf("scale=%g", scale), func(b *testing.B) {
			d := benchRecords(b, scale)
			rs := slices.Clone(d.rs)
			p := NewProcessor(testSettings(), d.cat, nil)
			var base [testPartitions]int64
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == len(rs) {
					i = 0
					for j := range rs {
						rs[j].ev.EventTimeMs += d.spanMs
						rs[j].ev.IngestTimeMs += d.spanMs
					}
					for k := range base {
						base[k] += d.perPart[k]
					}
				}
				r := &rs[i]
				p.Add(r.part, base[r.part]+r.off, &r.ev)
				if i%1024 == 0 {
					p.Take() // results go to the writer; drop them here
				}
				i++
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(len(d.rs))/float64(d.windows), "events/window")
		})
	}
}

// BenchmarkProcessorAddOpenWindow isolates the per-event path: agent
// lookup, route inventory lookup, the window accumulator and the watermark,
// with every event falling in windows that stay open (no close, no
// scoring). It must not allocate.
func BenchmarkProcessorAddOpenWindow(b *testing.B) {
	d := benchRecords(b, 1)
	// The first 20k events, folded into one minute per agent: the same
	// routes, paths, addresses and ids as live traffic.
	const n = 20_000
	rs := slices.Clone(d.rs[:n])
	t0 := rs[0].ev.EventTimeMs - rs[0].ev.EventTimeMs%60_000 + 7*24*3600_000
	for i := range rs {
		ev := &rs[i].ev
		ev.EventTimeMs = t0 + (ev.EventTimeMs % 60_000)
		ev.IngestTimeMs = ev.EventTimeMs + 800
	}
	p := NewProcessor(testSettings(), d.cat, nil)
	for i := range rs { // warm up: agents and their accumulators exist
		p.Add(rs[i].part, int64(i), &rs[i].ev)
	}
	if st := p.Stats(); st.Windows != 0 || st.Late != 0 {
		b.Fatalf("warm-up closed %d windows, %d late", st.Windows, st.Late)
	}
	off := int64(n)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == n {
			i = 0
		}
		r := &rs[i]
		p.Add(r.part, off, &r.ev)
		off++
		i++
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if st := p.Stats(); st.Windows != 0 {
		b.Fatalf("%d windows closed; the benchmark must measure open windows only", st.Windows)
	}
}

// BenchmarkWindowClose is the per-window cost: closing one agent's window
// (features against the seen-set), scoring it, training the agent and peer
// models, the rules, the seen-set merge and the score row, and each
// partition's peers' level once per window. The agents are
// warm (a day of history); each op closes one window of a typical size
// for the next agent in turn.
func BenchmarkWindowClose(b *testing.B) {
	d := benchRecords(b, 1)
	p := NewProcessor(testSettings(), d.cat, nil)
	half := len(d.rs) / 2
	for i := range d.rs[:half] {
		p.Add(d.rs[i].part, d.rs[i].off, &d.rs[i].ev)
	}
	p.FlushAll()
	p.Take()
	// One window's accumulator per agent, filled from its events of a
	// minute of the second day.
	type job struct {
		pt  *partition
		a   *agentState
		acc *features.Acc
	}
	byAgent := map[string]*job{}
	var jobs []*job
	for _, r := range d.rs[half:] {
		ev := r.ev
		if ev.Unattributed || ev.AgentID == "" {
			continue
		}
		j := byAgent[ev.AgentID]
		if j == nil {
			pt := p.parts[r.part]
			a := pt.agents[ev.AgentID]
			if a == nil {
				continue
			}
			j = &job{pt: pt, a: a, acc: new(features.Acc)}
			j.acc.Reset(features.Config{WindowMs: 60_000}.WindowStart(ev.EventTimeMs))
			byAgent[ev.AgentID] = j
			jobs = append(jobs, j)
		}
		if ev.EventTimeMs-j.acc.StartMs < 60_000 {
			var ri features.RouteInfo
			if rt, ok := d.cat.Inv.Lookup(ev.Route); ok {
				ri = features.RouteInfo{Sensitive: rt.Sensitive, Deprecated: rt.Deprecated}
			}
			j.acc.Add(&ev, r.off, ri)
		}
	}
	calls := 0
	for _, j := range jobs {
		calls += j.acc.Calls()
	}
	// A partition's agents close their windows together, then its peers'
	// level takes the window's ratios (settlePeers), as closeWindow does.
	slices.SortStableFunc(jobs, func(x, y *job) int { return int(x.pt.id) - int(y.pt.id) })
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		j := jobs[i%len(jobs)]
		// Each round is the agents' next minute.
		j.acc.StartMs += 60_000
		p.evaluate(j.pt, j.a, j.acc, false)
		if next := jobs[(i+1)%len(jobs)]; next.pt != j.pt || (i+1)%len(jobs) == 0 {
			p.settlePeers(j.pt, j.acc.StartMs)
		}
		if i%1024 == 0 {
			p.Take()
		}
		i++
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "windows/s")
	b.ReportMetric(float64(calls)/float64(len(jobs)), "events/window")
}

// BenchmarkMemoryPerAgent measures the live heap per tracked agent after a
// day of traffic: N agents, each with a trained model, a seen-set of its
// usual routes and addresses, rule times, and no open window, held in a
// Processor's maps with their id strings. One op builds them all; the
// number to read is bytes/agent (heap in use after GC, minus before,
// divided by N).
func BenchmarkMemoryPerAgent(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			d := benchRecords(b, 1)
			for b.Loop() {
				before, after := memoryPerAgent(b, d, n)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-alloc-B/agent")
				b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/float64(n), "heap-inuse-B/agent")
			}
		})
	}
}

// memoryPerAgent builds n agents in a fresh Processor and returns the heap
// statistics before and after, each after a full GC. The agents are
// copies of the 100 simulated ones after a day of traffic, each with its
// own id string and its own seen-set slices of the capacity the live
// agent grew them to, spread over the partitions as the events topic
// spreads them.
func memoryPerAgent(tb testing.TB, d *benchData, n int) (before, after runtime.MemStats) {
	tb.Helper()
	warm := NewProcessor(testSettings(), d.cat, nil)
	half := len(d.rs) / 2
	for i := range d.rs[:half] {
		warm.Add(d.rs[i].part, d.rs[i].off, &d.rs[i].ev)
	}
	warm.FlushAll()
	warm.Take()
	var proto []*agentState
	for _, id := range warm.Partitions() {
		for _, a := range warm.parts[id].agents {
			proto = append(proto, a)
		}
	}
	slices.SortFunc(proto, func(x, y *agentState) int { return strings.Compare(x.id, y.id) })
	cat := StaticCatalog{inventory.EmptyRegistry(), inventory.EmptyInventory()}
	grown := func(xs []uint32) []uint32 {
		if xs == nil {
			return nil
		}
		return append(make([]uint32, 0, cap(xs)), xs...)
	}

	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	p := NewProcessor(testSettings(), cat, nil)
	for i := range n {
		src := proto[i%len(proto)]
		// Ids as long as the simulated ones plus a number: "agent-0001234-" + id.
		id := fmt.Sprintf("agent-%07d-%s", i, src.id)
		pt := p.part(int32(i % testPartitions))
		a := &agentState{id: id, model: src.model, ruleAt: src.ruleAt, lastActiveMs: src.lastActiveMs,
			hourStart: src.hourStart, hourActive: src.hourActive}
		a.seen = features.Seen{SinceMs: src.seen.SinceMs, Routes: grown(src.seen.Routes), IPs: grown(src.seen.IPs)}
		pt.agents[id] = a
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if p.Agents() != n {
		tb.Fatalf("%d agents, want %d", p.Agents(), n)
	}
	runtime.KeepAlive(p)
	return before, after
}
