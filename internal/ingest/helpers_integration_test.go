package ingest_test

// Helpers shared by the ingest integration tests: unique topics and
// databases, a simulator corpus with a ledger of what each line must become,
// reading topics back, consumer-group offsets, and the checks every test
// ends with (the store, the dead-letter topic and the events topic against
// the ledger).

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/agentwatch/agentwatch/internal/ingest"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// requireEnv returns the comma-separated list in the environment variable
// name, failing when REQUIRE_INTEGRATION says the services must be there.
func requireEnv(t *testing.T, name, fix string) []string {
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

func kafkaBrokers(t *testing.T) []string {
	return requireEnv(t, "TEST_KAFKA_BROKERS", "deploy/kafka.sh up and TEST_KAFKA_BROKERS=127.0.0.1:9092")
}

func clickhouseAddr(t *testing.T) []string {
	return requireEnv(t, "TEST_CLICKHOUSE_ADDR", "deploy/clickhouse.sh up and TEST_CLICKHOUSE_ADDR=127.0.0.1:9000")
}

// requireTool finds a program the test drives, failing under
// REQUIRE_INTEGRATION when it is missing.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("REQUIRE_INTEGRATION") != "" {
			t.Fatalf("%s not found but REQUIRE_INTEGRATION is set: run deploy/test-tools.sh", name)
		}
		t.Skipf("%s not found; run deploy/test-tools.sh", name)
	}
	return p
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// moduleRoot is the repository root, found from this file's path.
func moduleRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	return root
}

// buildBinary builds ./cmd/<name> into a temporary directory.
func buildBinary(t *testing.T, name string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not on PATH: %v", err)
	}
	out := filepath.Join(t.TempDir(), name)
	start := time.Now()
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/"+name)
	cmd.Dir = moduleRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, b)
	}
	t.Logf("built %s in %s", name, time.Since(start).Round(time.Millisecond))
	return out
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// setup is one test's private world: its topics, consumer group and
// ClickHouse database, all removed when the test ends.
type setup struct {
	brokers, chAddr    []string
	kafka              itest.Kafka // the listener and its client settings
	kc                 cluster     // the test's own clients' view of kafka
	raw                []string
	events, dlq, group string
	db                 string
	partitions         int
	settings           map[string]string // config key -> value, beyond the names above
	rawDB              driver.Conn       // ClickHouse connection to "default", for DDL
}

// cluster is what the test's own Kafka clients need: the brokers and how
// to reach them.
type cluster struct {
	brokers []string
	sec     kafka.Security
}

func newSetup(t *testing.T, ctx context.Context, what string, partitions, rawTopics int) *setup {
	t.Helper()
	kafkaBrokers(t) // fails or skips with this package's message when unset
	return newSetupOn(t, ctx, what, partitions, rawTopics, itest.PlainKafka(t))
}

// newSetupOn is newSetup on the Kafka listener k: the ingest it configures
// and the test's own clients reach the broker with k's security.
func newSetupOn(t *testing.T, ctx context.Context, what string, partitions, rawTopics int, k itest.Kafka) *setup {
	t.Helper()
	suffix := fmt.Sprintf("%d-%s", time.Now().UnixMilli(), randHex(3))
	s := &setup{
		brokers: k.Brokers, chAddr: clickhouseAddr(t), kafka: k, kc: cluster{k.Brokers, k.Security(t)},
		events:     "it-ingest-" + what + "-events-" + suffix,
		dlq:        "it-ingest-" + what + "-dlq-" + suffix,
		group:      "it-ingest-" + what + "-" + suffix,
		db:         "ingest_it_" + strings.ReplaceAll(what, "-", "_") + "_" + strings.ReplaceAll(suffix, "-", "_"),
		partitions: partitions,
		settings: map[string]string{
			"log.level":         "warn",
			"ingest.openapi":    filepath.Join(moduleRoot(t), "deploy", "sim", "openapi.yaml"),
			"http.addr":         "",
			"ingest.max_age":    "168h",
			"ingest.max_future": "10m",
		},
	}
	for i := range rawTopics {
		s.raw = append(s.raw, fmt.Sprintf("it-ingest-%s-raw%d-%s", what, i, suffix))
	}
	cfg := s.config(t)
	topics := ingest.Topics(cfg)
	var names []string
	for _, ts := range topics {
		names = append(names, ts.Name)
	}
	dropTopicsAfter(t, s.kc, names...)
	if err := kafka.EnsureTopics(ctx, s.brokers, s.kc.sec, topics...); err != nil {
		t.Fatalf("EnsureTopics: %v", err)
	}
	s.rawDB = openClickHouse(t, s.chAddr, "default")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := s.rawDB.Exec(ctx, "DROP DATABASE IF EXISTS `"+s.db+"`"); err != nil {
			t.Logf("drop test database %s: %v", s.db, err)
		}
	})
	return s
}

func openClickHouse(t *testing.T, addr []string, db string) driver.Conn {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Protocol: clickhouse.Native, Addr: addr, Auth: clickhouse.Auth{Database: db}, ReadTimeout: 5 * time.Minute})
	if err != nil {
		t.Fatalf("clickhouse.Open: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// env returns the configuration as AGENTWATCH_* variables.
func (s *setup) env() []string {
	kv := map[string]string{
		"kafka.brokers":           strings.Join(s.brokers, ","),
		"kafka.raw_topics":        strings.Join(s.raw, ","),
		"kafka.events_topic":      s.events,
		"kafka.dead_letter_topic": s.dlq,
		"kafka.ingest_group":      s.group,
		"kafka.partitions":        strconv.Itoa(s.partitions),
		"clickhouse.addr":         strings.Join(s.chAddr, ","),
		"clickhouse.database":     s.db,
	}
	maps.Copy(kv, s.kafka.Settings())
	for k, v := range s.settings {
		kv[k] = v
	}
	var env []string
	for k, v := range kv {
		env = append(env, config.EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))+"="+v)
	}
	slices.Sort(env)
	return env
}

// config loads the configuration the way cmd/ingest does, from the env.
func (s *setup) config(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.LoadEnv("", nil, s.env())
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func dropTopicsAfter(t *testing.T, kc cluster, topics ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		client, tr := kc.sec.Client(kc.brokers, 30*time.Second)
		defer tr.CloseIdleConnections()
		res, err := client.DeleteTopics(ctx, &kafkago.DeleteTopicsRequest{Topics: topics})
		if err != nil {
			t.Logf("delete test topics %v: %v", topics, err)
			return
		}
		for name, err := range res.Errors {
			if err != nil && !errors.Is(err, kafkago.UnknownTopicOrPartition) {
				t.Logf("delete test topic %s: %v", name, err)
			}
		}
	})
}

// expect is the ledger entry of one published line: what ingest must make of it.
type expect struct {
	good   bool
	kind   sim.GarbageKind
	reason string
	size   int
	sum    [32]byte    // sha256 of the raw line
	truth  event.Event // good lines only
}

// corpus generates simulator lines and keeps the ledger. Each line is
// published with its ledger index as the record key, so reading a topic
// back tells where each line went; ingest ignores raw keys.
//
// The simulator's timestamp-window garbage is relative to its simulated
// clock, and ingest judges it against the wall clock when it parses. Each
// simulator run therefore starts lead ahead of the wall clock and spans
// simSpan: good lines are then never more than 10 minutes ahead of the
// parse time, too-old lines are days old whatever happens, and a "future"
// line (at least 15 minutes after its slot) is only misjudged if it is
// parsed more than 15m-10m+lead after its slot time. deadline records the
// earliest such moment; tests check they finished before it.
type corpus struct {
	t        *testing.T
	seed     uint64
	garbage  float64
	kinds    []sim.GarbageKind
	perSim   int
	scale    float64
	cur      *sim.Simulator
	runs     int
	lines    []expect
	deadline time.Time
	bad      int
}

const (
	simLead = 2 * time.Minute
	simSpan = 2 * time.Minute
)

// newCorpus sizes the simulator so one run of simSpan gives about perSim
// lines. kinds nil means every garbage kind.
func newCorpus(t *testing.T, seed uint64, garbageRate float64, kinds []sim.GarbageKind, perSim int) *corpus {
	t.Helper()
	c := &corpus{t: t, seed: seed, garbage: garbageRate, kinds: kinds, perSim: perSim}
	// Traffic follows a diurnal curve, so the rate scale that gives perSim
	// lines depends on the hour: probe it.
	const probeScale = 20
	p, err := sim.New(sim.Config{Seed: seed, Agents: 200, Start: time.Now().Add(simLead), Duration: simSpan, RateScale: probeScale, Incidents: []sim.IncidentSpec{}})
	if err != nil {
		t.Fatalf("sim.New: %v", err)
	}
	n := 0
	for _, ok := p.Next(); ok; _, ok = p.Next() {
		n++
	}
	c.scale = probeScale * float64(perSim) * 1.1 / float64(max(n, 1))
	return c
}

func (c *corpus) newSim() error {
	start := time.Now().Add(simLead)
	s, err := sim.New(sim.Config{
		Seed: c.seed + uint64(c.runs)*7919, Agents: 200, Start: start, Duration: simSpan,
		RateScale: c.scale, GarbageRate: c.garbage, GarbageKinds: c.kinds,
	})
	if err != nil {
		return fmt.Errorf("sim.New: %w", err)
	}
	c.runs++
	c.cur = s
	return nil
}

// next generates n lines as raw records keyed by their ledger index. It
// may run on another goroutine than the test, so it returns its error.
func (c *corpus) next(n int) ([]bus.Message, error) {
	msgs := make([]bus.Message, 0, n)
	for len(msgs) < n {
		if c.cur == nil {
			if err := c.newSim(); err != nil {
				return nil, err
			}
		}
		line, ok := c.cur.Next()
		if !ok {
			c.cur = nil
			continue
		}
		e := expect{good: line.Good, kind: line.Garbage, reason: line.Reason, size: len(line.Raw), sum: sha256.Sum256(line.Raw)}
		if line.Good {
			e.truth = line.Event
		} else {
			c.bad++
		}
		if line.Garbage == sim.GarbageFuture {
			// Its timestamp is at least 15 minutes after the slot's clock;
			// ingest rejects it while now <= timestamp - 10m.
			d := c.cur.Clock().Add(5 * time.Minute)
			if c.deadline.IsZero() || d.Before(c.deadline) {
				c.deadline = d
			}
		}
		msgs = append(msgs, bus.Message{Key: []byte(strconv.Itoa(len(c.lines))), Value: line.Raw})
		c.lines = append(c.lines, e)
	}
	return msgs, nil
}

// checkDeadline fails when the test ran so long that a "future" line could
// have been parsed inside ingest's window, which would make its verdict
// the test's fault rather than ingest's.
func (c *corpus) checkDeadline() {
	c.t.Helper()
	if !c.deadline.IsZero() && time.Now().After(c.deadline) {
		c.t.Fatalf("test ran past %s: a timestamp_future line may have been parsed within ingest.max_future of its timestamp, so the ledger cannot judge it; the run is too slow", c.deadline.Format(time.RFC3339))
	}
}

// summary counts the ledger by outcome.
func (c *corpus) summary() (good int, byKind map[sim.GarbageKind]int) {
	byKind = map[sim.GarbageKind]int{}
	for _, e := range c.lines {
		if e.good {
			good++
		} else {
			byKind[e.kind]++
		}
	}
	return good, byKind
}

// publisher writes raw records with a synchronous writer sized for the
// over-long garbage lines.
func newRawWriter(t *testing.T, kc cluster, topic string) *kafka.Writer {
	t.Helper()
	w, err := kafka.NewWriter(kafka.WriterConfig{Brokers: kc.brokers, Security: kc.sec, Topic: topic, BatchSize: 5000, BatchBytes: 3 << 20}, nil)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// publish generates total lines and writes them in chunks of chunk,
// waiting pause after each. It may run on its own goroutine.
func publish(ctx context.Context, w *kafka.Writer, c *corpus, total, chunk int, pause time.Duration) error {
	for done := 0; done < total; {
		msgs, err := c.next(min(chunk, total-done))
		if err != nil {
			return err
		}
		// The corpus already counts these lines, so a chunk once started
		// is written whole; cancelling ctx stops publishing between chunks.
		if err := w.Write(context.WithoutCancel(ctx), msgs...); err != nil {
			return fmt.Errorf("publish after %d lines: %w", done, err)
		}
		done += len(msgs)
		if pause > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pause):
			}
		}
	}
	return nil
}

type coord struct {
	partition int32
	offset    int64
}

// readTopic reads topic from the start as a new consumer group, calling fn
// for every record, until want records were seen and then nothing more
// arrives for quiet. It returns how many records it read.
func readTopic(t *testing.T, ctx context.Context, kc cluster, topic string, want int, quiet time.Duration, fn func(bus.Message)) int {
	t.Helper()
	r, err := kafka.NewReader(kafka.ReaderConfig{Brokers: kc.brokers, Security: kc.sec, GroupID: "it-check-" + randHex(6), Topics: []string{topic}, MaxBytes: 16 << 20}, nil)
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	defer r.Close()
	n := 0
	for {
		fctx, cancel := ctx, context.CancelFunc(func() {})
		if n >= want {
			fctx, cancel = context.WithTimeout(ctx, quiet)
		}
		m, err := r.Fetch(fctx)
		cancel()
		if err != nil {
			if n >= want && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return n
			}
			t.Fatalf("read %s after %d of %d records: %v", topic, n, want, err)
		}
		fn(m)
		n++
	}
}

// rawCoords reads the raw topic back and returns where each ledger line
// landed, checking that every line is there once and unchanged.
func rawCoords(t *testing.T, ctx context.Context, s *setup, c *corpus) []coord {
	t.Helper()
	coords := make([]coord, len(c.lines))
	seen := make([]bool, len(c.lines))
	readTopic(t, ctx, s.kc, s.raw[0], len(c.lines), 2*time.Second, func(m bus.Message) {
		i, err := strconv.Atoi(string(m.Key))
		if err != nil || i < 0 || i >= len(c.lines) || seen[i] {
			t.Fatalf("raw record %d/%d has key %q: not a fresh ledger index", m.Partition, m.Offset, m.Key)
		}
		if sha256.Sum256(m.Value) != c.lines[i].sum {
			t.Fatalf("raw record %d (partition %d offset %d) differs from the published line", i, m.Partition, m.Offset)
		}
		seen[i] = true
		coords[i] = coord{m.Partition, m.Offset}
	})
	for i, ok := range seen {
		if !ok {
			t.Fatalf("line %d never reached the raw topic", i)
		}
	}
	return coords
}

// expectedIDs maps the event id of every good line to its ledger index.
func expectedIDs(topic string, c *corpus, coords []coord) map[string]int {
	ids := make(map[string]int)
	for i, e := range c.lines {
		if e.good {
			ids[event.ID(topic, coords[i].partition, coords[i].offset)] = i
		}
	}
	return ids
}

// sameEvent compares an event ingest produced with the line's truth, the
// fields only ingest can know taken from got.
func sameEvent(got, truth event.Event, id, topic string, at coord) error {
	want := truth
	want.EventID, want.Topic, want.Partition, want.Offset = id, topic, at.partition, at.offset
	want.IngestTimeMs = got.IngestTimeMs
	if len(want.QueryParams) == 0 {
		want.QueryParams = nil
	}
	if len(got.QueryParams) == 0 {
		got.QueryParams = nil
	}
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got.IngestTimeMs <= 0 {
		return fmt.Errorf("ingest_time_ms %d", got.IngestTimeMs)
	}
	return nil
}

// checkStore asserts the store holds exactly the good lines, once each
// after deduplication, with the fields their truth says.
func checkStore(t *testing.T, ctx context.Context, s *setup, c *corpus, coords []coord) (rows uint64) {
	t.Helper()
	ids := expectedIDs(s.raw[0], c, coords)
	conn := openClickHouse(t, s.chAddr, s.db)
	if err := conn.QueryRow(ctx, "SELECT count() FROM events").Scan(&rows); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	q := `SELECT event_id, count() AS n, any(event_time_ms), any(agent_id), any(identity_source), any(unattributed),
	  any(credential_id), any(source_ip), any(method), any(route), any(path), any(query_params), any(status),
	  any(request_bytes), any(response_bytes), any(duration_us), any(user_agent), any(gateway), any(upstream),
	  any(request_id), any(format), any(topic), any(partition), any(offset), any(ingest_time_ms)
	  FROM events FINAL GROUP BY event_id`
	res, err := conn.Query(ctx, q)
	if err != nil {
		t.Fatalf("query events: %v", err)
	}
	defer res.Close()
	seen := make(map[string]bool, len(ids))
	var errs []string
	for res.Next() {
		var (
			e            event.Event
			n            uint64
			unattributed uint8
		)
		if err := res.Scan(&e.EventID, &n, &e.EventTimeMs, &e.AgentID, &e.IdentitySource, &unattributed,
			&e.CredentialID, &e.SourceIP, &e.Method, &e.Route, &e.Path, &e.QueryParams, &e.Status,
			&e.RequestBytes, &e.ResponseBytes, &e.DurationUs, &e.UserAgent, &e.Gateway, &e.Upstream,
			&e.RequestID, &e.Format, &e.Topic, &e.Partition, &e.Offset, &e.IngestTimeMs); err != nil {
			t.Fatalf("scan: %v", err)
		}
		e.Unattributed = unattributed == 1
		i, ok := ids[e.EventID]
		switch {
		case !ok:
			errs = append(errs, fmt.Sprintf("unexpected event %s from %s/%d/%d (request_id %q)", e.EventID, e.Topic, e.Partition, e.Offset, e.RequestID))
		case n != 1:
			errs = append(errs, fmt.Sprintf("event %s (line %d) has %d rows after FINAL", e.EventID, i, n))
		default:
			seen[e.EventID] = true
			if err := sameEvent(e, c.lines[i].truth, e.EventID, s.raw[0], coords[i]); err != nil {
				errs = append(errs, fmt.Sprintf("line %d stored wrong:\n%v", i, err))
			}
		}
		if len(errs) > 20 {
			break
		}
	}
	if err := res.Err(); err != nil {
		t.Fatalf("read events: %v", err)
	}
	if len(errs) > 0 {
		t.Fatalf("%d problems in the store, first ones:\n%s", len(errs), strings.Join(errs, "\n"))
	}
	if len(seen) != len(ids) {
		var missing []int
		for id, i := range ids {
			if !seen[id] {
				missing = append(missing, i)
			}
		}
		slices.Sort(missing)
		t.Fatalf("store has %d of %d good lines; missing lines %v", len(seen), len(ids), missing[:min(len(missing), 20)])
	}
	// The chstore API the services use must agree.
	st, err := chstore.OpenMigrated(ctx, s.config(t).ClickHouse, testLogger(t))
	if err != nil {
		t.Fatalf("OpenStore: %v", err)
	}
	defer st.Close()
	got, err := st.EventIDs(ctx)
	if err != nil {
		t.Fatalf("EventIDs: %v", err)
	}
	if len(got) != len(ids) {
		t.Fatalf("EventIDs has %d ids, want %d", len(got), len(ids))
	}
	for id, n := range got {
		if _, ok := ids[id]; !ok || n != 1 {
			t.Fatalf("EventIDs: %s -> %d (expected: %v)", id, n, ok)
		}
	}
	return rows
}

// checkDeadLetters asserts every bad line is in the dead-letter topic with
// its reason and source coordinates, and nothing else is. With dupsOK a line
// may be there more than once (a crash between the dead-letter write and
// the commit re-delivers it); it returns how many duplicates it saw.
func checkDeadLetters(t *testing.T, ctx context.Context, s *setup, c *corpus, coords []coord, dupsOK bool) (dups int) {
	t.Helper()
	count := make([]int, len(c.lines))
	var errs []string
	fail := func(format string, a ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Sprintf(format, a...))
		}
	}
	read := readTopic(t, ctx, s.kc, s.dlq, c.bad, 3*time.Second, func(m bus.Message) {
		i, err := strconv.Atoi(string(m.Key))
		if err != nil || i < 0 || i >= len(c.lines) {
			fail("dead letter with key %q is no ledger line", m.Key)
			return
		}
		e := c.lines[i]
		count[i]++
		if e.good {
			fail("good line %d (%s) dead-lettered: %s: %s", i, c.lines[i].truth.Format, m.HeaderValue(ingest.HeaderReason), m.HeaderValue(ingest.HeaderError))
			return
		}
		if got := string(m.HeaderValue(ingest.HeaderReason)); got != e.reason {
			fail("line %d (%s): reason %q, want %q (error %s)", i, e.kind, got, e.reason, m.HeaderValue(ingest.HeaderError))
		}
		if got := string(m.HeaderValue(ingest.HeaderSourceTopic)); got != s.raw[0] {
			fail("line %d: source topic %q, want %q", i, got, s.raw[0])
		}
		if got := string(m.HeaderValue(ingest.HeaderSourcePartition)); got != strconv.Itoa(int(coords[i].partition)) {
			fail("line %d: source partition %q, want %d", i, got, coords[i].partition)
		}
		if got := string(m.HeaderValue(ingest.HeaderSourceOffset)); got != strconv.FormatInt(coords[i].offset, 10) {
			fail("line %d: source offset %q, want %d", i, got, coords[i].offset)
		}
		if len(m.HeaderValue(ingest.HeaderError)) == 0 || len(m.HeaderValue(ingest.HeaderIngestTime)) == 0 {
			fail("line %d: no error or ingest-time header", i)
		}
		switch {
		case len(m.Value) == e.size:
			if sha256.Sum256(m.Value) != e.sum {
				fail("line %d: dead-letter value differs from the raw line", i)
			}
		case len(m.Value) < e.size:
			if string(m.HeaderValue(ingest.HeaderOriginalSize)) != strconv.Itoa(e.size) {
				fail("line %d: value truncated to %d of %d bytes without a matching %s header", i, len(m.Value), e.size, ingest.HeaderOriginalSize)
			}
		default:
			fail("line %d: dead-letter value of %d bytes, raw line has %d", i, len(m.Value), e.size)
		}
	})
	for i, e := range c.lines {
		switch {
		case !e.good && count[i] == 0:
			fail("bad line %d (%s, want reason %s) is not in the dead-letter topic", i, e.kind, e.reason)
		case count[i] > 1:
			dups += count[i] - 1
			if !dupsOK {
				fail("line %d dead-lettered %d times", i, count[i])
			}
		}
	}
	if len(errs) > 0 {
		t.Fatalf("dead-letter topic (%d records, %d bad lines): %d+ problems:\n%s", read, c.bad, len(errs), strings.Join(errs, "\n"))
	}
	return dups
}

// checkEventsTopic asserts the events topic has every good line's event,
// keyed by Event.PartitionKey, and nothing else (once each unless dupsOK).
func checkEventsTopic(t *testing.T, ctx context.Context, s *setup, c *corpus, coords []coord, dupsOK bool) (dups int) {
	t.Helper()
	ids := expectedIDs(s.raw[0], c, coords)
	count := make(map[string]int, len(ids))
	keyPart := map[string]int32{}
	var dec event.Decoder
	var errs []string
	fail := func(format string, a ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Sprintf(format, a...))
		}
	}
	read := readTopic(t, ctx, s.kc, s.events, len(ids), 3*time.Second, func(m bus.Message) {
		ev, err := dec.Decode(m.Value)
		if err != nil {
			fail("undecodable event at %d/%d: %v", m.Partition, m.Offset, err)
			return
		}
		i, ok := ids[ev.EventID]
		if !ok {
			fail("unexpected event %s (%s/%d/%d)", ev.EventID, ev.Topic, ev.Partition, ev.Offset)
			return
		}
		count[ev.EventID]++
		if string(m.Key) != ev.PartitionKey() {
			fail("event %s keyed %q, want %q", ev.EventID, m.Key, ev.PartitionKey())
		}
		if p, ok := keyPart[string(m.Key)]; ok && p != m.Partition {
			fail("key %q on partitions %d and %d", m.Key, p, m.Partition)
		}
		keyPart[string(m.Key)] = m.Partition
		if err := sameEvent(ev, c.lines[i].truth, ev.EventID, s.raw[0], coords[i]); err != nil {
			fail("line %d published wrong:\n%v", i, err)
		}
	})
	for id, i := range ids {
		switch n := count[id]; {
		case n == 0:
			fail("good line %d (event %s) not on the events topic", i, id)
		case n > 1:
			dups += n - 1
			if !dupsOK {
				fail("event %s published %d times", id, n)
			}
		}
	}
	if len(errs) > 0 {
		t.Fatalf("events topic (%d records, %d good lines): problems:\n%s", read, len(ids), strings.Join(errs, "\n"))
	}
	return dups
}

// groupOffsets returns, per partition, the group's committed offset (0
// when none) and the topic's end offset.
func groupOffsets(ctx context.Context, kc cluster, group, topic string, partitions int) (committed, end map[int32]int64, err error) {
	cl, tr := kc.sec.Client(kc.brokers, 10*time.Second)
	defer tr.CloseIdleConnections()
	ps := make([]int, partitions)
	reqs := make([]kafkago.OffsetRequest, partitions)
	committed, end = make(map[int32]int64), make(map[int32]int64)
	for i := range ps {
		ps[i] = i
		reqs[i] = kafkago.LastOffsetOf(i)
		committed[int32(i)] = 0
	}
	of, err := cl.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		return nil, nil, fmt.Errorf("offset fetch: %w", err)
	}
	if of.Error != nil {
		return nil, nil, fmt.Errorf("offset fetch: %w", of.Error)
	}
	for _, p := range of.Topics[topic] {
		if p.Error != nil {
			return nil, nil, fmt.Errorf("offset fetch partition %d: %w", p.Partition, p.Error)
		}
		if p.CommittedOffset > 0 {
			committed[int32(p.Partition)] = p.CommittedOffset
		}
	}
	lo, err := cl.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, nil, fmt.Errorf("list offsets: %w", err)
	}
	for _, p := range lo.Topics[topic] {
		if p.Error != nil {
			return nil, nil, fmt.Errorf("list offsets partition %d: %w", p.Partition, p.Error)
		}
		end[int32(p.Partition)] = p.LastOffset
	}
	return committed, end, nil
}

// groupProgress returns the sums over partitions of groupOffsets.
func groupProgress(ctx context.Context, kc cluster, group, topic string, partitions int) (committed, end int64, err error) {
	c, e, err := groupOffsets(ctx, kc, group, topic, partitions)
	for _, v := range c {
		committed += v
	}
	for _, v := range e {
		end += v
	}
	return committed, end, err
}

// groupProgressSettled is groupProgress retried for a while: on a fresh
// broker the group coordinator may not be elected yet (NOT_COORDINATOR).
func groupProgressSettled(ctx context.Context, kc cluster, group, topic string, partitions int) (committed, end int64, err error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		committed, end, err = groupProgress(ctx, kc, group, topic, partitions)
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return committed, end, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// waitCommitted polls until the group has committed want records of topic
// (the topic holds exactly want), failing at timeout.
func waitCommitted(t *testing.T, ctx context.Context, s *setup, want int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		committed, end, err := groupProgress(ctx, s.kc, s.group, s.raw[0], s.partitions)
		if err == nil && committed == want && end == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: group %s committed %d of %d records (topic end %d, last error %v)", timeout, s.group, committed, want, end, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for commits: %v", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ingestAll runs the ingest service of s in-process until its ingester
// has committed n records and the group's offsets in Kafka say so, then
// stops it. It returns the service, open for its Stats until the test
// ends, and how long the ingester took to commit the n records.
func ingestAll(t *testing.T, ctx context.Context, s *setup, n uint64) (*ingest.Service, time.Duration) {
	t.Helper()
	svc, err := ingest.NewService(ctx, s.config(t), testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	t.Cleanup(func() { svc.Close() })
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- svc.Ingester.Run(runCtx) }()
	for svc.Ingester.Stats().Committed < n {
		select {
		case err := <-done:
			t.Fatalf("ingester stopped early: %v (stats %+v)", err, svc.Ingester.Stats())
		case <-ctx.Done():
			t.Fatalf("timed out: stats %+v", svc.Ingester.Stats())
		case <-time.After(100 * time.Millisecond):
		}
	}
	took := time.Since(start)
	waitCommitted(t, ctx, s, int64(n), 30*time.Second)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	return svc, took
}

// proc is a cmd/ingest subprocess.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	addr chan string
	mu   sync.Mutex
	tail []string
	logW io.Writer
}

// startIngest starts bin with s's configuration in its environment; the
// metrics server listens on a free loopback port whose address httpAddr
// returns.
func startIngest(t *testing.T, bin string, s *setup, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"run", "--http.addr=127.0.0.1:0", "--log.level=info"}, args...)...)
	cmd.Env = append(os.Environ(), s.env()...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), addr: make(chan string, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, `"msg":"serving metrics"`) {
				if i := strings.Index(line, `"addr":"`); i >= 0 {
					a := line[i+len(`"addr":"`):]
					select {
					case p.addr <- a[:strings.IndexByte(a, '"')]:
					default:
					}
				}
			}
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > 200 {
				p.tail = p.tail[len(p.tail)-100:]
			}
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *proc) logTail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	lines := p.tail[max(0, len(p.tail)-n):]
	return strings.Join(lines, "\n")
}

// httpAddr waits for the metrics server's address.
func (p *proc) httpAddr(t *testing.T) string {
	t.Helper()
	select {
	case a := <-p.addr:
		p.addr <- a
		return a
	case <-p.done:
		t.Fatalf("ingest exited before serving: %v\n%s", p.err, p.logTail(30))
	case <-time.After(60 * time.Second):
		t.Fatalf("ingest did not serve metrics within 60s\n%s", p.logTail(30))
	}
	return ""
}

// rssBytes reads VmRSS of pid from /proc.
func rssBytes(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS")
}
