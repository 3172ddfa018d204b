// Package suggest finds the name a user probably meant, for "did you mean"
// hints in config and file parsers.
package suggest

// Closest returns the first name in known within edit distance max of s,
// or "".
func Closest(s string, known []string, max int) string {
	for _, k := range known {
		if Distance(s, k, max) <= max {
			return k
		}
	}
	return ""
}

// Distance returns the Levenshtein distance of a and b, or max+1 when it
// is larger than max (or a is longer than 64 bytes: hints are for names).
func Distance(a, b string, max int) int {
	if len(a)-len(b) > max || len(b)-len(a) > max || len(a) > 64 {
		return max + 1
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
