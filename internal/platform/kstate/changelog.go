package kstate

import (
	"context"
	"fmt"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// Changelog is a partitioned topic of keyed state records, each partition
// written by the one process that owns it (the owner of the input partition
// of the same number) and read back by the next owner. It is safe for
// concurrent use.
type Changelog struct {
	cfg    Config
	client *kafkago.Client
	tr     *kafkago.Transport
	parts  int

	// prod carries the writes: cfg.Producer, or one of its own.
	prod *Producer
}

// OpenChangelog connects to the changelog topic, which must exist.
func OpenChangelog(ctx context.Context, cfg Config) (*Changelog, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("changelog: %w", err)
	}
	n, err := PartitionCount(ctx, cfg.Brokers, cfg.Security, cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("open changelog: %w", err)
	}
	client, tr := cfg.Security.Client(cfg.Brokers, cfg.timeout())
	c := &Changelog{cfg: cfg, client: client, tr: tr, parts: n}
	c.prod = cfg.Producer
	if c.prod == nil {
		c.prod = newProducer(client, tr, cfg.timeout())
	}
	c.prod.observeTopic(cfg.Topic, cfg.Metrics.observer(cfg.Topic))
	return c, nil
}

// Partitions returns the topic's partition count.
func (c *Changelog) Partitions() int { return c.parts }

func (c *Changelog) check(p int32) error {
	if p < 0 || int(p) >= c.parts {
		return fmt.Errorf("changelog %s: partition %d out of range [0, %d)", c.cfg.Topic, p, c.parts)
	}
	return nil
}

// Restore hands fn every record of partition p from its first to the
// last one written before the call, in offset order. An error from fn
// stops it and is returned.
func (c *Changelog) Restore(ctx context.Context, p int32, fn func(Record) error) error {
	if err := c.check(p); err != nil {
		return err
	}
	first, end, err := bounds(ctx, c.client, c.cfg.Topic, p)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if end <= first {
		return nil
	}
	r, err := reader(c.cfg, p, first)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer r.Close()
	start, n := time.Now(), 0
	defer func() {
		if mt := c.cfg.Metrics; mt != nil {
			mt.restore.WithLabelValues(c.cfg.Topic).Observe(time.Since(start).Seconds())
			mt.restored.WithLabelValues(c.cfg.Topic).Add(float64(n))
		}
	}()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			return fmt.Errorf("restore %s/%d: read up to %d: %w", c.cfg.Topic, p, end, err)
		}
		n++
		if err := fn(fromMessage(m)); err != nil {
			return fmt.Errorf("restore %s/%d at offset %d: %w", c.cfg.Topic, p, m.Offset, err)
		}
		// The last record before end is in the active segment, which
		// compaction never touches, so it is there to be read.
		if m.Offset+1 >= end {
			return nil
		}
	}
}

// Append writes recs to partition p, in order, and returns once they are
// durable. Appends that arrive while another is being written, to any
// partition, are written together in one produce request (per leader),
// with the writes of the other topics of Config.Producer when it is set.
func (c *Changelog) Append(ctx context.Context, p int32, recs ...Record) error {
	if err := c.check(p); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	if err := c.cfg.fenced(); err != nil {
		return fmt.Errorf("changelog %s/%d: write refused: %w", c.cfg.Topic, p, err)
	}
	if _, err := c.prod.append(ctx, c.cfg.Topic, p, recs); err != nil {
		return fmt.Errorf("changelog %s: %w", c.cfg.Topic, err)
	}
	return nil
}

// Close releases the connections (not those of Config.Producer).
func (c *Changelog) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}
