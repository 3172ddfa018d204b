package kstate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"
)

// partResult is what one produce request did for one partition: the
// offset of its first record, or why its records were not written.
type partResult struct {
	base int64
	err  error
}

// multiCommitter is committer for a whole changelog: the records of the
// callers that arrive while a produce is in flight, whatever their
// partition, go out together in the next produce request, one request for
// every partition the process writes instead of one per partition. The
// broker appends and acknowledges each partition on its own, so each
// caller gets the outcome of its own partition as soon as it is final.
// Under load this divides the requests (and the broker's CPU per record)
// by about the number of partitions written at once.
//
// A partition whose write failed with what a leader change or a dropped
// connection causes is written again on its own, apart from the batches:
// the next batch goes out meanwhile for the other partitions, and only
// that partition's later records wait (its records stay in order).
type multiCommitter struct {
	write   func(ctx context.Context, parts map[int32][]Record) map[int32]partResult
	timeout time.Duration
	// observe, when set, sees each request's record count and whether any
	// partition of it failed.
	observe func(n int, err error)

	mu       sync.Mutex
	cond     *sync.Cond
	next     *multiBatch
	flushing bool
	// retrying holds the partitions being written again apart.
	retrying map[int32]bool
}

type multiBatch struct {
	parts map[int32][]Record
	// res holds each partition's outcome once it is final.
	res map[int32]partResult
}

func newMultiCommitter(timeout time.Duration, write func(ctx context.Context, parts map[int32][]Record) map[int32]partResult) *multiCommitter {
	c := &multiCommitter{write: write, timeout: timeout, retrying: map[int32]bool{}}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// append returns the offset of recs[0] in partition p once every record of
// recs is durable. As committer.append, the produce runs under the
// committer's own timeout, not ctx, which is checked before the records
// join a batch.
func (c *multiCommitter) append(ctx context.Context, p int32, recs []Record) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.retrying[p] { // after the records being written again, in order
		c.cond.Wait()
	}
	b := c.next
	if b == nil {
		b = &multiBatch{parts: map[int32][]Record{}, res: map[int32]partResult{}}
		c.next = b
	}
	idx := len(b.parts[p])
	b.parts[p] = append(b.parts[p], recs...)
	for {
		if r, ok := b.res[p]; ok {
			if r.err != nil {
				return 0, r.err
			}
			return r.base + int64(idx), nil
		}
		if !c.flushing && c.next == b {
			c.flush(b)
			continue
		}
		c.cond.Wait()
	}
}

// flush writes b as the leader; the caller holds mu, which is released
// while the request is out so the next batch can gather. The partitions
// to write again are handed to retry, and the next batch may go.
func (c *multiCommitter) flush(b *multiBatch) {
	c.next, c.flushing = nil, true
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	res, again := c.writeOnce(ctx, b.parts)
	final := make(map[int32]partResult, len(b.parts))
	for p, r := range res {
		if _, retry := again[p]; !retry {
			final[p] = r
		}
	}
	c.mu.Lock()
	c.flushing = false
	maps.Copy(b.res, final)
	for p := range again {
		c.retrying[p] = true
	}
	c.cond.Broadcast()
	if len(again) == 0 {
		cancel()
		return
	}
	go func() {
		defer cancel()
		out := c.writeRetrying(ctx, again, res)
		c.mu.Lock()
		defer c.mu.Unlock()
		for p, r := range out {
			b.res[p] = r
			delete(c.retrying, p)
		}
		c.cond.Broadcast()
	}()
}

// writeOnce writes parts in one go and returns every partition's outcome
// (an error for one the write did not answer for) and the partitions to
// write again: those that failed with what a leader change or a dropped
// connection causes. observe sees the request.
func (c *multiCommitter) writeOnce(ctx context.Context, parts map[int32][]Record) (map[int32]partResult, map[int32][]Record) {
	res := c.write(ctx, parts)
	out := make(map[int32]partResult, len(parts))
	again := map[int32][]Record{}
	n := 0
	var failed error
	for p, recs := range parts {
		n += len(recs)
		r, ok := res[p]
		if !ok {
			r = partResult{err: fmt.Errorf("write to partition %d: no answer for it", p)}
		}
		out[p] = r
		if failed == nil {
			failed = r.err
		}
		if r.err != nil && retryable(r.err) {
			again[p] = recs
		}
	}
	if c.observe != nil {
		c.observe(n, failed)
	}
	return out, again
}

// writeRetrying writes parts again, after a pause, and again the
// partitions whose write failed with what a leader change or a dropped
// connection causes, until ctx ends, as committer.writeRetrying does (a
// retried write that had landed leaves records twice, which every reader
// tolerates). The partitions that succeeded are not written again. It
// returns every partition's last outcome, first's when ctx ends before
// it was written again.
func (c *multiCommitter) writeRetrying(ctx context.Context, parts map[int32][]Record, first map[int32]partResult) map[int32]partResult {
	out := make(map[int32]partResult, len(parts))
	for p := range parts {
		out[p] = first[p]
	}
	todo := parts
	wait := 50 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return out
		case <-time.After(wait):
		}
		res, again := c.writeOnce(ctx, todo)
		maps.Copy(out, res)
		if len(again) == 0 {
			return out
		}
		todo = again
		wait = min(2*wait, time.Second)
	}
}

// produceParts writes parts to topic in one produce request (acks from
// every in-sync replica) when one broker leads them all, and in one
// request per partition, at once, otherwise.
func produceParts(ctx context.Context, client *kafkago.Client, tr *kafkago.Transport, topic string, parts map[int32][]Record) map[int32]partResult {
	out := make(map[int32]partResult, len(parts))
	if len(parts) == 1 {
		for p, recs := range parts {
			base, err := produce(ctx, client, topic, p, recs)
			out[p] = partResult{base: base, err: err}
		}
		return out
	}
	req := &produceAPI.Request{Acks: int16(kafkago.RequireAll), Timeout: timeoutMs(ctx), Topics: []produceAPI.RequestTopic{{Topic: topic}}}
	now := time.Now()
	for _, p := range slices.Sorted(maps.Keys(parts)) {
		krs, err := kafkaRecords(parts[p], now)
		if err != nil {
			out[p] = partResult{err: fmt.Errorf("write to %s/%d: %w", topic, p, err)}
			continue
		}
		req.Topics[0].Partitions = append(req.Topics[0].Partitions, produceAPI.RequestPartition{
			Partition: p, RecordSet: protocol.RecordSet{Records: kafkago.NewRecordReader(krs...)}})
	}
	if len(req.Topics[0].Partitions) == 0 {
		return out
	}
	m, err := tr.RoundTrip(ctx, client.Addr, req)
	var split *produceAPI.Error
	if errors.As(err, &split) {
		// The partitions have different leaders (or one has none in the
		// transport's metadata): one request each, to its own leader.
		return producePartsApart(ctx, client, topic, parts, out)
	}
	if err != nil {
		for _, rp := range req.Topics[0].Partitions {
			out[rp.Partition] = partResult{err: fmt.Errorf("write %d records to %s/%d: %w", len(parts[rp.Partition]), topic, rp.Partition, err)}
		}
		return out
	}
	res, _ := m.(*produceAPI.Response)
	if res != nil {
		for _, rt := range res.Topics {
			if rt.Topic != topic {
				continue
			}
			for _, rp := range rt.Partitions {
				if _, asked := parts[rp.Partition]; !asked {
					continue
				}
				r := partResult{base: rp.BaseOffset}
				if rp.ErrorCode != 0 {
					r = partResult{err: fmt.Errorf("write %d records to %s/%d: %w", len(parts[rp.Partition]), topic, rp.Partition, kafkago.Error(rp.ErrorCode))}
				}
				out[rp.Partition] = r
			}
		}
	}
	for _, rp := range req.Topics[0].Partitions {
		if _, ok := out[rp.Partition]; !ok {
			out[rp.Partition] = partResult{err: fmt.Errorf("write %d records to %s/%d: no answer for the partition", len(parts[rp.Partition]), topic, rp.Partition)}
		}
	}
	return out
}

// producePartsApart writes each partition of parts not yet in out in a
// request of its own, all at once.
func producePartsApart(ctx context.Context, client *kafkago.Client, topic string, parts map[int32][]Record, out map[int32]partResult) map[int32]partResult {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for p, recs := range parts {
		if _, failed := out[p]; failed {
			continue
		}
		wg.Go(func() {
			base, err := produce(ctx, client, topic, p, recs)
			mu.Lock()
			out[p] = partResult{base: base, err: err}
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// timeoutMs is the broker-side timeout of a produce: what is left of ctx,
// 10 s without a deadline.
func timeoutMs(ctx context.Context) int32 {
	if d, ok := ctx.Deadline(); ok {
		return int32(max(time.Until(d), time.Millisecond) / time.Millisecond)
	}
	return 10_000
}
