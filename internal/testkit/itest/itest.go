// Package itest holds what integration tests share: finding the services
// (TEST_KAFKA_BROKERS, TEST_CLICKHOUSE_ADDR, the SASL_SSL listener's
// TEST_KAFKA_SASL_*; failing under REQUIRE_INTEGRATION when they are
// missing), building a command and running it as a child process whose log
// lines can be waited on.
package itest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
)

// RequireEnv returns the comma-separated list in the environment variable
// name, failing when REQUIRE_INTEGRATION says the services must be there
// and skipping otherwise.
func RequireEnv(t testing.TB, name, fix string) []string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("REQUIRE_INTEGRATION") != "" {
			t.Fatalf("%s not set but REQUIRE_INTEGRATION is: the services did not start (%s)", name, fix)
		}
		t.Skipf("%s not set; run `make test`, or %s", name, fix)
	}
	return strings.Split(v, ",")
}

// KafkaBrokers returns TEST_KAFKA_BROKERS.
func KafkaBrokers(t testing.TB) []string {
	return RequireEnv(t, "TEST_KAFKA_BROKERS", "deploy/kafka.sh up and TEST_KAFKA_BROKERS=127.0.0.1:9092")
}

// Kafka is one listener of the test broker and the client settings that
// reach it: what a test hands to the services it starts (Settings) and
// uses for its own clients (Security).
type Kafka struct {
	Brokers []string
	TLS     config.TLS
	SASL    config.SASL
}

// PlainKafka is the PLAINTEXT listener, TEST_KAFKA_BROKERS.
func PlainKafka(t testing.TB) Kafka {
	return Kafka{Brokers: KafkaBrokers(t), TLS: config.TLS{MinVersion: "1.2"}, SASL: config.SASL{Mechanism: "none"}}
}

// SecureKafka is the SASL_SSL listener (TEST_KAFKA_SASL_BROKERS), trusting
// TEST_KAFKA_CA and logging in as TEST_KAFKA_SASL_USERNAME with
// TEST_KAFKA_SASL_PASSWORD by mechanism (plain, scram-sha-256 or
// scram-sha-512). The Makefile sets them from deploy/kafka/sasl.env.
func SecureKafka(t testing.TB, mechanism string) Kafka {
	const fix = "deploy/kafka.sh up, then the TEST_KAFKA_SASL_* and TEST_KAFKA_CA variables the Makefile exports"
	brokers := RequireEnv(t, "TEST_KAFKA_SASL_BROKERS", fix)
	ca := RequireEnv(t, "TEST_KAFKA_CA", fix)[0]
	user := RequireEnv(t, "TEST_KAFKA_SASL_USERNAME", fix)[0]
	pw := os.Getenv("TEST_KAFKA_SASL_PASSWORD") // may hold a comma
	if pw == "" {
		RequireEnv(t, "TEST_KAFKA_SASL_PASSWORD", fix)
	}
	return Kafka{Brokers: brokers, TLS: config.TLS{Enabled: true, CAFile: ca, MinVersion: "1.2"},
		SASL: config.SASL{Mechanism: mechanism, Username: user, Password: pw}}
}

// Security is the client security of k for the test's own clients.
func (k Kafka) Security(t testing.TB) kafka.Security {
	t.Helper()
	sec, err := kafka.NewSecurity(k.TLS, k.SASL)
	if err != nil {
		t.Fatalf("kafka security of the test listener: %v", err)
	}
	return sec
}

// Settings are the configuration keys that point a service at k; the
// password is among them, so pass them as environment variables, never
// as flags.
func (k Kafka) Settings() map[string]string {
	m := map[string]string{"kafka.brokers": strings.Join(k.Brokers, ",")}
	if k.TLS.Enabled {
		m["kafka.tls.enabled"], m["kafka.tls.ca_file"] = "true", k.TLS.CAFile
	}
	if k.SASL.Mechanism != "" && k.SASL.Mechanism != "none" {
		m["kafka.sasl.mechanism"], m["kafka.sasl.username"], m["kafka.sasl.password"] = k.SASL.Mechanism, k.SASL.Username, k.SASL.Password
	}
	return m
}

// DeleteTopicsAfter deletes Kafka topics through k when the test ends.
func (k Kafka) DeleteTopicsAfter(t testing.TB, topics ...string) {
	sec := k.Security(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		client, tr := sec.Client(k.Brokers, 10*time.Second)
		defer tr.CloseIdleConnections()
		if _, err := client.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: topics}); err != nil {
			t.Logf("delete test topics %v: %v", topics, err)
		}
	})
}

// ClickHouseAddr returns TEST_CLICKHOUSE_ADDR.
func ClickHouseAddr(t testing.TB) []string {
	return RequireEnv(t, "TEST_CLICKHOUSE_ADDR", "deploy/clickhouse.sh up and TEST_CLICKHOUSE_ADDR=127.0.0.1:9000")
}

// RandHex returns n random bytes in hex.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ModuleRoot is the repository root.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	return root
}

// BuildBinary builds ./cmd/<name> into a temporary directory.
func BuildBinary(t testing.TB, name string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not on PATH: %v", err)
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/"+name)
	cmd.Dir = ModuleRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, b)
	}
	return out
}

// Proc is a child process whose stderr lines are kept and can be waited on.
type Proc struct {
	Cmd  *exec.Cmd
	Done chan struct{}
	Err  error

	mu    sync.Mutex
	lines []string
	out   []string // stdout, kept apart so that stderr line numbers stay as they were
}

// Start runs bin with args and extra environment; it is killed when the
// test ends if still running.
func Start(t testing.TB, bin string, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &Proc{Cmd: cmd, Done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	outDone := make(chan struct{})
	go func() {
		defer close(outDone)
		p.collect(stdout, &p.out)
	}()
	go func() {
		p.collect(stderr, &p.lines)
		<-outDone // Wait closes the pipes: both must be read to the end first
		p.Err = cmd.Wait()
		close(p.Done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.Done:
		default:
			_ = cmd.Process.Kill()
			<-p.Done
		}
	})
	return p
}

// collect appends each line of r to *dst, under p's lock, until r ends.
func (p *Proc) collect(r io.Reader, dst *[]string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		*dst = append(*dst, sc.Text())
		p.mu.Unlock()
	}
}

// Lines returns the stderr lines so far that contain every one of subs.
func (p *Proc) Lines(subs ...string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
next:
	for _, l := range p.lines {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue next
			}
		}
		out = append(out, l)
	}
	return out
}

// Output returns every line the process wrote so far, stderr then stdout.
func (p *Proc) Output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append(append([]string(nil), p.lines...), p.out...)
}

// Tail returns the last n stderr lines.
func (p *Proc) Tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines[max(0, len(p.lines)-n):], "\n")
}

// WaitLine waits until a stderr line after the first skip lines contains
// every one of subs, and returns it; ok is false on timeout or exit.
func (p *Proc) WaitLine(timeout time.Duration, skip int, subs ...string) (string, bool) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		for _, l := range p.lines[min(skip, len(p.lines)):] {
			all := true
			for _, s := range subs {
				if !strings.Contains(l, s) {
					all = false
					break
				}
			}
			if all {
				p.mu.Unlock()
				return l, true
			}
		}
		exited := false
		select {
		case <-p.Done:
			exited = true
		default:
		}
		p.mu.Unlock()
		if exited {
			return "", false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", false
}

// NumLines returns how many stderr lines were read so far.
func (p *Proc) NumLines() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// DropDatabaseAfter drops ClickHouse database db when the test ends.
func DropDatabaseAfter(t testing.TB, addr []string, db string) {
	t.Cleanup(func() {
		conn, err := clickhouse.Open(&clickhouse.Options{Addr: addr})
		if err != nil {
			t.Logf("drop test database %s: %v", db, err)
			return
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
			t.Logf("drop test database %s: %v", db, err)
		}
	})
}

// DeleteTopicsAfter deletes Kafka topics when the test ends.
func DeleteTopicsAfter(t testing.TB, brokers []string, topics ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tr := &kafkago.Transport{}
		defer tr.CloseIdleConnections()
		if _, err := (&kafkago.Client{Addr: kafkago.TCP(brokers...), Transport: tr}).DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: topics}); err != nil {
			t.Logf("delete test topics %v: %v", topics, err)
		}
	})
}
