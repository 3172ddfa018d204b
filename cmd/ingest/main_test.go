package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/platform/config"
)

// TestCommandLine runs the ingest command line in-process, as an operator
// would type it, and checks the exit code and what is printed.
func TestCommandLine(t *testing.T) {
	t.Setenv("AGENTWATCH_CONFIG_FILE", "")
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string // substrings of stdout and stderr
		notOut   string
	}{
		{args: []string{"--help"}, code: 0, out: "Available Commands:", notOut: "--ingest.batch_size"},
		{args: []string{"help"}, code: 0, out: "migrate"},
		{args: []string{"help", "retention"}, code: 0, out: "--dry-run"},
		{args: []string{"retention", "--help"}, code: 0, out: "--dry-run", notOut: "--ingest.batch_size"},
		{args: []string{"migrte"}, code: 2, err: `did you mean "migrate"?`},
		{args: []string{"retention", "--dry-rn"}, code: 2, err: "did you mean --dry-run?"},
		{args: []string{"--kafka.brokrs=a:1"}, code: 2, err: "did you mean --kafka.brokers?"},
		{args: []string{"run", "extra"}, code: 2, err: "takes no arguments"},
		{args: []string{"run"}, code: 2, err: "kafka.brokers is empty"},
		{args: []string{"retention", "--dry-run"}, code: 0, out: "would drop event partitions before"},
		{args: []string{"retention", "--dry-run", "--clickhouse.retention_days=0"}, code: 2, err: "clickhouse.retention_days"},
		{args: []string{"completion", "bash"}, code: 0, out: "bash completion"},
		{args: []string{"config", "show", "--clickhouse.password=hunter2"}, code: 0, out: "password: " + config.SecretMask, notOut: "hunter2"},
		{args: []string{"config", "show", "--detector.window=banana", "--ingest.batch_size=-5"}, code: 2, err: "ingest.batch_size: must be in [1, 1000000], got -5"},
		{args: []string{"config", "show", "--detector.window=banana"}, code: 2, err: `detector.window: "banana" is not a duration`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := cli.Run(t.Context(), newRoot(), tc.args, &out, &errb)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tc.code, errb.String())
			}
			if !strings.Contains(out.String(), tc.out) {
				t.Errorf("stdout lacks %q:\n%s", tc.out, out.String())
			}
			if !strings.Contains(errb.String(), tc.err) {
				t.Errorf("stderr lacks %q:\n%s", tc.err, errb.String())
			}
			if tc.notOut != "" && strings.Contains(out.String(), tc.notOut) {
				t.Errorf("stdout shows %q, which help should hide:\n%s", tc.notOut, out.String())
			}
		})
	}
}
