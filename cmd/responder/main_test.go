package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
)

// TestCommandLine runs the responder's command line in-process and checks
// exit codes, suggestions and that help shows only a command's own flags.
func TestCommandLine(t *testing.T) {
	t.Setenv("AGENTWATCH_CONFIG_FILE", "")
	state := "--responder.state_dir=" + t.TempDir()
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
		notOut   string
	}{
		{args: []string{"--help"}, code: 0, out: "run-playbook"},
		{args: []string{"help", "silence"}, code: 0, out: "expire"},
		{args: []string{"silence", "add", "--help"}, code: 0, out: "--match", notOut: "--expired"},
		{args: []string{"audit", "--help"}, code: 0, out: "--agent", notOut: "--responder.state_dir"},
		{args: []string{"silence", "ad"}, code: 2, err: `did you mean "add"?`},
		{args: []string{"silence"}, code: 2, err: "needs a subcommand: add, expire, list"},
		{args: []string{"audti"}, code: 2, err: `did you mean "audit"?`},
		{args: []string{"audit", "--agnet=x"}, code: 2, err: "did you mean --agent?"},
		{args: []string{"audit", "--from=yesterday"}, code: 2, err: "--from"},
		{args: []string{"run-playbook", "shadow-agent"}, code: 2, err: "needs --agent"},
		{args: []string{"outbox", "dismiss", "k1"}, code: 2, err: "needs --reason"},
		{args: []string{"silence", "expire"}, code: 2, err: "needs the silence ID"},
		{args: []string{"run"}, code: 2, err: "kafka.brokers is empty"},
		{args: []string{"incidents", state}, code: 0, out: "INCIDENT"},
		{args: []string{"silence", "list", state}, code: 0},
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
			if tc.code == 0 && strings.Contains(errb.String(), `"level":"INFO"`) {
				t.Errorf("an operator command logged at info without --verbose:\n%s", errb.String())
			}
		})
	}
}
