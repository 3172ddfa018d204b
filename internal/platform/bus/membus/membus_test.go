package membus

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
)

func TestKeyedRecordsKeepOrderAndPartition(t *testing.T) {
	b := New(0)
	b.CreateTopic("t", 4)
	w := b.Writer("t")
	ctx := context.Background()
	for i := range 100 {
		key := fmt.Sprintf("agent-%d", i%7)
		if err := w.Write(ctx, bus.Message{Key: []byte(key), Value: []byte(fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := b.Reader("g", "t")
	if err != nil {
		t.Fatal(err)
	}
	part := map[string]int32{}
	last := map[string]int{}
	for range 100 {
		m, err := r.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		k := string(m.Key)
		if p, ok := part[k]; ok && p != m.Partition {
			t.Fatalf("key %s on partitions %d and %d", k, p, m.Partition)
		}
		part[k] = m.Partition
		var v int
		fmt.Sscan(string(m.Value), &v)
		if l, ok := last[k]; ok && v <= l {
			t.Fatalf("key %s out of order: %d after %d", k, v, l)
		}
		last[k] = v
	}
	if len(last) != 7 {
		t.Fatalf("saw %d keys, want 7", len(last))
	}
}

func TestUncommittedRecordsAreRedeliveredToTheGroup(t *testing.T) {
	b := New(0)
	b.CreateTopic("t", 1)
	ctx := context.Background()
	r, _ := b.Reader("g", "t")
	w := b.Writer("t")
	for i := range 10 {
		_ = w.Write(ctx, bus.Message{Value: []byte{byte(i)}})
	}
	var got []bus.Message
	for range 10 {
		m, _ := r.Fetch(ctx)
		got = append(got, m)
	}
	if err := r.Commit(ctx, got[4]); err != nil {
		t.Fatal(err)
	}
	// A new member of the group starts after the committed offset.
	r2, _ := b.Reader("g", "t")
	m, err := r2.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.Offset != 5 {
		t.Fatalf("restart read offset %d, want 5", m.Offset)
	}
	if lag := b.Lag("g", "t"); lag != 5 {
		t.Fatalf("lag %d, want 5", lag)
	}
}

func TestWriterBlocksOnFullBacklogUntilCommit(t *testing.T) {
	b := New(2)
	b.CreateTopic("t", 1)
	r, _ := b.Reader("g", "t")
	w := b.Writer("t")
	ctx := context.Background()
	_ = w.Write(ctx, bus.Message{}, bus.Message{})
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := w.Write(short, bus.Message{}); err == nil {
		t.Fatal("write past the backlog did not block")
	}
	m, _ := r.Fetch(ctx)
	_ = r.Commit(ctx, m)
	if err := w.Write(ctx, bus.Message{}); err != nil {
		t.Fatalf("write after commit: %v", err)
	}
}

func TestFetchHonoursContextAndClose(t *testing.T) {
	b := New(0)
	b.CreateTopic("t", 1)
	r, _ := b.Reader("g", "t")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.Fetch(ctx); err == nil {
		t.Fatal("fetch on empty topic returned without error")
	}
	go func() { time.Sleep(10 * time.Millisecond); b.Close() }()
	if _, err := r.Fetch(context.Background()); err != ErrClosed {
		t.Fatalf("fetch after close: %v, want ErrClosed", err)
	}
}
