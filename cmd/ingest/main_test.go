package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/testkit/clitest"
)

// TestCommandLine runs the ingest command line in-process, as an operator
// would type it, and checks the exit code and what is printed.
func TestCommandLine(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "clickhouse-password")
	if err := os.WriteFile(pw, []byte("hunter3-from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	clitest.Run(t, newRoot, []clitest.Case{
		{Args: []string{"--help"}, Code: 0, Out: "Available Commands:", NotOut: "--ingest.batch_size"},
		{Args: []string{"help"}, Code: 0, Out: "migrate"},
		{Args: []string{"help", "retention"}, Code: 0, Out: "--dry-run"},
		{Args: []string{"retention", "--help"}, Code: 0, Out: "--dry-run", NotOut: "--ingest.batch_size"},
		{Args: []string{"migrte"}, Code: 2, Err: `did you mean "migrate"?`},
		{Args: []string{"retention", "--dry-rn"}, Code: 2, Err: "did you mean --dry-run?"},
		{Args: []string{"--kafka.brokrs=a:1"}, Code: 2, Err: "did you mean --kafka.brokers?"},
		{Args: []string{"run", "extra"}, Code: 2, Err: "takes no arguments"},
		{Args: []string{"run"}, Code: 2, Err: "kafka.brokers is empty"},
		{Args: []string{"retention", "--dry-run"}, Code: 0, Out: "would drop event partitions before"},
		{Args: []string{"retention", "--dry-run", "--clickhouse.retention_days=0"}, Code: 2, Err: "clickhouse.retention_days"},
		{Args: []string{"inventory", "rebuild", "--help"}, Code: 0, Out: "--from"},
		{Args: []string{"inventory", "rebuild"}, Code: 2, Err: "--from is required"},
		{Args: []string{"inventory", "rebuild", "--from=2026-03-15", "--to=15/03/2026"}, Code: 2, Err: `--to "15/03/2026" is not a day`},
		{Args: []string{"inventory", "rebuild", "--from=2026-03-15", "--to=2026-03-14"}, Code: 2, Err: "--to 2026-03-14 is before --from 2026-03-15"},
		{Args: []string{"inventory", "rebuild", "--from=2026-3-15"}, Code: 2, Err: `--from "2026-3-15" is not a day`},
		{Args: []string{"completion", "bash"}, Code: 0, Out: "bash completion"},
		{Args: []string{"config", "show", "--clickhouse.password=hunter2"}, Code: 0, Out: "password: " + config.SecretMask, NotOut: "hunter2"},
		{Args: []string{"config", "show", "--clickhouse.password_file=" + pw}, Code: 0, Out: "password: " + config.SecretMask, NotOut: "hunter3"},
		{Args: []string{"config", "show", "--clickhouse.password_file=" + pw, "--clickhouse.password=x"}, Code: 2, Err: "both clickhouse.password and clickhouse.password_file are set"},
		{Args: []string{"config", "show", "--clickhouse.password_fil=" + pw}, Code: 2, Err: "did you mean --clickhouse.password_file?"},
		{Args: []string{"config", "show", "--ingest.retention_interval=-1s"}, Code: 2, Err: "ingest.retention_interval: must be 0 (off) or at least 1s"},
		{Args: []string{"config", "show", "--detector.window=banana", "--ingest.batch_size=-5"}, Code: 2, Err: "ingest.batch_size: must be in [1, 1000000], got -5"},
		{Args: []string{"config", "show", "--detector.window=banana"}, Code: 2, Err: `detector.window: "banana" is not a duration`},
		{Args: []string{"config", "show", "--http.addr=0.0.0.0:9464"}, Code: 2, Err: "set http.web_config_file to a web configuration with TLS and/or basic auth, or set http.insecure_listen_ack: true"},
		{Args: []string{"config", "show", "--http.addr=0.0.0.0:9464", "--http.insecure_listen_ack=true"}, Code: 0, Out: "insecure_listen_ack: true"},
	})
}
