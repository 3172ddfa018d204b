package kafka

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

func TestIntegrationReadSince(t *testing.T) {
	bs := brokers(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	topic := ensure(t, ctx, bs, 3)
	w, err := NewWriter(WriterConfig{Brokers: bs, Topic: topic}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	write := func(prefix string, n int) {
		msgs := make([]bus.Message, n)
		for i := range msgs {
			msgs[i] = bus.Message{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "%s-%d", prefix, i)}
		}
		if err := w.Write(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	write("old", 30)
	time.Sleep(1500 * time.Millisecond)
	since := time.Now()
	write("new", 40)

	got := map[string]bool{}
	if err := ReadSince(ctx, bs, Security{}, topic, since.Add(-200*time.Millisecond), func(m bus.Message) error {
		got[string(m.Value)] = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if !got[fmt.Sprintf("new-%d", i)] {
			t.Errorf("new-%d missing", i)
		}
	}
	if len(got) != 40 {
		t.Errorf("read %d records, want the 40 written after since", len(got))
	}
	// Nothing written since: returns at once with nothing.
	n := 0
	if err := ReadSince(ctx, bs, Security{}, topic, time.Now().Add(time.Minute), func(bus.Message) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("ReadSince(future) = %d records, %v", n, err)
	}
}
