package kstate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// fakeTopic is a partitioned topic in memory: one request writes several
// partitions, each of which may be told to fail.
type fakeTopic struct {
	mu       sync.Mutex
	parts    map[int32][]Record
	requests []map[int32]int // per request, records asked per partition
	gate     chan struct{}
	fail     map[int32][]error // per partition, errors of its next writes
}

func (f *fakeTopic) write(_ context.Context, parts map[int32][]Record) map[int32]partResult {
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	asked := map[int32]int{}
	out := map[int32]partResult{}
	for p, recs := range parts {
		asked[p] = len(recs)
		if errs := f.fail[p]; len(errs) > 0 {
			f.fail[p] = errs[1:]
			out[p] = partResult{err: errs[0]}
			continue
		}
		out[p] = partResult{base: int64(len(f.parts[p]))}
		f.parts[p] = append(f.parts[p], recs...)
	}
	f.requests = append(f.requests, asked)
	return out
}

func TestMultiCommitterWritesEveryPartitionInOneRequest(t *testing.T) {
	f := &fakeTopic{parts: map[int32][]Record{}, gate: make(chan struct{})}
	c := newMultiCommitter(5*time.Second, f.write)
	const callers = 24
	offsets := make([]int64, callers)
	var wg sync.WaitGroup
	do := func(i int) {
		off, err := c.append(t.Context(), int32(i%6), []Record{{Key: fmt.Sprintf("k%d", i), Value: []byte("v")}})
		if err != nil {
			t.Error(err)
		}
		offsets[i] = off
	}
	// The first caller leads and blocks in write; the others, spread over
	// six partitions, gather behind it.
	wg.Go(func() { do(0) })
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.flushing })
	for i := 1; i < callers; i++ {
		wg.Go(func() { do(i) })
	}
	waitFor(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		n := 0
		if c.next != nil {
			for _, recs := range c.next.parts {
				n += len(recs)
			}
		}
		return n == callers-1
	})
	close(f.gate)
	wg.Wait()
	if len(f.requests) != 2 {
		t.Fatalf("%d callers over 6 partitions made %d requests, want 2 (the leader's, then one for all the others)", callers, len(f.requests))
	}
	if got := len(f.requests[1]); got != 6 {
		t.Errorf("the gathered request wrote %d partitions, want 6", got)
	}
	for i, off := range offsets {
		if got := f.parts[int32(i%6)][off].Key; got != fmt.Sprintf("k%d", i) {
			t.Errorf("caller %d got offset %d of partition %d, which holds %q", i, off, i%6, got)
		}
	}
}

func TestMultiCommitterRetriesOnlyTheFailedPartitions(t *testing.T) {
	tests := []struct {
		name    string
		fail    []error // partition 1's errors; partition 0 always succeeds
		wantErr bool
		// writes of partition 0 and 1 in all
		writes0, writes1 int
	}{
		{"leader of partition 1 moved, then written", []error{kafkago.NotLeaderForPartition}, false, 1, 2},
		{"partition 1 not authorized: no retry", []error{kafkago.TopicAuthorizationFailed}, true, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeTopic{parts: map[int32][]Record{}, gate: make(chan struct{}), fail: map[int32][]error{1: tt.fail}}
			c := newMultiCommitter(5*time.Second, f.write)
			var wg sync.WaitGroup
			var err0, err1 error
			// A first caller holds the committer so that the two
			// partitions' records gather into one request.
			wg.Go(func() { _, _ = c.append(t.Context(), 2, []Record{{Key: "x", Value: []byte("v")}}) })
			waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.flushing })
			wg.Go(func() { _, err0 = c.append(t.Context(), 0, []Record{{Key: "a", Value: []byte("v")}}) })
			wg.Go(func() { _, err1 = c.append(t.Context(), 1, []Record{{Key: "b", Value: []byte("v")}}) })
			waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.next != nil && len(c.next.parts) == 2 })
			close(f.gate)
			wg.Wait()
			if err0 != nil {
				t.Errorf("partition 0: %v, want it written whatever partition 1 got", err0)
			}
			if (err1 != nil) != tt.wantErr || (tt.wantErr && !errors.Is(err1, tt.fail[0])) {
				t.Errorf("partition 1: err = %v, want error %v", err1, tt.wantErr)
			}
			writes := map[int32]int{}
			for _, r := range f.requests {
				for p := range r {
					writes[p]++
				}
			}
			if writes[0] != tt.writes0 || writes[1] != tt.writes1 {
				t.Errorf("partition 0 written %d times, partition 1 %d, want %d and %d", writes[0], writes[1], tt.writes0, tt.writes1)
			}
			if got := len(f.parts[0]); got != 1 {
				t.Errorf("partition 0 holds %d records, want 1 (not written again with partition 1's retry)", got)
			}
		})
	}
}

func TestMultiCommitterRefusesWhenCallerGaveUp(t *testing.T) {
	f := &fakeTopic{parts: map[int32][]Record{}}
	c := newMultiCommitter(5*time.Second, f.write)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.append(ctx, 0, []Record{{Key: "k", Value: []byte("v")}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if len(f.requests) != 0 {
		t.Fatalf("a cancelled caller still wrote")
	}
}

// A partition written again after a leader change holds back only its own
// later records: the other partition's caller returns with the first
// request, its next records go out while the retries go on, and the
// failed partition's later records land after the retried ones.
func TestMultiCommitterRetryHoldsOnlyItsPartition(t *testing.T) {
	nl := kafkago.NotLeaderForPartition
	f := &fakeTopic{parts: map[int32][]Record{}, fail: map[int32][]error{1: {nl, nl, nl, nl, nl}}}
	c := newMultiCommitter(10*time.Second, f.write)
	done1 := make(chan error, 1)
	go func() { _, err := c.append(t.Context(), 1, []Record{{Key: "b1", Value: []byte("v")}}); done1 <- err }()
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.retrying[1] })
	start := time.Now()
	for i := range 3 {
		if _, err := c.append(t.Context(), 0, []Record{{Key: fmt.Sprintf("a%d", i), Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("partition 0's writes took %v while partition 1 was written again; want them apart", d)
	}
	c.mu.Lock()
	retrying := c.retrying[1]
	c.mu.Unlock()
	if !retrying {
		t.Fatal("partition 1's retries ended before partition 0's writes: the test proves nothing")
	}
	off, err := c.append(t.Context(), 1, []Record{{Key: "b2", Value: []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done1; err != nil {
		t.Fatalf("partition 1's first record: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := f.parts[1]; len(got) != 2 || got[0].Key != "b1" || got[1].Key != "b2" || off != 1 {
		t.Errorf("partition 1 holds %v (b2 at %d); want b1 then b2", got, off)
	}
}
