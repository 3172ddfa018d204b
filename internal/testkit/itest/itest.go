// Package itest holds what integration tests share: finding the services
// (TEST_KAFKA_BROKERS, TEST_CLICKHOUSE_ADDR, failing under
// REQUIRE_INTEGRATION when they are missing), building a command and
// running it as a child process whose log lines can be waited on.
package itest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
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
	p := &Proc{Cmd: cmd, Done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
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
