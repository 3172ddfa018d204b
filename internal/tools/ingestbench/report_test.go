package ingestbench

import (
	"strings"
	"testing"
	"time"
)

func TestReportSecureRatio(t *testing.T) {
	r := Report{Records: 1000, RawBytes: 400_000, Partitions: 6, BatchSize: 100, Produce: time.Second, Consume: time.Second,
		Insert: time.Second, EndToEnd: 2 * time.Second, EndToEndWithJoin: 3 * time.Second}
	if r.SecureRatio() != 0 || strings.Contains(r.String(), "secured path") {
		t.Fatalf("without a secured run: ratio %v, report:\n%s", r.SecureRatio(), r)
	}
	r.Secured, r.SecureConsume = "SASL_SSL/SCRAM-SHA-512", 1250*time.Millisecond
	r.PlainRuns = []time.Duration{2 * time.Second, 3 * time.Second, 2500 * time.Millisecond} // median 2.5s: 400 records/s
	r.SecureRuns = []time.Duration{3 * time.Second, 2 * time.Second, 2500 * time.Millisecond}
	if got := r.SecureRatio(); got != 1 {
		t.Fatalf("equal medians: ratio %v, want 1", got)
	}
	r.SecureRuns = []time.Duration{5 * time.Second, 9 * time.Second, 4 * time.Second} // median 5s: 200 records/s
	if got := r.SecureRatio(); got != 0.5 {
		t.Fatalf("twice as slow: ratio %v, want 0.5", got)
	}
	r.PlainCPU = []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second}                          // 2000 µs/record
	r.SecureCPU = []time.Duration{2200 * time.Millisecond, 2200 * time.Millisecond, 2200 * time.Millisecond} // +10%
	out := r.String()
	for _, want := range []string{"Kafka consume only over SASL_SSL/SCRAM-SHA-512", "80% of plaintext", "end to end over SASL_SSL/SCRAM-SHA-512, round 2", "CPU 2200.0 µs/record",
		"end to end, fastest round each: plaintext 500 records/s, SASL_SSL/SCRAM-SHA-512 250 records/s: 50.0% of plaintext (costs 50.0%)",
		"ingest process CPU, mean per record: plaintext 2000.00 µs, SASL_SSL/SCRAM-SHA-512 2200.00 µs (+10.0%)",
		"plaintext 400 records/s, SASL_SSL/SCRAM-SHA-512 200 records/s: the secured path reaches 50.0% of plaintext (costs 50.0%)"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestReportViewsRatio(t *testing.T) {
	r := Report{Records: 1000, RawBytes: 400_000, Partitions: 6, BatchSize: 100, Produce: time.Second, Consume: time.Second,
		Insert: 1100 * time.Millisecond, EndToEnd: 2 * time.Second, EndToEndWithJoin: 3 * time.Second}
	if r.ViewsRatio() != 0 || strings.Contains(r.String(), "inventory views") {
		t.Fatalf("without the comparison: ratio %v, report:\n%s", r.ViewsRatio(), r)
	}
	r.InsertNoViews = time.Second
	r.ViewsRuns = []time.Duration{2 * time.Second, 2500 * time.Millisecond, 2200 * time.Millisecond} // median 2.2s
	r.NoViewsRuns = []time.Duration{2 * time.Second, 1900 * time.Millisecond, 9 * time.Second}       // median 2s
	if got := r.ViewsRatio(); got < 0.909 || got > 0.9091 {
		t.Fatalf("ratio %v, want 2/2.2", got)
	}
	out := r.String()
	for _, want := range []string{"| ClickHouse insert only, without the inventory views", "with them: 90.9% of this rate",
		"end to end without the inventory views, round 3", "without the inventory views 500 records/s, with them 455 records/s: with the views ingest reaches 90.9% of the rate without (costs 9.1%)"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
