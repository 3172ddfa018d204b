package detect

import (
	"math"

	"github.com/agentwatch/agentwatch/pkg/event"
)

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
