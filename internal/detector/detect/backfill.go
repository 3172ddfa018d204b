package detect

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// BackfillStore is what a backfill needs of the store besides Store.
type BackfillStore interface {
	Store
	BackfillProgress(ctx context.Context, job string) (doneThroughMs int64, ok bool, err error)
	SetBackfillProgress(ctx context.Context, job string, doneThroughMs int64) error
}

// Progress receives a backfill's progress: events processed so far and
// the event time reached.
type Progress interface {
	Update(events uint64, throughMs int64)
}

// Backfill builds baselines from events already stored (or read from a
// file) so that a new deployment starts warm. It runs the same Processor
// as the live detector, filing each agent under the partition its live
// events use, and saves state, checkpoints and progress after every chunk:
// an interrupted backfill resumes from its last saved chunk. Its anomalies
// and scores go to the store only, never to the anomalies topic, so that
// history does not trigger playbooks.
type Backfill struct {
	Proc  *Processor
	Store BackfillStore
	// Events calls fn for every event with fromMs <= time < toMs in time order.
	Events func(ctx context.Context, fromMs, toMs int64, fn func(*event.Event) error) error
	// PartitionOf maps an event to its events-topic partition.
	PartitionOf func(*event.Event) int32
	Partitions  int
	Group       string
	Topic       string
	Job         string
	FromMs      int64
	ToMs        int64
	// Chunk is the event-time span read and saved at a time; default 1h.
	Chunk    time.Duration
	Progress Progress
	Log      *slog.Logger
}

// BackfillResult says what a backfill did.
type BackfillResult struct {
	ResumedFromMs int64
	Events        uint64
	Stats         Stats
}

// Run implements pipeline.Stage; it returns when the span is done.
func (b *Backfill) Run(ctx context.Context) error {
	_, err := b.Do(ctx)
	return err
}

// Do runs the backfill and reports what it did.
func (b *Backfill) Do(ctx context.Context) (BackfillResult, error) {
	var res BackfillResult
	if b.Chunk <= 0 {
		b.Chunk = time.Hour
	}
	if b.Log == nil {
		b.Log = slog.New(slog.DiscardHandler)
	}
	parts := make([]int32, b.Partitions)
	for i := range parts {
		parts[i] = int32(i)
	}
	start := b.FromMs
	done, ok, err := b.Store.BackfillProgress(ctx, b.Job)
	if err != nil {
		return res, fmt.Errorf("read backfill progress: %w", err)
	}
	if ok && done > start {
		if done >= b.ToMs {
			b.Log.Info("backfill already complete", "job", b.Job)
			res.ResumedFromMs = done
			return res, nil
		}
		start = done
	}
	res.ResumedFromMs = start
	cps, states, err := b.Store.LoadPartitions(ctx, b.Group, b.Topic, parts)
	if err != nil {
		return res, fmt.Errorf("load detector state: %w", err)
	}
	byPart := map[int32][]detstate.State{}
	for _, s := range states {
		byPart[s.Partition] = append(byPart[s.Partition], s)
	}
	for _, p := range parts {
		cp, ok := cps[p]
		if ok {
			// Backfill offsets are not topic offsets: re-read events of
			// closed windows are replays, whatever their position.
			cp.ResumeOffset, cp.LastOffset = -1, -1
		}
		for _, e := range b.Proc.Restore(p, cp, ok, byPart[p]) {
			b.Log.Error("skipping undecodable saved state", "partition", p, "err", e)
		}
	}
	if ok && done > b.FromMs {
		b.Log.Info("resuming backfill", "job", b.Job, "from", time.UnixMilli(start).UTC())
	}

	var seq int64
	for t := start; t < b.ToMs; t += b.Chunk.Milliseconds() {
		end := min(t+b.Chunk.Milliseconds(), b.ToMs)
		err := b.Events(ctx, t, end, func(ev *event.Event) error {
			seq++
			b.Proc.Add(b.PartitionOf(ev), seq, ev)
			res.Events++
			if b.Progress != nil && res.Events%4096 == 0 {
				b.Progress.Update(res.Events, ev.EventTimeMs)
			}
			return ctx.Err()
		})
		if err != nil {
			return res, fmt.Errorf("read events %s..%s: %w", time.UnixMilli(t).UTC(), time.UnixMilli(end).UTC(), err)
		}
		if end == b.ToMs {
			b.Proc.FlushAll()
		}
		if err := b.save(ctx, parts, end); err != nil {
			return res, err
		}
		if b.Progress != nil {
			b.Progress.Update(res.Events, end)
		}
	}
	res.Stats = b.Proc.Stats()
	return res, nil
}

// save writes results and state, then records as progress the earliest
// window still open, so a resumed run rebuilds open windows from scratch.
func (b *Backfill) save(ctx context.Context, parts []int32, chunkEnd int64) error {
	as, ss := b.Proc.Take()
	if err := b.Store.InsertAnomalies(ctx, as); err != nil {
		return fmt.Errorf("store anomalies: %w", err)
	}
	if err := b.Store.InsertScores(ctx, ss); err != nil {
		return fmt.Errorf("store window scores: %w", err)
	}
	now := time.Now().UnixMilli()
	var all []detstate.State
	cps := make([]detstate.Checkpoint, 0, len(parts))
	progress := chunkEnd
	for _, p := range parts {
		cp, st := b.Proc.Snapshot(p, b.Group, b.Topic, now)
		cp.ResumeOffset, cp.LastOffset = -1, -1
		cps = append(cps, cp)
		all = append(all, st...)
		if open := b.Proc.OpenFrom(p); open >= 0 && open < progress {
			progress = open
		}
	}
	if err := b.Store.SaveStates(ctx, all); err != nil {
		return fmt.Errorf("save detector state: %w", err)
	}
	if err := b.Store.SaveCheckpoints(ctx, cps); err != nil {
		return fmt.Errorf("save checkpoints: %w", err)
	}
	if err := b.Store.SetBackfillProgress(ctx, b.Job, progress); err != nil {
		return fmt.Errorf("save backfill progress: %w", err)
	}
	return nil
}
