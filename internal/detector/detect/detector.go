// Package detect is cmd/detector's stage: it consumes canonical events from
// the events topic as a member of a consumer group, keeps per-agent windows,
// seen-sets and baselines for the partitions it owns (the Processor), and
// writes every closed window's score and every anomaly to the store and the
// anomalies topic before it commits offsets.
//
// Ownership follows the group: when partitions are assigned their state is
// restored from the store (baselines, seen-sets and the checkpoint saying
// which windows are closed and where to resume); when they are revoked, or
// every SnapshotEvery, changed state is saved and only then are offsets
// committed. A restarted or rebalanced instance therefore continues with the
// same baselines, re-processes the still-open windows from their first
// record, and produces the same anomaly ids for them.
package detect

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/retry"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// Store keeps the detector's state and results: internal/platform/chstore in the
// distributed mode, detstate.FileStore in the embedded one.
type Store interface {
	SaveStates(ctx context.Context, states []detstate.State) error
	SaveCheckpoints(ctx context.Context, cps []detstate.Checkpoint) error
	LoadPartitions(ctx context.Context, group, topic string, partitions []int32) (map[int32]detstate.Checkpoint, []detstate.State, error)
	LoadState(ctx context.Context, kind, key string) (detstate.State, bool, error)
	// LoadPartitionsCapped is LoadPartitions with at most maxAgents agent
	// states (the most recently saved; < 0: all), passing the key of
	// every other stored agent to rest.
	LoadPartitionsCapped(ctx context.Context, group, topic string, partitions []int32, maxAgents int, rest func(key string)) (map[int32]detstate.Checkpoint, []detstate.State, error)
	// ExpireAgents removes the agent states of topic and partitions saved
	// before beforeMs for which drop says yes, returning how many.
	ExpireAgents(ctx context.Context, topic string, partitions []int32, beforeMs, nowMs int64, drop func(key string) bool) (int, error)
	InsertAnomalies(ctx context.Context, as []anomaly.Anomaly) error
	InsertScores(ctx context.Context, ss []anomaly.Score) error
	AnomalyIDs(ctx context.Context, partitions []int32, fromMs int64) (map[string]struct{}, error)
}

// tombstonePurger is a Store whose removals leave tombstones to purge
// later (internal/platform/chstore).
type tombstonePurger interface {
	PurgeTombstones(ctx context.Context) error
}

// Generation is one consumer-group generation: the partitions this member
// owns until Done is closed.
type Generation interface {
	Partitions() []int32
	Done() <-chan struct{}
	Fetch(ctx context.Context) (bus.Message, error)
	Seek(partition int32, offset int64) error
	// Commit commits, per partition, the next offset to read.
	Commit(ctx context.Context, next map[int32]int64) error
	Close() error
}

// Source yields generations: internal/platform/kafka's Group, or one generation
// holding every partition in the embedded mode.
type Source interface {
	Next(ctx context.Context) (Generation, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context) (Generation, error)

// Next implements Source.
func (f SourceFunc) Next(ctx context.Context) (Generation, error) { return f(ctx) }

// Detector is the detector stage. Run it once; it owns nothing it is given.
type Detector struct {
	Source Source
	Store  Store
	// Out receives anomalies, keyed by agent id; AnomaliesTopic names the
	// topic when Out serves several.
	Out            bus.Writer
	AnomaliesTopic string
	Group          string
	EventsTopic    string
	Proc           *Processor
	// SnapshotEvery is how often changed state is saved and offsets are
	// committed; results are written at least every FlushEvery.
	SnapshotEvery, FlushEvery time.Duration
	// IdleFlush closes open windows after this much wall time without a
	// record, so a quiet partition still reports; 0 never. It closes only
	// the windows that ended the lateness before the wall clock
	// (Processor.FlushUntil), unless ReplayIdleFlush is set.
	IdleFlush time.Duration
	// ReplayIdleFlush makes the idle flush close every open window, as at
	// the end of a backfill: for a finished replay (the demo), where no
	// record will come and event times may run ahead of the wall clock.
	// Never for live input: one event stamped ahead would then close the
	// windows correctly stamped events still need.
	ReplayIdleFlush bool
	// TakeOverGroup is the consumer group whose state this one continues
	// from; another group's state in the store stops Run (CheckGroup).
	TakeOverGroup string
	// MaxAgents caps the agents held in memory, restores included; 0
	// means no cap.
	MaxAgents int
	// UnregisteredTTL: an agent the registry does not know whose state
	// was last saved this long ago is removed from memory and the store;
	// 0 never. ExpireEvery is how often that is checked (default a tenth
	// of UnregisteredTTL, between 1s and 1h).
	UnregisteredTTL, ExpireEvery time.Duration
	RetryInitial, RetryMax       time.Duration
	Log                          *slog.Logger
	Metrics                      *Metrics
	// OnGeneration, if set, is called with each generation's partitions
	// once their state is restored (tests and logs use it).
	OnGeneration func(partitions []int32)
	// Idle, if set, is called when no record arrived for IdleFlush, after
	// open windows were flushed (the demo uses it to know it is done).
	Idle func()
	// Published, if set, returns the ids of anomalies about the given
	// partitions that reached the anomalies topic at or after sinceMs
	// (internal/platform/kafka.ReadSince); without it the store's ids are used.
	// Windows re-processed after a restart yield the same ids, and those
	// are not published again.
	Published func(ctx context.Context, partitions []int32, sinceMs int64) (map[string]struct{}, error)
	// Feedback, if set, is polled every FeedbackPoll (0: never) for the
	// analysts' false-positive verdicts of the last FeedbackLookback
	// (default 7 days), which are folded into the baselines of the agents
	// this detector holds (ApplyVerdicts, docs/feedback.md).
	Feedback                       FeedbackSource
	FeedbackPoll, FeedbackLookback time.Duration

	published map[string]struct{}
	// bg is the tombstone purge, if one runs; Run waits for it.
	bg sync.WaitGroup
	// verdicts carries ApplyVerdicts' requests to the loop.
	verdicts     chan verdictReq
	verdictsOnce sync.Once

	last   Stats
	counts atomic.Pointer[Stats]
}

// Counts returns the processor's counters as of the last write of results.
// Safe for concurrent use.
func (d *Detector) Counts() Stats {
	if s := d.counts.Load(); s != nil {
		return *s
	}
	return Stats{}
}

// Metrics are the detector's Prometheus metrics.
type Metrics struct {
	Events, Undecodable, Late, Replayed, Windows, NewAgents, Evicted, Restored prometheus.Counter
	// Shed and Expired follow the agent cap and the removal of idle
	// unregistered agents.
	Shed, Expired  prometheus.Counter
	Anomalies      *prometheus.CounterVec
	Agents         prometheus.Gauge
	Partitions     prometheus.Gauge
	WriteRetries   prometheus.Counter
	CloseToPublish prometheus.Histogram
	// InputLag is the age of the newest event record fetched: the events
	// topic's consumer lag in time, as ingest's input_lag_seconds is the
	// raw topics'.
	InputLag prometheus.Gauge
	// VerdictsRead, VerdictsApplied and FeedbackErrors follow the
	// false-positive feedback loop.
	VerdictsRead, VerdictsApplied, FeedbackErrors prometheus.Counter
	// ShadowFolded counts unregistered agents folded into a grouped
	// shadow-agent finding: the ids behind those findings' counts.
	ShadowFolded prometheus.Counter
}

// NewMetrics registers the detector's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	c := func(name, help string) prometheus.Counter {
		return f.NewCounter(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "detector", Name: name, Help: help})
	}
	return &Metrics{
		Events:      c("events_total", "Canonical events consumed."),
		Undecodable: c("undecodable_total", "Records on the events topic that did not decode as canonical events."),
		Late:        c("late_events_total", "Events that arrived after their window had closed; counted on the agent's next window."),
		Replayed:    c("replayed_events_total", "Events re-read after a restart that belong to windows already closed."),
		Windows:     c("windows_total", "Agent windows closed and scored."),
		NewAgents:   c("new_agents_total", "Agent ids seen for the first time."),
		Evicted:     c("evicted_agents_total", "Agents evicted from memory to the store (agent cap)."),
		Restored:    c("restored_agents_total", "Evicted agents restored from the store on their return."),
		Shed:        c("shed_events_total", "Events of unregistered new agents dropped because detector.max_agents was reached (still counted in agent_flood)."),
		Expired:     c("expired_agents_total", "Idle unregistered agents removed from memory and the store (detector.unregistered_ttl)."),
		Anomalies: f.NewCounterVec(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "detector", Name: "anomalies_total",
			Help: "Anomalies raised, by kind."}, []string{"kind"}),
		Agents: f.NewGauge(prometheus.GaugeOpts{Namespace: "agentwatch", Subsystem: "detector", Name: "agents",
			Help: "Agents held in memory."}),
		Partitions: f.NewGauge(prometheus.GaugeOpts{Namespace: "agentwatch", Subsystem: "detector", Name: "partitions",
			Help: "Events-topic partitions owned."}),
		WriteRetries: c("write_retries_total", "Retried writes of results or state."),
		CloseToPublish: f.NewHistogram(prometheus.HistogramOpts{Namespace: "agentwatch", Subsystem: "detector", Name: "close_to_publish_seconds",
			Help:    "Wall time from a window closing to its anomalies being on the topic.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		InputLag: f.NewGauge(prometheus.GaugeOpts{Namespace: "agentwatch", Subsystem: "detector", Name: "input_lag_seconds",
			Help: "Age (by its Kafka timestamp) of the newest event record fetched."}),
		VerdictsRead:    c("feedback_verdicts_read_total", "False-positive verdicts read from the feedback source, re-reads included."),
		VerdictsApplied: c("feedback_verdicts_applied_total", "False-positive verdicts folded into an agent's baseline or taken back from its risk."),
		FeedbackErrors:  c("feedback_errors_total", "Failed reads of the feedback source (retried at the next poll)."),
		ShadowFolded: c("shadow_agents_folded_total",
			"Unregistered agents whose shadow-agent alert was folded into one finding for their window, partition and credential or source."),
	}
}

// Run implements pipeline.Stage.
func (d *Detector) Run(ctx context.Context) error {
	d.defaults()
	defer d.bg.Wait()
	if err := d.checkGroup(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("detector group %q: %w", d.Group, err)
	}
	if d.Feedback == nil && d.FeedbackPoll > 0 {
		d.Log.Info("false-positive feedback off: no feedback source")
	}
	if d.Feedback != nil && d.FeedbackPoll > 0 {
		fctx, stop := context.WithCancel(ctx)
		polled := make(chan struct{})
		go func() {
			defer close(polled)
			d.pollFeedback(fctx)
		}()
		defer func() { stop(); <-polled }()
	}
	for {
		// The stage loop of STYLE.md, as in respond's consumer: an error
		// once ctx is done is a stop, not a failure.
		gen, err := d.Source.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("join detector group: %w", err)
		}
		err = d.runGeneration(ctx, gen)
		if cerr := gen.Close(); cerr != nil {
			d.Log.Warn("close generation", "err", cerr)
		}
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// defaults fills the zero fields. Alike in shape to ingest's setDefaults,
// as every "zero means default" setter is; the fields and values differ.
func (d *Detector) defaults() {
	if d.SnapshotEvery <= 0 {
		d.SnapshotEvery = 10 * time.Second
	}
	if d.FlushEvery <= 0 {
		d.FlushEvery = 200 * time.Millisecond
	}
	if d.RetryInitial <= 0 {
		d.RetryInitial = 100 * time.Millisecond
	}
	if d.RetryMax <= 0 {
		d.RetryMax = 10 * time.Second
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	if d.FeedbackLookback <= 0 {
		d.FeedbackLookback = 7 * 24 * time.Hour
	}
	if d.ExpireEvery <= 0 {
		d.ExpireEvery = min(max(d.UnregisteredTTL/10, time.Second), time.Hour)
	}
	d.Proc.Cap = d.MaxAgents
	if d.Proc.Loader == nil {
		d.Proc.Loader = func(id string) ([]byte, bool) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, ok, err := d.Store.LoadState(ctx, detstate.KindAgent, id)
			if err != nil {
				d.Log.Warn("restore evicted agent: starting it afresh", "agent", id, "err", err)
				return nil, false
			}
			return s.Blob, ok
		}
	}
}

type fetched struct {
	m   bus.Message
	err error
}

func (d *Detector) runGeneration(ctx context.Context, gen Generation) error {
	parts := gen.Partitions()
	log := d.Log.With("partitions", parts)
	if err := d.restore(ctx, gen, parts); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	d.Metrics.Partitions.Set(float64(len(parts)))
	log.Info("partitions assigned, state restored", "agents", d.Proc.Agents())
	if d.OnGeneration != nil {
		d.OnGeneration(parts)
	}

	// Results are written by the generation's writer while the loop goes
	// on processing; snapshot waits for it before committing.
	w := d.startWriter(ctx)
	defer w.stop()

	fctx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	ch := make(chan fetched, 1024)
	go func() {
		defer close(ch)
		for {
			m, err := gen.Fetch(fctx)
			select {
			case ch <- fetched{m, err}:
			case <-fctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	var dec event.Decoder
	tick := time.NewTicker(d.FlushEvery)
	defer tick.Stop()
	lastSnap, lastRecord, lastExpire := time.Now(), time.Now(), time.Now()
	idleFlushed := false
	var purging atomic.Bool
	verdicts := d.verdictCh()
	// lastSeen is when each partition last delivered a record: a partition
	// quiet for IdleFlush has its open windows closed, the others wait for
	// their own watermark.
	lastSeen := make(map[int32]time.Time, len(parts))
	for _, p := range parts {
		lastSeen[p] = time.Now()
	}
	// finish ends the generation. With save it first writes what is
	// pending, saves state and commits; without (a write failed for good,
	// so results were lost) it saves and commits nothing, and a successor
	// re-reads from the last checkpoint.
	finish := func(reason string, save bool) error {
		stopFetch()
		fin, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		var err error
		if save {
			err = d.snapshot(fin, gen, parts, w)
		}
		w.stop()
		for _, p := range parts {
			d.Proc.Drop(p)
		}
		d.Metrics.Partitions.Set(0)
		log.Info("partitions released", "reason", reason, "saved", save && err == nil, "err", err)
		return err
	}
	// failed ends the generation after flush or snapshot returned err.
	failed := func(err error) error {
		if ctx.Err() != nil && w.failed() == nil {
			return finish("shutdown", true) // interrupted, nothing lost
		}
		_ = finish("write failed", false)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return finish("shutdown", true)
		case <-gen.Done():
			return finish("rebalance", true)
		case <-w.dead:
			return failed(w.err)
		case req := <-verdicts:
			d.applyVerdicts(req)
		case f, ok := <-ch:
			if !ok {
				return finish("fetch stopped", true)
			}
			if f.err != nil {
				if ctx.Err() != nil {
					return finish("shutdown", true)
				}
				select {
				case <-gen.Done():
					return finish("rebalance", true)
				default:
				}
				_ = finish("fetch error", true)
				return fmt.Errorf("fetch events: %w", f.err)
			}
			lastRecord, idleFlushed = time.Now(), false
			lastSeen[f.m.Partition] = lastRecord
			if !f.m.Time.IsZero() {
				// The clock was read for lastRecord already: one
				// subtraction and an atomic store per record.
				d.Metrics.InputLag.Set(lastRecord.Sub(f.m.Time).Seconds())
			}
			ev, err := dec.Decode(f.m.Value)
			if err != nil {
				d.Metrics.Undecodable.Inc()
				d.Log.Warn("undecodable event record", "partition", f.m.Partition, "offset", f.m.Offset, "err", err)
				continue
			}
			d.Proc.Add(f.m.Partition, f.m.Offset, &ev)
			if d.Proc.Pending() >= 5000 {
				if err := d.flush(ctx, w); err != nil {
					return failed(err)
				}
			}
		case <-tick.C:
			if d.IdleFlush > 0 {
				for _, p := range parts {
					if time.Since(lastSeen[p]) >= d.IdleFlush && d.Proc.OpenFrom(p) >= 0 {
						if d.ReplayIdleFlush {
							d.Proc.Flush(p)
						} else {
							d.Proc.FlushUntil(p, time.Now().UnixMilli())
						}
					}
				}
				if !idleFlushed && time.Since(lastRecord) >= d.IdleFlush {
					// Everything is quiet and flushed: save and commit now
					// rather than at the next snapshot.
					idleFlushed = true
					if err := d.snapshot(ctx, gen, parts, w); err != nil {
						return failed(err)
					}
					// Quiet is the cheap moment to give back what a burst
					// (or a flood) left as garbage: without it the RSS stays
					// at the burst's peak until the runtime's own periodic
					// collection and scavenging, minutes later.
					debug.FreeOSMemory()
					lastSnap = time.Now()
					if d.Idle != nil {
						d.Idle()
					}
					continue
				}
			}
			if time.Since(lastSnap) >= d.SnapshotEvery || (d.UnregisteredTTL > 0 && time.Since(lastExpire) >= d.ExpireEvery) {
				if err := d.snapshot(ctx, gen, parts, w); err != nil {
					return failed(err)
				}
				lastSnap = time.Now()
				if d.UnregisteredTTL > 0 && time.Since(lastExpire) >= d.ExpireEvery {
					d.expire(ctx, parts, &purging)
					lastExpire = time.Now()
				}
			} else if err := d.flush(ctx, w); err != nil {
				return failed(err)
			}
		}
	}
}

// restoreCap is how many agents a restore loads: as many as an eviction
// keeps, so the first snapshot does not evict at once; -1 for all.
func (d *Detector) restoreCap() int {
	if d.MaxAgents <= 0 {
		return -1
	}
	return d.MaxAgents * 9 / 10
}

// expire removes the idle unregistered agents of parts (see
// UnregisteredTTL) from memory and the store. It runs right after a
// snapshot, so every agent in memory has its newest state saved and an
// old save means an idle agent. Failures are logged and retried at the
// next pass: nothing is lost by removing later.
func (d *Detector) expire(ctx context.Context, parts []int32, purging *atomic.Bool) {
	now := time.Now()
	n, err := d.Store.ExpireAgents(ctx, d.EventsTopic, parts, now.Add(-d.UnregisteredTTL).UnixMilli(), now.UnixMilli(), func(key string) bool {
		return d.Proc.Unregistered(key) && d.Proc.Forget(key)
	})
	if n > 0 {
		d.Metrics.Expired.Add(float64(n))
		d.Metrics.Agents.Set(float64(d.Proc.Agents()))
		d.Log.Info("removed idle unregistered agents", "agents", n, "idle_for", d.UnregisteredTTL)
	}
	if err != nil {
		d.Log.Warn("remove idle unregistered agents", "removed", n, "err", err)
		return
	}
	pu, ok := d.Store.(tombstonePurger)
	if !ok || n == 0 || !purging.CompareAndSwap(false, true) {
		return
	}
	// The purge rewrites the table in the server; it touches no state of
	// the loop, so it runs beside it.
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		defer purging.Store(false)
		pctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		defer cancel()
		start := time.Now()
		if err := pu.PurgeTombstones(pctx); err != nil {
			d.Log.Warn("purge removed agents' tombstones (retried after the next removal)", "err", err)
			return
		}
		d.Log.Info("purged removed agents' tombstones", "took", time.Since(start))
	}()
}

func (d *Detector) restore(ctx context.Context, gen Generation, parts []int32) error {
	if len(parts) == 0 {
		return nil
	}
	var cps map[int32]detstate.Checkpoint
	var states []detstate.State
	err := d.retry(ctx, "load detector state", func(ctx context.Context) error {
		var err error
		cps, states, err = d.Store.LoadPartitionsCapped(ctx, d.Group, d.EventsTopic, parts, d.restoreCap(), d.Proc.MarkStored)
		return err
	})
	if err != nil {
		return err
	}
	byPart := map[int32][]detstate.State{}
	for _, s := range states {
		byPart[s.Partition] = append(byPart[s.Partition], s)
	}
	from, since := int64(-1), int64(-1)
	for _, p := range parts {
		cp, ok := cps[p]
		for _, e := range d.Proc.Restore(p, cp, ok, byPart[p]) {
			d.Log.Error("skipping undecodable saved state", "partition", p, "err", e)
		}
		if ok && cp.ResumeOffset >= 0 {
			if err := gen.Seek(p, cp.ResumeOffset); err != nil {
				return fmt.Errorf("seek partition %d to %d: %w", p, cp.ResumeOffset, err)
			}
		}
		if !ok {
			from, since = 0, 0
		} else {
			if from < 0 || cp.ClosedThroughMs < from {
				from = cp.ClosedThroughMs
			}
			if since < 0 || cp.UpdatedMs < since {
				since = cp.UpdatedMs
			}
		}
	}
	// Anything published before the oldest checkpoint was taken belongs to
	// a window that stays closed; what came after may be produced again.
	var ids map[string]struct{}
	err = d.retry(ctx, "load published anomaly ids", func(ctx context.Context) error {
		var err error
		if d.Published != nil {
			ids, err = d.Published(ctx, parts, max(since-time.Minute.Milliseconds(), 0))
		} else {
			ids, err = d.Store.AnomalyIDs(ctx, parts, max(from, 0))
		}
		return err
	})
	if err != nil {
		return err
	}
	d.published = ids
	d.Metrics.Agents.Set(float64(d.Proc.Agents()))
	return nil
}

// flush takes the results from the processor and hands them to the
// generation's writer (see resultWriter), which publishes the anomalies to
// the topic and then writes anomalies and scores to the store, in order.
// An anomaly already on the topic from before a restart is not published
// again. When the writer's queue is full flush waits (backpressure); if ctx
// ends first the results stay held by w and go with the next flush.
func (d *Detector) flush(ctx context.Context, w *resultWriter) error {
	as, ss := d.Proc.Take()
	s := d.syncStats()
	j := &w.held
	var msgs []bus.Message
	for i := range as {
		if _, done := d.published[as[i].ID]; done {
			delete(d.published, as[i].ID)
			continue
		}
		body, err := json.Marshal(&as[i])
		if err != nil {
			return fmt.Errorf("encode anomaly %s: %w", as[i].ID, err)
		}
		msgs = append(msgs, bus.Message{Topic: d.AnomaliesTopic, Key: []byte(as[i].AgentID), Value: body})
	}
	j.msgs = append(j.msgs, msgs...)
	if j.taken.IsZero() && len(as)+len(ss) > 0 {
		j.taken = time.Now()
	}
	j.as, j.ss, j.stats = append(j.as, as...), append(j.ss, ss...), &s
	select {
	case w.jobs <- w.held:
		w.held = writeJob{}
		return nil
	case <-w.dead:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeJob is one hand-over from the detector's loop to its writer: the
// anomalies to publish (msgs, already encoded and without those published
// before a restart), the anomalies and scores to store, and the counters
// as of the hand-over. A job with a barrier only closes it, once every job
// before it is written.
type writeJob struct {
	msgs    []bus.Message
	as      []anomaly.Anomaly
	ss      []anomaly.Score
	taken   time.Time
	stats   *Stats
	barrier chan struct{}
}

// writerQueue is how many hand-overs may wait for the writer; a full queue
// holds up the detector's loop. maxWriteRows caps the results the writer
// merges into one write.
const (
	writerQueue  = 4
	maxWriteRows = 50_000
)

// resultWriter writes one generation's results in the order they were
// handed over, while the detector's loop goes on. The loop owns jobs and
// held; the writer goroutine sets err and closes dead when a write fails
// for good (it then writes nothing more).
type resultWriter struct {
	jobs   chan writeJob
	held   writeJob // taken but not yet handed over (loop only)
	dead   chan struct{}
	err    error // set before dead is closed
	exited chan struct{}
	cancel context.CancelFunc
	once   sync.Once
}

// startWriter starts a generation's writer. Its writes outlive ctx (they
// are retried until stop), so that a shutdown can still write what was
// handed over before its state is saved.
func (d *Detector) startWriter(ctx context.Context) *resultWriter {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &resultWriter{jobs: make(chan writeJob, writerQueue), dead: make(chan struct{}), exited: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(w.exited)
		var next *writeJob // taken from the queue while merging, not merged
		for {
			var j writeJob
			if next != nil {
				j, next = *next, nil
			} else {
				var ok bool
				if j, ok = <-w.jobs; !ok {
					return
				}
			}
			if j.barrier != nil {
				close(j.barrier)
				continue
			}
			// While the writer is behind, merge the hand-overs already
			// queued (up to a barrier): fewer, larger inserts.
		merge:
			for len(j.as)+len(j.ss) < maxWriteRows {
				select {
				case n, ok := <-w.jobs:
					if !ok {
						break merge
					}
					if n.barrier != nil {
						next = &n
						break merge
					}
					j.msgs, j.as, j.ss, j.stats = append(j.msgs, n.msgs...), append(j.as, n.as...), append(j.ss, n.ss...), n.stats
					if j.taken.IsZero() {
						j.taken = n.taken
					}
				default:
					break merge
				}
			}
			if err := d.write(wctx, &j); err != nil {
				w.err = fmt.Errorf("write detector results: %w", err)
				close(w.dead)
				return
			}
			if j.stats != nil {
				d.counts.Store(j.stats)
			}
		}
	}()
	return w
}

// wait returns once everything handed over before it has been written.
func (w *resultWriter) wait(ctx context.Context) error {
	b := make(chan struct{})
	select {
	case w.jobs <- writeJob{barrier: b}:
	case <-w.dead:
		return w.err
	case <-ctx.Done():
		return fmt.Errorf("wait for result writes: %w", ctx.Err())
	}
	select {
	case <-b:
		return nil
	case <-w.dead:
		return w.err
	case <-ctx.Done():
		return fmt.Errorf("wait for result writes: %w", ctx.Err())
	}
}

// failed returns the writer's error, or nil while it is working.
func (w *resultWriter) failed() error {
	select {
	case <-w.dead:
		return w.err
	default:
		return nil
	}
}

// stop cancels writes still being retried and waits for the writer to
// exit. Loop only; safe to call more than once.
func (w *resultWriter) stop() {
	w.once.Do(func() {
		close(w.jobs)
		w.cancel()
	})
	<-w.exited
}

// write publishes j's anomalies to the topic, then writes its anomalies and
// scores to the store (idempotent: the tables collapse repeated ids and
// windows), each retried until it succeeds or ctx ends.
func (d *Detector) write(ctx context.Context, j *writeJob) error {
	if len(j.as) == 0 && len(j.ss) == 0 {
		return nil
	}
	start := time.Now()
	if len(j.msgs) > 0 {
		if err := d.retry(ctx, "publish anomalies", func(ctx context.Context) error { return d.Out.Write(ctx, j.msgs...) }); err != nil {
			return err
		}
	}
	for _, a := range j.as {
		if a.DetectedMs > 0 {
			d.Metrics.CloseToPublish.Observe(time.Since(time.UnixMilli(a.DetectedMs)).Seconds())
		}
	}
	if len(j.as) > 0 {
		if err := d.retry(ctx, "store anomalies", func(ctx context.Context) error { return d.Store.InsertAnomalies(ctx, j.as) }); err != nil {
			return err
		}
	}
	// In chunks: a flood of new agents closes many windows at once.
	if err := inChunks(ctx, d, "store window scores", j.ss, d.Store.InsertScores); err != nil {
		return err
	}
	d.Log.Debug("results written", "anomalies", len(j.as), "scores", len(j.ss), "took", time.Since(start), "since_take", time.Since(j.taken))
	return nil
}

// snapshot hands pending results to the writer and waits until everything
// handed over is written, then saves changed state and checkpoints and
// commits offsets: offsets never run ahead of what is written.
func (d *Detector) snapshot(ctx context.Context, gen Generation, parts []int32, w *resultWriter) error {
	if err := d.flush(ctx, w); err != nil {
		return err
	}
	if err := w.wait(ctx); err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	var states []detstate.State
	if d.MaxAgents > 0 {
		states = d.Proc.Evict(d.MaxAgents*9/10, d.EventsTopic, now)
	}
	d.Proc.TrimPool()
	// The states are saved as the partitions' rows add up to an insert,
	// not all encoded first: under a flood of new agents the encoded rows
	// and the insert's copy of them would otherwise hold every dirty
	// agent's encoding twice at once. A small snapshot stays one insert:
	// the states and the checkpoints are not saved atomically, and a crash
	// between the two leaves states newer than their checkpoint (the
	// windows in between are trained again on restore), so the fewer
	// inserts between them, the better.
	cps := make([]detstate.Checkpoint, 0, len(parts))
	next := map[int32]int64{}
	for _, p := range parts {
		cp, st := d.Proc.Snapshot(p, d.Group, d.EventsTopic, now)
		if states = append(states, st...); len(states) >= insertChunk {
			if err := inChunks(ctx, d, "save detector state", states, d.Store.SaveStates); err != nil {
				return err
			}
			states = nil
		}
		cps = append(cps, cp)
		if cp.ResumeOffset >= 0 {
			next[p] = cp.ResumeOffset
		}
	}
	if err := inChunks(ctx, d, "save detector state", states, d.Store.SaveStates); err != nil {
		return err
	}
	if err := d.retry(ctx, "save checkpoints", func(ctx context.Context) error { return d.Store.SaveCheckpoints(ctx, cps) }); err != nil {
		return err
	}
	s := d.syncStats()
	d.counts.Store(&s)
	if len(next) == 0 {
		return nil
	}
	if err := gen.Commit(ctx, next); err != nil {
		// The checkpoint is saved: a successor seeks to it, so a failed
		// commit only means re-reading records it will recognise.
		d.Log.Warn("commit detector offsets", "err", err)
	}
	return nil
}

// inChunks inserts rows insertChunk at a time, each insert retried by
// d.retry: the driver copies an insert's rows into its columns, so what an
// insert holds stays bounded whatever the rows are.
func inChunks[T any](ctx context.Context, d *Detector, what string, rows []T, insert func(context.Context, []T) error) error {
	for len(rows) > 0 {
		chunk := rows[:min(len(rows), insertChunk)]
		if err := d.retry(ctx, what, func(ctx context.Context) error { return insert(ctx, chunk) }); err != nil {
			return err
		}
		rows = rows[len(chunk):]
	}
	return nil
}

// insertChunk is the most state or score rows in one insert: at about
// 1 KiB a row, 10 MiB of rows plus the driver's copy of them.
const insertChunk = 10000

func (d *Detector) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	p := retry.Policy{
		Backoff: retry.Backoff{Base: d.RetryInitial, Max: d.RetryMax},
		OnRetry: func(attempt int, wait time.Duration, err error) {
			d.Metrics.WriteRetries.Inc()
			d.Log.Warn("retrying", "what", what, "attempt", attempt, "err", err, "wait", wait)
		},
	}
	if _, err := p.Do(ctx, fn); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// syncStats moves the processor's counters into the metrics and returns
// them; Counts reports them once the results they cover are written.
func (d *Detector) syncStats() Stats {
	s := d.Proc.Stats()
	m := d.Metrics
	add := func(c prometheus.Counter, now, before uint64) {
		if now > before {
			c.Add(float64(now - before))
		}
	}
	add(m.Events, s.Events, d.last.Events)
	add(m.Late, s.Late, d.last.Late)
	add(m.Replayed, s.Replayed, d.last.Replayed)
	add(m.Windows, s.Windows, d.last.Windows)
	add(m.ShadowFolded, s.ShadowFolded, d.last.ShadowFolded)
	add(m.NewAgents, s.NewAgents, d.last.NewAgents)
	add(m.Evicted, s.Evicted, d.last.Evicted)
	add(m.Restored, s.Restored, d.last.Restored)
	add(m.Shed, s.Shed, d.last.Shed)
	kinds := make([]string, 0, len(s.Anomalies))
	for k := range s.Anomalies {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		var before uint64
		if d.last.Anomalies != nil {
			before = d.last.Anomalies[k]
		}
		add(m.Anomalies.WithLabelValues(k), s.Anomalies[k], before)
	}
	m.Agents.Set(float64(s.Agents))
	d.last = s
	return s
}
