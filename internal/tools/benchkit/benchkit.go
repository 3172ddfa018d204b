// Package benchkit is what the end-to-end benchmarks (ingestbench,
// detectbench, respbench) share: the defaults of the services they run
// against, the scratch topics and databases they create and remove, and
// the arithmetic of their reports. It talks to the real Kafka and
// ClickHouse; nothing in it is safe to call without them except the
// report helpers.
package benchkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/agentwatch/agentwatch/internal/platform/kafka"
)

// Defaults fills in the options every benchmark defaults the same way:
// Kafka at 127.0.0.1:9092, ClickHouse at 127.0.0.1:9000, scratch topics of
// 6 partitions. It leaves what is set alone.
func Defaults(brokers, clickhouse *[]string, partitions *int) {
	if len(*brokers) == 0 {
		*brokers = []string{"127.0.0.1:9092"}
	}
	if len(*clickhouse) == 0 {
		*clickhouse = []string{"127.0.0.1:9000"}
	}
	Default(partitions, 6)
}

// Default sets *p to v if *p is its type's zero value: an option left out
// takes its default.
func Default[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// Begin starts a run: it applies the options' defaults (setDefaults, whose
// error it returns), and returns the logger to use, log or one that drops
// everything when log is nil, and the suffix that names the run's scratch
// topics, groups and databases: the start time in milliseconds, so that
// runs do not collide.
func Begin(setDefaults func() error, log *slog.Logger) (*slog.Logger, string, error) {
	if err := setDefaults(); err != nil {
		return nil, "", err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return log, strconv.FormatInt(time.Now().UnixMilli(), 10), nil
}

// EnsureTopics creates the scratch topics; its error says to start Kafka.
func EnsureTopics(ctx context.Context, brokers []string, sec kafka.Security, topics ...kafka.TopicSpec) error {
	if err := kafka.EnsureTopics(ctx, brokers, sec, topics...); err != nil {
		return fmt.Errorf("%w; is Kafka running (deploy/kafka.sh up)?", err)
	}
	return nil
}

// MeasureConsume is the consume-only step: kafka.MeasureConsume of n
// records with rc, between a progress line before and one with the time
// and rate of unit (records, events) after.
func MeasureConsume(ctx context.Context, progress io.Writer, rc kafka.ReaderConfig, n int, unit string) (time.Duration, error) {
	fmt.Fprintf(progress, "measuring Kafka consume of %d %s...\n", n, unit)
	d, err := kafka.MeasureConsume(ctx, rc, n)
	if err != nil {
		return d, err
	}
	fmt.Fprintf(progress, "  %s, %.0f %s/s\n", d.Round(time.Millisecond), Rate(n, d), unit)
	return d, nil
}

// Scratch is what one run created on the real services, to remove when
// it ends.
type Scratch struct {
	Brokers, ClickHouse []string
	// Security is how Brokers are reached (default plaintext).
	Security kafka.Security
	Topics   []string
	// Databases are dropped by name; the names must be the benchmark's
	// own (bench_<what>_<digits>), as they are quoted, not escaped.
	Databases []string
}

// Remove deletes the topics and drops the databases, with a minute for
// it all whatever the state of the run's context, and logs what it could
// not remove as name's warning.
func (s Scratch) Remove(log *slog.Logger, name string) {
	if err := s.remove(); err != nil {
		log.Warn(name+" cleanup", "err", err)
	}
}

func (s Scratch) remove() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	client, tr := s.Security.Client(s.Brokers, 30*time.Second)
	defer tr.CloseIdleConnections()
	if len(s.Topics) > 0 {
		if _, err := client.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: s.Topics}); err != nil {
			if len(s.Topics) == 1 {
				errs = append(errs, fmt.Errorf("delete topic %s: %w", s.Topics[0], err))
			} else {
				errs = append(errs, fmt.Errorf("delete topics %v: %w", s.Topics, err))
			}
		}
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Protocol: clickhouse.Native, Addr: s.ClickHouse})
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer conn.Close()
	for _, db := range s.Databases {
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
			errs = append(errs, fmt.Errorf("drop database %s: %w", db, err))
		}
	}
	return errors.Join(errs...)
}

// Rate is n per second over d (0 when d is not positive).
func Rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// Percent is part as a percentage of whole (0 when whole is 0).
func Percent(part, whole float64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * part / whole
}

// Quantile returns the q-quantile of sorted ds (nearest rank; 0 when empty).
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[min(len(ds)-1, int(q*float64(len(ds))))]
}

// Ms renders d in whole milliseconds ("12 ms"), as the reports print
// latencies.
func Ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

// ThroughputRow writes one row of a throughput table, whose columns are
// | stage | n | time | n/s | MB/s | vs |: n items of bytes in all took d.
func ThroughputRow(w io.Writer, name string, n int, bytes int64, d time.Duration, vs string) {
	mbs := float64(bytes) / 1e6 / d.Seconds()
	fmt.Fprintf(w, "| %s | %d | %s | %.0f | %.1f | %s |\n", name, n, d.Round(time.Millisecond), Rate(n, d), mbs, vs)
}
