package kafka

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

func brokers(t *testing.T) []string {
	t.Helper()
	v := os.Getenv("TEST_KAFKA_BROKERS")
	if v == "" {
		if os.Getenv("REQUIRE_INTEGRATION") != "" {
			t.Fatal("TEST_KAFKA_BROKERS not set but REQUIRE_INTEGRATION is: the services did not start")
		}
		t.Skip("TEST_KAFKA_BROKERS not set; run deploy/kafka.sh up and TEST_KAFKA_BROKERS=127.0.0.1:9092")
	}
	return strings.Split(v, ",")
}

// unique names a topic or group for this run only, so reruns against the
// same long-lived broker never see a previous run's records or offsets.
func unique(t *testing.T, what string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return fmt.Sprintf("it-%s-%s-%d-%s", what, name, time.Now().UnixMilli(), hex.EncodeToString(b[:]))
}

// dropAfter deletes the topics when the test ends, so that the long-lived
// local broker does not pile up test topics run after run.
func dropAfter(t *testing.T, bs []string, topics ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tr := &kafkago.Transport{}
		defer tr.CloseIdleConnections()
		res, err := (&kafkago.Client{Addr: kafkago.TCP(bs...), Transport: tr}).DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: topics})
		if err != nil {
			t.Logf("delete test topics %v: %v", topics, err)
			return
		}
		for name, err := range res.Errors {
			if err != nil && !errors.Is(err, kafkago.UnknownTopicOrPartition) {
				t.Logf("delete test topic %s: %v", name, err)
			}
		}
	})
}

func ensure(t *testing.T, ctx context.Context, bs []string, partitions int) string {
	t.Helper()
	topic := unique(t, "topic")
	dropAfter(t, bs, topic)
	if err := EnsureTopics(ctx, bs, Security{}, TopicSpec{Name: topic, Partitions: partitions, ReplicationFactor: 1}); err != nil {
		t.Fatalf("EnsureTopics(%s): %v", topic, err)
	}
	return topic
}

func partitionCount(t *testing.T, bs []string, topic string) int {
	t.Helper()
	conn, err := kafkago.Dial("tcp", bs[0])
	if err != nil {
		t.Fatalf("dial %s: %v", bs[0], err)
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatalf("ReadPartitions(%s): %v", topic, err)
	}
	return len(parts)
}

func newReader(t *testing.T, bs []string, group string, topics ...string) *Reader {
	t.Helper()
	r, err := NewReader(ReaderConfig{Brokers: bs, GroupID: group, Topics: topics}, nil)
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	return r
}

func TestIntegrationEnsureTopics(t *testing.T) {
	bs := brokers(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	a, b, rf := unique(t, "a"), unique(t, "b"), unique(t, "rf")
	dropAfter(t, bs, a, b, rf)
	specs := []TopicSpec{
		{Name: a, Partitions: 6, ReplicationFactor: 1, Configs: map[string]string{"retention.ms": "3600000"}},
		{Name: b, Partitions: 2, ReplicationFactor: 1},
	}
	if err := EnsureTopics(ctx, bs, Security{}, specs...); err != nil {
		t.Fatalf("first EnsureTopics: %v", err)
	}
	// The second call finds both topics and must succeed without change,
	// even when asked for a different partition count.
	specs[1].Partitions = 4
	if err := EnsureTopics(ctx, bs, Security{}, specs...); err != nil {
		t.Fatalf("second EnsureTopics: %v", err)
	}
	if got := partitionCount(t, bs, a); got != 6 {
		t.Errorf("%s has %d partitions, want 6", a, got)
	}
	if got := partitionCount(t, bs, b); got != 2 {
		t.Errorf("%s has %d partitions, want 2 (an existing topic is left alone)", b, got)
	}
	// The per-topic config must have reached the broker.
	res, err := (&kafkago.Client{Addr: kafkago.TCP(bs...)}).DescribeConfigs(ctx, &kafkago.DescribeConfigsRequest{
		Resources: []kafkago.DescribeConfigRequestResource{{ResourceType: kafkago.ResourceTypeTopic, ResourceName: a, ConfigNames: []string{"retention.ms"}}},
	})
	if err != nil {
		t.Fatalf("DescribeConfigs: %v", err)
	}
	if len(res.Resources) != 1 || len(res.Resources[0].ConfigEntries) != 1 || res.Resources[0].ConfigEntries[0].ConfigValue != "3600000" {
		t.Errorf("retention.ms of %s: got %+v, want 3600000", a, res.Resources)
	}

	if err := EnsureTopics(ctx, bs, Security{}, TopicSpec{Name: "", Partitions: 1}); err == nil {
		t.Error("EnsureTopics with an empty name: got nil error")
	}
	// 2 replicas on a 1-broker cluster cannot be placed: the broker's
	// refusal must come back, not be mistaken for "exists".
	if err := EnsureTopics(ctx, bs, Security{}, TopicSpec{Name: rf, Partitions: 1, ReplicationFactor: 2}); err == nil {
		t.Error("EnsureTopics with replication factor 2 on one broker: got nil error")
	}
}

// javaPartition holds partitions that the Java client's default partitioner
// (Utils.toPositive(Utils.murmur2(key)) % 6) picks, computed with
// kafka-clients 4.1.1, so keys written by Go and by a Java or librdkafka
// (murmur2_random) shipper land on the same partition.
var javaPartition = map[string]int32{
	"agent-0": 5, "agent-1": 1, "agent-2": 3, "agent-42": 4, "agent-999": 3, "a": 4, "customer/123": 3,
}

func TestIntegrationWriteReadCommitResume(t *testing.T) {
	bs := brokers(t)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	topic := ensure(t, ctx, bs, 6)
	group := unique(t, "group")

	const n = 10000
	msgs := make([]bus.Message, n)
	for i := range msgs {
		msgs[i] = bus.Message{
			Key:     []byte("agent-" + strconv.Itoa(i%1000)),
			Value:   []byte(fmt.Sprintf(`{"seq":%d,"pad":"%0300d"}`, i, i)),
			Headers: []bus.Header{{Key: "seq", Value: []byte(strconv.Itoa(i))}, {Key: "src", Value: []byte("it")}},
		}
	}
	w, err := NewWriter(WriterConfig{Brokers: bs, Topic: topic}, nil)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	start := time.Now()
	if err := w.Write(ctx, msgs...); err != nil {
		t.Fatalf("Write %d: %v", n, err)
	}
	t.Logf("wrote %d messages in one Write: %s (%.0f msg/s)", n, time.Since(start), n/time.Since(start).Seconds())
	// A small synchronous write must not sit out a long batch timeout.
	start = time.Now()
	if err := w.Write(ctx, bus.Message{Key: []byte("agent-1"), Value: []byte("single")}); err != nil {
		t.Fatalf("single Write: %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("single synchronous Write took %s, want well under the 1s kafka-go default batch timeout", d)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("writer Close: %v", err)
	}
	const total = n + 1

	seen := make(map[int]bool, total)
	keyPart := make(map[string]int32)
	var single bool
	check := func(m bus.Message) {
		t.Helper()
		if m.Topic != topic {
			t.Fatalf("record from topic %q, want %q", m.Topic, topic)
		}
		if p, ok := keyPart[string(m.Key)]; ok && p != m.Partition {
			t.Fatalf("key %s on partitions %d and %d", m.Key, p, m.Partition)
		}
		keyPart[string(m.Key)] = m.Partition
		if m.Time.IsZero() || time.Since(m.Time) > 10*time.Minute {
			t.Fatalf("record time %v, want about now", m.Time)
		}
		if string(m.Value) == "single" {
			single = true
			return
		}
		seq, err := strconv.Atoi(string(m.HeaderValue("seq")))
		if err != nil || string(m.HeaderValue("src")) != "it" || len(m.Headers) != 2 {
			t.Fatalf("headers %+v: want seq and src=it", m.Headers)
		}
		if !strings.HasPrefix(string(m.Value), fmt.Sprintf(`{"seq":%d,`, seq)) || string(m.Key) != "agent-"+strconv.Itoa(seq%1000) {
			t.Fatalf("record seq %d has key %s value %.30s", seq, m.Key, m.Value)
		}
		if seen[seq] {
			t.Fatalf("seq %d delivered twice although every record read was committed", seq)
		}
		seen[seq] = true
	}
	// read fetches k records and commits them in batches of 1000, the way
	// a sink loop does.
	read := func(r *Reader, k int) {
		t.Helper()
		batch := make([]bus.Message, 0, 1000)
		for i := 0; i < k; i++ {
			m, err := r.Fetch(ctx)
			if err != nil {
				t.Fatalf("Fetch %d of %d: %v", i, k, err)
			}
			check(m)
			batch = append(batch, m)
			if len(batch) == cap(batch) || i == k-1 {
				if err := r.Commit(ctx, batch...); err != nil {
					t.Fatalf("Commit: %v", err)
				}
				batch = batch[:0]
			}
		}
	}

	start = time.Now()
	r1 := newReader(t, bs, group, topic)
	read(r1, 4000)
	if err := r1.Close(); err != nil {
		t.Fatalf("Close first reader: %v", err)
	}
	t.Logf("first reader: 4000 records in %s (including group join)", time.Since(start))

	// A new member of the same group must carry on after the committed
	// offsets: no record read before comes back, none is skipped.
	r2 := newReader(t, bs, group, topic)
	defer r2.Close()
	read(r2, total-4000)
	if len(seen) != n || !single {
		t.Fatalf("read %d distinct records (single: %v), want %d and the single one", len(seen), single, n)
	}
	quiet, qcancel := context.WithTimeout(ctx, 2*time.Second)
	defer qcancel()
	if m, err := r2.Fetch(quiet); err == nil {
		t.Fatalf("extra record after all were read: partition %d offset %d", m.Partition, m.Offset)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch on a drained topic: %v, want deadline exceeded", err)
	}

	if len(keyPart) != 1000 {
		t.Errorf("saw %d keys, want 1000", len(keyPart))
	}
	parts := make(map[int32]bool)
	for _, p := range keyPart {
		parts[p] = true
	}
	if len(parts) != 6 {
		t.Errorf("1000 keys landed on %d partitions, want all 6", len(parts))
	}
	for k, want := range javaPartition {
		if got, ok := keyPart[k]; ok && got != want {
			t.Errorf("key %s on partition %d, the Java client would pick %d", k, got, want)
		}
	}
	for _, k := range []string{"agent-0", "agent-1", "agent-42", "agent-999"} {
		if _, ok := keyPart[k]; !ok {
			t.Errorf("key %s never read", k)
		}
	}
}

func TestIntegrationWriterTopics(t *testing.T) {
	bs := brokers(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	a, b := ensure(t, ctx, bs, 1), ensure(t, ctx, bs, 1)

	multi, err := NewWriter(WriterConfig{Brokers: bs, Compression: "zstd"}, nil)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	defer multi.Close()
	if err := multi.Write(ctx,
		bus.Message{Topic: a, Value: []byte("to-a")},
		bus.Message{Topic: b, Value: []byte("to-b")},
	); err != nil {
		t.Fatalf("Write to two topics: %v", err)
	}
	if err := multi.Write(ctx, bus.Message{Value: []byte("nowhere")}); err == nil {
		t.Error("Write without a topic on a multi-topic writer: got nil error")
	}

	single, err := NewWriter(WriterConfig{Brokers: bs, Topic: a}, nil)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	defer single.Close()
	if err := single.Write(ctx, bus.Message{Topic: b, Value: []byte("x")}); err == nil {
		t.Error("Write of a message for another topic on a single-topic writer: got nil error")
	}
	if err := single.Write(ctx, bus.Message{Topic: a, Value: []byte("same-topic")}); err != nil {
		t.Errorf("Write naming the writer's own topic: %v", err)
	}

	// auto.create.topics.enable=false: a missing topic is an error, and
	// a bounded one.
	missingTopic := unique(t, "missing")
	dropAfter(t, bs, missingTopic) // in case a broker with auto-create made it
	missing, err := NewWriter(WriterConfig{Brokers: bs, Topic: missingTopic}, nil)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	defer missing.Close()
	mctx, mcancel := context.WithTimeout(ctx, 15*time.Second)
	defer mcancel()
	start := time.Now()
	if err := missing.Write(mctx, bus.Message{Value: []byte("x")}); err == nil {
		t.Error("Write to a topic that does not exist: got nil error")
	} else {
		t.Logf("write to a missing topic failed after %s: %v", time.Since(start), err)
	}

	want := map[string][]string{a: {"to-a", "same-topic"}, b: {"to-b"}}
	for topic, values := range want {
		r := newReader(t, bs, unique(t, "g"), topic)
		for _, v := range values {
			m, err := r.Fetch(ctx)
			if err != nil {
				t.Fatalf("Fetch from %s: %v", topic, err)
			}
			if string(m.Value) != v {
				t.Errorf("%s: got %q, want %q", topic, m.Value, v)
			}
		}
		_ = r.Close()
	}
}

func TestIntegrationTwoReadersSplitPartitions(t *testing.T) {
	bs := brokers(t)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	topic := ensure(t, ctx, bs, 6)
	group := unique(t, "group")

	type got struct {
		reader int
		m      bus.Message
	}
	recs := make(chan got, 1024)
	rctx, rcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	readErrs := make(chan error, 2)
	for id := range 2 {
		r := newReader(t, bs, group, topic)
		wg.Go(func() {
			defer r.Close()
			for {
				m, err := r.Fetch(rctx)
				if err != nil {
					if rctx.Err() == nil {
						readErrs <- fmt.Errorf("reader %d: %w", id, err)
					}
					return
				}
				// Commit each record so a partition that moves to the
				// other member resumes where this one stopped.
				if err := r.Commit(rctx, m); err != nil && rctx.Err() == nil {
					readErrs <- fmt.Errorf("reader %d commit: %w", id, err)
					return
				}
				select {
				case recs <- got{id, m}:
				case <-rctx.Done():
					return
				}
			}
		})
	}

	w, err := NewWriter(WriterConfig{Brokers: bs, Topic: topic}, nil)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	defer w.Close()

	// Keep writing while the group settles. Once both members have
	// received records, the group has a generation with both of them;
	// records written a grace period after that must be split between
	// them with no partition served by both.
	seqs := make(map[int]bool)
	owners := make(map[int32]map[int]bool)
	perReader := [2]int{}
	var seq, cutoff int
	cutoff = -1
	deadline := time.Now().Add(60 * time.Second)
	var bothAt time.Time
	write := func() {
		batch := make([]bus.Message, 60)
		for i := range batch {
			batch[i] = bus.Message{Key: []byte("k" + strconv.Itoa(seq)), Value: []byte(strconv.Itoa(seq))}
			seq++
		}
		if err := w.Write(ctx, batch...); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	drain := func(wait time.Duration) {
		timer := time.NewTimer(wait)
		defer timer.Stop()
		for {
			select {
			case g := <-recs:
				s, _ := strconv.Atoi(string(g.m.Value))
				seqs[s] = true
				perReader[g.reader]++
				if cutoff >= 0 && s >= cutoff {
					if owners[g.m.Partition] == nil {
						owners[g.m.Partition] = map[int]bool{}
					}
					owners[g.m.Partition][g.reader] = true
				}
			case err := <-readErrs:
				t.Fatal(err)
			case <-timer.C:
				return
			}
		}
	}
	for cutoff < 0 || seq < cutoff+1200 {
		if time.Now().After(deadline) {
			t.Fatalf("group never split: per reader %v after %d records", perReader, seq)
		}
		write()
		drain(50 * time.Millisecond)
		if bothAt.IsZero() && perReader[0] > 0 && perReader[1] > 0 {
			bothAt = time.Now()
		}
		if cutoff < 0 && !bothAt.IsZero() && time.Since(bothAt) > 2*time.Second {
			cutoff = seq
		}
	}
	// Wait for every record: nothing may be lost across the rebalance.
	for time.Now().Before(deadline) && len(seqs) < seq {
		drain(200 * time.Millisecond)
	}
	rcancel()
	wg.Wait()
	if len(seqs) != seq {
		t.Fatalf("received %d distinct records, want %d", len(seqs), seq)
	}
	var count [2]int
	for p, o := range owners {
		if len(o) != 1 {
			t.Errorf("partition %d served by both readers after the group settled", p)
		}
		for id := range o {
			count[id]++
		}
	}
	if len(owners) != 6 || count[0] != 3 || count[1] != 3 {
		t.Errorf("after the group settled: %d partitions seen, split %v; want 6 split 3/3", len(owners), count)
	}
	t.Logf("%d records; per reader %v; settled split %v", seq, perReader, count)
}

func TestIntegrationMeasureConsume(t *testing.T) {
	bs := brokers(t)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	topic := ensure(t, ctx, bs, 6)

	const n = 100000
	w, err := NewWriter(WriterConfig{Brokers: bs, Topic: topic}, nil)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	value := []byte(strings.Repeat("x", 400))
	msgs := make([]bus.Message, 10000)
	start := time.Now()
	for written := 0; written < n; written += len(msgs) {
		for i := range msgs {
			msgs[i] = bus.Message{Key: []byte("agent-" + strconv.Itoa(written+i)), Value: value}
		}
		if err := w.Write(ctx, msgs...); err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	wd := time.Since(start)
	_ = w.Close()
	t.Logf("produce: %d x 400 B in %s = %.0f msg/s (acks=all, batches of 10000 per Write)", n, wd, n/wd.Seconds())

	cfg := ReaderConfig{Brokers: bs, GroupID: "it-measure", Topics: []string{topic}}
	d, err := MeasureConsume(ctx, cfg, n)
	if err != nil {
		t.Fatalf("MeasureConsume: %v", err)
	}
	if d <= 0 {
		t.Fatalf("MeasureConsume took %s, want a positive duration", d)
	}
	t.Logf("consume: %d x 400 B in %s = %.0f msg/s", n, d, n/d.Seconds())

	// A fresh group each call: a second run reads the same records again
	// instead of finding the first run's commits.
	if _, err := MeasureConsume(ctx, cfg, 1000); err != nil {
		t.Fatalf("second MeasureConsume: %v", err)
	}
	// More records than the topic holds: it must end with ctx, not hang.
	short, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if _, err := MeasureConsume(short, cfg, n+1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("MeasureConsume of more than the topic holds: %v, want deadline exceeded", err)
	}
}
