package respond

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/bus"
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
	// FlushEvery is DefaultFlushEvery when zero.
	FlushEvery time.Duration
}

// maxBatch bounds the anomalies handled together.
const maxBatch = 256

// DefaultFlushEvery is how often handled ids are marked and offsets
// committed while anomalies keep coming.
const DefaultFlushEvery = 100 * time.Millisecond

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
	var (
		pendingIDs  []string
		pendingMsgs []bus.Message
		recent      = map[string]bool{} // processed, not yet marked
		flushAt     time.Time
	)
	flushCtx := func(ctx context.Context) error {
		if len(pendingMsgs) == 0 {
			return nil
		}
		if err := c.retry(ctx, "mark anomalies handled", func() error { return c.Engine.MarkHandled(ctx, pendingIDs) }); err != nil || ctx.Err() != nil {
			return err
		}
		if err := c.Reader.Commit(ctx, pendingMsgs...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("commit anomaly offsets: %w", err)
		}
		pendingIDs, pendingMsgs = pendingIDs[:0], pendingMsgs[:0]
		clear(recent)
		return nil
	}
	flush := func() error { return flushCtx(ctx) }
	// At stop, mark and commit what was handled, so a restart does not
	// fetch it again (it would queue nothing twice, but costs a lookup).
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := flushCtx(sctx); err != nil {
			c.Log.Warn("final commit of handled anomalies failed; they will be fetched again", "err", err)
		}
	}()
	for {
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if len(pendingMsgs) > 0 {
			fctx, cancel = context.WithDeadline(ctx, flushAt)
		}
		m, err := c.Reader.Fetch(fctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if fctx.Err() != nil { // the flush is due and nothing came
				if err := flush(); err != nil || ctx.Err() != nil {
					return err
				}
				continue
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
		as := make([]anomaly.Anomaly, 0, len(batch))
		for _, m := range batch {
			var a anomaly.Anomaly
			if err := json.Unmarshal(m.Value, &a); err != nil || a.ID == "" || a.AgentID == "" {
				if c.Invalid != nil {
					c.Invalid.Inc()
				}
				c.Log.Warn("skipping a record that is not an anomaly", "partition", m.Partition, "offset", m.Offset, "err", err)
				continue
			}
			if recent[a.ID] {
				continue // redelivered before its mark: nothing to do again
			}
			as = append(as, a)
		}
		var mark []string
		if len(as) > 0 {
			if err := c.retry(ctx, "handle anomalies", func() error {
				var err error
				_, mark, err = c.Engine.ProcessBatch(ctx, as)
				return err
			}); err != nil || ctx.Err() != nil {
				return err
			}
		}
		if len(pendingMsgs) == 0 {
			flushAt = time.Now().Add(every)
		}
		for _, id := range mark {
			recent[id] = true
		}
		pendingIDs = append(pendingIDs, mark...)
		pendingMsgs = append(pendingMsgs, batch...)
		if len(pendingMsgs) >= maxBatch || !time.Now().Before(flushAt) {
			if err := flush(); err != nil || ctx.Err() != nil {
				return err
			}
		}
	}
}

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
