package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// ok is a handler that records the call and succeeds with the key as
// result.
func ok(c *calls) Handler {
	return func(_ context.Context, e Entry) ([]byte, error) {
		c.add(e)
		return []byte("result of " + e.Key), nil
	}
}

func TestWorkerRunsEntries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := tempStore(t, FileOptions{})
		c := &calls{}
		stop := startWorker(t, &Worker{Store: s, Kinds: map[string]Kind{"k": {Handler: ok(c)}}})
		enqueue(t, s, "a", "k")
		enqueue(t, s, "b", "k")
		synctest.Wait()
		stop()
		if got := strings.Join(c.keys(), " "); got != "a b" {
			t.Fatalf("handler calls: %s; want a b", got)
		}
		e := get(t, s, "a")
		if e.State != StateDone || string(e.Result) != "result of a" || e.Attempts != 1 || e.Failures != 0 {
			t.Fatalf("entry a = %+v; want done with its result after one attempt", e)
		}
	})
}

func TestRetryAfterHonoured(t *testing.T) {
	for _, independent := range []bool{false, true} {
		t.Run(fmt.Sprintf("independent=%v", independent), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const wait = 30 * time.Second
				s, _ := tempStore(t, FileOptions{})
				reg := prometheus.NewRegistry()
				m := NewMetrics(reg)
				c := &calls{}
				slack := func(_ context.Context, e Entry) ([]byte, error) {
					c.add(e)
					if e.Key == "slack-1" && e.Attempts == 1 {
						return nil, RetryAfter(wait, errors.New("slack answered 429"))
					}
					return []byte("ts"), nil
				}
				w := &Worker{Store: s, Metrics: m, Kinds: map[string]Kind{
					"slack":  {Handler: slack, IndependentRetryAfter: independent},
					"revoke": {Handler: ok(c)},
				}}
				t0 := time.Now()
				enqueue(t, s, "slack-1", "slack")
				enqueue(t, s, "slack-2", "slack")
				enqueue(t, s, "revoke-1", "revoke")
				stop := startWorker(t, w)
				defer stop()

				time.Sleep(wait - time.Nanosecond)
				synctest.Wait()
				if got := c.of("slack-1"); len(got) != 1 {
					t.Fatalf("slack-1 ran %d times before its Retry-After ended; want once", len(got))
				}
				if got := c.of("revoke-1"); len(got) != 1 || !got[0].at.Equal(t0) {
					t.Fatalf("revoke-1 calls %+v; want one at once, not held by Slack's rate limit", got)
				}
				s2 := c.of("slack-2")
				if independent && (len(s2) != 1 || !s2[0].at.Equal(t0)) {
					t.Fatalf("slack-2 calls %+v; want one at once (independent Retry-After)", s2)
				}
				if !independent && len(s2) != 0 {
					t.Fatalf("slack-2 ran during its kind's Retry-After: %+v", s2)
				}

				time.Sleep(time.Nanosecond)
				synctest.Wait()
				got := c.of("slack-1")
				if len(got) != 2 || !got[1].at.Equal(t0.Add(wait)) {
					t.Fatalf("slack-1 calls %+v; want a second at exactly t0+%s", got, wait)
				}
				if s2 := c.of("slack-2"); len(s2) != 1 {
					t.Fatalf("slack-2 calls %+v; want one", s2)
				}
				e := get(t, s, "slack-1")
				if e.State != StateDone || e.RetryAfterWaits != 1 || e.Failures != 0 || e.Attempts != 2 {
					t.Fatalf("slack-1 = %+v; want done after one wait that did not count as a failure", e)
				}
				if n := testutil.ToFloat64(m.RetryAfterWaits.WithLabelValues("slack")); n != 1 {
					t.Fatalf("retry_after_waits_total = %v; want 1", n)
				}
				if n := testutil.ToFloat64(m.Attempts.WithLabelValues("slack", "retry_after")); n != 1 {
					t.Fatalf("attempts_total{outcome=retry_after} = %v; want 1", n)
				}
			})
		})
	}
}

// TestRetryAfterIsNotAFailure: an entry rate limited more often than
// MaxAttempts is never parked.
func TestRetryAfterIsNotAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := tempStore(t, FileOptions{})
		h := func(_ context.Context, e Entry) ([]byte, error) {
			if e.Attempts <= 5 {
				return nil, RetryAfter(time.Second, nil)
			}
			return nil, nil
		}
		stop := startWorker(t, &Worker{Store: s, Backoff: Backoff{MaxAttempts: 2}, Kinds: map[string]Kind{"k": {Handler: h}}})
		enqueue(t, s, "a", "k")
		time.Sleep(time.Minute)
		stop()
		if e := get(t, s, "a"); e.State != StateDone || e.RetryAfterWaits != 5 {
			t.Fatalf("entry = %+v; want done after 5 waits", e)
		}
	})
}

func TestBackoffThenPark(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := tempStore(t, FileOptions{})
		m := NewMetrics(prometheus.NewRegistry())
		var logs logBuf
		c := &calls{}
		fail := func(_ context.Context, e Entry) ([]byte, error) {
			c.add(e)
			if e.Key == "bad-request" {
				return nil, Permanent(errors.New("400 invalid_blocks"))
			}
			return nil, errors.New("gateway answered 503")
		}
		bo := Backoff{Base: time.Second, Max: 4 * time.Second, MaxAttempts: 4}
		w := &Worker{Store: s, Backoff: bo, Metrics: m, Log: logs.logger(), Kinds: map[string]Kind{"k": {Handler: fail, Concurrency: 2}}}
		enqueue(t, s, "flaky", "k")
		enqueue(t, s, "bad-request", "k")
		stop := startWorker(t, w)
		time.Sleep(time.Hour)
		synctest.Wait()

		got := c.of("flaky")
		if len(got) != bo.MaxAttempts {
			t.Fatalf("flaky ran %d times; want %d, then parked", len(got), bo.MaxAttempts)
		}
		for i := 1; i < len(got); i++ {
			d := min(bo.Base<<(i-1), bo.Max)
			if gap := got[i].at.Sub(got[i-1].at); gap < d/2 || gap > d {
				t.Fatalf("wait before run %d: %s; want in [%s, %s]", i+1, gap, d/2, d)
			}
		}
		e := get(t, s, "flaky")
		if e.State != StateParked || e.Failures != 4 || !strings.Contains(e.LastError, "503") {
			t.Fatalf("flaky = %+v; want parked after 4 failures with the last error", e)
		}
		if n := testutil.ToFloat64(m.Parked.WithLabelValues("k")); n != 1 {
			t.Fatalf("parked gauge = %v; want 1", n)
		}
		if n := testutil.ToFloat64(m.Attempts.WithLabelValues("k", "retry")); n != 3 {
			t.Fatalf("attempts_total{outcome=retry} = %v; want 3", n)
		}
		if !strings.Contains(logs.String(), "outbox entry parked") || !strings.Contains(logs.String(), "key=flaky") {
			t.Fatalf("no log line says flaky was parked:\n%s", logs.String())
		}
		if got := c.of("bad-request"); len(got) != 1 {
			t.Fatalf("bad-request ran %d times; want once (permanent error)", len(got))
		}
		if e := get(t, s, "bad-request"); e.State != StateFailed {
			t.Fatalf("bad-request = %+v; want failed", e)
		}

		// A human fixes the cause and requeues: it runs again, and the
		// parked gauge goes back to zero.
		stop()
		w.Kinds["k"] = Kind{Handler: ok(c)}
		stop = startWorker(t, w)
		if _, err := Requeue(t.Context(), s, "flaky"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		stop()
		if e := get(t, s, "flaky"); e.State != StateDone || e.Attempts != 5 || e.Failures != 0 {
			t.Fatalf("flaky after requeue = %+v; want done on its 5th attempt", e)
		}
		if n := testutil.ToFloat64(m.Parked.WithLabelValues("k")); n != 0 {
			t.Fatalf("parked gauge = %v after requeue; want 0", n)
		}
		if _, err := Requeue(t.Context(), s, "flaky"); err == nil {
			t.Fatal("Requeue of a done entry = nil error")
		}
	})
}

func TestDismiss(t *testing.T) {
	s, _ := tempStore(t, FileOptions{})
	e := enqueue(t, s, "a", "k")
	if _, err := Dismiss(t.Context(), s, "a", "no"); err == nil {
		t.Fatal("Dismiss of a pending entry = nil error")
	}
	e.State, e.Attempts, e.Failures = StateParked, 1, 1
	s.Update(t.Context(), e)
	e, err := Dismiss(t.Context(), s, "a", "credential already rotated by hand")
	if err != nil || e.State != StateFailed || !strings.Contains(e.LastError, "rotated") {
		t.Fatalf("Dismiss = %+v, %v; want failed with the reason", e, err)
	}
}

func TestOrderKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := tempStore(t, FileOptions{})
		c := &calls{}
		var mu sync.Mutex
		active := make(map[string]int)
		var ends []string
		h := func(_ context.Context, e Entry) ([]byte, error) {
			c.add(e)
			mu.Lock()
			active[e.OrderKey]++
			if e.OrderKey != "" && active[e.OrderKey] > 1 {
				t.Errorf("%s runs while another entry of order key %s runs", e.Key, e.OrderKey)
			}
			mu.Unlock()
			time.Sleep(time.Second)
			mu.Lock()
			defer mu.Unlock()
			active[e.OrderKey]--
			if e.Key == "a2" && e.Attempts == 1 {
				return nil, errors.New("transient") // a3 must wait for a2's retry
			}
			ends = append(ends, e.Key)
			return nil, nil
		}
		// Concurrency high enough that only the order key serialises.
		w := &Worker{Store: s, Backoff: Backoff{Base: 10 * time.Second}, Kinds: map[string]Kind{"slack": {Handler: h, Concurrency: 10}}}
		t0 := time.Now()
		for _, k := range []string{"a1", "b1", "a2", "n1", "b2", "a3"} {
			var opts []EnqueueOption
			if k[0] != 'n' {
				opts = append(opts, WithOrderKey("incident-"+k[:1]))
			}
			enqueue(t, s, k, "slack", opts...)
		}
		stop := startWorker(t, w)
		time.Sleep(time.Minute)
		stop()

		var a, b []string
		for _, k := range ends {
			switch k[0] {
			case 'a':
				a = append(a, k)
			case 'b':
				b = append(b, k)
			}
		}
		if strings.Join(a, " ") != "a1 a2 a3" || strings.Join(b, " ") != "b1 b2" {
			t.Fatalf("completion order: a %v, b %v; want each in enqueue order", a, b)
		}
		for _, k := range []string{"a1", "b1", "n1"} {
			if got := c.of(k); !got[0].at.Equal(t0) {
				t.Fatalf("%s started at t0+%s; want at once, in parallel", k, got[0].at.Sub(t0))
			}
		}
		a3 := c.of("a3")
		a2 := c.of("a2")
		if len(a2) != 2 || !a3[0].at.After(a2[1].at) {
			t.Fatalf("a3 started at %v, a2's runs at %+v; want a3 after a2's retry", a3[0].at, a2)
		}
	})
}

// TestKindConcurrency: by default one entry of a kind runs at a time, in
// Seq order.
func TestKindConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := tempStore(t, FileOptions{})
		var mu sync.Mutex
		running, most := 0, 0
		c := &calls{}
		h := func(_ context.Context, e Entry) ([]byte, error) {
			c.add(e)
			mu.Lock()
			running++
			most = max(most, running)
			mu.Unlock()
			time.Sleep(time.Second)
			mu.Lock()
			running--
			mu.Unlock()
			return nil, nil
		}
		for i := range 5 {
			enqueue(t, s, fmt.Sprintf("e%d", i), "k")
		}
		stop := startWorker(t, &Worker{Store: s, Kinds: map[string]Kind{"k": {Handler: h}}})
		time.Sleep(time.Minute)
		stop()
		if most != 1 || strings.Join(c.keys(), " ") != "e0 e1 e2 e3 e4" {
			t.Fatalf("at most %d ran at once, in order %v; want 1, in Seq order", most, c.keys())
		}
	})
}

func TestNotBefore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := tempStore(t, FileOptions{})
		c := &calls{}
		t0 := time.Now()
		stop := startWorker(t, &Worker{Store: s, Kinds: map[string]Kind{"undo": {Handler: ok(c)}}})
		enqueue(t, s, "quarantine-undo", "undo", NotBefore(t0.Add(time.Hour)))
		time.Sleep(2 * time.Hour)
		stop()
		if got := c.of("quarantine-undo"); len(got) != 1 || !got[0].at.Equal(t0.Add(time.Hour)) {
			t.Fatalf("undo calls %+v; want one at t0+1h", got)
		}
	})
}

func TestHandlerPanicIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := tempStore(t, FileOptions{})
		h := func(_ context.Context, e Entry) ([]byte, error) {
			if e.Attempts == 1 {
				panic("boom")
			}
			return nil, nil
		}
		stop := startWorker(t, &Worker{Store: s, Kinds: map[string]Kind{"k": {Handler: h}}})
		enqueue(t, s, "a", "k")
		time.Sleep(time.Minute)
		stop()
		if e := get(t, s, "a"); e.State != StateDone || e.Attempts != 2 || !strings.Contains(e.LastError, "boom") {
			t.Fatalf("entry = %+v; want done on the second attempt, the panic kept as last error", e)
		}
	})
}

func TestHandlerTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := tempStore(t, FileOptions{})
		h := func(ctx context.Context, e Entry) ([]byte, error) {
			if e.Attempts == 1 {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return nil, nil
		}
		stop := startWorker(t, &Worker{Store: s, Kinds: map[string]Kind{"k": {Handler: h, Timeout: 5 * time.Second}}})
		enqueue(t, s, "a", "k")
		time.Sleep(time.Minute)
		stop()
		if e := get(t, s, "a"); e.State != StateDone || !strings.Contains(e.LastError, "deadline") {
			t.Fatalf("entry = %+v; want done after a timed-out first run", e)
		}
	})
}

func TestUnknownKindStaysPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := tempStore(t, FileOptions{})
		var logs logBuf
		stop := startWorker(t, &Worker{Store: s, Log: logs.logger(), Kinds: map[string]Kind{"k": {Handler: ok(&calls{})}}})
		enqueue(t, s, "a", "webhook")
		time.Sleep(time.Minute)
		stop()
		if e := get(t, s, "a"); e.State != StatePending {
			t.Fatalf("entry = %+v; want pending", e)
		}
		if n := strings.Count(logs.String(), "without handler"); n != 1 {
			t.Fatalf("%d log lines about the missing handler; want 1:\n%s", n, logs.String())
		}
	})
}

func TestWorkerConfigErrors(t *testing.T) {
	err := (&Worker{Kinds: map[string]Kind{"k": {Concurrency: -1}}}).Run(t.Context())
	for _, want := range []string{"store", "kinds[k].handler", "kinds[k].concurrency"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Run with bad config = %v; want it to name %s", err, want)
		}
	}
}

// TestWaitHoldsBackOnlyItsEntry: an entry waiting on another one (Wait) is
// rescheduled alone; the other entries of its kind run at once, unlike
// after a rate limit.
func TestWaitHoldsBackOnlyItsEntry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const wait = 30 * time.Second
		s, _ := tempStore(t, FileOptions{})
		m := NewMetrics(prometheus.NewRegistry())
		c := &calls{}
		h := func(_ context.Context, e Entry) ([]byte, error) {
			c.add(e)
			if e.Key == "reply-1" && e.Attempts == 1 {
				return nil, Wait(wait, "waiting for the thread's alert")
			}
			return nil, nil
		}
		w := &Worker{Store: s, Metrics: m, Kinds: map[string]Kind{"slack": {Handler: h}}}
		t0 := time.Now()
		enqueue(t, s, "reply-1", "slack")
		enqueue(t, s, "alert-2", "slack")
		stop := startWorker(t, w)
		defer stop()
		synctest.Wait()
		if got := c.of("alert-2"); len(got) != 1 || !got[0].at.Equal(t0) {
			t.Fatalf("alert-2 calls %+v; want one at once: a Wait must not pause the kind", got)
		}
		time.Sleep(wait)
		synctest.Wait()
		if got := c.of("reply-1"); len(got) != 2 || !got[1].at.Equal(t0.Add(wait)) {
			t.Fatalf("reply-1 calls %+v; want a second at t0+%s", got, wait)
		}
		if n := testutil.ToFloat64(m.RetryAfterWaits.WithLabelValues("slack")); n != 0 {
			t.Fatalf("a Wait counted as a rate-limit wait: %v", n)
		}
		if e := get(t, s, "reply-1"); e.State != StateDone || e.Failures != 0 {
			t.Fatalf("reply-1 = %+v; want done, no failure", e)
		}
	})
}

// TestBacklogRunsEveryEntryInOrderKeyOrder: past coalesceAbove open
// entries the Worker gathers outcomes before it lists again; every entry
// still runs once, and each order key's entries in Seq order.
func TestBacklogRunsEveryEntryInOrderKeyOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := tempStore(t, FileOptions{})
		c := &calls{}
		var mu sync.Mutex
		last := map[string]int{}
		h := func(_ context.Context, e Entry) ([]byte, error) {
			c.add(e)
			time.Sleep(5 * time.Millisecond)
			var n int
			fmt.Sscanf(e.Key[strings.LastIndexByte(e.Key, '-')+1:], "%d", &n)
			mu.Lock()
			defer mu.Unlock()
			if n <= last[e.OrderKey] {
				t.Errorf("%s ran after entry %d of its order key", e.Key, last[e.OrderKey])
			}
			last[e.OrderKey] = n
			return nil, nil
		}
		const n = 3 * coalesceAbove
		for i := 1; i <= n; i++ {
			key := fmt.Sprintf("o%d-%d", i%7, i)
			enqueue(t, s, key, "k", WithOrderKey(fmt.Sprintf("o%d", i%7)))
		}
		stop := startWorker(t, &Worker{Store: s, Kinds: map[string]Kind{"k": {Handler: h, Concurrency: 32}}})
		time.Sleep(time.Minute)
		synctest.Wait()
		stop()
		if got := len(c.keys()); got != n {
			t.Fatalf("%d handler calls, want %d (each entry once)", got, n)
		}
		open, err := s.List(context.Background(), StatePending, StateInFlight)
		if err != nil || len(open) != 0 {
			t.Fatalf("%d entries still open (%v)", len(open), err)
		}
	})
}
