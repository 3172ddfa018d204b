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

// fakeLog is a partition in memory whose writes can be held back, so the
// test can pile callers up behind one in-flight request: a table's
// partition, written through a multiCommitter as Table does.
type fakeLog struct {
	mu       sync.Mutex
	recs     []Record
	requests int
	gate     chan struct{} // when not nil, each write waits for a value
	fail     []error       // errors returned by the next writes, in order
}

func (f *fakeLog) write(_ context.Context, recs []Record) (int64, error) {
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if len(f.fail) > 0 {
		err := f.fail[0]
		f.fail = f.fail[1:]
		return 0, err
	}
	base := int64(len(f.recs))
	f.recs = append(f.recs, recs...)
	return base, nil
}

// multi is write for a multiCommitter that writes only partition st(0).
func (f *fakeLog) multi(ctx context.Context, parts map[tp][]Record) map[tp]partResult {
	base, err := f.write(ctx, parts[st(0)])
	return map[tp]partResult{st(0): {base: base, err: err}}
}

func TestTableCommitGroupsConcurrentAppends(t *testing.T) {
	f := &fakeLog{gate: make(chan struct{})}
	c := newMultiCommitter(5*time.Second, f.multi)
	const callers = 20
	offsets := make([]int64, callers)
	var wg sync.WaitGroup
	// The first caller becomes the leader and blocks in write; the others
	// gather behind it.
	wg.Go(func() {
		off, err := c.append(t.Context(), st(0), []Record{{Key: "k0", Value: []byte("v")}})
		if err != nil {
			t.Error(err)
		}
		offsets[0] = off
	})
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.flushing })
	for i := 1; i < callers; i++ {
		wg.Go(func() {
			off, err := c.append(t.Context(), st(0), []Record{{Key: fmt.Sprintf("k%d", i), Value: []byte("v")}})
			if err != nil {
				t.Error(err)
			}
			offsets[i] = off
		})
	}
	waitFor(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.next != nil && len(c.next.parts[st(0)]) == callers-1
	})
	close(f.gate)
	wg.Wait()
	if f.requests != 2 {
		t.Fatalf("%d callers made %d write requests, want 2 (one leader, one gathered batch)", callers, f.requests)
	}
	for i, off := range offsets {
		if got := f.recs[off].Key; got != fmt.Sprintf("k%d", i) {
			t.Errorf("caller %d got offset %d, which holds %q", i, off, got)
		}
	}
}

func TestTableCommitRetriesTemporaryErrorsOnly(t *testing.T) {
	tests := []struct {
		name     string
		fail     []error
		wantErr  bool
		requests int
	}{
		{"leader moved, then written", []error{kafkago.NotLeaderForPartition}, false, 2},
		{"not authorized: no retry", []error{kafkago.TopicAuthorizationFailed}, true, 1},
		{"record too large: no retry", []error{kafkago.MessageSizeTooLarge}, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeLog{fail: tt.fail}
			c := newMultiCommitter(5*time.Second, f.multi)
			_, err := c.append(t.Context(), st(0), []Record{{Key: "k", Value: []byte("v")}})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, tt.fail[0]) {
				t.Errorf("err = %v, want it to wrap %v", err, tt.fail[0])
			}
			if f.requests != tt.requests {
				t.Errorf("%d requests, want %d", f.requests, tt.requests)
			}
		})
	}
}

func TestTableCommitRefusesWhenCallerGaveUp(t *testing.T) {
	f := &fakeLog{}
	c := newMultiCommitter(5*time.Second, f.multi)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.append(ctx, st(0), []Record{{Key: "k", Value: []byte("v")}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if f.requests != 0 {
		t.Fatalf("a cancelled caller still wrote")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
