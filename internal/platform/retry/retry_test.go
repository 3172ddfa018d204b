package retry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestDelayBounds(t *testing.T) {
	ok := func(b Backoff, n int, want time.Duration) {
		t.Helper()
		for range 200 {
			if got := b.Delay(n); got < want/2 || got > want {
				t.Fatalf("%+v.Delay(%d) = %v; want within [%v, %v]", b, n, got, want/2, want)
			}
		}
	}
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	ok(b, 1, 100*time.Millisecond)
	ok(b, 2, 200*time.Millisecond)
	ok(b, 4, 800*time.Millisecond)
	ok(b, 5, time.Second)
	ok(b, 1000, time.Second) // no overflow however many failures
	ok(Backoff{Base: time.Minute, Max: 5 * time.Minute}, 62, 5*time.Minute)
	// A Base above Max is the first wait, then Max (ingest's old loop).
	ok(Backoff{Base: 2 * time.Second, Max: time.Second}, 1, 2*time.Second)
	ok(Backoff{Base: 2 * time.Second, Max: time.Second}, 2, time.Second)
	ok(Backoff{}, 3, 0)
}

func TestDo(t *testing.T) {
	errFlaky, errFatal := errors.New("flaky"), errors.New("fatal")
	// script returns the errors in turn, then nil.
	script := func(errs ...error) (func(context.Context) error, *int) {
		calls := 0
		return func(context.Context) error {
			calls++
			if calls <= len(errs) {
				return errs[calls-1]
			}
			return nil
		}, &calls
	}
	cases := []struct {
		name         string
		p            Policy
		errs         []error
		wantAttempts int
		wantErr      error
		wantRetries  int
	}{
		{"first call succeeds", Policy{}, nil, 1, nil, 0},
		{"succeeds after retries", Policy{}, []error{errFlaky, errFlaky}, 3, nil, 2},
		{"attempts bound", Policy{Attempts: 2}, []error{errFlaky, errFlaky, errFlaky}, 2, errFlaky, 1},
		{"not retryable", Policy{Retryable: func(err error) bool { return err != errFatal }}, []error{errFlaky, errFatal}, 2, errFatal, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c.p.Backoff = Backoff{Base: time.Second, Max: 4 * time.Second}
				var retries []int
				c.p.OnRetry = func(n int, wait time.Duration, err error) {
					if want := min(time.Second<<(n-1), c.p.Max); wait < want/2 || wait > want || err == nil {
						t.Errorf("OnRetry(%d, %v, %v)", n, wait, err)
					}
					retries = append(retries, n)
				}
				f, calls := script(c.errs...)
				n, err := c.p.Do(t.Context(), f)
				if n != c.wantAttempts || *calls != n || err != c.wantErr || len(retries) != c.wantRetries {
					t.Fatalf("Do = %d, %v after %d calls, %d retries; want %d, %v, %d retries",
						n, err, *calls, len(retries), c.wantAttempts, c.wantErr, c.wantRetries)
				}
			})
		})
	}
}

func TestDoStopsWithContext(t *testing.T) {
	flaky := errors.New("flaky")
	t.Run("during a wait", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()
			start := time.Now()
			n, err := Policy{Backoff: Backoff{Base: time.Minute, Max: time.Hour}}.Do(ctx, func(context.Context) error { return flaky })
			if n != 2 || !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, flaky) ||
				!strings.Contains(err.Error(), "after 2 attempts") || time.Since(start) != 90*time.Second {
				t.Fatalf("Do = %d, %v after %v; want 2 attempts, both errors, stopped at the deadline", n, err, time.Since(start))
			}
		})
	})
	t.Run("during a call", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		n, err := Policy{}.Do(ctx, func(context.Context) error { cancel(); return flaky })
		if n != 1 || err != flaky {
			t.Fatalf("Do = %d, %v; want f's error, unchanged, after 1 call", n, err)
		}
	})
}
