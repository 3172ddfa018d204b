package suggest

import "testing"

func TestDistanceAndClosest(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"channel", "channel", 0}, {"chanel", "channel", 1}, {"kinds", "kind", 1},
		{"abc", "xyz", 3}, {"a", "abcdef", 3}, // over max: max+1
	} {
		if got := Distance(tc.a, tc.b, 2); got != min(tc.want, 3) {
			t.Errorf("Distance(%q, %q) = %d, want %d", tc.a, tc.b, got, min(tc.want, 3))
		}
	}
	if got := Closest("chanel", []string{"kind", "channel", "chanels"}, 2); got != "channel" {
		t.Errorf("Closest = %q, want channel", got)
	}
	if got := Closest("zzzz", []string{"kind"}, 2); got != "" {
		t.Errorf("Closest = %q, want none", got)
	}
}
