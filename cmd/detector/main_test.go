package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
)

// TestCommandLine runs the detector's command line in-process: help,
// suggestions and usage errors with their exit codes.
func TestCommandLine(t *testing.T) {
	t.Setenv("AGENTWATCH_CONFIG_FILE", "")
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
		notOut   string
	}{
		{args: []string{"--help"}, code: 0, out: "backfill"},
		{args: []string{"eval", "--help"}, code: 0, out: "scenarios"},
		{args: []string{"eval", "nab", "--help"}, code: 0, out: "--data", notOut: "--history-days"},
		{args: []string{"backfill", "--help"}, code: 0, out: "--from", notOut: "--detector.window"},
		{args: []string{"eval"}, code: 2, err: "needs a subcommand: nab, scenarios"},
		{args: []string{"eval", "scenarioes"}, code: 2, err: `did you mean "scenarios"?`},
		{args: []string{"eval", "nab"}, code: 2, err: "needs --data"},
		{args: []string{"backfill"}, code: 2, err: "needs --from"},
		{args: []string{"backfill", "--from=2026-11-02", "--to=2026-11-01"}, code: 2, err: "must be after --from"},
		{args: []string{"backfill", "--from=tuesday"}, code: 2, err: "neither RFC 3339 nor YYYY-MM-DD"},
		{args: []string{"run"}, code: 2, err: "kafka.brokers is empty"},
		{args: []string{"bakfill"}, code: 2, err: `did you mean "backfill"?`},
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
				t.Errorf("stdout shows %q, which this command's help should not:\n%s", tc.notOut, out.String())
			}
		})
	}
}
