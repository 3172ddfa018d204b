// Package kafka adapts github.com/segmentio/kafka-go to the bus interfaces:
// a consumer-group Reader that only commits when told to, a synchronous
// Writer that returns once every record is acknowledged by all in-sync
// replicas, and EnsureTopics for idempotent topic creation.
//
// The adapter stays thin on purpose: retry, batching and partition
// assignment are kafka-go's, and the policy (what to do with an error) is
// the caller's. It is tested against a real Kafka 4.x broker started by
// deploy/kafka.sh; see kafka_integration_test.go.
package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

// clientID names us in broker logs and quotas.
const clientID = "agentwatch"

// fromKafka converts a record read by kafka-go. kafka-go allocates fresh
// key, value and header slices for every record it decodes, so the result
// shares no memory with the reader's buffers and stays valid after the
// next Fetch.
func fromKafka(m kafkago.Message) bus.Message {
	out := bus.Message{
		Topic:     m.Topic,
		Partition: int32(m.Partition),
		Offset:    m.Offset,
		Key:       m.Key,
		Value:     m.Value,
		Time:      m.Time,
	}
	if len(m.Headers) > 0 {
		out.Headers = make([]bus.Header, len(m.Headers))
		for i, h := range m.Headers {
			out.Headers[i] = bus.Header{Key: h.Key, Value: h.Value}
		}
	}
	return out
}

// toKafka converts a record to write; it mirrors fromKafka on purpose,
// the two header types being distinct. The slices are shared, not copied:
// Writer.Write is synchronous, so kafka-go is done with them when it returns.
func toKafka(m *bus.Message, topic string) kafkago.Message {
	out := kafkago.Message{
		Topic: topic,
		Key:   m.Key,
		Value: m.Value,
		Time:  m.Time,
	}
	if len(m.Headers) > 0 {
		out.Headers = make([]kafkago.Header, len(m.Headers))
		for i, h := range m.Headers {
			out.Headers[i] = kafkago.Header{Key: h.Key, Value: h.Value}
		}
	}
	return out
}

// loggers bridges kafka-go's printf loggers to slog. kafka-go's info
// logger reports every fetch and rebalance step, so it is wired only when
// Debug is on; its error logger reports retried trouble (a rebalance in
// progress, a leader move), which is a Warn by our rules.
func loggers(log *slog.Logger) (info, errs kafkago.Logger) {
	if log.Enabled(context.Background(), slog.LevelDebug) {
		info = kafkago.LoggerFunc(func(format string, args ...any) {
			log.Debug("kafka client", "detail", fmt.Sprintf(format, args...))
		})
	}
	errs = kafkago.LoggerFunc(func(format string, args ...any) {
		detail := fmt.Sprintf(format, args...)
		// An idle reader's long poll ends in a read timeout that kafka-go
		// reports as an error and retries (segmentio/kafka-go#726): routine,
		// so it must not look like trouble to an operator.
		if strings.Contains(detail, "i/o timeout") {
			log.Debug("kafka client idle poll timed out", "detail", detail)
			return
		}
		log.Warn("kafka client retrying", "detail", detail)
	})
	return info, errs
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
