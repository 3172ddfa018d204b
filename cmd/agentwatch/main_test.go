package main

import (
	"testing"

	"github.com/agentwatch/agentwatch/internal/testkit/clitest"
)

// TestDemoEnd checks demo's --end before anything runs.
func TestDemoEnd(t *testing.T) {
	clitest.Run(t, newRoot, []clitest.Case{
		{Args: []string{"demo", "--end=yesterday"}, Code: 2, Err: `--end: "yesterday" is neither RFC 3339 nor YYYY-MM-DD`},
		{Args: []string{"demo", "--end=2999-01-01"}, Code: 2, Err: "--end: 2999-01-01 is in the future"},
		{Args: []string{"demo", "--help"}, Code: 0, Out: "--end"},
	})
}
