package respond

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

// oneThenWait hands out its records, then blocks until ctx ends.
type oneThenWait struct{ msgs []bus.Message }

func (r *oneThenWait) Fetch(ctx context.Context) (bus.Message, error) {
	if len(r.msgs) > 0 {
		m := r.msgs[0]
		r.msgs = r.msgs[1:]
		return m, nil
	}
	<-ctx.Done()
	return bus.Message{}, ctx.Err()
}
func (r *oneThenWait) Commit(context.Context, ...bus.Message) error { return nil }
func (r *oneThenWait) Close() error                                 { return nil }

// TestConsumerInputLag: the gauge follows the Kafka timestamp of the
// newest record of a fetch, even of one that is not an anomaly.
func TestConsumerInputLag(t *testing.T) {
	lag := prometheus.NewGauge(prometheus.GaugeOpts{Name: "lag"})
	old := time.Now().Add(-90 * time.Second)
	c := &Consumer{
		Reader: &oneThenWait{msgs: []bus.Message{
			{Topic: "a", Partition: 0, Offset: 1, Time: old.Add(-time.Minute), Value: []byte(`{}`)},
			{Topic: "a", Partition: 0, Offset: 2, Time: old, Value: []byte(`not an anomaly`)},
		}},
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		InputLag: lag,
	}
	ctx, cancel := context.WithCancel(t.Context())
	toMark := make(chan markReq, 4)
	done := make(chan error, 1)
	go func() { done <- c.consume(ctx, toMark) }()
	select {
	case r := <-toMark:
		if len(r.ids) != 0 || len(r.msgs) != 2 {
			t.Fatalf("mark request: %d ids, %d records; want 0 and both records for their offsets", len(r.ids), len(r.msgs))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer never handed its records on")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(lag); got < 90 || got > 90+60 {
		t.Fatalf("input lag %.1f s, want the newest record's age, about 90 s", got)
	}
}
