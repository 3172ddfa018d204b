package ingest_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/ingest"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// shipped is the ledger entry of a line handed to a log shipper, which
// publishes it without our key: lines are recognised by their bytes.
type shipped struct {
	sum    [32]byte
	good   bool
	reason string
	at     coord
	found  bool
}

// TestIntegrationShippers publishes fresh simulator lines (every format,
// 5% garbage of every kind) through real log shippers and checks that they
// arrive byte for byte in the raw topic and become the events and dead
// letters their ground truth says: (a) rsyslogd tailing a file with imfile
// and publishing with omkafka, configured by deploy/rsyslog; (b) the
// documented pipeline `agentwatch simulate | kcat -P`.
func TestIntegrationShippers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	rsyslogd := requireTool(t, "rsyslogd")
	kcat := requireTool(t, "kcat")
	omkafka, _ := filepath.Glob("/usr/lib/*/rsyslog/omkafka.so")
	if more, _ := filepath.Glob("/usr/lib/rsyslog/omkafka.so"); len(more) > 0 {
		omkafka = append(omkafka, more...)
	}
	if len(omkafka) == 0 {
		if os.Getenv("REQUIRE_INTEGRATION") != "" {
			t.Fatal("rsyslog's omkafka module is not installed but REQUIRE_INTEGRATION is set: run deploy/test-tools.sh (package rsyslog-kafka)")
		}
		t.Skip("rsyslog's omkafka module is not installed; run deploy/test-tools.sh")
	}
	s := newSetup(t, ctx, "shippers", 6, 2)
	rsyslogTopic, kcatTopic := s.raw[0], s.raw[1]
	agentwatch := buildBinary(t, "agentwatch")
	deadline := time.Now().Add(simLead + 15*time.Minute - 10*time.Minute)

	svc, err := ingest.NewService(ctx, s.config(t), testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	defer svc.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Ingester.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("ingester: %v", err)
		}
	}()

	dir := t.TempDir()
	// simulate writes the lines and their ledger; both shippers get their
	// own seed.
	simulate := func(seed int, ledger string) *exec.Cmd {
		return exec.Command(agentwatch, "simulate", "--seed", strconv.Itoa(seed), "--agents", "60",
			"--start", time.Now().Add(simLead).UTC().Format(time.RFC3339), "--duration", "2m",
			"--rate-scale", "150", "--garbage-rate", "0.05", "--ledger", ledger)
	}

	t.Run("rsyslog", func(t *testing.T) {
		input := filepath.Join(dir, "access.log")
		ledger := filepath.Join(dir, "rsyslog-ledger.jsonl")
		cmd := simulate(11, ledger)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("agentwatch simulate: %v", err)
		}
		entries := readLedger(t, ledger, out)

		work := filepath.Join(dir, "rsyslog")
		if err := os.MkdirAll(work, 0o755); err != nil {
			t.Fatal(err)
		}
		tmpl, err := os.ReadFile(filepath.Join(moduleRoot(t), "deploy", "rsyslog", "agentwatch-test.conf.in"))
		if err != nil {
			t.Fatal(err)
		}
		conf := strings.NewReplacer("@WORKDIR@", work, "@INPUT@", input, "@BROKERS@", strings.Join(s.brokers, `","`), "@TOPIC@", rsyslogTopic).Replace(string(tmpl))
		confPath := filepath.Join(work, "rsyslog.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(rsyslogd, "-N1", "-f", confPath).CombinedOutput(); err != nil {
			t.Fatalf("rsyslogd -N1 (config check): %v\n%s", err, out)
		}
		// The file is written after rsyslogd started, as a gateway would.
		if err := os.WriteFile(input, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		var logBuf bytes.Buffer
		rs := exec.Command(rsyslogd, "-n", "-f", confPath, "-i", filepath.Join(work, "rsyslogd.pid"))
		rs.Stdout, rs.Stderr = &logBuf, &logBuf
		if err := rs.Start(); err != nil {
			t.Fatalf("start rsyslogd: %v", err)
		}
		defer func() {
			_ = rs.Process.Signal(syscall.SIGTERM)
			_ = rs.Wait()
			if t.Failed() {
				t.Logf("rsyslogd output:\n%s", logBuf.String())
			}
		}()
		f, err := os.OpenFile(input, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(out); err != nil {
			t.Fatal(err)
		}
		f.Close()
		start := time.Now()
		checkShipped(t, ctx, s, rsyslogTopic, entries)
		t.Logf("rsyslog: %d lines shipped and ingested in %s", len(entries), time.Since(start).Round(time.Millisecond))
	})

	t.Run("kcat", func(t *testing.T) {
		ledger := filepath.Join(dir, "kcat-ledger.jsonl")
		sim := simulate(12, ledger)
		pipe, err := sim.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var lines bytes.Buffer
		kc := exec.Command(kcat, "-P", "-b", strings.Join(s.brokers, ","), "-t", kcatTopic,
			"-X", "message.max.bytes=4194304", "-X", "linger.ms=20")
		// A real pipe into kcat, with a copy of the bytes for the ledger.
		kc.Stdin = teeReader{pipe, &lines}
		var kcOut bytes.Buffer
		kc.Stdout, kc.Stderr = &kcOut, &kcOut
		start := time.Now()
		if err := sim.Start(); err != nil {
			t.Fatal(err)
		}
		if err := kc.Run(); err != nil {
			t.Fatalf("kcat -P: %v\n%s", err, kcOut.String())
		}
		if err := sim.Wait(); err != nil {
			t.Fatalf("agentwatch simulate: %v", err)
		}
		entries := readLedger(t, ledger, lines.Bytes())
		checkShipped(t, ctx, s, kcatTopic, entries)
		t.Logf("kcat: %d lines shipped and ingested in %s", len(entries), time.Since(start).Round(time.Millisecond))
	})
	if time.Now().After(deadline) {
		t.Fatalf("test ran past %s: timestamp_future lines may have been parsed inside ingest's window", deadline.Format(time.RFC3339))
	}
}

type teeReader struct {
	r interface{ Read([]byte) (int, error) }
	w *bytes.Buffer
}

func (t teeReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.w.Write(p[:n])
	return n, err
}

// readLedger pairs `agentwatch simulate --ledger` records with the lines
// they describe.
func readLedger(t *testing.T, path string, out []byte) []shipped {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n"))
	var entries []shipped
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var rec struct {
			N      int    `json:"n"`
			Good   bool   `json:"good"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("ledger %s: %v", path, err)
		}
		if rec.N != len(entries) || rec.N >= len(lines) {
			t.Fatalf("ledger record %d out of step with %d lines", rec.N, len(lines))
		}
		entries = append(entries, shipped{sum: sha256.Sum256(lines[rec.N]), good: rec.Good, reason: rec.Reason})
	}
	if len(entries) != len(lines) || len(entries) == 0 {
		t.Fatalf("ledger has %d records for %d lines", len(entries), len(lines))
	}
	return entries
}

// checkShipped waits until topic holds every line and ingest committed them,
// then checks the raw bytes, the store and the dead letters of that topic.
func checkShipped(t *testing.T, ctx context.Context, s *setup, topic string, entries []shipped) {
	t.Helper()
	want := int64(len(entries))
	var committed, end int64
	var err error
	for deadline := time.Now().Add(90 * time.Second); ; {
		committed, end, err = groupProgress(ctx, s.kc, s.group, topic, s.partitions)
		if err == nil && end >= want && committed == end {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d lines arrived, %d committed (%v)", topic, end, want, committed, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if end != want {
		t.Fatalf("%s holds %d records for %d lines: the shipper duplicated lines", topic, end, want)
	}
	bySum := map[[32]byte][]int{}
	for i, e := range entries {
		bySum[e.sum] = append(bySum[e.sum], i)
	}
	readTopic(t, ctx, s.kc, topic, len(entries), 2*time.Second, func(m bus.Message) {
		idx := bySum[sha256.Sum256(m.Value)]
		if len(idx) == 0 {
			t.Fatalf("%s: record %d/%d (%d bytes, %.80q) is no line the shipper was given: it changed the bytes", topic, m.Partition, m.Offset, len(m.Value), m.Value)
		}
		i := idx[0]
		bySum[entries[i].sum] = idx[1:]
		entries[i].at, entries[i].found = coord{m.Partition, m.Offset}, true
	})
	good, bad := 0, 0
	ids := map[string]bool{}
	badAt := map[coord]string{}
	for _, e := range entries {
		if e.good {
			good++
			ids[event.ID(topic, e.at.partition, e.at.offset)] = true
		} else {
			bad++
			badAt[e.at] = e.reason
		}
	}

	conn := openClickHouse(t, s.chAddr, s.db)
	rows, err := conn.Query(ctx, "SELECT event_id, count() FROM events FINAL WHERE topic = ? GROUP BY event_id", topic)
	if err != nil {
		t.Fatalf("query store: %v", err)
	}
	stored := 0
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		if !ids[id] || n != 1 {
			t.Errorf("%s: stored event %s ×%d is not a good line's", topic, id, n)
		}
		stored++
	}
	rows.Close()
	if stored != good {
		t.Errorf("%s: %d events stored, want %d good lines", topic, stored, good)
	}

	dead := 0
	// The dead-letter topic is shared with the other shipper's topic, so
	// this topic's bad lines are a lower bound of what it holds.
	readTopic(t, ctx, s.kc, s.dlq, bad, 3*time.Second, func(m bus.Message) {
		if string(m.HeaderValue(ingest.HeaderSourceTopic)) != topic {
			return
		}
		p, _ := strconv.Atoi(string(m.HeaderValue(ingest.HeaderSourcePartition)))
		o, _ := strconv.ParseInt(string(m.HeaderValue(ingest.HeaderSourceOffset)), 10, 64)
		at := coord{int32(p), o}
		want, ok := badAt[at]
		switch {
		case !ok:
			t.Errorf("%s: dead letter for %d/%d, which is not a bad line (%s)", topic, p, o, m.HeaderValue(ingest.HeaderError))
		case string(m.HeaderValue(ingest.HeaderReason)) != want:
			t.Errorf("%s: line at %d/%d dead-lettered as %s, want %s", topic, p, o, m.HeaderValue(ingest.HeaderReason), want)
		}
		delete(badAt, at)
		dead++
	})
	if dead != bad || len(badAt) != 0 {
		t.Errorf("%s: %d dead letters for %d bad lines (%d never dead-lettered)", topic, dead, bad, len(badAt))
	}
	t.Logf("%s: %d lines byte-identical in Kafka; %d events stored once each, %d dead letters with the right reason",
		topic, len(entries), stored, dead)
}
