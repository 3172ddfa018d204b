package kafka

import kafkago "github.com/segmentio/kafka-go"

// PartitionFor returns the partition of n that the writers' Murmur2
// balancer (Java-client compatible) sends key to. The detector's backfill
// uses it to file an agent's state under the partition its live events use.
func PartitionFor(key string, n int) int32 {
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	return int32((&kafkago.Murmur2Balancer{}).Balance(kafkago.Message{Key: []byte(key)}, parts...))
}
