package kstate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	produceAPI "github.com/segmentio/kafka-go/protocol/produce"
)

// tp names one partition of one topic.
type tp struct {
	topic string
	part  int32
}

func (k tp) String() string { return fmt.Sprintf("%s/%d", k.topic, k.part) }

// compareTP orders by topic, then partition.
func compareTP(a, b tp) int {
	if c := strings.Compare(a.topic, b.topic); c != 0 {
		return c
	}
	return cmp.Compare(a.part, b.part)
}

// partResult is what one produce request did for one partition: the
// offset of its first record, or why its records were not written.
type partResult struct {
	base int64
	err  error
}

// multiCommitter is a group commit for several partitions, of one topic or of
// several: the records of the callers that arrive while a produce is in
// flight, whatever their topic and partition, go out together in the next
// produce request, one request for every partition the process writes
// instead of one per partition. The broker appends and acknowledges each
// partition on its own, so each caller gets the outcome of its own
// partition as soon as it is final. Under load this divides the requests
// (and the broker's CPU per record) by about the number of partitions
// written at once.
//
// A partition whose write failed with what a leader change or a dropped
// connection causes is written again on its own, apart from the batches:
// the next batch goes out meanwhile for the other partitions, and only
// that partition's later records wait (its records stay in order).
type multiCommitter struct {
	write   func(ctx context.Context, parts map[tp][]Record) map[tp]partResult
	timeout time.Duration
	// observe, when set, sees each request once for every topic it
	// carried: that topic's record count and whether any of its
	// partitions failed.
	observe func(topic string, n int, err error)
	// observeRequest, when set, sees each request once: its record
	// count, every topic together, and whether any partition failed.
	observeRequest func(n int, err error)

	mu       sync.Mutex
	cond     *sync.Cond
	next     *multiBatch
	flushing bool
	// retrying holds the partitions being written again apart.
	retrying map[tp]bool
}

type multiBatch struct {
	parts map[tp][]Record
	// res holds each partition's outcome once it is final.
	res map[tp]partResult
}

func newMultiCommitter(timeout time.Duration, write func(ctx context.Context, parts map[tp][]Record) map[tp]partResult) *multiCommitter {
	c := &multiCommitter{write: write, timeout: timeout, retrying: map[tp]bool{}}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// append returns the offset of recs[0] in partition p once every record of
// recs is durable. The produce runs under the committer's own timeout, not
// ctx: a caller that gives up must not fail the other callers' records in
// the same request. ctx is checked before the records join a batch.
func (c *multiCommitter) append(ctx context.Context, p tp, recs []Record) (int64, error) {
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
		b = &multiBatch{parts: map[tp][]Record{}, res: map[tp]partResult{}}
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
	final := make(map[tp]partResult, len(b.parts))
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
// connection causes. observe sees the request once per topic, and
// observeRequest once.
func (c *multiCommitter) writeOnce(ctx context.Context, parts map[tp][]Record) (map[tp]partResult, map[tp][]Record) {
	res := c.write(ctx, parts)
	out := make(map[tp]partResult, len(parts))
	again := map[tp][]Record{}
	type tally struct {
		n      int
		failed error
	}
	topics := map[string]*tally{}
	var all tally
	for p, recs := range parts {
		r, ok := res[p]
		if !ok {
			r = partResult{err: fmt.Errorf("write to %s: no answer for it", p)}
		}
		out[p] = r
		t := topics[p.topic]
		if t == nil {
			t = &tally{}
			topics[p.topic] = t
		}
		t.n += len(recs)
		all.n += len(recs)
		if t.failed == nil {
			t.failed = r.err
		}
		if all.failed == nil {
			all.failed = r.err
		}
		if r.err != nil && retryable(r.err) {
			again[p] = recs
		}
	}
	if c.observe != nil {
		for topic, t := range topics {
			c.observe(topic, t.n, t.failed)
		}
	}
	if c.observeRequest != nil {
		c.observeRequest(all.n, all.failed)
	}
	return out, again
}

// writeRetrying writes parts again, after a pause, and again the
// partitions whose write failed with what a leader change or a dropped
// connection causes, until ctx ends. A retried write that had landed
// leaves records twice: readers keep the last value of a key, and a
// record that must not be there twice under one key names the keys of
// its retries (Table.PutRetryAs). The partitions that succeeded are not written again. It returns every
// partition's last outcome, first's when ctx ends before it was written
// again.
func (c *multiCommitter) writeRetrying(ctx context.Context, parts map[tp][]Record, first map[tp]partResult) map[tp]partResult {
	out := make(map[tp]partResult, len(parts))
	for p := range parts {
		out[p] = first[p]
	}
	todo := parts
	wait := 50 * time.Millisecond
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return out
		case <-time.After(wait):
		}
		res, again := c.writeOnce(ctx, renamed(todo, n))
		maps.Copy(out, res)
		if len(again) == 0 {
			return out
		}
		todo = again
		wait = min(2*wait, time.Second)
	}
}

// renamed returns parts with every record that names the key of its
// retries (Record.retryKey) under its n-th retry's key; parts itself if
// none does, which is the common case.
func renamed(parts map[tp][]Record, n int) map[tp][]Record {
	var out map[tp][]Record
	for p, recs := range parts {
		if !slices.ContainsFunc(recs, func(r Record) bool { return r.retryKey != nil }) {
			continue
		}
		if out == nil {
			out = maps.Clone(parts)
		}
		recs = slices.Clone(recs)
		for i, r := range recs {
			if r.retryKey != nil {
				recs[i].Key = r.retryKey(n)
			}
		}
		out[p] = recs
	}
	if out == nil {
		return parts
	}
	return out
}

// produceParts writes parts, of one topic or several, in one produce
// request (acks from every in-sync replica) when one broker leads them
// all, and in one request per partition, at once, otherwise. Every
// partition of parts gets an outcome.
func produceParts(ctx context.Context, client *kafkago.Client, parts map[tp][]Record) map[tp]partResult {
	if len(parts) == 1 {
		out := make(map[tp]partResult, 1)
		for p, recs := range parts {
			base, err := produce(ctx, client, p.topic, p.part, recs)
			out[p] = partResult{base: base, err: err}
		}
		return out
	}
	req, asked, out := produceRequest(parts, time.Now(), timeoutMs(ctx))
	if len(asked) == 0 {
		return out
	}
	m, err := roundTripper(client).RoundTrip(ctx, client.Addr, req)
	var split *produceAPI.Error
	if errors.As(err, &split) {
		// The partitions have different leaders (or one has none in the
		// transport's metadata): one request each, to its own leader.
		return producePartsApart(ctx, client, parts, out)
	}
	if err != nil {
		for _, p := range asked {
			out[p] = partResult{err: fmt.Errorf("write %d records to %s: %w", len(parts[p]), p, err)}
		}
		return out
	}
	res, _ := m.(*produceAPI.Response)
	readProduceResponse(res, parts, asked, out)
	return out
}

// produceRequest builds the produce request of parts: one RequestTopic per
// topic, sorted by name, each with its partitions in order. It returns the
// partitions it asks for, in that order, and the outcome of those it could
// not put in the request (a record without a key).
func produceRequest(parts map[tp][]Record, now time.Time, timeoutMs int32) (*produceAPI.Request, []tp, map[tp]partResult) {
	req := &produceAPI.Request{Acks: int16(kafkago.RequireAll), Timeout: timeoutMs}
	out := make(map[tp]partResult, len(parts))
	var asked []tp
	for _, p := range slices.SortedFunc(maps.Keys(parts), compareTP) {
		krs, err := kafkaRecords(parts[p], now)
		if err != nil {
			out[p] = partResult{err: fmt.Errorf("write to %s: %w", p, err)}
			continue
		}
		if n := len(req.Topics); n == 0 || req.Topics[n-1].Topic != p.topic {
			req.Topics = append(req.Topics, produceAPI.RequestTopic{Topic: p.topic})
		}
		t := &req.Topics[len(req.Topics)-1]
		t.Partitions = append(t.Partitions, produceAPI.RequestPartition{
			Partition: p.part, RecordSet: protocol.RecordSet{Records: kafkago.NewRecordReader(krs...)}})
		asked = append(asked, p)
	}
	return req, asked, out
}

// readProduceResponse sets in out the outcome of every partition of asked
// from res (nil: no answer): its base offset, its error, or an error
// saying it got no answer. Answers for partitions not asked are ignored.
func readProduceResponse(res *produceAPI.Response, parts map[tp][]Record, asked []tp, out map[tp]partResult) {
	want := make(map[tp]bool, len(asked))
	for _, p := range asked {
		want[p] = true
	}
	if res != nil {
		for _, rt := range res.Topics {
			for _, rp := range rt.Partitions {
				p := tp{rt.Topic, rp.Partition}
				if !want[p] {
					continue
				}
				r := partResult{base: rp.BaseOffset}
				if rp.ErrorCode != 0 {
					r = partResult{err: fmt.Errorf("write %d records to %s: %w", len(parts[p]), p, kafkago.Error(rp.ErrorCode))}
				}
				out[p] = r
			}
		}
	}
	for _, p := range asked {
		if _, ok := out[p]; !ok {
			out[p] = partResult{err: fmt.Errorf("write %d records to %s: no answer for the partition", len(parts[p]), p)}
		}
	}
}

// roundTripper is the transport client sends its requests through.
func roundTripper(client *kafkago.Client) kafkago.RoundTripper {
	if client.Transport != nil {
		return client.Transport
	}
	return kafkago.DefaultTransport
}

// producePartsApart writes each partition of parts not yet in out in a
// request of its own, all at once.
func producePartsApart(ctx context.Context, client *kafkago.Client, parts map[tp][]Record, out map[tp]partResult) map[tp]partResult {
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	// Chosen before the first write starts, since the writes fill out.
	var todo []tp
	for p := range parts {
		if _, failed := out[p]; !failed {
			todo = append(todo, p)
		}
	}
	for _, p := range todo {
		recs := parts[p]
		wg.Go(func() {
			base, err := produce(ctx, client, p.topic, p.part, recs)
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
