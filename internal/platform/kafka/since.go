package kafka

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

// ReadSince calls fn for every record of topic, on every partition, from
// the first record timestamped at or after since up to the partition's end
// as it was when ReadSince looked. The detector uses it after a restart to
// learn which anomalies already reached the topic.
func ReadSince(ctx context.Context, brokers []string, sec Security, topic string, since time.Time, fn func(bus.Message) error) error {
	// Dial the first broker that answers; cmd/kafkawait repeats this loop
	// on purpose, as it imports nothing of ours.
	d := sec.dialer(10 * time.Second)
	var conn *kafkago.Conn
	var err error
	for _, b := range brokers {
		if conn, err = d.DialContext(ctx, "tcp", b); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("dial %v: %w", brokers, err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		return fmt.Errorf("metadata of %s: %w", topic, err)
	}
	for _, p := range parts {
		if err := readPartitionSince(ctx, d, brokers, topic, p, since, fn); err != nil {
			return err
		}
	}
	return nil
}

func readPartitionSince(ctx context.Context, d *kafkago.Dialer, brokers []string, topic string, p kafkago.Partition, since time.Time, fn func(bus.Message) error) error {
	leader := net.JoinHostPort(p.Leader.Host, strconv.Itoa(p.Leader.Port))
	lc, err := d.DialLeader(ctx, "tcp", leader, topic, p.ID)
	if err != nil {
		return fmt.Errorf("dial leader of %s/%d: %w", topic, p.ID, err)
	}
	first, err := lc.ReadOffset(since)
	if err == nil {
		var last int64
		last, err = lc.ReadLastOffset()
		// Kafka answers -1 when no record is that recent.
		if err == nil && (first < 0 || first >= last) {
			lc.Close()
			return nil
		}
		lc.Close()
		if err != nil {
			return fmt.Errorf("end offset of %s/%d: %w", topic, p.ID, err)
		}
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p.ID, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 200 * time.Millisecond, Dialer: d})
		defer r.Close()
		if err := r.SetOffset(first); err != nil {
			return fmt.Errorf("seek %s/%d: %w", topic, p.ID, err)
		}
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				return fmt.Errorf("read %s/%d: %w", topic, p.ID, err)
			}
			if err := fn(fromKafka(m)); err != nil {
				return err
			}
			if m.Offset >= last-1 {
				return nil
			}
		}
	}
	lc.Close()
	return fmt.Errorf("offset of %s/%d at %s: %w", topic, p.ID, since.Format(time.RFC3339), err)
}
