// Package kstate keeps state in Kafka topics, the way Kafka Streams keeps
// its stores: a compacted topic is the durable copy, and each process holds
// what it needs of it in memory.
//
// Two shapes are offered:
//
//   - A Table is one partition that every process reads in full and keeps
//     reading: a replicated key-value table for state every instance must
//     see (silences, a kill switch, budget claims). Put returns once the
//     record is durable and applied in this process, so a process reads its
//     own writes; other processes apply it as soon as their tail fetches it.
//     The log order is the one order every process agrees on, so a fold
//     over it (the revocation budget) gives the same answer everywhere
//     without a protocol of its own.
//   - A Changelog is a topic with one partition per input partition, written
//     only by the partition's current owner and read back by the next owner
//     when the partition moves (Restore). Concurrent Appends to a partition
//     share one produce request (group commit).
//
// A Producer given to several of them (Config.Producer) carries the writes
// of all in one group-commit stream: what they write while a request is
// out goes in the next one, whatever its topic.
//
// Values are opaque bytes; a nil or empty value is a tombstone, which
// compaction eventually drops together with the older values of its key.
// Keys must not be empty.
package kstate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/agentwatch/agentwatch/internal/platform/kafka"
)

// Config says where a Table or Changelog lives.
type Config struct {
	Brokers  []string
	Security kafka.Security
	Topic    string
	// Timeout bounds one request to the brokers (default 10s).
	Timeout time.Duration
	// Log receives retried failures; nil discards them.
	Log *slog.Logger
	// Metrics, when set, counts what the table or changelog does.
	Metrics *Metrics
	// Fence, when set, is asked before every write; an error refuses it
	// (a process that stood still past its group session must write
	// nothing more: see internal/platform/stall).
	Fence func() error
	// Producer, when set, carries the writes, in the produce requests it
	// shares with the other tables and changelogs given it (its Timeout
	// then bounds them, not this one's); the caller closes it after
	// closing those. nil: the table or changelog has a stream of its own.
	Producer *Producer
}

// fenced returns the Fence's error, if any.
func (c Config) fenced() error {
	if c.Fence == nil {
		return nil
	}
	return c.Fence()
}

// Validate reports every problem in c at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: need at least one"))
	}
	if c.Topic == "" {
		errs = append(errs, errors.New("topic: required"))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: must not be negative, got %s", c.Timeout))
	}
	return errors.Join(errs...)
}

func (c Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return 10 * time.Second
}

func (c Config) log() *slog.Logger {
	if c.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Log
}

// Record is one keyed value of a topic. A nil Value is a tombstone.
type Record struct {
	Key       string
	Value     []byte
	Partition int32
	Offset    int64
	Time      time.Time
	// retryKey, when set, names the key of the n-th retry of a write
	// (n from 1): see Table.PutRetryAs.
	retryKey func(n int) string
}

// Tombstone reports whether r deletes its key.
func (r Record) Tombstone() bool { return len(r.Value) == 0 }

// Spec is the topic a Table (partitions 1) or a Changelog needs:
// compacted, so the latest value of every key is kept for good and older
// ones go. Tombstones are kept a day, so a process that restores within a
// day of a delete still sees it.
func Spec(topic string, partitions int) kafka.TopicSpec {
	return kafka.TopicSpec{Name: topic, Partitions: partitions, Configs: map[string]string{
		"cleanup.policy":            "compact",
		"segment.ms":                strconv.FormatInt((time.Hour).Milliseconds(), 10),
		"min.cleanable.dirty.ratio": "0.1",
		"delete.retention.ms":       strconv.FormatInt((24 * time.Hour).Milliseconds(), 10),
	}}
}

// PartitionCount returns the number of partitions of topic.
func PartitionCount(ctx context.Context, brokers []string, sec kafka.Security, topic string) (int, error) {
	client, tr := sec.Client(brokers, 10*time.Second)
	defer tr.CloseIdleConnections()
	md, err := client.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("metadata of topic %s: %w", topic, err)
	}
	for _, t := range md.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return 0, fmt.Errorf("metadata of topic %s: %w", topic, t.Error)
		}
		return len(t.Partitions), nil
	}
	return 0, fmt.Errorf("metadata of topic %s: not in the answer", topic)
}

// bounds returns the first offset and the high watermark (the offset the
// next record will get) of partition p. A topic created a moment ago may
// have no leader yet: that is waited out (up to ctx), as the other
// temporary errors are.
func bounds(ctx context.Context, client *kafkago.Client, topic string, p int32) (first, end int64, err error) {
	wait := 50 * time.Millisecond
	for {
		first, end, err = boundsOnce(ctx, client, topic, p)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return first, end, err
		}
		select {
		case <-ctx.Done():
			return 0, 0, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

func boundsOnce(ctx context.Context, client *kafkago.Client, topic string, p int32) (first, end int64, err error) {
	res, err := client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{
		topic: {kafkago.FirstOffsetOf(int(p)), kafkago.LastOffsetOf(int(p))},
	}})
	if err != nil {
		return 0, 0, fmt.Errorf("offsets of %s/%d: %w", topic, p, err)
	}
	for _, po := range res.Topics[topic] {
		if po.Partition != int(p) {
			continue
		}
		if po.Error != nil {
			return 0, 0, fmt.Errorf("offsets of %s/%d: %w", topic, p, po.Error)
		}
		return po.FirstOffset, po.LastOffset, nil
	}
	return 0, 0, fmt.Errorf("offsets of %s/%d: not in the answer", topic, p)
}

// produce writes recs to partition p with acks from every in-sync replica
// and returns the offset of the first.
func produce(ctx context.Context, client *kafkago.Client, topic string, p int32, recs []Record) (int64, error) {
	krs, err := kafkaRecords(recs, time.Now())
	if err != nil {
		return 0, fmt.Errorf("write to %s/%d: %w", topic, p, err)
	}
	res, err := client.Produce(ctx, &kafkago.ProduceRequest{
		Topic: topic, Partition: int(p), RequiredAcks: kafkago.RequireAll,
		Records: kafkago.NewRecordReader(krs...),
	})
	if err == nil && res.Error != nil {
		err = res.Error
	}
	if err != nil {
		return 0, fmt.Errorf("write %d records to %s/%d: %w", len(recs), topic, p, err)
	}
	return res.BaseOffset, nil
}

// kafkaRecords converts recs for a produce request, stamped now.
func kafkaRecords(recs []Record, now time.Time) ([]kafkago.Record, error) {
	krs := make([]kafkago.Record, len(recs))
	for i, r := range recs {
		if r.Key == "" {
			return nil, errors.New("a record needs a key")
		}
		krs[i] = kafkago.Record{Time: now, Key: kafkago.NewBytes([]byte(r.Key))}
		if len(r.Value) > 0 {
			krs[i].Value = kafkago.NewBytes(r.Value)
		}
	}
	return krs, nil
}

// reader reads partition p of topic from offset.
func reader(cfg Config, p int32, offset int64) (*kafkago.Reader, error) {
	r := kafkago.NewReader(kafkago.ReaderConfig{
		Brokers: cfg.Brokers, Topic: cfg.Topic, Partition: int(p),
		Dialer:   cfg.Security.Dialer(cfg.timeout()),
		MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 250 * time.Millisecond,
		// Without this, kafka-go waits up to ReadBackoffMax between empty fetches.
		ReadBackoffMin: 10 * time.Millisecond, ReadBackoffMax: 100 * time.Millisecond,
	})
	if err := r.SetOffset(offset); err != nil {
		r.Close()
		return nil, fmt.Errorf("read %s/%d from %d: %w", cfg.Topic, p, offset, err)
	}
	return r, nil
}

func fromMessage(m kafkago.Message) Record {
	r := Record{Key: string(m.Key), Partition: int32(m.Partition), Offset: m.Offset, Time: m.Time}
	if len(m.Value) > 0 {
		r.Value = m.Value
	}
	return r
}
