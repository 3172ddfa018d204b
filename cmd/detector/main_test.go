package main

import (
	"testing"

	"github.com/agentwatch/agentwatch/internal/testkit/clitest"
)

// TestCommandLine runs the detector's command line in-process: help,
// suggestions and usage errors with their exit codes.
func TestCommandLine(t *testing.T) {
	clitest.Run(t, newRoot, []clitest.Case{
		{Args: []string{"--help"}, Code: 0, Out: "backfill"},
		{Args: []string{"eval", "--help"}, Code: 0, Out: "scenarios"},
		{Args: []string{"eval", "nab", "--help"}, Code: 0, Out: "--data", NotOut: "--history-days"},
		{Args: []string{"backfill", "--help"}, Code: 0, Out: "--from", NotOut: "--detector.window"},
		{Args: []string{"eval"}, Code: 2, Err: "needs a subcommand: nab, scenarios"},
		{Args: []string{"eval", "scenarioes"}, Code: 2, Err: `did you mean "scenarios"?`},
		{Args: []string{"eval", "nab"}, Code: 2, Err: "needs --data"},
		{Args: []string{"eval", "scenarios", "--help"}, Code: 0, Out: "--low-and-slow-repeat"},
		{Args: []string{"eval", "scenarios", "--batch-job-rate=0"}, Code: 2, Err: "--batch-job-rate must be positive"},
		{Args: []string{"eval", "scenarios", "--low-and-slow-repeat=0"}, Code: 2, Err: "--low-and-slow-repeat at least 1"},
		{Args: []string{"backfill"}, Code: 2, Err: "needs --from"},
		{Args: []string{"backfill", "--from=2026-11-02", "--to=2026-11-01"}, Code: 2, Err: "must be after --from"},
		{Args: []string{"backfill", "--from=tuesday"}, Code: 2, Err: "neither RFC 3339 nor YYYY-MM-DD"},
		{Args: []string{"run"}, Code: 2, Err: "kafka.brokers is empty"},
		{Args: []string{"bakfill"}, Code: 2, Err: `did you mean "backfill"?`},
	})
}
