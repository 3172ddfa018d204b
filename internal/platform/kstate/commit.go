package kstate

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// committer writes one partition's records, gathering the records of
// callers that arrive while a produce is in flight into the next one (group
// commit): under load a partition sees one request per round trip, not one
// per caller.
type committer struct {
	write   func(ctx context.Context, recs []Record) (int64, error)
	timeout time.Duration
	// observe, when set, sees each request's record count and error.
	observe func(n int, err error)

	mu       sync.Mutex
	cond     *sync.Cond
	next     *batch
	flushing bool
}

type batch struct {
	recs []Record
	done bool
	err  error
	base int64
}

func newCommitter(timeout time.Duration, write func(ctx context.Context, recs []Record) (int64, error)) *committer {
	c := &committer{write: write, timeout: timeout}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// append returns the offset of recs[0] once every record of recs is
// durable. The produce runs under the committer's own timeout, not ctx: a
// caller that gives up must not fail the other callers' records in the
// same request. ctx is checked before the records join a batch.
func (c *committer) append(ctx context.Context, recs []Record) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.next
	if b == nil {
		b = &batch{}
		c.next = b
	}
	idx := len(b.recs)
	b.recs = append(b.recs, recs...)
	for !b.done {
		if !c.flushing && c.next == b {
			c.flush(b)
			continue
		}
		c.cond.Wait()
	}
	if b.err != nil {
		return 0, b.err
	}
	return b.base + int64(idx), nil
}

// flush writes b as the leader; the caller holds mu, which is released
// while the request is out so the next batch can gather.
func (c *committer) flush(b *batch) {
	c.next, c.flushing = nil, true
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	base, err := c.writeRetrying(ctx, b.recs)
	cancel()
	if c.observe != nil {
		c.observe(len(b.recs), err)
	}
	c.mu.Lock()
	c.flushing = false
	b.done, b.err, b.base = true, err, base
	c.cond.Broadcast()
}

// writeRetrying retries what a leader change or a dropped connection
// causes. A retried write that had in fact landed leaves the records twice
// in the log; every reader keeps the last value of a key, and the readers
// that fold the log (budget claims) count a key once, so that is harmless.
func (c *committer) writeRetrying(ctx context.Context, recs []Record) (int64, error) {
	wait := 50 * time.Millisecond
	for {
		base, err := c.write(ctx, recs)
		if err == nil || !retryable(err) {
			return base, err
		}
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

func retryable(err error) bool {
	var ke kafkago.Error
	if errors.As(err, &ke) {
		return ke.Temporary()
	}
	// A dropped or refused connection: the next try dials again.
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}
