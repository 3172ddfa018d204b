package baseline

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkSeriesObserve is the cost of one point of a Series that has
// learnt a week of a noisy daily cycle at one point every 5 minutes (full
// lag tables): ns/op is the time per point.
func BenchmarkSeriesObserve(b *testing.B) {
	p := DefaultSeriesParams()
	rng := rand.New(rand.NewPCG(7, 7))
	const week = 7 * 288
	vals := daily(rng, 4*week, 20, 3)
	var s Series
	t0 := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i, v := range vals[:week] {
		s.Observe(&p, t0+int64(i)*300_000, v)
	}
	i := week
	b.ReportAllocs()
	for b.Loop() {
		s.Observe(&p, t0+int64(i)*300_000, vals[i%len(vals)])
		i++
	}
}
