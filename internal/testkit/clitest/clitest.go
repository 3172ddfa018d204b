// Package clitest runs a binary's cobra command line in-process, as an
// operator would type it, and checks exit codes and output: the one table
// runner the command-line tests of every binary share.
package clitest

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
)

// Case is one command line and what it must do.
type Case struct {
	Args     []string
	Code     int    // the exit code
	Out, Err string // substrings of stdout and stderr ("" matches anything)
	NotOut   string // a substring stdout must not hold (e.g. a hidden flag)
}

// Run runs each case on a fresh root from newRoot, with no config file.
// An operator command that exits 0 must not log at info without --verbose.
func Run(t *testing.T, newRoot func() *cobra.Command, cases []Case) {
	t.Helper()
	t.Setenv("AGENTWATCH_CONFIG_FILE", "")
	for _, tc := range cases {
		t.Run(strings.Join(tc.Args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := cli.Run(t.Context(), newRoot(), tc.Args, &out, &errb)
			if code != tc.Code {
				t.Errorf("exit code %d, want %d; stderr: %s", code, tc.Code, errb.String())
			}
			if !strings.Contains(out.String(), tc.Out) {
				t.Errorf("stdout lacks %q:\n%s", tc.Out, out.String())
			}
			if !strings.Contains(errb.String(), tc.Err) {
				t.Errorf("stderr lacks %q:\n%s", tc.Err, errb.String())
			}
			if tc.NotOut != "" && strings.Contains(out.String(), tc.NotOut) {
				t.Errorf("stdout shows %q, which this command's help should not:\n%s", tc.NotOut, out.String())
			}
			if tc.Code == 0 && strings.Contains(errb.String(), `"level":"INFO"`) {
				t.Errorf("an operator command logged at info without --verbose:\n%s", errb.String())
			}
		})
	}
}
