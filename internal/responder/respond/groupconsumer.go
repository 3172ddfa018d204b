package respond

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
)

// Ownership says which agents this responder acts for now: those whose
// anomalies are in the anomaly partitions it owns. Another instance owns
// the others; what must act on their state goes to it.
type Ownership interface {
	// Owns reports whether this process owns agentID's partition now.
	Owns(agentID string) bool
	// Partition is agentID's anomaly partition.
	Partition(agentID string) int32
}

var _ Ownership = (*partstate.Owner)(nil)

// DefaultHandOverTimeout bounds how long a revoked partition's running
// outbox entries are waited for; it must stay below the group's rebalance
// timeout (30s), or the group goes on without this member.
const DefaultHandOverTimeout = 20 * time.Second

// GroupConsumer is the distributed mode's consumer of the anomalies topic.
// It reads through a consumer group generation by generation: it restores
// the state of the generation's partitions (Owner.Assign) before it
// handles any of their anomalies, handles them as Consumer does (the
// handled set, marking and committing in the background), and when the
// generation ends commits what it handled, hands the partitions' state
// over (Owner.Revoke: no new entry starts, the running ones finish, the
// state is dropped) and joins the next one.
type GroupConsumer struct {
	Group  *kafka.Group
	Owner  *partstate.Owner
	Engine *Engine
	Log    *slog.Logger
	// Invalid, InputLag, FlushEvery and BeforeCommit are Consumer's.
	Invalid      prometheus.Counter
	InputLag     prometheus.Gauge
	FlushEvery   time.Duration
	BeforeCommit func()
	// HandOverTimeout is DefaultHandOverTimeout when zero.
	HandOverTimeout time.Duration
}

// Run implements the stage. It returns nil when ctx ends, after handing
// over the partitions it held; the caller then closes the Group, which
// leaves it, so the others take the partitions at once.
func (c *GroupConsumer) Run(ctx context.Context) error {
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for {
		gen, err := c.Group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return nil
			}
			return fmt.Errorf("anomalies consumer group: %w", err)
		}
		err = c.generation(ctx, gen, log)
		if cerr := gen.Close(); cerr != nil {
			log.Warn("closing the consumer group generation", "err", cerr)
		}
		if err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// generation restores, consumes and hands over the partitions of gen.
func (c *GroupConsumer) generation(ctx context.Context, gen *kafka.Generation, log *slog.Logger) error {
	parts := gen.Partitions()
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	go func() {
		select {
		case <-gen.Done():
			cancel()
		case <-gctx.Done():
		}
	}()
	defer func() {
		timeout := c.HandOverTimeout
		if timeout <= 0 {
			timeout = DefaultHandOverTimeout
		}
		hctx, hcancel := context.WithTimeout(context.Background(), timeout)
		defer hcancel()
		if err := c.Owner.Revoke(hctx, parts); err != nil {
			log.Warn("partition hand-over cut short", "partitions", parts, "err", err)
		}
	}()
	// Restore before handling: a retry until it works or the generation
	// ends (the next owner then restores it).
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := c.Owner.Assign(gctx, parts)
		if err == nil {
			break
		}
		if gctx.Err() != nil {
			return nil
		}
		log.Warn("restoring partition state failed; retrying", "partitions", parts, "err", err, "wait", wait)
		select {
		case <-gctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	log.Info("anomaly partitions owned", "generation", gen.ID(), "partitions", parts)
	cons := &Consumer{Reader: genReader{gen: gen, log: log}, Engine: c.Engine, Log: log,
		Invalid: c.Invalid, InputLag: c.InputLag, FlushEvery: c.FlushEvery, BeforeCommit: c.BeforeCommit}
	return cons.Run(gctx)
}

// genReader is a bus.Reader over one generation.
type genReader struct {
	gen *kafka.Generation
	log *slog.Logger
}

// Fetch returns the next record; once the generation ends it waits for
// ctx, which the GroupConsumer cancels then, so that Consumer sees a stop
// and not a failure.
func (r genReader) Fetch(ctx context.Context) (bus.Message, error) {
	m, err := r.gen.Fetch(ctx)
	if errors.Is(err, kafka.ErrGenerationEnded) {
		<-ctx.Done()
		return bus.Message{}, ctx.Err()
	}
	return m, err
}

// Commit commits the offset after each partition's last message. A
// commit the group no longer takes (the generation ended long ago) is not
// an error: the partition's next owner gets those anomalies again, and the
// handled set skips them.
func (r genReader) Commit(ctx context.Context, msgs ...bus.Message) error {
	next := map[int32]int64{}
	for _, m := range msgs {
		next[m.Partition] = max(next[m.Partition], m.Offset+1)
	}
	err := r.gen.Commit(ctx, next)
	if errors.Is(err, kafka.ErrGenerationEnded) {
		r.log.Warn("anomaly offsets not committed: the group moved on; the next owner skips them by the handled set", "err", err)
		return nil
	}
	return err
}

// Close implements bus.Reader; the generation is the GroupConsumer's.
func (genReader) Close() error { return nil }
