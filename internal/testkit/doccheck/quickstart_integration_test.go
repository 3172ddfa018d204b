package doccheck_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/agentwatch/agentwatch/internal/platform/syncbuf"
	"github.com/agentwatch/agentwatch/internal/testkit/doccheck"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
)

// TestIntegrationQuickStart runs the README's quick start as written: the
// blocks marked <!-- tested: TestIntegrationQuickStart --> (build, migrate,
// start the three services on deploy/agentwatch.example.yaml, feed
// simulated gateway lines through kcat, wait for the first alert, stop).
// The AGENTWATCH_* variables give it a scratch ClickHouse database, scratch
// topics and groups and a scratch responder state directory, so it cannot
// collide with other tests or with a quick start run by hand; the blocks
// read those names through the same variables. Then it checks that events
// reached ClickHouse, that the detector stored anomalies and that the
// responder printed an alert to its console.
func TestIntegrationQuickStart(t *testing.T) {
	brokers := itest.KafkaBrokers(t)
	chAddr := itest.ClickHouseAddr(t)
	root := itest.ModuleRoot(t)
	script := doccheck.Script(t, root)

	id := itest.RandHex(4)
	db := "aw_quickstart_" + id
	topic := func(s string) string { return "quickstart." + id + "." + s }
	raw, events, dead, anomalies := topic("raw"), topic("events"), topic("deadletter"), topic("anomalies")
	itest.DropDatabaseAfter(t, chAddr, db)
	// The responder's state topics too: a run restoring the incidents of an
	// earlier run (the same agents, within the incident window) would post
	// its anomalies as follow-ups in their threads, and no new alert.
	global, state := topic("responder-global"), topic("responder-state")
	itest.DeleteTopicsAfter(t, brokers, raw, events, dead, anomalies, global, state)
	env := []string{
		"AGENTWATCH_KAFKA_BROKERS=" + strings.Join(brokers, ","),
		"AGENTWATCH_KAFKA_RAW_TOPICS=" + raw,
		"AGENTWATCH_KAFKA_EVENTS_TOPIC=" + events,
		"AGENTWATCH_KAFKA_DEAD_LETTER_TOPIC=" + dead,
		"AGENTWATCH_KAFKA_ANOMALIES_TOPIC=" + anomalies,
		"AGENTWATCH_KAFKA_INGEST_GROUP=quickstart-ingest-" + id,
		"AGENTWATCH_KAFKA_DETECTOR_GROUP=quickstart-detector-" + id,
		"AGENTWATCH_KAFKA_RESPONDER_GROUP=quickstart-responder-" + id,
		"AGENTWATCH_KAFKA_RESPONDER_GLOBAL_TOPIC=" + global,
		"AGENTWATCH_KAFKA_RESPONDER_STATE_TOPIC=" + state,
		"AGENTWATCH_CLICKHOUSE_ADDR=" + strings.Join(chAddr, ","),
		"AGENTWATCH_CLICKHOUSE_DATABASE=" + db,
		"AGENTWATCH_RESPONDER_STATE_DIR=" + t.TempDir(),
		// A Slack token in the caller's environment would send the
		// test's alerts to a real workspace; the quick start uses the console.
		"SLACK_BOT_TOKEN=",
	}

	// The blocks start the services in the background and stop them in
	// their last block. bash gets a process group of its own, so whatever
	// a failed run leaves behind is killed with the group, and nothing else.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bash: %v", err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	logs := filepath.Join(root, ".data", "quickstart")
	fail := func(format string, args ...any) {
		t.Helper()
		for _, f := range []string{"ingest.log", "detector.log", "responder.log", "responder.out"} {
			if b, err := os.ReadFile(filepath.Join(logs, f)); err == nil {
				t.Logf("--- %s (last 4 KiB)\n%s", f, b[max(0, len(b)-4096):])
			}
		}
		t.Fatalf(format+"\n--- script\n%s\n--- output\n%s", append(args, script, out.String())...)
	}
	select {
	case err := <-done:
		if err != nil {
			fail("the quick start failed: %v", err)
		}
	case <-ctx.Done():
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		fail("the quick start did not finish within 15 minutes")
	}
	t.Logf("quick start output:\n%s", out.String())

	conn, err := clickhouse.Open(&clickhouse.Options{Addr: chAddr, Auth: clickhouse.Auth{Database: db}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	count := func(table string) uint64 {
		t.Helper()
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM "+table+" FINAL").Scan(&n); err != nil {
			fail("count %s in %s: %v", table, db, err)
		}
		return n
	}
	if n := count("events"); n == 0 {
		fail("no events reached ClickHouse %s.events", db)
	} else {
		t.Logf("%d events in %s.events", n, db)
	}
	if n := count("anomalies"); n == 0 {
		fail("the detector stored no anomalies in %s.anomalies", db)
	} else {
		t.Logf("%d anomalies in %s.anomalies", n, db)
	}
	// The console notifier prints each alert as "[#channel] text".
	console, err := os.ReadFile(filepath.Join(logs, "responder.out"))
	if err != nil {
		fail("read the responder's console: %v", err)
	}
	if !bytes.Contains(console, []byte("[#")) {
		fail("the responder printed no alert to its console")
	}
}
