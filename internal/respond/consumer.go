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

// Run implements the stage.
func (c *Consumer) Run(ctx context.Context) error {
	for {
		m, err := c.Reader.Fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("fetch anomalies: %w", err)
		}
		var a anomaly.Anomaly
		if err := json.Unmarshal(m.Value, &a); err != nil || a.ID == "" || a.AgentID == "" {
			if c.Invalid != nil {
				c.Invalid.Inc()
			}
			c.Log.Warn("skipping a record that is not an anomaly", "partition", m.Partition, "offset", m.Offset, "err", err)
		} else if err := c.handle(ctx, a); err != nil {
			return err
		}
		if err := c.Reader.Commit(ctx, m); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("commit anomaly offset: %w", err)
		}
	}
}

// handle retries the engine until it succeeds or ctx ends: an anomaly is
// never skipped because a store was briefly down.
func (c *Consumer) handle(ctx context.Context, a anomaly.Anomaly) error {
	wait := 100 * time.Millisecond
	for {
		_, err := c.Engine.Handle(ctx, a)
		if err == nil {
			return nil
		}
		c.Log.Warn("handling anomaly failed; retrying", "anomaly", a.ID, "err", err, "wait", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}
