// Package membus is an in-process implementation of the bus interfaces for
// the embedded default: partitioned topics keyed like Kafka, consumer groups
// with committed offsets, and records trimmed once every group has committed
// past them so a long demo does not grow without bound.
//
// A group has one member at a time here: scaling out past one process is what
// Kafka is for.
package membus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

// ErrClosed is returned by readers and writers of a closed Broker.
var ErrClosed = errors.New("membus: closed")

// Broker holds the topics. Safe for concurrent use.
type Broker struct {
	mu      sync.Mutex
	topics  map[string]*topic
	closed  bool
	wake    chan struct{} // closed and replaced on every write
	maxKeep int
}

type topic struct {
	parts []*partition
	// committed[group][partition] is the next offset the group will read.
	committed map[string][]int64
}

type partition struct {
	base int64 // offset of msgs[0]
	msgs []bus.Message
}

// New returns a broker. maxBacklog bounds the records kept per partition that
// some group has not committed yet; a writer that would exceed it blocks,
// which is the embedded mode's backpressure. 0 means 1<<16.
func New(maxBacklog int) *Broker {
	if maxBacklog <= 0 {
		maxBacklog = 1 << 16
	}
	return &Broker{topics: make(map[string]*topic), wake: make(chan struct{}), maxKeep: maxBacklog}
}

// CreateTopic creates name with n partitions; creating an existing topic is a no-op.
func (b *Broker) CreateTopic(name string, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.topics[name]; ok {
		return
	}
	if n <= 0 {
		n = 1
	}
	t := &topic{committed: make(map[string][]int64)}
	for range n {
		t.parts = append(t.parts, &partition{})
	}
	b.topics[name] = t
}

// Close wakes every blocked reader and writer with ErrClosed.
func (b *Broker) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.closed {
		b.closed = true
		close(b.wake)
	}
}

func (b *Broker) signal() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// Writer returns a writer to topic (or, when topic is "", to each message's Topic).
func (b *Broker) Writer(topic string) *Writer { return &Writer{b: b, topic: topic} }

// Reader returns a reader of topics for group. It starts at the group's
// committed offsets, or at the beginning.
func (b *Broker) Reader(group string, topics ...string) (*Reader, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, name := range topics {
		t, ok := b.topics[name]
		if !ok {
			return nil, fmt.Errorf("membus: reader for group %s: unknown topic %q", group, name)
		}
		if _, ok := t.committed[group]; !ok {
			offs := make([]int64, len(t.parts))
			for i, p := range t.parts {
				offs[i] = p.base
			}
			t.committed[group] = offs
		}
	}
	r := &Reader{b: b, group: group, topics: topics, next: make(map[string][]int64)}
	for _, name := range topics {
		r.next[name] = append([]int64(nil), b.topics[name].committed[group]...)
	}
	return r, nil
}

// Writer implements bus.Writer. Safe for concurrent use.
type Writer struct {
	b     *Broker
	topic string
}

var _ bus.Writer = (*Writer)(nil)

// Write appends msgs; keys choose partitions the way a hash partitioner does.
func (w *Writer) Write(ctx context.Context, msgs ...bus.Message) error {
	for _, m := range msgs {
		name := w.topic
		if name == "" {
			name = m.Topic
		}
		if err := w.b.append(ctx, name, m); err != nil {
			return err
		}
	}
	return nil
}

// Close implements bus.Writer.
func (w *Writer) Close() error { return nil }

func (b *Broker) append(ctx context.Context, name string, m bus.Message) error {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return ErrClosed
		}
		t, ok := b.topics[name]
		if !ok {
			b.mu.Unlock()
			return fmt.Errorf("membus: write to unknown topic %q", name)
		}
		pi := 0
		if len(m.Key) > 0 {
			h := fnv.New32a()
			_, _ = h.Write(m.Key)
			pi = int(h.Sum32() % uint32(len(t.parts)))
		} else {
			pi = int(time.Now().UnixNano() % int64(len(t.parts)))
		}
		p := t.parts[pi]
		if len(p.msgs) < b.maxKeep || len(t.committed) == 0 {
			m.Topic, m.Partition, m.Offset = name, int32(pi), p.base+int64(len(p.msgs))
			if m.Time.IsZero() {
				m.Time = time.Now()
			}
			p.msgs = append(p.msgs, m)
			if len(t.committed) == 0 && len(p.msgs) > b.maxKeep {
				// Nobody reads this topic: keep only the newest records.
				drop := len(p.msgs) - b.maxKeep
				p.msgs = append(p.msgs[:0:0], p.msgs[drop:]...)
				p.base += int64(drop)
			}
			b.signal()
			b.mu.Unlock()
			return nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// Reader implements bus.Reader for one group member.
type Reader struct {
	b      *Broker
	group  string
	topics []string
	next   map[string][]int64
	rr     int
}

var _ bus.Reader = (*Reader)(nil)

// Fetch implements bus.Reader, taking partitions in turn so none starves.
func (r *Reader) Fetch(ctx context.Context) (bus.Message, error) {
	for {
		r.b.mu.Lock()
		if r.b.closed {
			r.b.mu.Unlock()
			return bus.Message{}, ErrClosed
		}
		total := 0
		for _, name := range r.topics {
			total += len(r.b.topics[name].parts)
		}
		for i := range total {
			name, pi := r.locate((r.rr + i) % total)
			p := r.b.topics[name].parts[pi]
			off := r.next[name][pi]
			if off < p.base {
				off = p.base
			}
			if idx := off - p.base; idx < int64(len(p.msgs)) {
				m := p.msgs[idx]
				r.next[name][pi] = off + 1
				r.rr = (r.rr + i + 1) % total
				r.b.mu.Unlock()
				return m, nil
			}
		}
		wake := r.b.wake
		r.b.mu.Unlock()
		select {
		case <-ctx.Done():
			return bus.Message{}, ctx.Err()
		case <-wake:
		}
	}
}

func (r *Reader) locate(i int) (string, int) {
	for _, name := range r.topics {
		n := len(r.b.topics[name].parts)
		if i < n {
			return name, i
		}
		i -= n
	}
	panic("membus: partition index out of range")
}

// Commit implements bus.Reader.
func (r *Reader) Commit(_ context.Context, msgs ...bus.Message) error {
	r.b.mu.Lock()
	defer r.b.mu.Unlock()
	if r.b.closed {
		return ErrClosed
	}
	for _, m := range msgs {
		t, ok := r.b.topics[m.Topic]
		if !ok || int(m.Partition) >= len(t.parts) {
			return fmt.Errorf("membus: commit of unknown partition %s/%d", m.Topic, m.Partition)
		}
		c := t.committed[r.group]
		if m.Offset+1 > c[m.Partition] {
			c[m.Partition] = m.Offset + 1
		}
		r.b.trim(t, int(m.Partition))
	}
	r.b.signal()
	return nil
}

// trim drops records every group has committed.
func (b *Broker) trim(t *topic, pi int) {
	p := t.parts[pi]
	low := p.base + int64(len(p.msgs))
	for _, c := range t.committed {
		low = min(low, c[pi])
	}
	if drop := low - p.base; drop > 0 {
		// Release the records, then drop them by re-slicing; copy the rest
		// to a fresh array only once the dead prefix outweighs it, so that
		// trimming stays linear however large the backlog is.
		clear(p.msgs[:drop])
		p.msgs = p.msgs[drop:]
		if len(p.msgs) < cap(p.msgs)/4 && cap(p.msgs) > 1024 {
			p.msgs = append(make([]bus.Message, 0, 2*len(p.msgs)+64), p.msgs...)
		}
		p.base = low
	}
}

// Lag returns how many records of topic the group has not committed yet.
func (b *Broker) Lag(group, name string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.topics[name]
	if !ok {
		return 0
	}
	c, ok := t.committed[group]
	var lag int64
	for i, p := range t.parts {
		end := p.base + int64(len(p.msgs))
		if ok {
			lag += end - c[i]
		} else {
			lag += end - p.base
		}
	}
	return lag
}

// Close implements bus.Reader.
func (r *Reader) Close() error { return nil }
