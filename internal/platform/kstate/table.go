package kstate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// Table is a topic partition (partition 0) that this process has read in
// full and keeps reading, handing every record to apply in offset order:
// the records of every process, its own included. It is safe for
// concurrent use.
type Table struct {
	cfg    Config
	client *kafkago.Client
	tr     *kafkago.Transport
	apply  func(Record)
	// prod carries the writes: cfg.Producer, or one of its own.
	prod *Producer
	log  *slog.Logger

	mu      sync.Mutex
	applied int64         // the offset after the last record applied
	changed chan struct{} // closed and replaced after each apply

	cancel context.CancelFunc
	done   chan struct{}
}

// OpenTable reads the table's topic from its first record to its end,
// calling apply for each record, and returns once it has; from then on it
// keeps reading in the background, applying what any process writes, until
// Close. apply runs on one goroutine at a time, in offset order; it must
// not call Put (that waits for apply) and should be quick.
func OpenTable(ctx context.Context, cfg Config, apply func(Record)) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("table: %w", err)
	}
	client, tr := cfg.Security.Client(cfg.Brokers, cfg.timeout())
	t := &Table{cfg: cfg, client: client, tr: tr, apply: apply, log: cfg.log().With("table", cfg.Topic),
		changed: make(chan struct{}), done: make(chan struct{})}
	t.prod = cfg.Producer
	if t.prod == nil {
		t.prod = newProducer(client, tr, cfg.timeout())
	}
	t.prod.observeTopic(cfg.Topic, cfg.Metrics.observer(cfg.Topic))
	start := time.Now()
	first, end, err := bounds(ctx, client, cfg.Topic, 0)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("open table %s: %w", cfg.Topic, err)
	}
	r, err := reader(cfg, 0, first)
	if err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("open table %s: %w", cfg.Topic, err)
	}
	t.applied = first
	for t.applied < end {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			r.Close()
			tr.CloseIdleConnections()
			return nil, fmt.Errorf("open table %s: read at %d of %d: %w", cfg.Topic, t.applied, end, err)
		}
		t.applyOne(m)
	}
	if mt := cfg.Metrics; mt != nil {
		mt.restore.WithLabelValues(cfg.Topic).Observe(time.Since(start).Seconds())
		mt.restored.WithLabelValues(cfg.Topic).Add(float64(t.applied - first))
	}
	tctx, cancel := context.WithCancel(context.Background())
	t.cancel = cancel
	go t.tail(tctx, r)
	return t, nil
}

func (t *Table) applyOne(m kafkago.Message) {
	t.apply(fromMessage(m))
	if mt := t.cfg.Metrics; mt != nil {
		mt.applied.WithLabelValues(t.cfg.Topic).Inc()
		mt.appliedTo.WithLabelValues(t.cfg.Topic).Set(float64(m.Offset + 1))
	}
	t.mu.Lock()
	t.applied = m.Offset + 1
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
}

func (t *Table) tail(ctx context.Context, r *kafkago.Reader) {
	defer close(t.done)
	defer r.Close()
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// kafka-go retries broker trouble inside FetchMessage; what
			// comes out is worth a line and a pause, not an exit.
			t.log.Warn("reading the table failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		t.applyOne(m)
	}
}

// Applied returns the offset after the last record applied here.
func (t *Table) Applied() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.applied
}

// waitApplied returns once the record at offset off was applied here.
func (t *Table) waitApplied(ctx context.Context, off int64) error {
	for {
		t.mu.Lock()
		applied, ch := t.applied, t.changed
		t.mu.Unlock()
		if applied > off {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("table %s: waiting to read back offset %d (read up to %d): %w", t.cfg.Topic, off, applied, ctx.Err())
		case <-t.done:
			return fmt.Errorf("table %s: %w", t.cfg.Topic, ErrClosed)
		case <-ch:
		}
	}
}

// ErrClosed is returned by a Table or Changelog used after Close.
var ErrClosed = errors.New("closed")

// Put writes value under key and returns its offset once it is durable
// and applied here. An empty value deletes the key (a tombstone).
func (t *Table) Put(ctx context.Context, key string, value []byte) (int64, error) {
	return t.put(ctx, Record{Key: key, Value: value})
}

// PutRetryAs is Put for a record that must not be in the topic twice
// under one key: when its write is tried again after a retryable failure
// (a dropped connection or a timeout may come after the first try
// landed; a leader change before it, which the committer cannot tell
// apart), the n-th retry (n from 1) writes it under retryKey(n). Compaction keeps only the latest record of a key, so a
// second copy under the same key would, once the cleaner ran, take the
// first one's place in the log for a reader that restores, while readers
// that followed the log saw the first; under distinct keys every reader
// sees every copy where it landed. The reader decides what a copy means
// (budget claims count an id once).
func (t *Table) PutRetryAs(ctx context.Context, key string, value []byte, retryKey func(n int) string) (int64, error) {
	return t.put(ctx, Record{Key: key, Value: value, retryKey: retryKey})
}

func (t *Table) put(ctx context.Context, r Record) (int64, error) {
	select {
	case <-t.done:
		return 0, fmt.Errorf("table %s: %w", t.cfg.Topic, ErrClosed)
	default:
	}
	if err := t.cfg.fenced(); err != nil {
		return 0, fmt.Errorf("table %s: put %q refused: %w", t.cfg.Topic, r.Key, err)
	}
	off, err := t.prod.append(ctx, t.cfg.Topic, 0, []Record{r})
	if err != nil {
		return 0, fmt.Errorf("table %s: put %q: %w", t.cfg.Topic, r.Key, err)
	}
	return off, t.waitApplied(ctx, off)
}

// Delete writes a tombstone for key: see Put.
func (t *Table) Delete(ctx context.Context, key string) (int64, error) { return t.Put(ctx, key, nil) }

// Sync returns once every record written before the call was applied
// here: a read after Sync sees every Put that returned before it,
// whichever process made it.
func (t *Table) Sync(ctx context.Context) error {
	_, end, err := bounds(ctx, t.client, t.cfg.Topic, 0)
	if err != nil {
		return fmt.Errorf("table %s: sync: %w", t.cfg.Topic, err)
	}
	if end == 0 {
		return nil
	}
	return t.waitApplied(ctx, end-1)
}

// Close stops reading and releases the connections (not those of
// Config.Producer).
func (t *Table) Close() error {
	t.cancel()
	<-t.done
	t.tr.CloseIdleConnections()
	return nil
}
