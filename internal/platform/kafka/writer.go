package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

// WriterConfig configures a Writer. Zero values of the tuning fields pick
// the defaults noted on each.
type WriterConfig struct {
	Brokers []string
	// Security is how the brokers are reached (default plaintext).
	Security Security
	// Topic is the one topic written to; "" means each message names its
	// own topic in bus.Message.Topic.
	Topic string
	// BatchSize is the most records in one produce batch per partition
	// (default 5000).
	BatchSize int
	// BatchBytes caps one produce batch per partition (default 1 MiB,
	// which the broker's default message.max.bytes accepts).
	BatchBytes int64
	// BatchTimeout is how long a partial batch waits for more records
	// before it is sent (default 5ms). Write is synchronous, so this is
	// latency added to every Write whose last batch is not full; kafka-go's
	// own 1s default would make every small Write take a second.
	BatchTimeout time.Duration
	// Compression is "", "none", "gzip", "snappy", "lz4" or "zstd".
	Compression string
}

// Defaults for WriterConfig's zero values (alike in shape to
// ReaderConfig's, with other knobs).
const (
	defaultBatchSize    = 5000
	defaultBatchBytes   = 1 << 20
	defaultBatchTimeout = 5 * time.Millisecond
)

// Validate reports every problem in the config at once.
func (c WriterConfig) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: need at least one broker"))
	}
	if c.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("batch_size: must not be negative, got %d", c.BatchSize))
	}
	if c.BatchBytes < 0 {
		errs = append(errs, fmt.Errorf("batch_bytes: must not be negative, got %d", c.BatchBytes))
	}
	if c.BatchTimeout < 0 {
		errs = append(errs, fmt.Errorf("batch_timeout: must not be negative, got %s", c.BatchTimeout))
	}
	if _, err := compression(c.Compression); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func compression(s string) (compress.Compression, error) {
	switch s {
	case "", "none":
		return 0, nil
	case "gzip":
		return compress.Gzip, nil
	case "snappy":
		return compress.Snappy, nil
	case "lz4":
		return compress.Lz4, nil
	case "zstd":
		return compress.Zstd, nil
	}
	return 0, fmt.Errorf("compression: want none, gzip, snappy, lz4 or zstd, got %q", s)
}

// Writer is a bus.Writer over a synchronous kafka-go writer: Write returns
// once every record is acknowledged by all in-sync replicas (acks=all), or
// with the error of the first record that was not. Keys are partitioned with
// the Java client's murmur2, so a key lands on the same partition whichever
// client wrote it. Safe for concurrent use; concurrent Writes share batches.
// The caller owns it and must Close it.
type Writer struct {
	w     *kafkago.Writer
	tr    *kafkago.Transport
	topic string
}

var _ bus.Writer = (*Writer)(nil)

// NewWriter connects lazily: nothing is dialed until the first Write.
// log may be nil.
func NewWriter(cfg WriterConfig, log *slog.Logger) (*Writer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka writer config: %w", err)
	}
	log = orDiscard(log)
	if cfg.Topic != "" {
		log = log.With("topic", cfg.Topic)
	}
	codec, _ := compression(cfg.Compression)
	// A transport of our own, so Close drops this writer's connections
	// and its metadata cache is not shared with unrelated writers.
	tr := cfg.Security.transport(10*time.Second, 5*time.Second)
	w := &kafkago.Writer{
		Addr:         kafkago.TCP(cfg.Brokers...),
		Topic:        cfg.Topic,
		Balancer:     &kafkago.Murmur2Balancer{},
		BatchSize:    orInt(cfg.BatchSize, defaultBatchSize),
		BatchBytes:   cfg.BatchBytes,
		BatchTimeout: orDur(cfg.BatchTimeout, defaultBatchTimeout),
		RequiredAcks: kafkago.RequireAll,
		Async:        false,
		Compression:  codec,
		Transport:    tr,
		// A missing topic is a deployment error to report, not something
		// to paper over with a broker-default topic.
		AllowAutoTopicCreation: false,
	}
	if w.BatchBytes == 0 {
		w.BatchBytes = defaultBatchBytes
	}
	w.Logger, w.ErrorLogger = loggers(log)
	log.Info("kafka writer created", "brokers", cfg.Brokers, "security", cfg.Security, "compression", cfg.Compression)
	return &Writer{w: w, tr: tr, topic: cfg.Topic}, nil
}

// Write implements bus.Writer. All msgs go to kafka-go in one call so they
// are batched per partition. When the Writer has a Topic, a message may
// leave Topic empty or repeat the same name; a different name is an error,
// because kafka-go would otherwise refuse the whole call.
func (w *Writer) Write(ctx context.Context, msgs ...bus.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	km := make([]kafkago.Message, len(msgs))
	for i := range msgs {
		topic := msgs[i].Topic
		switch {
		case w.topic != "" && topic != "" && topic != w.topic:
			return fmt.Errorf("write message %d: topic %q on a writer for %q; use a writer with an empty Topic to write several topics", i, topic, w.topic)
		case w.topic != "":
			topic = "" // kafka-go wants the topic on the writer or the message, never both
		case topic == "":
			return fmt.Errorf("write message %d: no topic; set Message.Topic or WriterConfig.Topic", i)
		}
		km[i] = toKafka(&msgs[i], topic)
	}
	err := w.w.WriteMessages(ctx, km...)
	if err == nil {
		return nil
	}
	var werrs kafkago.WriteErrors
	if errors.As(err, &werrs) {
		failed, first := 0, error(nil)
		for _, e := range werrs {
			if e != nil {
				failed++
				if first == nil {
					first = e
				}
			}
		}
		return fmt.Errorf("write %d messages: %d not acknowledged: %w", len(msgs), failed, first)
	}
	return fmt.Errorf("write %d messages: %w", len(msgs), err)
}

// Close implements bus.Writer: it waits for in-flight writes and then
// releases the connections.
func (w *Writer) Close() error {
	err := w.w.Close()
	w.tr.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("close kafka writer: %w", err)
	}
	return nil
}
