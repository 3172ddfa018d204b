package ingest_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// TestIntegrationIngestSIGKILL runs the real cmd/ingest binary while lines
// are being published, SIGKILLs it at random moments and restarts it each
// time. Delivery is at-least-once, so the store must hold every good line
// exactly once after deduplication (same event id for a re-read record),
// and the dead-letter and events topics must hold every line at least once:
// records processed but not committed before a kill are processed again, so
// duplicates there are expected and only counted.
func TestIntegrationIngestSIGKILL(t *testing.T) {
	kafkaBrokers(t)
	ingestSIGKILL(t, itest.PlainKafka(t), "sigkill", 100_000, 4)
}

// TestIntegrationIngestSIGKILLSASLSSL is the same crash test over the
// broker's SASL_SSL listener (TLS and SCRAM-SHA-512), shorter: the
// secured path is what it proves, the kills are the plaintext test's.
func TestIntegrationIngestSIGKILLSASLSSL(t *testing.T) {
	ingestSIGKILL(t, itest.SecureKafka(t, "scram-sha-512"), "sigkill-sasl", 40_000, 2)
}

// ingestSIGKILL publishes n lines on k while ingest is killed kills times.
func ingestSIGKILL(t *testing.T, k itest.Kafka, what string, n, kills int) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	s := newSetupOn(t, ctx, what, 6, 1, k)
	// Smaller batches than the default make a kill land between commits
	// rather than before the first one.
	s.settings["ingest.batch_size"] = "2000"
	bin := buildBinary(t, "ingest")

	c := newCorpus(t, 43, 0.05, nil, n)
	w := newRawWriter(t, s.kc, s.raw[0])
	pubDone := make(chan error, 1)
	start := time.Now()
	// About 60 s of publishing at ~1700 lines/s, so that every kill
	// (each restart waits up to the 10 s session timeout of the member it
	// replaces) hits a consumer with work in flight.
	go func() { pubDone <- publish(ctx, w, c, n, 1000, 400*time.Millisecond) }()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	p := startIngest(t, bin, s)
	for k := range kills {
		// Kill a process that is working: wait until it has committed
		// something of its own (after a kill, the dead member holds its
		// partitions until its session times out), then a random while.
		base, _, err := groupProgressSettled(ctx, s.kc, s.group, s.raw[0], s.partitions)
		if err != nil {
			t.Fatal(err)
		}
		for progressed := false; !progressed; {
			select {
			case <-p.done:
				t.Fatalf("ingest exited on its own before kill %d: %v\n%s", k+1, p.err, p.logTail(30))
			case <-ctx.Done():
				t.Fatalf("no progress before kill %d\n%s", k+1, p.logTail(30))
			case <-time.After(200 * time.Millisecond):
			}
			committed, _, err := groupProgress(ctx, s.kc, s.group, s.raw[0], s.partitions)
			progressed = err == nil && committed > base
		}
		wait := 500*time.Millisecond + time.Duration(rng.Int64N(int64(2500*time.Millisecond)))
		select {
		case <-time.After(wait):
		case <-p.done:
			t.Fatalf("ingest exited on its own before kill %d: %v\n%s", k+1, p.err, p.logTail(30))
		}
		// Kill while records are published but not committed, so the kill
		// interrupts work in flight rather than an idle wait.
		var committed, end int64
		for deadline := time.Now().Add(10 * time.Second); ; {
			committed, end, err = groupProgress(ctx, s.kc, s.group, s.raw[0], s.partitions)
			if err == nil && committed < end {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: no uncommitted records for 10s (committed %d of %d, %v): the publisher is too slow for this test to mean anything", k+1, committed, end, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("kill: %v", err)
		}
		<-p.done
		t.Logf("kill %d, %s after its first commit: committed %d of %d published", k+1, wait.Round(time.Millisecond), committed, end)
		p = startIngest(t, bin, s)
	}
	if err := <-pubDone; err != nil {
		t.Fatalf("publish: %v", err)
	}
	t.Logf("published %d lines (%d bad) in %s", n, c.bad, time.Since(start).Round(time.Millisecond))
	// A killed member stays in the group until its session times out (10 s),
	// so the last restart may wait that long before it gets partitions.
	waitCommitted(t, ctx, s, int64(n), 2*time.Minute)
	t.Logf("all %d records committed %s after the first start", n, time.Since(start).Round(time.Millisecond))
	// The survivor must stop cleanly on SIGTERM.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("ingest after SIGTERM: %v\n%s", p.err, p.logTail(20))
		}
	case <-time.After(40 * time.Second):
		t.Errorf("ingest did not exit within 40s of SIGTERM")
	}
	c.checkDeadline()

	coords := rawCoords(t, ctx, s, c)
	good, _ := c.summary()
	rows := checkStore(t, ctx, s, c, coords)
	dlqDups := checkDeadLetters(t, ctx, s, c, coords, true)
	evDups := checkEventsTopic(t, ctx, s, c, coords, true)
	t.Logf("store: %d good lines exactly once after FINAL (%d rows before merge, %d re-inserted); duplicates after %d kills: %d dead letters, %d events",
		good, rows, rows-uint64(good), kills, dlqDups, evDups)
}

// TestIntegrationIngestClickHouseOutage stops ClickHouse for 30 s while
// lines keep arriving and cmd/ingest keeps running: commits must stop (a
// commit means the rows are stored), /readyz must say not ready, memory
// must stay bounded (ingest stops fetching instead of buffering), and after
// ClickHouse returns every line must arrive exactly once.
//
// It stops the shared ClickHouse: run integration packages one at a time
// (go test -p 1), and never mark it parallel.
func TestIntegrationIngestClickHouseOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	s := newSetup(t, ctx, "outage", 6, 1)
	s.settings["ingest.retry_max"] = "2s"
	// The default batch bounds (ingest.batch_size and ingest.batch_bytes)
	// are what this test measures: memory must stay bounded during the
	// outage and while catching up, with 0.5% of lines over 1 MiB.
	script := filepath.Join(moduleRoot(t), "deploy", "clickhouse.sh")
	clickhouse := func(cmd string) {
		t.Helper()
		start := time.Now()
		if out, err := exec.Command(script, cmd).CombinedOutput(); err != nil {
			t.Fatalf("deploy/clickhouse.sh %s: %v\n%s", cmd, err, out)
		}
		t.Logf("deploy/clickhouse.sh %s took %s", cmd, time.Since(start).Round(time.Millisecond))
	}
	// Whatever happens, leave ClickHouse running for the tests after us.
	t.Cleanup(func() {
		if out, err := exec.Command(script, "up").CombinedOutput(); err != nil {
			t.Errorf("deploy/clickhouse.sh up at cleanup: %v\n%s", err, out)
		}
	})
	bin := buildBinary(t, "ingest")

	c := newCorpus(t, 44, 0.05, nil, 60_000)
	w := newRawWriter(t, s.kc, s.raw[0])
	pubCtx, stopPub := context.WithCancel(ctx)
	defer stopPub()
	pubDone := make(chan error, 1)
	// ~2000 lines/s until stopped.
	go func() {
		err := publish(pubCtx, w, c, 1<<30, 500, 250*time.Millisecond)
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		pubDone <- err
	}()

	p := startIngest(t, bin, s)
	addr := p.httpAddr(t)
	pid := p.cmd.Process.Pid

	type phase struct {
		name            string
		maxRSS          int64
		notReady, ready int
		minLag, maxLag  int64
		firstCommitted  int64
		lastCommitted   int64
		samples         int
	}
	readyz := func() int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return 0
		}
		res.Body.Close()
		return res.StatusCode
	}
	observe := func(name string, d time.Duration) *phase {
		t.Helper()
		ph := &phase{name: name, minLag: 1 << 62, firstCommitted: -1}
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			select {
			case <-p.done:
				t.Fatalf("ingest exited during %s: %v\n%s", name, p.err, p.logTail(30))
			default:
			}
			rss, err := rssBytes(pid)
			if err != nil {
				t.Fatalf("RSS of %d: %v", pid, err)
			}
			ph.maxRSS = max(ph.maxRSS, rss)
			switch readyz() {
			case http.StatusOK:
				ph.ready++
			case http.StatusServiceUnavailable:
				ph.notReady++
			}
			committed, end, err := groupProgress(ctx, s.kc, s.group, s.raw[0], s.partitions)
			if err == nil {
				if ph.firstCommitted < 0 {
					ph.firstCommitted = committed
				}
				ph.lastCommitted = committed
				ph.minLag, ph.maxLag = min(ph.minLag, end-committed), max(ph.maxLag, end-committed)
			}
			ph.samples++
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("%-8s max RSS %6.1f MiB, /readyz 200×%d 503×%d, committed %d→%d, lag %d..%d",
			name, float64(ph.maxRSS)/(1<<20), ph.ready, ph.notReady, ph.firstCommitted, ph.lastCommitted, ph.minLag, ph.maxLag)
		return ph
	}

	before := observe("before", 12*time.Second)
	if before.lastCommitted <= 0 {
		t.Fatalf("nothing committed before the outage\n%s", p.logTail(20))
	}
	clickhouse("down")
	// A batch whose insert finished just before the server went away may
	// still commit; give it a moment, then commits must stop.
	settle := observe("settle", 3*time.Second)
	snapshot, err := committedOffsets(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	during := observe("outage", 27*time.Second)
	clickhouse("up")
	// Read what the store holds before ingest has caught up: everything
	// committed before the outage must be in it already.
	storedEarly := storedIDs(t, ctx, s)
	after := observe("after", 10*time.Second)
	stopPub()
	if err := <-pubDone; err != nil {
		t.Fatalf("publish: %v", err)
	}
	total := int64(len(c.lines))
	waitCommitted(t, ctx, s, total, 2*time.Minute)
	final := observe("drained", 2*time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if p.err != nil {
		t.Errorf("ingest after SIGTERM: %v\n%s", p.err, p.logTail(20))
	}
	c.checkDeadline()

	if during.firstCommitted != settle.lastCommitted || during.lastCommitted != during.firstCommitted {
		t.Errorf("committed offsets moved while ClickHouse was down: %d at the start of the outage, %d..%d during it",
			settle.lastCommitted, during.firstCommitted, during.lastCommitted)
	}
	if during.maxLag <= before.maxLag {
		t.Errorf("lag did not grow during the outage (max %d before, %d during): was anything published?", before.maxLag, during.maxLag)
	}
	if during.notReady == 0 || during.ready > 2 {
		t.Errorf("/readyz during the outage: 503×%d, 200×%d; want not ready (a couple of 200s while the first retry starts are tolerated)", during.notReady, during.ready)
	}
	if final.ready == 0 || final.notReady > 0 {
		t.Errorf("/readyz after recovery: 200×%d, 503×%d; want ready", final.ready, final.notReady)
	}
	const rssLimit = 400 << 20
	for _, ph := range []*phase{before, settle, during, after, final} {
		if ph.maxRSS > rssLimit {
			t.Errorf("RSS %s: %.1f MiB, want below %d MiB", ph.name, float64(ph.maxRSS)/(1<<20), rssLimit>>20)
		}
	}

	coords := rawCoords(t, ctx, s, c)
	var missing int
	for i, e := range c.lines {
		at := coords[i]
		if e.good && at.offset < snapshot[at.partition] && !storedEarly[expectedIDOf(s, at)] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d good lines were committed before the outage but not in the store right after it", missing)
	}
	good, _ := c.summary()
	rows := checkStore(t, ctx, s, c, coords)
	dlqDups := checkDeadLetters(t, ctx, s, c, coords, true)
	evDups := checkEventsTopic(t, ctx, s, c, coords, true)
	t.Logf("%d lines (%d good) exactly once in the store (%d rows before merge); duplicates: %d dead letters, %d events",
		total, good, rows, dlqDups, evDups)
}

// committedOffsets returns the group's committed offset per partition.
func committedOffsets(ctx context.Context, s *setup) (map[int32]int64, error) {
	c, _, err := groupOffsets(ctx, s.kc, s.group, s.raw[0], s.partitions)
	return c, err
}

// storedIDs returns the event ids in the store now.
func storedIDs(t *testing.T, ctx context.Context, s *setup) map[string]bool {
	t.Helper()
	conn := openClickHouse(t, s.chAddr, s.db)
	rows, err := conn.Query(ctx, "SELECT DISTINCT event_id FROM events")
	if err != nil {
		t.Fatalf("list stored ids: %v", err)
	}
	defer rows.Close()
	ids := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func expectedIDOf(s *setup, at coord) string {
	return event.ID(s.raw[0], at.partition, at.offset)
}
