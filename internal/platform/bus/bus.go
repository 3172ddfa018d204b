// Package bus defines the message-log abstraction the services run on: a
// partitioned, offset-committed log of keyed records. Kafka (internal/platform/kafka)
// implements it for the distributed mode and internal/platform/bus/membus in-process
// for the embedded default, so every stage is written once against these
// interfaces.
package bus

import (
	"context"
	"time"
)

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Message is one record read from or written to a topic. Topic, Partition
// and Offset are set on records read; on records written, Topic selects the
// topic when the writer serves several and Key selects the partition.
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Time      time.Time
}

// HeaderValue returns the value of the first header named key, or nil.
func (m *Message) HeaderValue(key string) []byte {
	for _, h := range m.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}

// Reader reads records as a member of a consumer group. Offsets are only
// committed by Commit, never implicitly, which gives at-least-once delivery.
// Fetch is called by one goroutine at a time, but Commit may be called
// concurrently with Fetch (ingest fetches the next batch while it commits the
// last). The caller owns the Reader and must Close it.
type Reader interface {
	// Fetch blocks until a record is available or ctx is done.
	Fetch(ctx context.Context) (Message, error)
	// Commit marks msgs (and everything before them on their partitions)
	// as processed for the group.
	Commit(ctx context.Context, msgs ...Message) error
	Close() error
}

// Writer writes records and returns only once they are acknowledged, so a
// nil error means the records are durable in the log. Safe for concurrent
// use; the caller owns it and must Close it.
type Writer interface {
	Write(ctx context.Context, msgs ...Message) error
	Close() error
}
