// Package ingest is cmd/ingest's stage: it reads raw gateway access-log
// records from the input topics, parses and normalises them into canonical
// events, writes each batch to the event store, publishes the events keyed by
// agent id and only then commits the input offsets. Records that cannot
// become events go to the dead-letter topic with their reason before their
// offset is committed, so nothing is lost and no bad line stops a partition.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/retry"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/gateway"
)

// Dead-letter record headers. The value is the raw record (truncated to
// Options.DeadLetterMaxBytes, with HeaderOriginalSize saying so).
const (
	HeaderReason          = "agentwatch-reason"
	HeaderError           = "agentwatch-error"
	HeaderSourceTopic     = "agentwatch-source-topic"
	HeaderSourcePartition = "agentwatch-source-partition"
	HeaderSourceOffset    = "agentwatch-source-offset"
	HeaderOriginalSize    = "agentwatch-original-size"
	HeaderIngestTime      = "agentwatch-ingest-time-ms"
)

// EventStore keeps canonical events. A retried InsertEvents of the same
// events must not leave duplicates visible to deduplicating reads (ClickHouse
// does it with ReplacingMergeTree keyed by event_id).
type EventStore interface {
	InsertEvents(ctx context.Context, evs []event.Event) error
}

// Options tune an Ingester. The zero value of each field means its default.
type Options struct {
	// EventsTopic receives canonical events keyed by agent id.
	EventsTopic string
	// DeadLetterTopic receives records that could not become events.
	DeadLetterTopic string
	// BatchSize bounds the records per batch; default 20000.
	BatchSize int
	// BatchBytes bounds the raw bytes per batch, so memory stays bounded
	// when lines are large; default 32 MiB.
	BatchBytes int
	// BatchWait bounds how long a batch stays open after its first record; default 500ms.
	BatchWait time.Duration
	// Parser configures parsing; Parser.Format is the default format.
	Parser gateway.Options
	// TopicFormats overrides the format per input topic.
	TopicFormats map[string]string
	// RetryInitial and RetryMax bound the backoff between retried writes; defaults 100ms and 10s.
	RetryInitial, RetryMax time.Duration
	// ShutdownGrace is how long a shutdown may spend flushing the open
	// batch; default 30s. What is not committed by then is re-read on restart.
	ShutdownGrace time.Duration
	// DeadLetterMaxBytes caps the raw bytes copied into a dead-letter record; default 256 KiB.
	DeadLetterMaxBytes int
	// ParseWorkers parse each batch in parallel; default GOMAXPROCS.
	ParseWorkers int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// setDefaults fills the zero fields; alike in shape to the detector's
// defaults, with other fields and values.
func (o *Options) setDefaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 20000
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 32 << 20
	}
	if o.BatchWait <= 0 {
		o.BatchWait = 500 * time.Millisecond
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = 100 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 10 * time.Second
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = 30 * time.Second
	}
	if o.DeadLetterMaxBytes <= 0 {
		o.DeadLetterMaxBytes = 256 << 10
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ParseWorkers <= 0 {
		o.ParseWorkers = runtime.GOMAXPROCS(0)
	}
}

// Ingester is the ingest stage: fetch → parse → store and publish → commit,
// as a pipeline with one batch in each step, so a slow or failing sink
// slows or stops reading instead of growing memory. Not safe for concurrent
// Run calls; the caller owns and closes the reader and writers.
type Ingester struct {
	reader bus.Reader
	store  EventStore
	events bus.Writer
	dlq    bus.Writer
	opts   Options
	log    *slog.Logger
	m      *Metrics

	// workers are independent parser sets, one per parsing goroutine,
	// because a gateway.Parser reuses buffers and is not safe to share.
	workers []parserSet

	mu sync.Mutex
	// failing holds the last error of each target being retried; the
	// store and the events topic retry concurrently, so there may be two.
	failing map[string]error
	stats   Stats
}

// Stats are running totals, for the demo's console and for tests.
type Stats struct {
	Records, Events, DeadLettered, Committed, Batches uint64
	ByReason                                          map[string]uint64
	// FirstFetch is when the first record arrived (after the group join).
	FirstFetch time.Time
}

// New checks the options and builds an Ingester.
func New(reader bus.Reader, store EventStore, events, deadLetter bus.Writer, opts Options, log *slog.Logger, m *Metrics) (*Ingester, error) {
	opts.setDefaults()
	if opts.EventsTopic == "" || opts.DeadLetterTopic == "" {
		return nil, errors.New("ingest: events and dead-letter topics must be set")
	}
	in := &Ingester{
		reader: reader, store: store, events: events, dlq: deadLetter,
		opts: opts, log: log.With("stage", "ingest"), m: m,
	}
	in.stats.ByReason = make(map[string]uint64)
	for range opts.ParseWorkers {
		ps, err := newParserSet(opts)
		if err != nil {
			return nil, err
		}
		in.workers = append(in.workers, ps)
	}
	return in, nil
}

// parserSet holds the default parser and the per-topic overrides.
type parserSet struct {
	def     *gateway.Parser
	byTopic map[string]*gateway.Parser
}

func newParserSet(opts Options) (parserSet, error) {
	def, err := gateway.NewParser(opts.Parser)
	if err != nil {
		return parserSet{}, fmt.Errorf("ingest: parser: %w", err)
	}
	ps := parserSet{def: def, byTopic: make(map[string]*gateway.Parser)}
	for topic, format := range opts.TopicFormats {
		po := opts.Parser
		po.Format = format
		p, err := gateway.NewParser(po)
		if err != nil {
			return parserSet{}, fmt.Errorf("ingest: parser for topic %s: %w", topic, err)
		}
		ps.byTopic[topic] = p
	}
	return ps, nil
}

func (ps parserSet) forTopic(topic string) *gateway.Parser {
	if p, ok := ps.byTopic[topic]; ok {
		return p
	}
	return ps.def
}

// Ready reports an error while a write is being retried, for /readyz.
func (in *Ingester) Ready(context.Context) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	var errs []error
	for target, err := range in.failing {
		errs = append(errs, fmt.Errorf("retrying %s: %w", target, err))
	}
	return errors.Join(errs...)
}

// Stats returns a copy of the running totals. Safe for concurrent use.
func (in *Ingester) Stats() Stats {
	in.mu.Lock()
	defer in.mu.Unlock()
	s := in.stats
	s.ByReason = make(map[string]uint64, len(in.stats.ByReason))
	for k, v := range in.stats.ByReason {
		s.ByReason[k] = v
	}
	return s
}

// Run implements pipeline.Stage. When ctx is done it stops fetching, then
// flushes and commits the open batch within ShutdownGrace.
func (in *Ingester) Run(ctx context.Context) error {
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(in.opts.ShutdownGrace, cancelWork)
		<-work.Done()
		t.Stop()
	})
	defer stop()

	// Fetching, parsing and writing run as a three-stage pipeline so that
	// Kafka consumption and parsing overlap the ClickHouse insert; memory
	// stays bounded by three batches, and commits remain in fetch order.
	fetchCtx, cancelFetch := context.WithCancel(ctx)
	defer cancelFetch()
	batches := make(chan []bus.Message)
	fetchErr := make(chan error, 1)
	go func() {
		defer close(batches)
		for {
			batch, err := in.fetchBatch(fetchCtx, make([]bus.Message, 0, min(in.opts.BatchSize, 4096)))
			if len(batch) > 0 {
				select {
				case batches <- batch:
				case <-work.Done():
					return
				}
			}
			if fetchCtx.Err() != nil {
				return
			}
			if err != nil {
				fetchErr <- err
				return
			}
		}
	}()
	// A second goroutine parses batch N+1 while this one writes batch N.
	parsedc := make(chan *parsed)
	go func() {
		defer close(parsedc)
		for batch := range batches {
			select {
			case parsedc <- in.parse(batch):
			case <-work.Done():
				for range batches {
				}
				return
			}
		}
	}()
	for p := range parsedc {
		if err := in.write(work, p); err != nil {
			cancelFetch()
			for range parsedc {
				// Drain so the fetcher and parser can exit; these records
				// are not committed and will be re-read.
			}
			if ctx.Err() != nil {
				in.log.Warn("shutdown grace expired before the open batch was committed; it will be re-read", "records", len(p.batch), "err", err)
				return nil
			}
			return err
		}
	}
	select {
	case err := <-fetchErr:
		return fmt.Errorf("fetch raw records: %w", err)
	default:
		return nil
	}
}

// fetchBatch reads until the batch is full (BatchSize records or
// BatchBytes raw bytes), BatchWait has passed since its
// first record, or ctx is done (then what was read is returned for flushing).
func (in *Ingester) fetchBatch(ctx context.Context, batch []bus.Message) ([]bus.Message, error) {
	fctx := ctx
	size := 0
	for len(batch) < in.opts.BatchSize && size < in.opts.BatchBytes {
		m, err := in.reader.Fetch(fctx)
		if err != nil {
			if ctx.Err() != nil || (len(batch) > 0 && errors.Is(err, context.DeadlineExceeded)) {
				return batch, nil
			}
			return batch, err
		}
		if len(batch) == 0 {
			in.mu.Lock()
			if in.stats.FirstFetch.IsZero() {
				in.stats.FirstFetch = time.Now()
			}
			in.mu.Unlock()
			var cancel context.CancelFunc
			fctx, cancel = context.WithTimeout(ctx, in.opts.BatchWait)
			defer cancel()
			if !m.Time.IsZero() {
				in.m.InputLag.Set(time.Since(m.Time).Seconds())
			}
		}
		batch = append(batch, m)
		size += len(m.Value)
	}
	return batch, nil
}

// parsed is one fetched batch, split into events and dead letters.
type parsed struct {
	batch        []bus.Message
	evs          []event.Event
	out          []bus.Message // evs encoded for the events topic
	bad          []bus.Message
	unattributed int
	start        time.Time
}

// parse splits batch into chunks parsed in parallel, one per worker, and
// concatenates the results in order.
func (in *Ingester) parse(batch []bus.Message) *parsed {
	p := &parsed{batch: batch, start: time.Now()}
	now := in.opts.Now()
	n := len(in.workers)
	if len(batch) < 1024 {
		n = 1
	}
	type part struct {
		evs          []event.Event
		bad          []bus.Message
		unattributed int
	}
	parts := make([]part, n)
	chunk := (len(batch) + n - 1) / n
	var wg sync.WaitGroup
	for w := range n {
		lo, hi := w*chunk, min((w+1)*chunk, len(batch))
		if lo >= hi {
			continue
		}
		wg.Go(func() {
			ps := in.workers[w]
			pt := &parts[w]
			pt.evs = make([]event.Event, 0, hi-lo)
			for i := lo; i < hi; i++ {
				m := &batch[i]
				ev, err := ps.forTopic(m.Topic).Parse(m.Value, gateway.Source{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}, now)
				if err != nil {
					pt.bad = append(pt.bad, in.deadLetter(m, err, now))
					continue
				}
				if ev.Unattributed {
					pt.unattributed++
				}
				pt.evs = append(pt.evs, ev)
			}
		})
	}
	wg.Wait()
	if n == 1 {
		p.evs, p.bad, p.unattributed = parts[0].evs, parts[0].bad, parts[0].unattributed
	} else {
		p.evs = make([]event.Event, 0, len(batch))
		for _, pt := range parts {
			p.evs = append(p.evs, pt.evs...)
			p.bad = append(p.bad, pt.bad...)
			p.unattributed += pt.unattributed
		}
	}
	p.out = encodeEvents(in.opts.EventsTopic, p.evs)
	return p
}

// write stores one parsed batch: dead letters, events to the store and the
// events topic, then the commit. Each step is retried until it succeeds or
// ctx ends, so a step retried after a partial success only repeats
// idempotent writes (the store dedups by event_id, consumers of the topics
// by event_id or source coordinates).
func (in *Ingester) write(ctx context.Context, p *parsed) error {
	batch := p.batch
	start := p.start
	if len(p.bad) > 0 {
		if err := in.retry(ctx, "dead_letter", func(ctx context.Context) error { return in.dlq.Write(ctx, p.bad...) }); err != nil {
			return err
		}
	}
	if len(p.evs) > 0 {
		// The store and the events topic are independent, so they are
		// written at the same time; the commit waits for both.
		var g errgroup.Group
		g.Go(func() error {
			return in.retry(ctx, "store", func(ctx context.Context) error { return in.store.InsertEvents(ctx, p.evs) })
		})
		g.Go(func() error {
			return in.retry(ctx, "events", func(ctx context.Context) error { return in.events.Write(ctx, p.out...) })
		})
		if err := g.Wait(); err != nil {
			return err
		}
	}
	if err := in.retry(ctx, "commit", func(ctx context.Context) error { return in.reader.Commit(ctx, batch...) }); err != nil {
		return err
	}

	in.m.Records.Add(float64(len(batch)))
	in.m.Events.Add(float64(len(p.evs)))
	in.m.Unattributed.Add(float64(p.unattributed))
	in.m.Committed.Add(float64(len(batch)))
	in.m.Batches.Inc()
	in.m.BatchSize.Observe(float64(len(batch)))
	in.m.BatchSecs.Observe(time.Since(start).Seconds())
	in.mu.Lock()
	in.stats.Records += uint64(len(batch))
	in.stats.Events += uint64(len(p.evs))
	in.stats.DeadLettered += uint64(len(p.bad))
	in.stats.Committed += uint64(len(batch))
	in.stats.Batches++
	for _, b := range p.bad {
		in.stats.ByReason[string(b.HeaderValue(HeaderReason))]++
	}
	in.mu.Unlock()
	in.log.Debug("batch committed", "records", len(batch), "events", len(p.evs), "dead_lettered", len(p.bad), "took", time.Since(start))
	return nil
}

func (in *Ingester) deadLetter(m *bus.Message, err error, now time.Time) bus.Message {
	reason := gateway.ReasonBadField
	var pe *gateway.ParseError
	if errors.As(err, &pe) {
		reason = pe.Reason
	}
	in.m.Dropped.WithLabelValues(reason).Inc()
	msg := err.Error()
	if len(msg) > 512 {
		msg = msg[:512]
	}
	value := m.Value
	headers := []bus.Header{
		{Key: HeaderReason, Value: []byte(reason)},
		{Key: HeaderError, Value: []byte(msg)},
		{Key: HeaderSourceTopic, Value: []byte(m.Topic)},
		{Key: HeaderSourcePartition, Value: strconv.AppendInt(nil, int64(m.Partition), 10)},
		{Key: HeaderSourceOffset, Value: strconv.AppendInt(nil, m.Offset, 10)},
		{Key: HeaderIngestTime, Value: strconv.AppendInt(nil, now.UnixMilli(), 10)},
	}
	if len(value) > in.opts.DeadLetterMaxBytes {
		headers = append(headers, bus.Header{Key: HeaderOriginalSize, Value: strconv.AppendInt(nil, int64(len(value)), 10)})
		value = value[:in.opts.DeadLetterMaxBytes]
	}
	return bus.Message{Topic: in.opts.DeadLetterTopic, Key: m.Key, Value: value, Headers: headers}
}

// encodeEvents renders evs into one buffer and slices it into records keyed
// by agent id (by source address for unattributed events, so one noisy
// unidentified client does not land every such event on one partition).
func encodeEvents(topic string, evs []event.Event) []bus.Message {
	out := make([]bus.Message, len(evs))
	ends := make([]int, len(evs))
	buf := make([]byte, 0, len(evs)*640)
	for i := range evs {
		buf = event.AppendJSON(buf, &evs[i])
		ends[i] = len(buf)
	}
	start := 0
	for i := range evs {
		out[i] = bus.Message{Topic: topic, Key: []byte(evs[i].PartitionKey()), Value: buf[start:ends[i]:ends[i]]}
		start = ends[i]
	}
	return out
}

// retry runs f until it succeeds or ctx ends, backing off exponentially with
// jitter. While it retries, Ready reports the failing target.
func (in *Ingester) retry(ctx context.Context, target string, f func(context.Context) error) error {
	p := retry.Policy{
		Backoff: retry.Backoff{Base: in.opts.RetryInitial, Max: in.opts.RetryMax},
		OnRetry: func(attempt int, wait time.Duration, err error) {
			in.m.Retries.WithLabelValues(target).Inc()
			in.mu.Lock()
			if in.failing == nil {
				in.failing = make(map[string]error)
			}
			in.failing[target] = err
			in.mu.Unlock()
			in.log.Warn("write failed; retrying", "target", target, "attempt", attempt, "backoff", wait, "err", err)
		},
	}
	attempts, err := p.Do(ctx, f)
	if err != nil {
		return fmt.Errorf("write to %s: %w", target, err)
	}
	if attempts > 1 {
		in.log.Info("write recovered", "target", target, "attempts", attempts)
		in.mu.Lock()
		delete(in.failing, target)
		in.mu.Unlock()
	}
	return nil
}
