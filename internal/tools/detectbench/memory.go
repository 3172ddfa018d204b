package detectbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/tools/benchkit"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// MemoryOptions say what RunMemory measures. The zero value of each field
// is its default.
type MemoryOptions struct {
	// Brokers, ClickHouse and Partitions are as in Options.
	Brokers    []string
	ClickHouse []string
	Partitions int
	// Detector is the detector binary to run (make build writes
	// bin/detector); default "bin/detector".
	Detector string
	// Agents is how many agent ids send events; default 100,000.
	Agents int
	// Fake makes the agents a flood of fake ids: one event each, none in
	// the registry (which then holds one real agent). Otherwise each agent
	// calls in Windows windows, two events a window, and no registry is
	// configured (so none of them is a shadow agent).
	Fake bool
	// Windows of traffic per real agent; default 3.
	Windows int
	// MaxAgents is detector.max_agents (default its default, 1,000,000);
	// negative means 0 (no cap).
	MaxAgents int
	// RestartMaxAgents, if not zero, is detector.max_agents of a second
	// detector started on the saved state after the first has stopped
	// (negative: no cap); the restart time and its peak RSS are measured.
	RestartMaxAgents int
	// UnregisteredTTL is detector.unregistered_ttl (default its default)
	// of the last detector started: the restarted one if there is a
	// restart, so that the restart finds every saved agent. With ExpireWait
	// the run waits up to that long after the events for every fake agent
	// to be gone from detector_state.
	UnregisteredTTL, ExpireWait time.Duration
	// Keep leaves the topics and database behind.
	Keep bool
}

func (o *MemoryOptions) setDefaults() error {
	benchkit.Defaults(&o.Brokers, &o.ClickHouse, &o.Partitions)
	benchkit.Default(&o.Detector, "bin/detector")
	benchkit.Default(&o.Agents, 100_000)
	benchkit.Default(&o.Windows, 3)
	benchkit.Default(&o.MaxAgents, 1_000_000)
	if o.Agents < 0 || o.Windows < 0 || o.Partitions < 0 || o.UnregisteredTTL < 0 || o.ExpireWait < 0 {
		return fmt.Errorf("detectbench: agents, windows, partitions, TTL and expire wait must not be negative")
	}
	return nil
}

// idleFlush is detector.idle_flush of the measured detector.
const idleFlush = 10 * time.Second

// MemoryReport is what RunMemory measured. RSS figures are the detector
// process's own (/proc/<pid>/status), in bytes.
type MemoryReport struct {
	Agents, Events, Partitions int
	Fake                       bool
	MaxAgents                  int
	// RSSIdle is the detector's RSS once it owns its partitions, before
	// the first event; RSSEnd once every event is processed and its
	// windows closed; PeakRSS is VmHWM then.
	RSSIdle, RSSEnd, PeakRSS uint64
	// HeapInuse is go_memstats_heap_inuse_bytes at the end: the Go heap
	// the RSS holds, the rest being freed heap not yet returned to the
	// system, stacks, and the runtime's own.
	HeapInuse uint64
	// Held is agentwatch_detector_agents at the end, Shed
	// agentwatch_detector_shed_events_total, Evicted
	// agentwatch_detector_evicted_agents_total.
	Held, Shed, Evicted int
	// Late is agentwatch_detector_late_events_total: events whose window
	// had closed (no agent is created for them).
	Late    int
	Process time.Duration // first event produced → last processed
	// Stored is the number of agents in detector_state after the run.
	Stored int
	// The restart, if measured: its max_agents, the time from starting
	// the process to owning its partitions with state restored, the agents
	// it then held, its RSS and peak RSS at that point.
	Restarted                         bool
	RestartMaxAgents                  int
	RestartTime                       time.Duration
	RestartHeld                       int
	RestartRSS, RestartPeakRSS        uint64
	ExpiredAfter                      time.Duration // run end → no fake agent left (ExpireWait)
	StoredAfterExpire, RowsAfterPurge int
}

// PerAgent is the RSS growth per agent held: (RSSEnd − RSSIdle) / Held.
func (r MemoryReport) PerAgent() float64 {
	return float64(int64(r.RSSEnd)-int64(r.RSSIdle)) / float64(max(r.Held, 1))
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// String renders the report.
func (r MemoryReport) String() string {
	var b strings.Builder
	kind := "real agents (3 windows, 2 events each, no registry)"
	if r.Fake {
		kind = "fake agent ids (1 event each, unregistered)"
	}
	capS := strconv.Itoa(r.MaxAgents)
	if r.MaxAgents == 0 {
		capS = "none"
	}
	fmt.Fprintf(&b, "detector memory: %d %s, %d events, %d partitions, max_agents %s\n", r.Agents, kind, r.Events, r.Partitions, capS)
	fmt.Fprintf(&b, "processed in %s; agents held %d, evicted %d, shed events %d, late events %d; agents in detector_state %d\n",
		r.Process.Round(time.Millisecond), r.Held, r.Evicted, r.Shed, r.Late, r.Stored)
	fmt.Fprintf(&b, "RSS idle %.0f MiB, after %.0f MiB (Go heap in use %.0f MiB), peak (VmHWM) %.0f MiB; RSS growth per agent held %.0f B (%.2f KiB)\n",
		mib(r.RSSIdle), mib(r.RSSEnd), mib(r.HeapInuse), mib(r.PeakRSS), r.PerAgent(), r.PerAgent()/1024)
	if r.Restarted {
		fmt.Fprintf(&b, "restart with max_agents %d on %d stored agents: partitions owned and state restored in %s, %d agents loaded, RSS %.0f MiB, peak %.0f MiB\n",
			r.RestartMaxAgents, r.Stored, r.RestartTime.Round(time.Millisecond), r.RestartHeld, mib(r.RestartRSS), mib(r.RestartPeakRSS))
	}
	if r.ExpiredAfter > 0 {
		fmt.Fprintf(&b, "idle unregistered agents removed %s after the run: %d agents left in detector_state, %d agent rows left after the purge\n",
			r.ExpiredAfter.Round(time.Second), r.StoredAfterExpire, r.RowsAfterPurge)
	}
	return b.String()
}

// RunMemory runs the detector binary as a child process on a fresh events
// topic and database, feeds it o.Agents agents (real or fake), and reads
// its RSS from /proc; optionally it then restarts it on the saved state and
// waits for idle fake agents to be removed. It removes what it created
// unless o.Keep. progress receives a line per step.
func RunMemory(ctx context.Context, o MemoryOptions, log *slog.Logger, progress io.Writer) (MemoryReport, error) {
	log, suffix, err := benchkit.Begin(o.setDefaults, log)
	if err != nil {
		return MemoryReport{}, err
	}
	bin, err := filepath.Abs(o.Detector)
	if err != nil {
		return MemoryReport{}, fmt.Errorf("detectbench: %w", err)
	}
	if _, err := os.Stat(bin); err != nil {
		return MemoryReport{}, fmt.Errorf("detectbench: detector binary (make build writes bin/detector): %w", err)
	}
	dir, err := os.MkdirTemp("", "detectmem-")
	if err != nil {
		return MemoryReport{}, fmt.Errorf("detectbench: %w", err)
	}
	defer os.RemoveAll(dir)
	maxAgents := max(o.MaxAgents, 0)
	rep := MemoryReport{Agents: o.Agents, Partitions: o.Partitions, Fake: o.Fake, MaxAgents: maxAgents}
	env := []string{
		"AGENTWATCH_KAFKA_BROKERS=" + strings.Join(o.Brokers, ","),
		"AGENTWATCH_KAFKA_EVENTS_TOPIC=bench.events." + suffix,
		"AGENTWATCH_KAFKA_ANOMALIES_TOPIC=bench.anomalies." + suffix,
		"AGENTWATCH_KAFKA_DETECTOR_GROUP=bench-detector-" + suffix,
		"AGENTWATCH_KAFKA_PARTITIONS=" + strconv.Itoa(o.Partitions),
		"AGENTWATCH_CLICKHOUSE_ADDR=" + strings.Join(o.ClickHouse, ","),
		"AGENTWATCH_CLICKHOUSE_DATABASE=bench_detmem_" + suffix,
		// Long enough that a pause of the producer between two batches
		// (seconds under the race detector) does not close windows early
		// and turn the rest of the flood into late events.
		"AGENTWATCH_DETECTOR_IDLE_FLUSH=" + idleFlush.String(),
		"AGENTWATCH_LOG_LEVEL=info",
	}
	// A day is the first detector's TTL when the restart is to get it.
	ttl1, ttl2 := o.UnregisteredTTL, o.UnregisteredTTL
	if o.RestartMaxAgents != 0 {
		ttl1 = 24 * time.Hour
	}
	if o.Fake {
		reg := filepath.Join(dir, "agents.yaml")
		if err := os.WriteFile(reg, []byte("agents:\n  - id: the-one-real-agent\n    role: ops\n"), 0o600); err != nil {
			return rep, fmt.Errorf("detectbench: %w", err)
		}
		env = append(env, "AGENTWATCH_DETECTOR_REGISTRY_FILE="+reg)
	}
	cfg, err := config.LoadEnv("", nil, env)
	if err != nil {
		return rep, fmt.Errorf("detectbench: config: %w", err)
	}
	k := cfg.Kafka
	if err := benchkit.EnsureTopics(ctx, o.Brokers, kafka.Security{},
		kafka.TopicSpec{Name: k.EventsTopic, Partitions: o.Partitions, ReplicationFactor: k.ReplicationFactor},
		kafka.TopicSpec{Name: k.AnomaliesTopic, Partitions: o.Partitions, ReplicationFactor: k.ReplicationFactor}); err != nil {
		return rep, fmt.Errorf("detectbench: %w", err)
	}
	if !o.Keep {
		defer benchkit.Scratch{Brokers: o.Brokers, ClickHouse: o.ClickHouse, Topics: []string{k.EventsTopic, k.AnomaliesTopic}, Databases: []string{cfg.ClickHouse.Database}}.Remove(log, "detectbench")
	}

	// 1. The detector, idle on its partitions.
	fmt.Fprintf(progress, "starting %s...\n", bin)
	det, err := startDetector(bin, env, maxAgents, ttl1, filepath.Join(dir, "detector-1.log"))
	if err != nil {
		return rep, err
	}
	defer det.kill()
	if err := det.waitOwned(ctx, o.Partitions, 2*time.Minute); err != nil {
		return rep, err
	}
	if rep.RSSIdle, _, err = procMem(det.cmd.Process.Pid); err != nil {
		return rep, err
	}

	// 2. The events, produced in chunks so the benchmark's own memory stays
	// small; the detector's peak is sampled meanwhile.
	w, err := kafka.NewWriter(kafka.WriterConfig{Brokers: o.Brokers, Topic: k.EventsTopic, BatchSize: 10000, BatchBytes: 3 << 20, Compression: "lz4"}, nil)
	if err != nil {
		return rep, fmt.Errorf("detectbench: %w", err)
	}
	start := time.Now()
	rep.Events, err = produceAgents(ctx, w, o, progress)
	w.Close()
	if err != nil {
		return rep, err
	}
	fmt.Fprintf(progress, "produced %d events in %s; waiting for the detector...\n", rep.Events, time.Since(start).Round(time.Millisecond))
	var m metrics
	for {
		if m, err = det.metrics(ctx); err != nil {
			return rep, err
		}
		if m["agentwatch_detector_events_total"] >= float64(rep.Events) {
			break
		}
		if err := det.alive(); err != nil {
			return rep, err
		}
		select {
		case <-ctx.Done():
			return rep, fmt.Errorf("detectbench: %.0f of %d events processed: %w", m["agentwatch_detector_events_total"], rep.Events, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	rep.Process = time.Since(start)
	// Windows close after the idle flush (10s); the snapshot that follows
	// saves and evicts, and then the detector hands freed memory back.
	// Saving a million agents takes a while: wait out the idle flush, then
	// until every agent held is in detector_state and the RSS has been
	// steady for 20 s.
	st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
	if err != nil {
		return rep, fmt.Errorf("detectbench: %w", err)
	}
	defer st.Close()
	parts := make([]int32, o.Partitions)
	for i := range parts {
		parts[i] = int32(i)
	}
	time.Sleep(idleFlush + 2*time.Second)
	var rsss []uint64
	for deadline := time.Now().Add(10 * time.Minute); ; {
		if m, err = det.metrics(ctx); err != nil {
			return rep, err
		}
		n, err := storedAgents(ctx, st, k.EventsTopic, parts)
		if err != nil {
			return rep, err
		}
		// Saved, and the RSS steady over the last 20 s: the final snapshot
		// and the hand-back of memory after it are done.
		rss, _, err := procMem(det.cmd.Process.Pid)
		if err != nil {
			return rep, err
		}
		rsss = append(rsss, rss)
		if n >= int(m["agentwatch_detector_agents"]) && steady(rsss, 10) {
			break
		}
		if time.Now().After(deadline) {
			return rep, fmt.Errorf("detectbench: %d agents held, %d saved 10 minutes after the last event", int(m["agentwatch_detector_agents"]), n)
		}
		time.Sleep(2 * time.Second)
	}
	if m, err = det.metrics(ctx); err != nil {
		return rep, err
	}
	rep.Held, rep.Shed, rep.Evicted = int(m["agentwatch_detector_agents"]), int(m["agentwatch_detector_shed_events_total"]), int(m["agentwatch_detector_evicted_agents_total"])
	rep.HeapInuse = uint64(m["go_memstats_heap_inuse_bytes"])
	rep.Late = int(m["agentwatch_detector_late_events_total"])
	if rep.RSSEnd, rep.PeakRSS, err = procMem(det.cmd.Process.Pid); err != nil {
		return rep, err
	}
	fmt.Fprintf(progress, "processed in %s: %d agents held, RSS %.0f MiB, peak %.0f MiB\n", rep.Process.Round(time.Millisecond), rep.Held, mib(rep.RSSEnd), mib(rep.PeakRSS))

	endRun := time.Now()
	if o.RestartMaxAgents != 0 {
		if err := det.stop(2 * time.Minute); err != nil {
			return rep, err
		}
	}
	if rep.Stored, err = storedAgents(ctx, st, k.EventsTopic, parts); err != nil {
		return rep, err
	}

	// 3. A restart on the saved state.
	if o.RestartMaxAgents != 0 {
		rep.Restarted, rep.RestartMaxAgents = true, max(o.RestartMaxAgents, 0)
		fmt.Fprintf(progress, "restarting on %d stored agents with max_agents %d...\n", rep.Stored, rep.RestartMaxAgents)
		t0 := time.Now()
		det, err = startDetector(bin, env, rep.RestartMaxAgents, ttl2, filepath.Join(dir, "detector-2.log"))
		if err != nil {
			return rep, err
		}
		defer det.kill()
		if err := det.waitOwned(ctx, o.Partitions, 10*time.Minute); err != nil {
			return rep, err
		}
		rep.RestartTime = time.Since(t0)
		if m, err = det.metrics(ctx); err != nil {
			return rep, err
		}
		rep.RestartHeld = int(m["agentwatch_detector_agents"])
		if rep.RestartRSS, rep.RestartPeakRSS, err = procMem(det.cmd.Process.Pid); err != nil {
			return rep, err
		}
	}

	// 4. Idle fake agents leave detector_state.
	if o.ExpireWait > 0 {
		fmt.Fprintf(progress, "waiting up to %s for idle unregistered agents to be removed...\n", o.ExpireWait)
		deadline := endRun.Add(o.ExpireWait)
		for {
			if err := det.alive(); err != nil {
				return rep, err
			}
			n, err := storedAgents(ctx, st, k.EventsTopic, parts)
			if err != nil {
				return rep, err
			}
			rows, err := st.StateRows(ctx, detstate.KindAgent)
			if err != nil {
				return rep, err
			}
			rep.StoredAfterExpire, rep.RowsAfterPurge = n, int(rows)
			if n == 0 && rows == 0 {
				rep.ExpiredAfter = time.Since(endRun)
				break
			}
			if time.Now().After(deadline) {
				return rep, fmt.Errorf("detectbench: %d agents (%d rows) still in detector_state %s after the run", n, rows, o.ExpireWait)
			}
			time.Sleep(time.Second)
		}
	}
	return rep, det.stop(2 * time.Minute)
}

// steady reports whether the last n samples of xs are within 1% of each
// other.
func steady(xs []uint64, n int) bool {
	if len(xs) < n {
		return false
	}
	lo, hi := slices.Min(xs[len(xs)-n:]), slices.Max(xs[len(xs)-n:])
	return float64(hi-lo) <= 0.01*float64(hi)
}

// storedAgents counts the live agent states of topic and parts.
func storedAgents(ctx context.Context, st *chstore.Store, topic string, parts []int32) (int, error) {
	n := 0
	if _, _, err := st.LoadPartitionsCapped(ctx, "", topic, parts, 0, func(string) { n++ }); err != nil {
		return 0, fmt.Errorf("detectbench: count stored agents: %w", err)
	}
	return n, nil
}

// produceAgents writes o.Agents agents' events to the events topic keyed
// by agent as ingest does, from six raw-log partitions, with event times
// in the last half hour, and returns how many it wrote.
func produceAgents(ctx context.Context, w bus.Writer, o MemoryOptions, progress io.Writer) (int, error) {
	const raw = "bench.raw"
	now := time.Now()
	t0 := now.Add(-30 * time.Minute).Truncate(time.Minute).UnixMilli()
	rng := rand.New(rand.NewPCG(uint64(now.UnixNano()), 7))
	var offs [6]int64
	var batch []bus.Message
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := w.Write(ctx, batch...); err != nil {
			return fmt.Errorf("detectbench: produce after %d events: %w", n, err)
		}
		n += len(batch)
		batch = batch[:0]
		return nil
	}
	add := func(agent string, at int64, route string) error {
		src := int32(len(batch) % 6)
		ev := event.Event{
			AgentID: agent, EventTimeMs: at, IngestTimeMs: now.UnixMilli(), IdentitySource: "header", CredentialID: "key-" + agent,
			SourceIP: "10.0." + strconv.Itoa(len(agent)%4) + ".7", Method: "GET", Route: route, Path: route, Status: 200,
			RequestBytes: 300, ResponseBytes: 2000, DurationUs: 15000, Gateway: "bench", Format: "envoy",
			Topic: raw, Partition: src, Offset: offs[src],
		}
		offs[src]++
		ev.EventID = event.ID(ev.Topic, ev.Partition, ev.Offset)
		batch = append(batch, bus.Message{Key: []byte(ev.PartitionKey()), Value: event.AppendJSON(nil, &ev)})
		if len(batch) >= 20_000 {
			return flush()
		}
		return nil
	}
	step := max(o.Agents/5, 1)
	if o.Fake {
		// The flood spreads over three windows, as the one that was seen
		// (300k ids in 3 minutes).
		for i := range o.Agents {
			id := fmt.Sprintf("fake-%016x", rng.Uint64())
			at := t0 + int64(i)*3*60_000/int64(o.Agents)
			if err := add(id, at, "/v1/items"); err != nil {
				return n, err
			}
			if (i+1)%step == 0 {
				fmt.Fprintf(progress, "  produced %d/%d fake ids\n", i+1, o.Agents)
			}
		}
		return n, flush()
	}
	for win := range o.Windows {
		for i := range o.Agents {
			id := "agent-" + strconv.Itoa(i)
			at := t0 + int64(win)*60_000 + int64(i%50)*1000
			for e := range 2 {
				if err := add(id, at+int64(e), "/v1/r"+strconv.Itoa((i+win+e)%37)); err != nil {
					return n, err
				}
			}
		}
		fmt.Fprintf(progress, "  produced window %d/%d of %d agents\n", win+1, o.Windows, o.Agents)
	}
	return n, flush()
}

// detector is a detector child process.
type detector struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{}
	err    error // set before exited is closed
	logf   *os.File
}

func startDetector(bin string, env []string, maxAgents int, ttl time.Duration, logPath string) (*detector, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("detectbench: pick a metrics port: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("detectbench: %w", err)
	}
	cmd := exec.Command(bin, "run")
	cmd.Env = append(append(os.Environ(), env...), "AGENTWATCH_HTTP_ADDR="+addr, "AGENTWATCH_DETECTOR_MAX_AGENTS="+strconv.Itoa(maxAgents))
	if ttl > 0 {
		cmd.Env = append(cmd.Env, "AGENTWATCH_DETECTOR_UNREGISTERED_TTL="+ttl.String())
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("detectbench: start %s: %w", bin, err)
	}
	d := &detector{cmd: cmd, addr: addr, exited: make(chan struct{}), logf: logf}
	go func() {
		d.err = cmd.Wait()
		logf.Close()
		close(d.exited)
	}()
	return d, nil
}

// alive returns an error, with the end of the detector's log, once it has
// exited.
func (d *detector) alive() error {
	select {
	case <-d.exited:
		tail, _ := os.ReadFile(d.logf.Name())
		if len(tail) > 2000 {
			tail = tail[len(tail)-2000:]
		}
		return fmt.Errorf("detectbench: the detector exited (%v); its log ends:\n%s", d.err, tail)
	default:
		return nil
	}
}

// stop sends SIGTERM (the detector then saves its state) and waits.
func (d *detector) stop(wait time.Duration) error {
	select {
	case <-d.exited:
		return nil
	default:
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("detectbench: stop the detector: %w", err)
	}
	select {
	case <-d.exited:
		return nil
	case <-time.After(wait):
		d.kill()
		return fmt.Errorf("detectbench: the detector did not stop within %s", wait)
	}
}

func (d *detector) kill() {
	select {
	case <-d.exited:
	default:
		_ = d.cmd.Process.Kill()
		<-d.exited
	}
}

// waitOwned waits until the detector owns parts partitions with their
// state restored (agentwatch_detector_partitions is set after the restore).
func (d *detector) waitOwned(ctx context.Context, parts int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if err := d.alive(); err != nil {
			return err
		}
		if m, err := d.metrics(ctx); err == nil && m["agentwatch_detector_partitions"] >= float64(parts) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("detectbench: the detector did not own %d partitions within %s", parts, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// metrics are the unlabelled samples of a /metrics page.
type metrics map[string]float64

func (d *detector) metrics(ctx context.Context) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("detectbench: read the detector's metrics: %w", err)
	}
	defer resp.Body.Close()
	m := metrics{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] == '#' || bytes.IndexByte(line, '{') >= 0 {
			continue
		}
		name, val, ok := strings.Cut(string(line), " ")
		if !ok {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			m[name] = f
		}
	}
	return m, sc.Err()
}

// procMem returns VmRSS and VmHWM of process pid, in bytes.
func procMem(pid int) (rss, hwm uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, fmt.Errorf("detectbench: read the detector's memory: %w", err)
	}
	return parseStatus(b)
}

// parseStatus reads VmRSS and VmHWM (kB) from a /proc/<pid>/status.
func parseStatus(b []byte) (rss, hwm uint64, err error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("detectbench: bad %s line %q", name, line)
		}
		kb, err := strconv.ParseUint(f[0], 10, 54) // kB that fit in bytes
		if err != nil {
			return 0, 0, fmt.Errorf("detectbench: bad %s line %q: %w", name, line, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, errors.New("detectbench: no VmRSS or VmHWM in the process status")
	}
	return rss, hwm, nil
}
