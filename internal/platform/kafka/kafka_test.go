package kafka

import (
	"context"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

func TestReaderConfigValidate(t *testing.T) {
	good := ReaderConfig{Brokers: []string{"127.0.0.1:9092"}, GroupID: "g", Topics: []string{"t"}}
	ok := func(c ReaderConfig) {
		t.Helper()
		if err := c.Validate(); err != nil {
			t.Fatalf("Validate(%+v) = %v, want nil", c, err)
		}
	}
	bad := func(c ReaderConfig, wantSub ...string) {
		t.Helper()
		err := c.Validate()
		if err == nil {
			t.Fatalf("Validate(%+v) = nil, want error", c)
		}
		for _, s := range wantSub {
			if !strings.Contains(err.Error(), s) {
				t.Fatalf("Validate(%+v) = %q, want it to mention %q", c, err, s)
			}
		}
	}
	ok(good)
	c := good
	c.StartOffset = "last"
	ok(c)
	bad(ReaderConfig{}, "brokers", "group_id", "topics") // every problem at once
	c = good
	c.StartOffset = "earliest"
	bad(c, "start_offset")
	c = good
	c.MinBytes, c.MaxBytes = 10, 5
	bad(c, "min_bytes")
	c = good
	c.MaxWait = -time.Second
	bad(c, "max_wait")

	if _, err := NewReader(ReaderConfig{}, nil); err == nil {
		t.Fatal("NewReader with an empty config: got nil error")
	}
}

func TestWriterConfigValidate(t *testing.T) {
	for _, codec := range []string{"", "none", "gzip", "snappy", "lz4", "zstd"} {
		if err := (WriterConfig{Brokers: []string{"b:9092"}, Compression: codec}).Validate(); err != nil {
			t.Errorf("compression %q: %v", codec, err)
		}
	}
	err := (WriterConfig{Compression: "brotli", BatchSize: -1, BatchBytes: -1, BatchTimeout: -1}).Validate()
	for _, s := range []string{"brokers", "compression", "batch_size", "batch_bytes", "batch_timeout"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("Validate of a bad config = %v, want it to mention %s", err, s)
		}
	}
	if _, err := NewWriter(WriterConfig{}, nil); err == nil {
		t.Error("NewWriter with an empty config: got nil error")
	}
}

func TestNewWriterDefaults(t *testing.T) {
	w, err := NewWriter(WriterConfig{Brokers: []string{"127.0.0.1:1"}, Compression: "lz4"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	kw := w.w
	if kw.RequiredAcks != kafkago.RequireAll || kw.Async || kw.AllowAutoTopicCreation {
		t.Errorf("acks %v async %v autocreate %v: want acks=all, synchronous, no auto-create", kw.RequiredAcks, kw.Async, kw.AllowAutoTopicCreation)
	}
	if _, ok := kw.Balancer.(*kafkago.Murmur2Balancer); !ok {
		t.Errorf("balancer %T, want *Murmur2Balancer for Java-compatible partitioning", kw.Balancer)
	}
	if kw.BatchTimeout != defaultBatchTimeout || kw.BatchSize != defaultBatchSize || kw.BatchBytes != defaultBatchBytes {
		t.Errorf("batch timeout/size/bytes %s/%d/%d, want the package defaults", kw.BatchTimeout, kw.BatchSize, kw.BatchBytes)
	}
}

// Topic mistakes are caught before any network round trip, so these run
// against an address where nothing listens.
func TestWriterTopicMismatch(t *testing.T) {
	ctx := t.Context()
	single, err := NewWriter(WriterConfig{Brokers: []string{"127.0.0.1:1"}, Topic: "a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	if err := single.Write(ctx, bus.Message{Topic: "b"}); err == nil || !strings.Contains(err.Error(), `topic "b" on a writer for "a"`) {
		t.Errorf("Write of topic b on a writer for a = %v", err)
	}
	multi, err := NewWriter(WriterConfig{Brokers: []string{"127.0.0.1:1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer multi.Close()
	if err := multi.Write(ctx, bus.Message{Topic: "a"}, bus.Message{}); err == nil || !strings.Contains(err.Error(), "message 1: no topic") {
		t.Errorf("Write without a topic on a multi-topic writer = %v", err)
	}
	if err := multi.Write(ctx); err != nil {
		t.Errorf("empty Write = %v, want nil", err)
	}
}

func TestMessageConversion(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_123)
	km := kafkago.Message{
		Topic: "t", Partition: 5, Offset: 42, Key: []byte("k"), Value: []byte("v"), Time: now,
		Headers: []kafkago.Header{{Key: "a", Value: []byte("1")}, {Key: "b", Value: nil}},
	}
	m := fromKafka(km)
	if m.Topic != "t" || m.Partition != 5 || m.Offset != 42 || string(m.Key) != "k" || string(m.Value) != "v" || !m.Time.Equal(now) {
		t.Fatalf("fromKafka = %+v", m)
	}
	if len(m.Headers) != 2 || string(m.HeaderValue("a")) != "1" || m.Headers[1].Key != "b" {
		t.Fatalf("fromKafka headers = %+v", m.Headers)
	}
	if fromKafka(kafkago.Message{}).Headers != nil {
		t.Error("fromKafka of a record without headers allocated a header slice")
	}

	back := toKafka(&m, "")
	if back.Topic != "" || string(back.Key) != "k" || string(back.Value) != "v" || !back.Time.Equal(now) || len(back.Headers) != 2 || back.Headers[0].Key != "a" {
		t.Fatalf("toKafka = %+v", back)
	}
	// Partition and offset are the broker's to choose on write.
	if back.Partition != 0 || back.Offset != 0 {
		t.Errorf("toKafka kept partition %d offset %d", back.Partition, back.Offset)
	}
}

func TestMeasureConsumeRejectsBadInput(t *testing.T) {
	if _, err := MeasureConsume(context.Background(), ReaderConfig{}, 0); err == nil {
		t.Error("MeasureConsume with n=0: got nil error")
	}
	if _, err := MeasureConsume(context.Background(), ReaderConfig{}, 1); err == nil {
		t.Error("MeasureConsume with an empty config: got nil error")
	}
}

func TestEnsureTopicsRejectsBadSpecs(t *testing.T) {
	ctx := t.Context()
	if err := EnsureTopics(ctx, nil, Security{}, TopicSpec{Name: "a"}); err == nil {
		t.Error("EnsureTopics without brokers: got nil error")
	}
	if err := EnsureTopics(ctx, []string{"127.0.0.1:1"}, Security{}); err != nil {
		t.Errorf("EnsureTopics of no topics = %v, want nil", err)
	}
	err := EnsureTopics(ctx, []string{"127.0.0.1:1"}, Security{}, TopicSpec{Name: ""}, TopicSpec{Name: "x", Partitions: -2})
	if err == nil || !strings.Contains(err.Error(), `topic ""`) || !strings.Contains(err.Error(), `topic "x"`) {
		t.Errorf("EnsureTopics of bad specs = %v, want both reported", err)
	}
}
