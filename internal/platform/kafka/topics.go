package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// TopicSpec describes a topic for EnsureTopics.
type TopicSpec struct {
	Name string
	// Partitions is the partition count; 0 takes the broker's num.partitions.
	Partitions int
	// ReplicationFactor is the replica count; 0 takes the broker's
	// default.replication.factor.
	ReplicationFactor int
	// Configs are topic-level settings such as "retention.ms".
	Configs map[string]string
}

// ensureTimeout bounds EnsureTopics when ctx has no deadline of its own.
const ensureTimeout = 30 * time.Second

// EnsureTopics creates the topics that do not exist and then waits until
// every one of them is in the cluster metadata with a leader for each
// partition, so that a Writer or Reader created next does not race the
// controller. A topic that already exists is left alone, whatever its
// partition count or configs: changing a live topic is an operator's call.
// It is idempotent and safe for concurrent use.
func EnsureTopics(ctx context.Context, brokers []string, sec Security, topics ...TopicSpec) error {
	if len(brokers) == 0 {
		return errors.New("ensure topics: need at least one broker")
	}
	if len(topics) == 0 {
		return nil
	}
	var errs []error
	req := &kafkago.CreateTopicsRequest{Topics: make([]kafkago.TopicConfig, 0, len(topics))}
	names := make([]string, 0, len(topics))
	for _, t := range topics {
		if t.Name == "" || t.Partitions < 0 || t.ReplicationFactor < 0 {
			errs = append(errs, fmt.Errorf("topic %q: need a name and non-negative partitions and replication factor, got %d and %d", t.Name, t.Partitions, t.ReplicationFactor))
			continue
		}
		tc := kafkago.TopicConfig{
			Topic:             t.Name,
			NumPartitions:     orInt(t.Partitions, -1), // -1: the broker's default (CreateTopics v4+)
			ReplicationFactor: orInt(t.ReplicationFactor, -1),
		}
		keys := make([]string, 0, len(t.Configs))
		for k := range t.Configs {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			tc.ConfigEntries = append(tc.ConfigEntries, kafkago.ConfigEntry{ConfigName: k, ConfigValue: t.Configs[k]})
		}
		req.Topics = append(req.Topics, tc)
		names = append(names, t.Name)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("ensure topics: %w", err)
	}

	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ensureTimeout)
		defer cancel()
	}

	// A transport of our own: the shared default one would keep idle
	// connections and a metadata cache alive after we return.
	tr := sec.transport(10*time.Second, 0)
	defer tr.CloseIdleConnections()
	client := &kafkago.Client{Addr: kafkago.TCP(brokers...), Transport: tr}
	res, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics %v: %w; check that the brokers %v are up (deploy/kafka.sh status)", names, err, brokers)
	}
	for _, name := range names {
		if err := res.Errors[name]; err != nil && !errors.Is(err, kafkago.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return waitForLeaders(ctx, brokers, sec, names)
}

// waitForLeaders polls metadata on a fresh connection each time: kafka-go's
// Transport answers Metadata from a cache, which is exactly what must not
// be trusted right after a create.
func waitForLeaders(ctx context.Context, brokers []string, sec Security, names []string) error {
	var last error
	for {
		last = leadersReady(ctx, brokers, sec, names)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for leaders of %v: %w (last: %v)", names, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func leadersReady(ctx context.Context, brokers []string, sec Security, names []string) error {
	var conn *kafkago.Conn
	var err error
	d := sec.dialer(5 * time.Second)
	for _, b := range brokers {
		if conn, err = d.DialContext(ctx, "tcp", b); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	parts, err := conn.ReadPartitions(names...)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	seen := make(map[string]int, len(names))
	for _, p := range parts {
		if p.Leader.Host == "" {
			return fmt.Errorf("topic %s partition %d has no leader yet", p.Topic, p.ID)
		}
		if p.Error != nil {
			return fmt.Errorf("topic %s partition %d: %w", p.Topic, p.ID, p.Error)
		}
		seen[p.Topic]++
	}
	for _, n := range names {
		if seen[n] == 0 {
			return fmt.Errorf("topic %s not in metadata yet", n)
		}
	}
	return nil
}
