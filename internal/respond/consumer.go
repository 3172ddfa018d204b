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
}

// maxBatch bounds the anomalies handled (and committed) together.
const maxBatch = 256

// Run implements the stage: it takes what one fetch brings (up to maxBatch
// records already waiting), hands the anomalies to the engine together and
// commits their offsets once.
func (c *Consumer) Run(ctx context.Context) error {
	for {
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
			fctx, cancel := context.WithTimeout(ctx, time.Millisecond)
			m, err := c.Reader.Fetch(fctx)
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
			as = append(as, a)
		}
		if err := c.handle(ctx, as); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if err := c.Reader.Commit(ctx, batch...); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("commit anomaly offsets: %w", err)
		}
	}
}

// handle retries the engine until it succeeds or ctx ends: an anomaly is
// never skipped because a store was briefly down.
func (c *Consumer) handle(ctx context.Context, as []anomaly.Anomaly) error {
	if len(as) == 0 {
		return nil
	}
	wait := 100 * time.Millisecond
	for {
		_, err := c.Engine.HandleBatch(ctx, as)
		if err == nil {
			return nil
		}
		c.Log.Warn("handling anomalies failed; retrying", "anomalies", len(as), "first", as[0].ID, "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}
