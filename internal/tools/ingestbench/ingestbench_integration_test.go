package ingestbench_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/internal/tools/ingestbench"
)

func env(t *testing.T, name string) []string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("REQUIRE_INTEGRATION") != "" {
			t.Fatalf("%s not set but REQUIRE_INTEGRATION is: the services did not start", name)
		}
		t.Skipf("%s not set; run `make test`, which starts Kafka and ClickHouse", name)
	}
	return strings.Split(v, ",")
}

// TestIntegrationRun runs a small benchmark and checks the report's shape:
// every phase measured, every record ingested, memory sampled.
func TestIntegrationRun(t *testing.T) {
	brokers, ch := env(t, "TEST_KAFKA_BROKERS"), env(t, "TEST_CLICKHOUSE_ADDR")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var progress strings.Builder
	const n = 20_000
	k := itest.SecureKafka(t, "scram-sha-512")
	secure := ingestbench.Listener{Brokers: k.Brokers, TLS: k.TLS, SASL: k.SASL}
	rep, err := ingestbench.Run(ctx, ingestbench.Options{Brokers: brokers, ClickHouse: ch, Records: n, BatchSize: 5000, Secure: secure, Rounds: 1, CompareViews: true}, nil, &progress)
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	t.Logf("\n%s", rep)
	if rep.Records != n || rep.BatchSize != 5000 || rep.Partitions != 6 {
		t.Errorf("report header %+v", rep)
	}
	if avg := float64(rep.RawBytes) / n; avg < 200 || avg > 2000 {
		t.Errorf("average line %.0f bytes, want a few hundred", avg)
	}
	if rep.Events != n || rep.DeadLettered != 0 {
		t.Errorf("ingest made %d events and %d dead letters of %d good lines", rep.Events, rep.DeadLettered, n)
	}
	if rep.Secured != "SASL_SSL/SCRAM-SHA-512" || len(rep.PlainRuns) != 1 || len(rep.SecureRuns) != 1 || rep.SecureRatio() <= 0 {
		t.Errorf("secured runs: %q, plaintext %v, secured %v", rep.Secured, rep.PlainRuns, rep.SecureRuns)
	}
	if len(rep.ViewsRuns) != 1 || len(rep.NoViewsRuns) != 1 || rep.ViewsRatio() <= 0 || rep.InsertNoViews <= 0 {
		t.Errorf("views compared: with %v, without %v, insert without %s", rep.ViewsRuns, rep.NoViewsRuns, rep.InsertNoViews)
	}
	for name, d := range map[string]time.Duration{"produce": rep.Produce, "consume": rep.Consume, "insert": rep.Insert, "end to end": rep.EndToEnd,
		"secured consume": rep.SecureConsume} {
		if d <= 0 {
			t.Errorf("%s took %s, want a measured duration", name, d)
		}
	}
	if rep.Efficiency() <= 0 || rep.Limit() != min(rep.ConsumeRate(), rep.InsertRate()) {
		t.Errorf("efficiency %.1f%%, limit %.0f", rep.Efficiency(), rep.Limit())
	}
	if rep.Samples == 0 || rep.HeapInuseMax == 0 || rep.RSSMax < rep.RSSAvg || rep.HeapInuseMax < rep.HeapInuseAvg {
		t.Errorf("memory samples %d, heap max %d avg %d, RSS max %d avg %d", rep.Samples, rep.HeapInuseMax, rep.HeapInuseAvg, rep.RSSMax, rep.RSSAvg)
	}
	s := rep.String()
	for _, want := range []string{"| Kafka consume only", "| ClickHouse insert only", "| end to end (ingest service, from first record)", "| end to end incl. consumer-group join", "%", "RSS max"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	if !strings.Contains(progress.String(), "producing raw lines: 20000/20000 (100%)") {
		t.Errorf("progress:\n%s", progress.String())
	}
}
