package benchkit

import (
	"testing"
	"time"
)

// TestQuantile pins the nearest-rank rule behind every report's p50 and p99.
func TestQuantile(t *testing.T) {
	ds := make([]time.Duration, 100)
	for i := range ds {
		ds[i] = time.Duration(i+1) * time.Millisecond
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 51 * time.Millisecond}, {0.99, 100 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		if got := Quantile(ds, c.q); got != c.want {
			t.Errorf("quantile(1..100 ms, %g) = %s; want %s", c.q, got, c.want)
		}
	}
	if got := Quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile(nil) = %s; want 0", got)
	}
}
