package kafka

import (
	"fmt"
	"testing"
)

func TestPartitionForSpreadsAndIsStable(t *testing.T) {
	counts := make([]int, 6)
	for i := range 6000 {
		key := fmt.Sprintf("agent-%d", i)
		p := PartitionFor(key, 6)
		if p < 0 || p >= 6 || PartitionFor(key, 6) != p {
			t.Fatalf("PartitionFor(%q) = %d: out of range or unstable", key, p)
		}
		counts[p]++
	}
	for p, n := range counts {
		if n < 700 || n > 1300 {
			t.Errorf("partition %d got %d of 6000 keys: Murmur2 should spread them evenly", p, n)
		}
	}
}
