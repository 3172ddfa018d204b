package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentwatch/agentwatch/internal/platform/cli"
	"github.com/agentwatch/agentwatch/internal/testkit/clitest"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
)

func TestReportFlags(t *testing.T) {
	t.Setenv("AGENTWATCH_EMBEDDED_DATA_DIR", t.TempDir())
	clitest.Run(t, newRoot, []clitest.Case{
		{Args: []string{"report"}, Code: 2, Err: "--period is required"},
		{Args: []string{"report", "--period=2026-13"}, Code: 2, Err: "month must be 01 to 12"},
		{Args: []string{"report", "--period=2026-11", "--format=docx"}, Code: 2, Err: `"docx" is not html or pdf`},
		{Args: []string{"report", "--period=2026-11", "--slack-channel=#soc"}, Code: 2, Err: "conversation id"},
		{Args: []string{"report", "--help"}, Code: 0, Out: "--slack-channel"},
	})
}

// TestReportCommand writes, records and posts a report of an empty data
// dir: the wiring, not the numbers (internal/report tests those).
func TestReportCommand(t *testing.T) {
	dir := t.TempDir()
	srv := testsrv.NewSlack()
	defer srv.Close()
	t.Setenv("AGENTWATCH_CONFIG_FILE", "")
	t.Setenv("AGENTWATCH_EMBEDDED_DATA_DIR", filepath.Join(dir, "data"))
	t.Setenv("AGENTWATCH_RESPONDER_SLACK_TOKEN", "xoxb-test")
	t.Setenv("AGENTWATCH_RESPONDER_SLACK_API_URL", srv.URL())
	out := filepath.Join(dir, "out")
	var stdout, stderr bytes.Buffer
	code := cli.Run(t.Context(), newRoot(), []string{"report", "--period=2026-W47", "--out", out, "--slack-channel=C0SOC"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, name := range []string{"agentwatch-report-2026-W47.html", "agentwatch-report-2026-W47.pdf"} {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(stdout.Bytes(), []byte(name)) {
			t.Errorf("stdout lacks %s:\n%s", name, stdout.String())
		}
		found := false
		for _, f := range srv.Files() {
			found = found || (f.Filename == name && bytes.Equal(f.Data, b) && f.Completed)
		}
		if !found {
			t.Errorf("%s not posted intact", name)
		}
	}
	for _, want := range []string{"recorded in the evidence chain: bundle report-2026-W47-", "posted to Slack C0SOC"} {
		if !bytes.Contains(stdout.Bytes(), []byte(want)) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, want := range []string{"] agents", "] render pdf", "] record in the evidence chain"} {
		if !bytes.Contains(stderr.Bytes(), []byte(want)) {
			t.Errorf("stderr lacks progress %q:\n%s", want, stderr.String())
		}
	}
	// Read-only bundles: let TempDir's cleanup remove them.
	t.Cleanup(func() {
		_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

// TestReportDistributedWithoutSource: without a ClickHouse source in the
// build, the distributed mode says so instead of reporting nothing.
func TestReportDistributedWithoutSource(t *testing.T) {
	t.Setenv("AGENTWATCH_EMBEDDED_DATA_DIR", t.TempDir())
	t.Setenv("AGENTWATCH_KAFKA_BROKERS", "127.0.0.1:1")
	clitest.Run(t, newRoot, []clitest.Case{
		{Args: []string{"report", "--period=2026-11", "--out", t.TempDir()}, Code: 1, Err: "not connected in this build"},
	})
}
