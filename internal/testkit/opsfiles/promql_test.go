package opsfiles

import (
	"slices"
	"testing"
)

func TestMetricNames(t *testing.T) {
	ok := func(expr string, want ...string) {
		t.Helper()
		got, err := MetricNames(expr)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("MetricNames(%q) = %q, %v; want %q", expr, got, err, want)
		}
	}
	ok(`up{job=~"agentwatch.*"} == 0`, "up")
	ok(`max by (job, instance) (agentwatch_ingest_input_lag_seconds) > 300`, "agentwatch_ingest_input_lag_seconds")
	ok(`sum(rate(a_total[10m])) / sum(rate(b_total[10m])) > 0.05`, "a_total", "b_total")
	ok(`histogram_quantile(0.99, sum by (le) (rate(x_bucket[$__rate_interval])))`, "x_bucket")
	ok(`(r == 0 and on (job, instance) l > 0) or on (job, instance) sum by (job, instance) (increase(f_total{reason="budget"}[15m])) > 0`, "f_total", "l", "r")
	ok(`label_replace(sum(rate(d_total[5m])) > 0, "target", "detector_state", "", "")`, "d_total")
	ok(`a offset 5m + 1e-9 * b unless c`, "a", "b", "c")
	ok(`sum(x) by (job) - sum(y) without (instance)`, "x", "y")
	ok(`m{l="a}b"}`, "m")
	if _, err := MetricNames(`m{a="1"`); err == nil {
		t.Error("unbalanced brace: no error")
	}
}
