// Package partstate keeps the distributed responder's per-partition state:
// the outbox entries and incidents of the agents whose anomalies are in the
// anomaly partitions this process owns. Every change is written to the
// partition's changelog (a compacted Kafka topic with as many partitions as
// the anomalies topic) before the call that made it returns, and a process
// that is assigned a partition reads that partition of the changelog back
// before it handles the partition's anomalies, as Kafka Streams restores a
// state store.
//
// An Owner tracks the partitions owned now and drives the Parts (the outbox
// store, the incidents) through assignment (Restore, then Activate) and
// revocation (Revoke: stop starting work, wait for running work, drop the
// state).
package partstate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
)

// Record is one changelog record. A nil or empty Value is a tombstone:
// the key's state was deleted.
type Record = kstate.Record

// Changelog is the partitioned state topic, written only by the owner of a
// partition. kstate.Changelog implements it; MemChangelog is the fake for
// unit tests.
type Changelog interface {
	// Partitions is the partition count: the anomalies topic's.
	Partitions() int
	// Restore calls fn for every record of partition p from its first
	// offset to the high watermark at the time of the call, in order.
	Restore(ctx context.Context, p int32, fn func(Record) error) error
	// Append writes recs to partition p; they are durable when it returns
	// nil.
	Append(ctx context.Context, p int32, recs ...Record) error
}

var _ Changelog = (*kstate.Changelog)(nil)

// ErrNotOwned means the partition of the state asked for is not owned by
// this process now (or is being handed over): its new owner acts on it.
var ErrNotOwned = errors.New("partition not owned by this responder")

// A Part is one kind of per-partition state, under its own record key
// prefix. Its methods are called by the Owner only: concurrently for
// different partitions, never for the same one.
type Part interface {
	// Prefix is the record key prefix this part owns, e.g. "o/".
	Prefix() string
	// Load applies one restored record (key without the prefix; value nil
	// for a tombstone) of partition p, which is not active yet.
	Load(p int32, key string, value []byte) error
	// Activate makes partition p's restored state live.
	Activate(p int32)
	// Revoke stops new work on p, waits (until ctx ends) for the work
	// running on p, and drops p's state. What could not finish before ctx
	// ended is left to the next owner.
	Revoke(ctx context.Context, p int32) error
}

// Owner is the set of anomaly partitions this process owns, and the Parts
// that keep their state. It implements Ownership. Safe for concurrent use;
// Assign and Revoke are called by the consumer's generation loop only.
type Owner struct {
	cl    Changelog
	parts []Part
	log   *slog.Logger
	n     int

	mu    sync.RWMutex
	owned map[int32]bool

	// Metrics, when set before the first Assign, counts ownership.
	Metrics *Metrics
}

// Metrics are the Owner's series.
type Metrics struct {
	Owned       prometheus.Gauge
	HandOverCut prometheus.Counter
}

// NewMetrics registers the Owner's series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		Owned: f.NewGauge(prometheus.GaugeOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "partitions_owned",
			Help: "Anomaly partitions this instance owns now, state restored: its share of the agents. Summed over the instances it is the anomalies topic's partition count, except during a rebalance."}),
		HandOverCut: f.NewCounter(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder", Name: "handover_cut_short_total",
			Help: "Partition hand-overs that stopped waiting for running steps (or failed to drop state); the next owner runs those steps again, recovered."}),
	}
}

func (m *Metrics) owned(n int) {
	if m != nil {
		m.Owned.Set(float64(n))
	}
}

func (m *Metrics) cut() {
	if m != nil {
		m.HandOverCut.Inc()
	}
}

// NewOwner returns an Owner of no partition yet over cl's partitions.
// Parts are revoked in the order given: put the outbox first, so the
// entries it drains can still update the incidents.
func NewOwner(cl Changelog, log *slog.Logger, parts ...Part) *Owner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Owner{cl: cl, parts: parts, log: log, n: cl.Partitions(), owned: map[int32]bool{}}
}

// Add registers more parts, after those given to NewOwner. Call it before
// the first Assign only.
func (o *Owner) Add(parts ...Part) { o.parts = append(o.parts, parts...) }

// Any returns one partition owned now (the lowest), for state that
// belongs to no agent (a channel's summary); ok is false when this
// process owns none.
func (o *Owner) Any() (p int32, ok bool) {
	if owned := o.Owned(); len(owned) > 0 {
		return owned[0], true
	}
	return 0, false
}

// A Compacter is a Part that drops its old state (writing tombstones).
type Compacter interface {
	Compact(ctx context.Context) (int, error)
}

// RunCompaction compacts every Part that is a Compacter every interval
// until ctx ends; failures are logged and retried at the next tick.
func (o *Owner) RunCompaction(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		for _, pt := range o.parts {
			c, ok := pt.(Compacter)
			if !ok {
				continue
			}
			n, err := c.Compact(ctx)
			if err != nil && ctx.Err() == nil {
				o.log.Warn("old state not all dropped from the changelog; retrying later", "part", pt.Prefix(), "err", err)
			}
			if n > 0 {
				o.log.Info("old state dropped from the changelog", "part", pt.Prefix(), "records", n)
			}
		}
	}
}

// Changelog returns the changelog the Owner restores from.
func (o *Owner) Changelog() Changelog { return o.cl }

// Partitions is the anomalies topic's partition count.
func (o *Owner) Partitions() int { return o.n }

// Partition returns the partition of agentID's anomalies: where the
// detector's writer puts them (kafka.PartitionFor), so where its state
// lives.
func (o *Owner) Partition(agentID string) int32 { return kafka.PartitionFor(agentID, o.n) }

// Owns reports whether this process owns agentID's partition now, restored
// and not being handed over.
func (o *Owner) Owns(agentID string) bool { return o.OwnsPartition(o.Partition(agentID)) }

// OwnsPartition reports whether this process owns partition p now.
func (o *Owner) OwnsPartition(p int32) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return o.owned[p]
}

// Owned returns the partitions owned now, sorted.
func (o *Owner) Owned() []int32 {
	o.mu.RLock()
	defer o.mu.RUnlock()
	out := make([]int32, 0, len(o.owned))
	for p := range o.owned {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Assign restores partitions ps from the changelog into every Part and
// then makes each live as soon as it is restored. Partitions are restored
// concurrently (a few at a time): the pause a rebalance causes is about
// the slowest partition's restore, not their sum. On error the partitions
// restored stay owned and the others are dropped again; the caller retries
// (Assign skips what it owns) or gives up its generation.
func (o *Owner) Assign(ctx context.Context, ps []int32) error {
	for _, p := range ps {
		if p < 0 || int(p) >= o.n {
			return fmt.Errorf("assign partition %d: the changelog has %d partitions; it must have as many as the anomalies topic", p, o.n)
		}
	}
	sem := make(chan struct{}, maxConcurrentRestores)
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		if o.OwnsPartition(p) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = fmt.Errorf("restore partition %d: %w", p, ctx.Err())
				return
			}
			defer func() { <-sem }()
			errs[i] = o.assign(ctx, p)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// maxConcurrentRestores bounds the partitions restored at once.
const maxConcurrentRestores = 8

// assign restores one partition and makes it live.
func (o *Owner) assign(ctx context.Context, p int32) error {
	start := time.Now()
	n := 0
	err := o.cl.Restore(ctx, p, func(r Record) error {
		n++
		for _, pt := range o.parts {
			if key, ok := strings.CutPrefix(r.Key, pt.Prefix()); ok {
				if err := pt.Load(p, key, r.Value); err != nil {
					return fmt.Errorf("record %q at offset %d: %w", r.Key, r.Offset, err)
				}
				return nil
			}
		}
		o.log.Warn("ignoring a changelog record of unknown kind", "partition", p, "key", r.Key, "offset", r.Offset)
		return nil
	})
	if err != nil {
		// Drop what was loaded: a partial state must not go live.
		for _, pt := range o.parts {
			_ = pt.Revoke(ctx, p)
		}
		return fmt.Errorf("restore partition %d: %w", p, err)
	}
	for _, pt := range o.parts {
		pt.Activate(p)
	}
	// The gauge is set under the lock: partitions restore concurrently,
	// and a count set after the lock is released could overwrite a newer one.
	o.mu.Lock()
	o.owned[p] = true
	o.Metrics.owned(len(o.owned))
	o.mu.Unlock()
	o.log.Info("partition state restored", "partition", p, "records", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Revoke gives up partitions ps: they stop being owned at once, then every
// Part waits for its running work on them (until ctx ends) and drops their
// state.
func (o *Owner) Revoke(ctx context.Context, ps []int32) error {
	o.mu.Lock()
	for _, p := range ps {
		delete(o.owned, p)
	}
	o.Metrics.owned(len(o.owned))
	o.mu.Unlock()
	var errs []error
	for _, p := range ps {
		for _, pt := range o.parts {
			if err := pt.Revoke(ctx, p); err != nil {
				o.Metrics.cut()
				errs = append(errs, fmt.Errorf("revoke partition %d (%s): %w", p, pt.Prefix(), err))
			}
		}
	}
	if len(ps) > 0 {
		o.log.Info("partition state handed over", "partitions", ps)
	}
	return errors.Join(errs...)
}
