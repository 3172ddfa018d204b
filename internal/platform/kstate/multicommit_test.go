package kstate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// fakeTopic is a partitioned topic in memory: one request writes several
// partitions, each of which may be told to fail.
type fakeTopic struct {
	mu       sync.Mutex
	parts    map[tp][]Record
	requests []map[tp]int // per request, records asked per partition
	gate     chan struct{}
	fail     map[tp][]error // per partition, errors of its next writes
	// landed: a failed write appends its records all the same (the
	// answer was lost, not the write).
	landed bool
}

// st names partition p of the topic "state".
func st(p int32) tp { return tp{"state", p} }

func (f *fakeTopic) write(_ context.Context, parts map[tp][]Record) map[tp]partResult {
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	asked := map[tp]int{}
	out := map[tp]partResult{}
	for p, recs := range parts {
		asked[p] = len(recs)
		if errs := f.fail[p]; len(errs) > 0 {
			f.fail[p] = errs[1:]
			out[p] = partResult{err: errs[0]}
			if f.landed {
				f.parts[p] = append(f.parts[p], recs...)
			}
			continue
		}
		out[p] = partResult{base: int64(len(f.parts[p]))}
		f.parts[p] = append(f.parts[p], recs...)
	}
	f.requests = append(f.requests, asked)
	return out
}

func TestMultiCommitterWritesEveryPartitionInOneRequest(t *testing.T) {
	f := &fakeTopic{parts: map[tp][]Record{}, gate: make(chan struct{})}
	c := newMultiCommitter(5*time.Second, f.write)
	const callers = 24
	offsets := make([]int64, callers)
	var wg sync.WaitGroup
	do := func(i int) {
		off, err := c.append(t.Context(), st(int32(i%6)), []Record{{Key: fmt.Sprintf("k%d", i), Value: []byte("v")}})
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
		if got := f.parts[st(int32(i%6))][off].Key; got != fmt.Sprintf("k%d", i) {
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
			f := &fakeTopic{parts: map[tp][]Record{}, gate: make(chan struct{}), fail: map[tp][]error{st(1): tt.fail}}
			c := newMultiCommitter(5*time.Second, f.write)
			var wg sync.WaitGroup
			var err0, err1 error
			// A first caller holds the committer so that the two
			// partitions' records gather into one request.
			wg.Go(func() { _, _ = c.append(t.Context(), st(2), []Record{{Key: "x", Value: []byte("v")}}) })
			waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.flushing })
			wg.Go(func() { _, err0 = c.append(t.Context(), st(0), []Record{{Key: "a", Value: []byte("v")}}) })
			wg.Go(func() { _, err1 = c.append(t.Context(), st(1), []Record{{Key: "b", Value: []byte("v")}}) })
			waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.next != nil && len(c.next.parts) == 2 })
			close(f.gate)
			wg.Wait()
			if err0 != nil {
				t.Errorf("partition 0: %v, want it written whatever partition 1 got", err0)
			}
			if (err1 != nil) != tt.wantErr || (tt.wantErr && !errors.Is(err1, tt.fail[0])) {
				t.Errorf("partition 1: err = %v, want error %v", err1, tt.wantErr)
			}
			writes := map[tp]int{}
			for _, r := range f.requests {
				for p := range r {
					writes[p]++
				}
			}
			if writes[st(0)] != tt.writes0 || writes[st(1)] != tt.writes1 {
				t.Errorf("partition 0 written %d times, partition 1 %d, want %d and %d", writes[st(0)], writes[st(1)], tt.writes0, tt.writes1)
			}
			if got := len(f.parts[st(0)]); got != 1 {
				t.Errorf("partition 0 holds %d records, want 1 (not written again with partition 1's retry)", got)
			}
		})
	}
}

func TestMultiCommitterRefusesWhenCallerGaveUp(t *testing.T) {
	f := &fakeTopic{parts: map[tp][]Record{}}
	c := newMultiCommitter(5*time.Second, f.write)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.append(ctx, st(0), []Record{{Key: "k", Value: []byte("v")}}); !errors.Is(err, context.Canceled) {
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
	f := &fakeTopic{parts: map[tp][]Record{}, fail: map[tp][]error{st(1): {nl, nl, nl, nl, nl}}}
	c := newMultiCommitter(10*time.Second, f.write)
	done1 := make(chan error, 1)
	go func() {
		_, err := c.append(t.Context(), st(1), []Record{{Key: "b1", Value: []byte("v")}})
		done1 <- err
	}()
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.retrying[st(1)] })
	start := time.Now()
	for i := range 3 {
		if _, err := c.append(t.Context(), st(0), []Record{{Key: fmt.Sprintf("a%d", i), Value: []byte("v")}}); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("partition 0's writes took %v while partition 1 was written again; want them apart", d)
	}
	c.mu.Lock()
	retrying := c.retrying[st(1)]
	c.mu.Unlock()
	if !retrying {
		t.Fatal("partition 1's retries ended before partition 0's writes: the test proves nothing")
	}
	off, err := c.append(t.Context(), st(1), []Record{{Key: "b2", Value: []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done1; err != nil {
		t.Fatalf("partition 1's first record: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := f.parts[st(1)]; len(got) != 2 || got[0].Key != "b1" || got[1].Key != "b2" || off != 1 {
		t.Errorf("partition 1 holds %v (b2 at %d); want b1 then b2", got, off)
	}
}

// A write that landed but whose answer was lost is written again, and a
// record that names the keys of its retries is there under a new key each
// time, while the others keep theirs; the caller gets the offset of the
// copy that was acknowledged.
func TestMultiCommitterRetryRenamesWhatAsksTo(t *testing.T) {
	lost := kafkago.NotEnoughReplicasAfterAppend
	f := &fakeTopic{parts: map[tp][]Record{}, fail: map[tp][]error{gl: {lost, lost}}, landed: true}
	c := newMultiCommitter(10*time.Second, f.write)
	off, err := c.append(t.Context(), gl, []Record{
		{Key: "plain", Value: []byte("v")},
		{Key: "once", Value: []byte("v"), retryKey: func(n int) string { return fmt.Sprintf("once~%d", n) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for _, r := range f.parts[gl] {
		keys = append(keys, r.Key)
	}
	if want := []string{"plain", "once", "plain", "once~1", "plain", "once~2"}; !slices.Equal(keys, want) || off != 4 {
		t.Fatalf("the partition holds %v and the caller got offset %d; want %v and 4", keys, off, want)
	}
}

// gl names the partition of the one-partition topic "global".
var gl = tp{"global", 0}

// holdLeader has a first caller (on a partition of its own) lead and block
// in f's write, so that the records appended next gather into one batch;
// it returns once that caller returned.
func holdLeader(t *testing.T, c *multiCommitter, f *fakeTopic, gather func(), ready func(b *multiBatch) bool) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := c.append(t.Context(), tp{"other", 9}, []Record{{Key: "x", Value: []byte("v")}}); err != nil {
			t.Error(err)
		}
	}()
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.flushing })
	gather()
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.next != nil && ready(c.next) })
	close(f.gate)
	<-done
}

// The records of two topics that arrive while a request is out go in the
// next request together, and each caller gets the offset of its record in
// its own topic and partition (both topics have a partition 0). Each
// topic's hook sees that request once, with its own records; the request
// hook sees it once with all of them.
func TestMultiCommitterWritesSeveralTopicsInOneRequest(t *testing.T) {
	f := &fakeTopic{parts: map[tp][]Record{}, gate: make(chan struct{})}
	c := newMultiCommitter(5*time.Second, f.write)
	var mu sync.Mutex
	perTopic := map[string][]int{}
	var perRequest []int
	c.observe = func(topic string, n int, err error) {
		mu.Lock()
		defer mu.Unlock()
		perTopic[topic] = append(perTopic[topic], n)
	}
	c.observeRequest = func(n int, err error) {
		mu.Lock()
		defer mu.Unlock()
		perRequest = append(perRequest, n)
	}
	// Eight records over state/0..3 and three to global/0.
	type call struct {
		at  tp
		key string
	}
	var calls []call
	for i := range 8 {
		calls = append(calls, call{st(int32(i % 4)), fmt.Sprintf("s%d", i)})
	}
	for i := range 3 {
		calls = append(calls, call{gl, fmt.Sprintf("g%d", i)})
	}
	offsets := make([]int64, len(calls))
	var wg sync.WaitGroup
	holdLeader(t, c, f, func() {
		for i, cl := range calls {
			wg.Go(func() {
				off, err := c.append(t.Context(), cl.at, []Record{{Key: cl.key, Value: []byte("v")}})
				if err != nil {
					t.Error(err)
				}
				offsets[i] = off
			})
		}
	}, func(b *multiBatch) bool {
		n := 0
		for _, recs := range b.parts {
			n += len(recs)
		}
		return n == len(calls)
	})
	wg.Wait()
	if len(f.requests) != 2 {
		t.Fatalf("%d writes to two topics made %d requests, want 2 (the leader's, then one for both topics)", len(calls), len(f.requests))
	}
	if want := map[tp]int{st(0): 2, st(1): 2, st(2): 2, st(3): 2, gl: 3}; !maps.Equal(f.requests[1], want) {
		t.Errorf("the gathered request asked %v, want %v", f.requests[1], want)
	}
	for i, cl := range calls {
		if recs := f.parts[cl.at]; offsets[i] >= int64(len(recs)) || recs[offsets[i]].Key != cl.key {
			t.Errorf("%s: got offset %d of %s, which holds %v", cl.key, offsets[i], cl.at, recs)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if got := perTopic["state"]; !slices.Equal(got, []int{8}) {
		t.Errorf("the state topic's hook saw %v, want one request of 8 records", got)
	}
	if got := perTopic["global"]; !slices.Equal(got, []int{3}) {
		t.Errorf("the global topic's hook saw %v, want one request of 3 records", got)
	}
	if !slices.Equal(perRequest, []int{1, 11}) {
		t.Errorf("the request hook saw %v, want [1 11] (the leader's record, then both topics' together)", perRequest)
	}
}

// A partition of one topic written again after a leader change holds back
// only its own later records: the other topic's partition of the same
// number is written meanwhile, and the failed partition's records keep
// their order.
func TestMultiCommitterRetryOfOneTopicLetsTheOtherGoOn(t *testing.T) {
	nl := kafkago.NotLeaderForPartition
	f := &fakeTopic{parts: map[tp][]Record{}, fail: map[tp][]error{gl: {nl, nl, nl, nl, nl}}}
	c := newMultiCommitter(10*time.Second, f.write)
	doneG := make(chan error, 1)
	go func() { _, err := c.append(t.Context(), gl, []Record{{Key: "g1", Value: []byte("v")}}); doneG <- err }()
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.retrying[gl] })
	start := time.Now()
	for i := range 3 {
		off, err := c.append(t.Context(), st(0), []Record{{Key: fmt.Sprintf("s%d", i), Value: []byte("v")}})
		if err != nil || off != int64(i) {
			t.Fatalf("state/0 write %d: offset %d, %v; want %d", i, off, err, i)
		}
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("state/0's writes took %v while global/0 was written again; want them apart", d)
	}
	c.mu.Lock()
	retrying := c.retrying[gl]
	c.mu.Unlock()
	if !retrying {
		t.Fatal("global/0's retries ended before state/0's writes: the test proves nothing")
	}
	off, err := c.append(t.Context(), gl, []Record{{Key: "g2", Value: []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-doneG; err != nil {
		t.Fatalf("global/0's first record: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := f.parts[gl]; len(got) != 2 || got[0].Key != "g1" || got[1].Key != "g2" || off != 1 {
		t.Errorf("global/0 holds %v (g2 at %d); want g1 then g2", got, off)
	}
	for _, r := range f.requests {
		if _, ok := r[gl]; ok && len(r) > 1 {
			t.Errorf("a request carried global/0 with %v: want its retries apart", r)
		}
	}
}

// A write refused for good reaches only the callers of its partition: the
// other topic's callers in the same request get their offsets, nothing is
// written again, and the next write to the refused partition is tried
// afresh.
func TestMultiCommitterFailureReachesOnlyItsCallers(t *testing.T) {
	denied := kafkago.TopicAuthorizationFailed
	f := &fakeTopic{parts: map[tp][]Record{}, gate: make(chan struct{}), fail: map[tp][]error{gl: {denied}}}
	c := newMultiCommitter(5*time.Second, f.write)
	var failedRequests []string
	c.observe = func(topic string, _ int, err error) {
		if err != nil {
			failedRequests = append(failedRequests, topic) // the leader's goroutine, once at a time
		}
	}
	errs := make([]error, 4)
	at := []tp{gl, gl, st(0), st(1)}
	var wg sync.WaitGroup
	holdLeader(t, c, f, func() {
		for i, p := range at {
			wg.Go(func() { _, errs[i] = c.append(t.Context(), p, []Record{{Key: fmt.Sprint(i), Value: []byte("v")}}) })
		}
	}, func(b *multiBatch) bool { return len(b.parts[gl]) == 2 && len(b.parts) == 3 })
	wg.Wait()
	for i, p := range at {
		if p == gl {
			if !errors.Is(errs[i], denied) {
				t.Errorf("caller %d of %s: err = %v, want %v", i, p, errs[i], denied)
			}
			continue
		}
		if errs[i] != nil {
			t.Errorf("caller %d of %s: %v, want it written whatever global/0 got", i, p, errs[i])
		}
	}
	if len(f.requests) != 2 {
		t.Errorf("%d requests, want 2: a refused write is not tried again", len(f.requests))
	}
	if !slices.Equal(failedRequests, []string{"global"}) {
		t.Errorf("failed requests seen per topic: %v, want only global's", failedRequests)
	}
	if off, err := c.append(t.Context(), gl, []Record{{Key: "later", Value: []byte("v")}}); err != nil || off != 0 {
		t.Errorf("the next write to global/0: offset %d, %v; want 0, nil", off, err)
	}
}
