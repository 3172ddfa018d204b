package respond

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
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

// burstReader hands out its bursts one fetch round at a time: a fetch that
// waits (the consumer's first of a batch) starts the next burst once the
// current one is out; the consumer's short fetches that fill a batch get
// only what is left of the current burst.
type burstReader struct {
	bursts [][]bus.Message
	cur    []bus.Message
}

func (r *burstReader) Fetch(ctx context.Context) (bus.Message, error) {
	if len(r.cur) == 0 {
		if _, short := ctx.Deadline(); !short && len(r.bursts) > 0 {
			r.cur, r.bursts = r.bursts[0], r.bursts[1:]
		}
	}
	if len(r.cur) > 0 {
		m := r.cur[0]
		r.cur = r.cur[1:]
		return m, nil
	}
	<-ctx.Done()
	return bus.Message{}, ctx.Err()
}
func (r *burstReader) Commit(context.Context, ...bus.Message) error { return nil }
func (r *burstReader) Close() error                                 { return nil }

// TestConsumerLooksUpOnlyAfterABreak: the handled set is looked up for
// the records of a partition up to the first one known to follow a record
// this consumer handled; the records after it in its batch, and the next
// batches read without a break, are not looked up.
func TestConsumerLooksUpOnlyAfterABreak(t *testing.T) {
	seen := &memBatchSeen{ids: map[string]bool{}}
	r := newRigWith(t, func(r *rig) { r.stateLog, r.seen = partstate.NewMemChangelog(4), seen })
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()
	msg := func(part int32, off int64) bus.Message {
		a := exfil(fmt.Sprintf("an-%d-%d", part, off), fmt.Sprintf("agent-%d-%d", part, off), "cred", start)
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return bus.Message{Topic: "anomalies", Partition: part, Offset: off, Value: b}
	}
	rd := &burstReader{bursts: [][]bus.Message{
		{msg(0, 10), msg(0, 11), msg(1, 5)},            // after the assignment: all looked up
		{msg(0, 12), msg(0, 13), msg(1, 6), msg(1, 7)}, // without a break: none
		{msg(0, 20), msg(0, 21), msg(1, 8)},            // a gap on partition 0: 20 and 21 looked up
	}}
	c := &Consumer{Reader: rd, Engine: r.svc.Engine, Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	handled := func() int {
		seen.mu.Lock()
		defer seen.mu.Unlock()
		return len(seen.ids)
	}
	for deadline := time.Now().Add(10 * time.Second); handled() < 10 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	seen.mu.Lock()
	defer seen.mu.Unlock()
	want := []string{"an-0-10", "an-0-11", "an-1-5", "an-0-20", "an-0-21"}
	if !slices.Equal(seen.looked, want) || len(seen.ids) != 10 {
		t.Errorf("looked up %v, %d handled; want %v, 10", seen.looked, len(seen.ids), want)
	}
}
