package kstate_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
)

func setup(t *testing.T, partitions int) kstate.Config {
	t.Helper()
	k := itest.PlainKafka(t)
	topic := "kstate-test-" + itest.RandHex(6)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sec := k.Security(t)
	if err := kafka.EnsureTopics(ctx, k.Brokers, sec, kstate.Spec(topic, partitions)); err != nil {
		t.Fatal(err)
	}
	k.DeleteTopicsAfter(t, topic)
	return kstate.Config{Brokers: k.Brokers, Security: sec, Topic: topic}
}

// mirror is a Table's apply that keeps the latest value per key.
type mirror struct {
	mu   sync.Mutex
	m    map[string]string
	keys []string // every key applied, in offset order
}

func (m *mirror) apply(r kstate.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = make(map[string]string)
	}
	m.keys = append(m.keys, r.Key)
	if r.Tombstone() {
		delete(m.m, r.Key)
		return
	}
	m.m[r.Key] = string(r.Value)
}

func (m *mirror) get(k string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.m[k]
	return v, ok
}

func TestIntegrationTableIsReplicatedAcrossProcesses(t *testing.T) {
	cfg := setup(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var m1, m2 mirror
	t1, err := kstate.OpenTable(ctx, cfg, m1.apply)
	if err != nil {
		t.Fatal(err)
	}
	defer t1.Close()
	t2, err := kstate.OpenTable(ctx, cfg, m2.apply)
	if err != nil {
		t.Fatal(err)
	}
	defer t2.Close()

	// Read your writes: applied here by the time Put returns.
	if _, err := t1.Put(ctx, "s/1", []byte("silence one")); err != nil {
		t.Fatal(err)
	}
	if v, ok := m1.get("s/1"); !ok || v != "silence one" {
		t.Fatalf("own write not applied on return: %q %v", v, ok)
	}
	// The other process sees it within the propagation bound.
	start := time.Now()
	for {
		if v, ok := m2.get("s/1"); ok && v == "silence one" {
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatal("the other table did not apply the record within 2s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("propagated to the other table in %s", time.Since(start))

	// Sync makes every earlier write visible.
	if _, err := t2.Put(ctx, "s/2", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if _, err := t2.Delete(ctx, "s/1"); err != nil {
		t.Fatal(err)
	}
	if err := t1.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := m1.get("s/1"); ok {
		t.Error("tombstone not applied after Sync")
	}
	if v, _ := m1.get("s/2"); v != "two" {
		t.Errorf("s/2 = %q after Sync, want two", v)
	}

	// Concurrent Puts from two processes: every process applies the same
	// records in the same order.
	var wg sync.WaitGroup
	for i := range 50 {
		tb := t1
		if i%2 == 1 {
			tb = t2
		}
		wg.Go(func() {
			if _, err := tb.Put(ctx, fmt.Sprintf("b/%02d", i), []byte("claim")); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := t1.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := t2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	m1.mu.Lock()
	m2.mu.Lock()
	same := slices.Equal(m1.keys, m2.keys)
	n := len(m1.keys)
	m2.mu.Unlock()
	m1.mu.Unlock()
	if !same {
		t.Fatal("the two processes applied the records in different orders")
	}

	// A process that opens later restores the same table.
	var m3 mirror
	t3, err := kstate.OpenTable(ctx, cfg, m3.apply)
	if err != nil {
		t.Fatal(err)
	}
	defer t3.Close()
	if len(m3.keys) != n || !slices.Equal(m3.keys, m1.keys) {
		t.Fatalf("a late opener restored %d records, want the same %d", len(m3.keys), n)
	}
	if _, ok := m3.get("s/1"); ok {
		t.Error("a late opener sees a deleted key")
	}
}

func TestIntegrationChangelogRestoresWhatItsOwnerWrote(t *testing.T) {
	cfg := setup(t, 3)
	reg := prometheus.NewRegistry()
	cfg.Metrics = kstate.NewMetrics(reg)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c, err := kstate.OpenChangelog(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Partitions() != 3 {
		t.Fatalf("partitions = %d, want 3", c.Partitions())
	}
	// Empty partition: nothing to restore, and no wait for records.
	if err := c.Restore(ctx, 2, func(kstate.Record) error { t.Error("record in an empty partition"); return nil }); err != nil {
		t.Fatal(err)
	}
	// Many concurrent appends to one partition, group-committed.
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			if err := c.Append(ctx, 1, kstate.Record{Key: fmt.Sprintf("o/%03d", i), Value: []byte("pending")}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// 200 writers at once cannot all have had a request of their own.
	var mf dto.Metric
	if h, err := cfg.Metrics.BatchHistogram(cfg.Topic); err != nil {
		t.Fatal(err)
	} else if err := h.Write(&mf); err != nil {
		t.Fatal(err)
	}
	if reqs := mf.GetHistogram().GetSampleCount(); reqs == 0 || reqs >= 200 || mf.GetHistogram().GetSampleSum() != 200 {
		t.Errorf("200 concurrent appends made %d requests carrying %v records; want fewer requests than appends", reqs, mf.GetHistogram().GetSampleSum())
	} else {
		t.Logf("200 concurrent appends went out in %d requests", reqs)
	}
	if err := c.Append(ctx, 1, kstate.Record{Key: "o/000", Value: []byte("done")}, kstate.Record{Key: "o/001"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Append(ctx, 0, kstate.Record{Key: "i/other", Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := c.Append(ctx, 3, kstate.Record{Key: "x", Value: []byte("x")}); err == nil {
		t.Error("append to a partition out of range succeeded")
	}

	// The next owner opens its own Changelog and restores partition 1.
	c2, err := kstate.OpenChangelog(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	state := map[string]string{}
	if err := c2.Restore(ctx, 1, func(r kstate.Record) error {
		if r.Partition != 1 {
			t.Errorf("record of partition %d in partition 1's restore", r.Partition)
		}
		if r.Tombstone() {
			delete(state, r.Key)
		} else {
			state[r.Key] = string(r.Value)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(state) != 199 {
		t.Errorf("restored %d keys, want 199 (200 written, one deleted)", len(state))
	}
	if state["o/000"] != "done" {
		t.Errorf("o/000 = %q, want the later value done", state["o/000"])
	}
	if _, ok := state["o/001"]; ok {
		t.Error("o/001 was deleted but restored")
	}
	if _, ok := state["i/other"]; ok {
		t.Error("partition 0's record restored in partition 1")
	}
}

// TestIntegrationFenceRefusesWrites: once the Fence fails, neither the
// changelog nor the table writes anything more.
func TestIntegrationFenceRefusesWrites(t *testing.T) {
	cfg := setup(t, 1)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	stalled := errors.New("stood still")
	var fenced atomic.Bool
	cfg.Fence = func() error {
		if fenced.Load() {
			return stalled
		}
		return nil
	}
	c, err := kstate.OpenChangelog(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var m mirror
	tb, err := kstate.OpenTable(ctx, cfg, m.apply)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	if err := c.Append(ctx, 0, kstate.Record{Key: "before", Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	fenced.Store(true)
	if err := c.Append(ctx, 0, kstate.Record{Key: "after", Value: []byte("2")}); !errors.Is(err, stalled) {
		t.Fatalf("changelog append once fenced: %v, want the fence's error", err)
	}
	if _, err := tb.Put(ctx, "after-put", []byte("3")); !errors.Is(err, stalled) {
		t.Fatalf("table put once fenced: %v, want the fence's error", err)
	}
	var keys []string
	if err := c.Restore(ctx, 0, func(r kstate.Record) error { keys = append(keys, r.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != "before" {
		t.Fatalf("the topic holds %v, want only the write made before the fence", keys)
	}
}
