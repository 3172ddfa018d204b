package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

// ReaderConfig configures a consumer-group Reader. Zero values of the
// tuning fields pick the defaults noted on each.
type ReaderConfig struct {
	Brokers []string
	// Security is how the brokers are reached (default plaintext).
	Security Security
	// GroupID is the consumer group; required, because only a group keeps
	// committed offsets across restarts.
	GroupID string
	Topics  []string
	// MinBytes is the least data a fetch waits for (default 1: deliver as
	// soon as anything is there).
	MinBytes int
	// MaxBytes caps one fetch response (default 10 MiB).
	MaxBytes int
	// MaxWait bounds how long a fetch waits for MinBytes (default 500ms;
	// kafka-go's own 10s default would make Close and rebalances slow).
	MaxWait time.Duration
	// StartOffset is where a partition without a committed offset starts:
	// "first" (default) or "last".
	StartOffset string
}

// Defaults for ReaderConfig's zero values. The config, its defaults and
// Validate look like WriterConfig's on purpose: different knobs, each
// documented where it is declared.
const (
	defaultMinBytes = 1
	defaultMaxBytes = 10 << 20
	defaultMaxWait  = 500 * time.Millisecond
)

// Validate reports every problem in the config at once.
func (c ReaderConfig) Validate() error {
	errs := appendConsumerErrs(nil, c.Brokers, c.GroupID)
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("topics: need at least one topic"))
	}
	errs = appendFetchErrs(errs, c.MinBytes, c.MaxBytes, c.MaxWait)
	if _, err := startOffset(c.StartOffset); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// appendConsumerErrs appends the problems of the keys ReaderConfig and
// GroupConfig share that name the consumer: brokers and group_id.
func appendConsumerErrs(errs []error, brokers []string, groupID string) []error {
	if len(brokers) == 0 {
		errs = append(errs, errors.New("brokers: need at least one broker"))
	}
	if groupID == "" {
		errs = append(errs, errors.New("group_id: required; offsets are committed per group"))
	}
	return errs
}

// appendFetchErrs appends the problems of the fetch limits ReaderConfig
// and GroupConfig share: min_bytes, max_bytes and max_wait.
func appendFetchErrs(errs []error, minBytes, maxBytes int, maxWait time.Duration) []error {
	if minBytes < 0 || maxBytes < 0 || (maxBytes > 0 && minBytes > maxBytes) {
		errs = append(errs, fmt.Errorf("min_bytes/max_bytes: need 0 <= min <= max, got %d/%d", minBytes, maxBytes))
	}
	if maxWait < 0 {
		errs = append(errs, fmt.Errorf("max_wait: must not be negative, got %s", maxWait))
	}
	return errs
}

func startOffset(s string) (int64, error) {
	switch s {
	case "", "first":
		return kafkago.FirstOffset, nil
	case "last":
		return kafkago.LastOffset, nil
	}
	return 0, fmt.Errorf("start_offset: want \"first\" or \"last\", got %q", s)
}

// Reader is a bus.Reader over a kafka-go consumer-group reader. Offsets
// move only on Commit, and each Commit is a synchronous OffsetCommit
// request. Fetch and Commit may run concurrently (kafka-go hands commits
// to its commit loop over a channel); Fetch itself is for one goroutine;
// the caller owns it and must Close it, which leaves the group.
type Reader struct {
	r   *kafkago.Reader
	log *slog.Logger
}

var _ bus.Reader = (*Reader)(nil)

// NewReader joins cfg.GroupID lazily: the group join, partition assignment
// and offset lookup happen in the background, and the first Fetch waits
// for them. log may be nil.
func NewReader(cfg ReaderConfig, log *slog.Logger) (*Reader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kafka reader config: %w", err)
	}
	log = orDiscard(log).With("group", cfg.GroupID)
	start, _ := startOffset(cfg.StartOffset)
	kc := kafkago.ReaderConfig{
		Brokers:     cfg.Brokers,
		GroupID:     cfg.GroupID,
		GroupTopics: cfg.Topics,
		MinBytes:    orInt(cfg.MinBytes, defaultMinBytes),
		MaxBytes:    orInt(cfg.MaxBytes, defaultMaxBytes),
		MaxWait:     orDur(cfg.MaxWait, defaultMaxWait),
		StartOffset: start,
		// Zero means every CommitMessages is a synchronous OffsetCommit
		// that returns the broker's answer: the at-least-once contract.
		CommitInterval: 0,
		// A deeper queue than kafka-go's 100 keeps the fetch loop busy
		// while the caller processes a batch.
		QueueCapacity: 1000,
		// Faster than kafka-go's 3s/30s/30s/5s so that a member joining
		// or leaving is noticed in about a second, not tens of seconds;
		// Kafka's group.min.session.timeout.ms is 6s.
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  time.Second,
		// Partitions added to a topic are picked up without a restart.
		WatchPartitionChanges: true,
		Dialer:                cfg.Security.dialer(10 * time.Second),
	}
	kc.Logger, kc.ErrorLogger = loggers(log)
	if err := kc.Validate(); err != nil {
		return nil, fmt.Errorf("kafka reader config: %w", err)
	}
	log.Info("kafka reader created", "brokers", cfg.Brokers, "security", cfg.Security, "topics", cfg.Topics, "start_offset", cfg.StartOffset)
	return &Reader{r: kafkago.NewReader(kc), log: log}, nil
}

// Fetch implements bus.Reader. After Close it returns an error wrapping
// io.EOF; when ctx ends it returns ctx's error.
func (r *Reader) Fetch(ctx context.Context) (bus.Message, error) {
	m, err := r.r.FetchMessage(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return bus.Message{}, ctx.Err()
		}
		return bus.Message{}, fmt.Errorf("fetch: %w", err)
	}
	return fromKafka(m), nil
}

// Commit implements bus.Reader: one OffsetCommit request for the highest
// offset per partition among msgs, returning once the broker answered.
func (r *Reader) Commit(ctx context.Context, msgs ...bus.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	km := make([]kafkago.Message, len(msgs))
	for i := range msgs {
		km[i] = kafkago.Message{Topic: msgs[i].Topic, Partition: int(msgs[i].Partition), Offset: msgs[i].Offset}
	}
	if err := r.r.CommitMessages(ctx, km...); err != nil {
		return fmt.Errorf("commit %d offsets: %w", len(msgs), err)
	}
	return nil
}

// Close implements bus.Reader: it leaves the group, so the partitions are
// reassigned right away instead of after the session timeout.
func (r *Reader) Close() error {
	if err := r.r.Close(); err != nil {
		return fmt.Errorf("close kafka reader: %w", err)
	}
	return nil
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func orDur(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}
