package respond

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// Consumer reads anomalies and hands each to the engine, committing its
// offset only once the engine has queued its actions and marked it handled.
type Consumer struct {
	Reader bus.Reader
	Engine *Engine
	Log    *slog.Logger
	// Invalid counts records that are not anomalies; nil counts nothing.
	Invalid prometheus.Counter
	// InputLag is set to the age (by its Kafka timestamp) of the newest
	// record of each fetch: the anomalies topic's consumer lag in time,
	// as the detector's and ingest's input_lag_seconds are theirs. Nil
	// records nothing.
	InputLag prometheus.Gauge
	// FlushEvery is DefaultFlushEvery when zero.
	FlushEvery time.Duration
	// BeforeCommit, when set, is called before handled anomalies are
	// marked and their offsets committed: the crash tests stop the process
	// there.
	BeforeCommit func()
}

type partKey struct {
	topic     string
	partition int32
}

// NewConsumerMetrics registers the consumer's series on reg, for its
// Invalid and InputLag fields.
func NewConsumerMetrics(reg prometheus.Registerer) (invalid prometheus.Counter, inputLag prometheus.Gauge) {
	f := promauto.With(reg)
	invalid = f.NewCounter(prometheus.CounterOpts{Namespace: "agentwatch", Subsystem: "responder",
		Name: "invalid_records_total", Help: "Records on the anomalies topic that are not anomalies; logged and skipped."})
	inputLag = f.NewGauge(prometheus.GaugeOpts{Namespace: "agentwatch", Subsystem: "responder",
		Name: "input_lag_seconds", Help: "Age (by its Kafka timestamp) of the newest anomaly record fetched."})
	return invalid, inputLag
}

// maxBatch bounds the anomalies handled together.
const maxBatch = 256

// DefaultFlushEvery is how often handled ids are marked and offsets
// committed while anomalies keep coming. Each mark is one ClickHouse insert
// per instance, which costs the server about the same however few ids it
// holds (10 a second cost it 0.1 core); a crash redelivers what was handled
// since the last flush, which queues nothing twice (the steps' keys are
// deterministic) and costs a lookup each.
const DefaultFlushEvery = 500 * time.Millisecond

// Run implements the stage. It takes what one fetch brings (up to maxBatch
// records already waiting) and hands the anomalies to the engine, which
// queues their actions at once; marking them handled and committing their
// offsets happens every FlushEvery, off the actions' path. A crash before
// the flush redelivers them, and handling them again queues nothing twice.
func (c *Consumer) Run(ctx context.Context) error {
	every := c.FlushEvery
	if every <= 0 {
		every = DefaultFlushEvery
	}
	// The marker marks handled ids and commits offsets in the background,
	// in the order it gets them, so a slow store never holds up fetching
	// and handling. At stop it flushes what it has (a restart would fetch
	// it again: harmless, but a lookup each).
	toMark := make(chan markReq, 64)
	markerDone := make(chan error, 1)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		err := c.marker(ctx, toMark, every)
		if err != nil {
			cancel() // stop consuming: nothing more could be committed
		}
		markerDone <- err
	}()
	err := c.consume(cctx, toMark)
	close(toMark)
	if merr := <-markerDone; err == nil {
		err = merr
	}
	return err
}

type markReq struct {
	ids  []string
	msgs []bus.Message
}

// marker marks and commits what it receives, batching what arrives within
// every of each other.
func (c *Consumer) marker(ctx context.Context, in <-chan markReq, every time.Duration) error {
	var ids []string
	var msgs []bus.Message
	flush := func(ctx context.Context) error {
		if len(msgs) == 0 {
			return nil
		}
		if c.BeforeCommit != nil {
			c.BeforeCommit()
		}
		if err := c.retry(ctx, "mark anomalies handled", func() error { return c.Engine.MarkHandled(ctx, ids) }); err != nil || ctx.Err() != nil {
			return err
		}
		if err := c.Reader.Commit(ctx, msgs...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("commit anomaly offsets: %w", err)
		}
		ids, msgs = ids[:0], msgs[:0]
		return nil
	}
	final := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := flush(sctx); err != nil {
			c.Log.Warn("final commit of handled anomalies failed; they will be fetched again", "err", err)
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case r, ok := <-in:
			if !ok {
				final()
				return nil
			}
			ids = append(ids, r.ids...)
			msgs = append(msgs, r.msgs...)
			if len(msgs) < maxBatch {
				continue
			}
		case <-t.C:
		}
		if ctx.Err() != nil {
			continue // drain until the consumer closes in; final() flushes
		}
		if err := flush(ctx); err != nil {
			// Keep draining so the consumer never blocks on a full channel.
			go func() {
				for range in {
				}
			}()
			return err
		}
	}
}

// consume fetches and handles; what it handled goes to the marker.
func (c *Consumer) consume(ctx context.Context, toMark chan<- markReq) error {
	// recent holds the ids handled in the last few flush periods, so a
	// redelivery before their mark is skipped without a lookup.
	recent := map[string]time.Time{}
	// verified is, per partition, the offset of the next record that is
	// known not to have been handled.
	verified := map[partKey]int64{}
	for {
		// The stage loop of STYLE.md, as in the detector: an error once
		// ctx is done is a stop, not a failure.
		m, err := c.Reader.Fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch anomalies: %w", err)
		}
		batch := []bus.Message{m}
		for len(batch) < maxBatch {
			// Only what is already there: a short wait, not a linger.
			bctx, cancel := context.WithTimeout(ctx, time.Millisecond)
			m, err := c.Reader.Fetch(bctx)
			cancel()
			if err != nil {
				break
			}
			batch = append(batch, m)
		}
		if last := batch[len(batch)-1].Time; c.InputLag != nil && !last.IsZero() {
			c.InputLag.Set(time.Since(last).Seconds())
		}
		as := make([]anomaly.Anomaly, 0, len(batch))
		known := make([]bool, 0, len(batch))
		var asMsgs []bus.Message
		for _, m := range batch {
			// A record right after one this consumer handled, on a
			// partition it has been reading without a break, cannot have
			// been handled by anyone else: only the first records after an
			// assignment, a restart or a rewind need the handled set.
			// So is the record after a known one of this batch: this
			// batch handles that one.
			p := partKey{m.Topic, m.Partition}
			next, ok := verified[p]
			isKnown := ok && m.Offset == next
			delete(verified, p)
			var a anomaly.Anomaly
			if err := json.Unmarshal(m.Value, &a); err != nil || a.ID == "" || a.AgentID == "" {
				if c.Invalid != nil {
					c.Invalid.Inc()
				}
				c.Log.Warn("skipping a record that is not an anomaly", "partition", m.Partition, "offset", m.Offset, "err", err)
				if isKnown {
					verified[p] = m.Offset + 1
				}
				continue
			}
			if _, ok := recent[a.ID]; ok {
				continue // redelivered before its mark: nothing to do again
			}
			if isKnown {
				verified[p] = m.Offset + 1
			}
			as = append(as, a)
			known = append(known, isKnown)
			asMsgs = append(asMsgs, m)
		}
		var mark []string
		if len(as) > 0 {
			var res []HandleResult
			// A batch begun is finished even when ctx ends meanwhile (the
			// generation ends, the process stops), within finishGrace:
			// cut short, it would leave an agent's steps half queued for
			// the partition's next owner, which would then see the
			// revocation done and not the alert queued.
			bctx, bcancel := context.WithCancel(context.WithoutCancel(ctx))
			stopGrace := context.AfterFunc(ctx, func() {
				select {
				case <-time.After(finishGrace):
					bcancel()
				case <-bctx.Done():
				}
			})
			err := c.retry(bctx, "handle anomalies", func() error {
				var err error
				res, mark, err = c.Engine.ProcessBatch(bctx, as, known)
				return err
			})
			cut := bctx.Err() != nil
			stopGrace()
			bcancel()
			if err != nil || cut {
				return err
			}
			for i, m := range asMsgs {
				p := partKey{m.Topic, m.Partition}
				if i < len(res) && !res[i].Duplicate {
					verified[p] = m.Offset + 1
				} else {
					delete(verified, p)
				}
			}
		}
		now := time.Now()
		for _, id := range mark {
			recent[id] = now
		}
		if len(recent) > 4*maxBatch {
			for id, at := range recent {
				if now.Sub(at) > time.Minute {
					delete(recent, id)
				}
			}
		}
		// Never dropped at a stop: the marker drains until toMark closes
		// and flushes what it got, so a handled batch is marked.
		toMark <- markReq{ids: mark, msgs: batch}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// finishGrace bounds how long a batch begun goes on after the consumer
// was stopped; it stays well below the group's rebalance timeout.
const finishGrace = 5 * time.Second

// retry runs f until it succeeds or ctx ends: an anomaly is never skipped
// because a store was briefly down.
func (c *Consumer) retry(ctx context.Context, what string, f func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		c.Log.Warn(what+" failed; retrying", "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}
