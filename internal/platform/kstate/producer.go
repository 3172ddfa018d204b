package kstate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/agentwatch/agentwatch/internal/platform/kafka"
)

// ProducerConfig says where a Producer writes.
type ProducerConfig struct {
	Brokers  []string
	Security kafka.Security
	// Timeout bounds one group-committed write, its retries included
	// (default 10s). It replaces the Timeout of the Configs that write
	// through the Producer, for their writes.
	Timeout time.Duration
	// Metrics, when set, counts the Producer's own requests (every topic
	// together); each Table and Changelog still counts its topic's share
	// with the Metrics of its Config.
	Metrics *Metrics
}

// Validate reports every problem in c at once.
func (c ProducerConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: need at least one"))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: must not be negative, got %s", c.Timeout))
	}
	return errors.Join(errs...)
}

// Producer is one group-commit produce stream that Tables and Changelogs
// share (Config.Producer): the records of all of them, of every topic and
// partition, that arrive while a produce request is in flight go out
// together in the next one. Each writer still gets its own partition's
// outcome, and a partition written again after a leader change holds back
// only its own later records (see multiCommitter).
//
// A process makes one Producer, hands it to the Configs of its state
// topics, and closes it after closing them. It is safe for concurrent use.
type Producer struct {
	client *kafkago.Client
	tr     *kafkago.Transport
	com    *multiCommitter
	closed atomic.Bool

	mu sync.Mutex
	// observers count each topic's share of a request (Metrics.observer).
	observers map[string]func(int, error)
}

// NewProducer returns a Producer writing to cfg's brokers. It connects
// on its first write.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("state producer: %w", err)
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	client, tr := cfg.Security.Client(cfg.Brokers, timeout)
	p := newProducer(client, tr, timeout)
	p.com.observeRequest = cfg.Metrics.sharedObserver()
	return p, nil
}

// newProducer returns a Producer writing through client and tr.
func newProducer(client *kafkago.Client, tr *kafkago.Transport, timeout time.Duration) *Producer {
	p := &Producer{client: client, tr: tr, observers: map[string]func(int, error){}}
	p.com = newMultiCommitter(timeout, func(ctx context.Context, parts map[tp][]Record) map[tp]partResult {
		return produceParts(ctx, client, parts)
	})
	p.com.observe = p.observe
	return p
}

// observeTopic has fn count topic's share of each request (nil: none).
func (p *Producer) observeTopic(topic string, fn func(int, error)) {
	if fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.observers[topic] = fn
}

func (p *Producer) observe(topic string, n int, err error) {
	p.mu.Lock()
	fn := p.observers[topic]
	p.mu.Unlock()
	if fn != nil {
		fn(n, err)
	}
}

// append returns the offset of recs[0] in partition part of topic once
// every record of recs is durable (see multiCommitter.append).
func (p *Producer) append(ctx context.Context, topic string, part int32, recs []Record) (int64, error) {
	if p.closed.Load() {
		return 0, fmt.Errorf("state producer: %w", ErrClosed)
	}
	return p.com.append(ctx, tp{topic, part}, recs)
}

// Close releases the connections; later writes return ErrClosed. Close
// the Tables and Changelogs that write through p first.
func (p *Producer) Close() error {
	p.closed.Store(true)
	p.tr.CloseIdleConnections()
	return nil
}
