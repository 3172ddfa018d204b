package baseline

import "slices"

// Median returns the median of xs (the mean of the two middle values when
// there is an even number of them), sorting xs in place. xs must not be
// empty.
func Median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}
