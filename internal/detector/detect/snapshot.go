package detect

import (
	"bytes"
	"cmp"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/pkg/baseline"
)

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
	// Each agent is encoded into one reused buffer and copied out at its
	// exact size: a flood's snapshot encodes many thousands at once.
	var buf []byte
	for _, a := range pt.agents {
		if !a.dirty {
			continue
		}
		buf = a.marshal(buf[:0])
		states = append(states, detstate.State{Topic: topic, Partition: part, Kind: detstate.KindAgent, Key: a.id, UpdatedMs: nowMs, Blob: bytes.Clone(buf)})
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
