// Package detectbench measures the detector end to end on the real services
// in one run, so that its numbers are comparable: the kafka-go consume-only
// rate of a fresh events topic, then the distributed detector service
// (consumer group → processor → anomalies topic and ClickHouse) reading the
// same records from the beginning, and the wall time from a window closing
// to its anomaly being on the anomalies topic. `agentwatch bench detector`
// runs it.
package detectbench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/detector/detect"
	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/tools/benchkit"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// Options say what to measure. The zero value of each field is its default.
// Brokers, ClickHouse, Partitions and Keep are deliberately the same in
// every benchmark (benchkit.Defaults defaults them), yet plain fields, so
// that an Options literal names them directly.
type Options struct {
	// Brokers are the Kafka brokers; default 127.0.0.1:9092.
	Brokers []string
	// ClickHouse are native-protocol addresses; default 127.0.0.1:9000.
	ClickHouse []string
	// Agents is how many registered agents to simulate; default 100.
	Agents int
	// Days is how much history to simulate, ending now; default 4. The
	// simulator's default incidents fall in its last two thirds.
	Days int
	// RateScale multiplies the simulator's traffic (default 1: about two
	// events per active agent-minute).
	RateScale float64
	// Partitions of the events and anomalies topics; default 6.
	Partitions int
	// IdleFlush is detector.idle_flush: how long after the last record
	// the open windows are flushed; default 2s.
	IdleFlush time.Duration
	// Seed selects the simulated traffic; default 1.
	Seed uint64
	// Keep leaves the topics and database behind for inspection.
	Keep bool
}

// setDefaults is deliberately parallel to ingestbench's: the shared options'
// defaults are benchkit.Defaults; these keys, their defaults and limits
// are this benchmark's own.
func (o *Options) setDefaults() error {
	benchkit.Defaults(&o.Brokers, &o.ClickHouse, &o.Partitions)
	benchkit.Default(&o.Agents, 100)
	benchkit.Default(&o.Days, 4)
	benchkit.Default(&o.RateScale, 1)
	benchkit.Default(&o.IdleFlush, 2*time.Second)
	benchkit.Default(&o.Seed, 1)
	if o.Agents < 0 || o.Days < 0 || o.RateScale < 0 || o.Partitions < 0 || o.IdleFlush < 0 {
		return fmt.Errorf("detectbench: agents, days, rate scale, partitions and idle flush must be positive, got %d, %d, %g, %d, %s",
			o.Agents, o.Days, o.RateScale, o.Partitions, o.IdleFlush)
	}
	return nil
}

// Report is the outcome of one Run. Durations are wall-clock times of the
// measured phase only.
type Report struct {
	Events     int
	Bytes      int64 // total size of the encoded events
	Agents     int
	Days       int
	Partitions int
	Produce    time.Duration // writing the events topic (setup, for reference)
	Consume    time.Duration // kafka.MeasureConsume of Events
	// Detect is the detector service from its first record fetched to the
	// last event processed and its results written.
	Detect time.Duration
	// DetectWithJoin adds the consumer-group join and state restore.
	DetectWithJoin time.Duration
	// Drained is from the first record to the end of the idle flush and
	// snapshot that follow the last record; it includes IdleFlush of
	// waiting.
	Drained   time.Duration
	IdleFlush time.Duration
	Stats     detect.Stats
	// Published is the number of anomalies read back from the anomalies
	// topic; Latencies are, for each, its record's timestamp minus its
	// DetectedMs (stamped when its window closed), sorted.
	Published int
	Latencies []time.Duration
	// Acked are the observations of
	// agentwatch_detector_close_to_publish_seconds: for each anomaly, the
	// time from its window closing until its write was acknowledged, sorted.
	Acked        []time.Duration
	HeapInuseMax uint64
	// StoreWrites is the wall time the detector spent in ClickHouse writes
	// (scores, anomalies, state, checkpoints), which block its loop;
	// ScoreRows the window-score rows it wrote.
	StoreWrites time.Duration
	ScoreRows   int
}

// ConsumeRate and DetectRate are events per second.
func (r Report) ConsumeRate() float64 { return benchkit.Rate(r.Events, r.Consume) }
func (r Report) DetectRate() float64  { return benchkit.Rate(r.Events, r.Detect) }

// Ratio is the detector's rate as a percentage of the consume-only rate.
func (r Report) Ratio() float64 {
	return benchkit.Percent(r.DetectRate(), r.ConsumeRate())
}

// String renders the report as a Markdown table and a few lines.
func (r Report) String() string {
	var b strings.Builder
	avg := float64(r.Bytes) / float64(max(r.Events, 1))
	fmt.Fprintf(&b, "detector benchmark: %d events (%d agents, %d simulated days), %.0f B/event avg, %d partitions\n\n",
		r.Events, r.Agents, r.Days, avg, r.Partitions)
	b.WriteString("| stage | events | time | events/s | MB/s | vs. consume only |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	row := func(name string, d time.Duration, vs string) {
		benchkit.ThroughputRow(&b, name, r.Events, r.Bytes, d, vs)
	}
	row("produce events topic (setup)", r.Produce, "")
	row("Kafka consume only (kafka-go group reader)", r.Consume, "")
	row("detector service, from first record to last event processed", r.Detect, fmt.Sprintf("%.0f%%", r.Ratio()))
	row("detector incl. group join and state restore", r.DetectWithJoin, fmt.Sprintf("%.0f%%", 100*benchkit.Rate(r.Events, r.DetectWithJoin)/r.ConsumeRate()))
	row(fmt.Sprintf("detector until drained (incl. %s idle flush wait)", r.IdleFlush), r.Drained, "")
	s := r.Stats
	kinds := make([]string, 0, len(s.Anomalies))
	for k, n := range s.Anomalies {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	slices.Sort(kinds)
	fmt.Fprintf(&b, "\ndetector: %d events, %d windows scored, %d agents, %d late; anomalies: %s; heap in use max %.0f MiB\n",
		s.Events, s.Windows, s.Agents, s.Late, strings.Join(kinds, ", "), float64(r.HeapInuseMax)/(1<<20))
	fmt.Fprintf(&b, "ClickHouse writes, which block the detector's loop: %s of the %s until drained (%d window-score rows, %.1f events per window)\n",
		r.StoreWrites.Round(time.Millisecond), r.Drained.Round(time.Millisecond), r.ScoreRows, float64(r.Events)/float64(max(r.ScoreRows, 1)))
	fmt.Fprintf(&b, "window close → anomaly record produced (record timestamp − detected_ms), %d anomalies read back: p50 %s, p99 %s, max %s\n",
		r.Published, benchkit.Ms(benchkit.Quantile(r.Latencies, 0.50)), benchkit.Ms(benchkit.Quantile(r.Latencies, 0.99)), benchkit.Ms(benchkit.Quantile(r.Latencies, 1)))
	fmt.Fprintf(&b, "window close → write acknowledged (agentwatch_detector_close_to_publish_seconds), %d observations: p50 %s, p99 %s, max %s\n",
		len(r.Acked), benchkit.Ms(benchkit.Quantile(r.Acked, 0.50)), benchkit.Ms(benchkit.Quantile(r.Acked, 0.99)), benchkit.Ms(benchkit.Quantile(r.Acked, 1)))
	return b.String()
}

// Run simulates o.Agents agents over o.Days days (default incidents
// included), writes their events to a fresh events topic keyed by agent as
// ingest does, and measures in turn: consume only, then the detector
// service end to end from the beginning of the topic. It removes the
// topics and database it created unless o.Keep. progress receives a line
// per step (may be io.Discard).
//
// Deliberately parallel to ingestbench's and respbench's Run: each step's
// measurement and progress lines are this benchmark's own; what the steps
// share is benchkit.
func Run(ctx context.Context, o Options, log *slog.Logger, progress io.Writer) (Report, error) {
	log, suffix, err := benchkit.Begin(o.setDefaults, log)
	if err != nil {
		return Report{}, err
	}
	dir, err := os.MkdirTemp("", "detectbench-")
	if err != nil {
		return Report{}, fmt.Errorf("detectbench: %w", err)
	}
	defer os.RemoveAll(dir)

	// 1. Simulate, and write the registry and route inventory the
	// detector reads.
	fmt.Fprintf(progress, "simulating %d agents over %d days...\n", o.Agents, o.Days)
	span := time.Duration(o.Days) * 24 * time.Hour
	// End a minute back, so that the idle flush, which closes only windows
	// the wall clock has passed by the lateness, closes the last one too.
	end := time.Now().Add(-time.Minute).Truncate(time.Minute)
	s, err := sim.New(sim.Config{Seed: o.Seed, Agents: o.Agents, Start: end.Add(-span), Duration: span, RateScale: o.RateScale})
	if err != nil {
		return Report{}, fmt.Errorf("detectbench: %w", err)
	}
	msgs, nbytes := encode(s)
	if len(msgs) == 0 {
		return Report{}, errors.New("detectbench: the simulator produced no events")
	}
	regFile, routesFile := filepath.Join(dir, "agents.yaml"), filepath.Join(dir, "routes.yaml")
	var rb, ib bytes.Buffer
	if err := sim.WriteRegistryYAML(&rb, s.Registry()); err != nil {
		return Report{}, fmt.Errorf("detectbench: %w", err)
	}
	if err := sim.WriteRoutesYAML(&ib, s.Routes()); err != nil {
		return Report{}, fmt.Errorf("detectbench: %w", err)
	}
	if err := errors.Join(os.WriteFile(regFile, rb.Bytes(), 0o600), os.WriteFile(routesFile, ib.Bytes(), 0o600)); err != nil {
		return Report{}, fmt.Errorf("detectbench: %w", err)
	}

	env := []string{
		"AGENTWATCH_KAFKA_BROKERS=" + strings.Join(o.Brokers, ","),
		"AGENTWATCH_KAFKA_EVENTS_TOPIC=bench.events." + suffix,
		"AGENTWATCH_KAFKA_ANOMALIES_TOPIC=bench.anomalies." + suffix,
		"AGENTWATCH_KAFKA_DETECTOR_GROUP=bench-detector-" + suffix,
		"AGENTWATCH_KAFKA_PARTITIONS=" + strconv.Itoa(o.Partitions),
		"AGENTWATCH_CLICKHOUSE_ADDR=" + strings.Join(o.ClickHouse, ","),
		"AGENTWATCH_CLICKHOUSE_DATABASE=bench_detector_" + suffix,
		"AGENTWATCH_HTTP_ADDR=",
		"AGENTWATCH_DETECTOR_REGISTRY_FILE=" + regFile,
		"AGENTWATCH_DETECTOR_ROUTES_FILE=" + routesFile,
		"AGENTWATCH_DETECTOR_IDLE_FLUSH=" + o.IdleFlush.String(),
	}
	cfg, err := config.LoadEnv("", nil, env)
	if err != nil {
		return Report{}, fmt.Errorf("detectbench: config: %w", err)
	}
	rep := Report{Events: len(msgs), Bytes: nbytes, Agents: o.Agents, Days: o.Days, Partitions: o.Partitions, IdleFlush: o.IdleFlush}
	k := cfg.Kafka
	topics := []kafka.TopicSpec{
		{Name: k.EventsTopic, Partitions: o.Partitions, ReplicationFactor: k.ReplicationFactor},
		{Name: k.AnomaliesTopic, Partitions: o.Partitions, ReplicationFactor: k.ReplicationFactor},
	}
	if err := benchkit.EnsureTopics(ctx, o.Brokers, kafka.Security{}, topics...); err != nil {
		return rep, fmt.Errorf("detectbench: %w", err)
	}
	if !o.Keep {
		// The database name is ours: bench_detector_<digits>.
		defer benchkit.Scratch{Brokers: o.Brokers, ClickHouse: o.ClickHouse, Topics: []string{k.EventsTopic, k.AnomaliesTopic}, Databases: []string{cfg.ClickHouse.Database}}.Remove(log, "detectbench")
	}

	// 2. Fill the events topic (not measured as a rate to compare).
	start := time.Now()
	if err := produce(ctx, o, k.EventsTopic, msgs, progress); err != nil {
		return rep, err
	}
	rep.Produce = time.Since(start)
	msgs = nil

	// 3. Consume only.
	rep.Consume, err = benchkit.MeasureConsume(ctx, progress, kafka.ReaderConfig{
		Brokers: o.Brokers, GroupID: "bench-consume", Topics: []string{k.EventsTopic},
	}, rep.Events, "events")
	if err != nil {
		return rep, fmt.Errorf("detectbench: %w", err)
	}

	// 4. The detector service from the beginning of the topic.
	fmt.Fprintf(progress, "measuring the detector service on %d events...\n", rep.Events)
	if err := detectEndToEnd(ctx, cfg, &rep, log, progress); err != nil {
		return rep, err
	}
	fmt.Fprintf(progress, "  %s, %.0f events/s (%.0f%% of consume only)\n", rep.Detect.Round(time.Millisecond), rep.DetectRate(), rep.Ratio())

	// 5. Close → publish, read back from the anomalies topic.
	if err := readBack(ctx, o.Brokers, k.AnomaliesTopic, &rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// encode renders the simulator's good lines as ingest would publish them:
// canonical JSON keyed by agent, with an event id from raw coordinates,
// ingest time now (a backlog being caught up) and one of six raw-log
// partitions as the source.
func encode(s *sim.Simulator) ([]bus.Message, int64) {
	const raw = "bench.raw"
	now := time.Now().UnixMilli()
	var msgs []bus.Message
	var n int64
	for i := 0; ; i++ {
		l, ok := s.Next()
		if !ok {
			break
		}
		if !l.Good {
			continue
		}
		ev := l.Event
		ev.Topic, ev.Partition, ev.Offset = raw, int32(i%6), int64(i/6)
		ev.EventID = event.ID(ev.Topic, ev.Partition, ev.Offset)
		ev.IngestTimeMs = now
		v := event.AppendJSON(nil, &ev)
		n += int64(len(v))
		msgs = append(msgs, bus.Message{Key: []byte(ev.PartitionKey()), Value: v})
	}
	return msgs, n
}

func produce(ctx context.Context, o Options, topic string, msgs []bus.Message, progress io.Writer) error {
	w, err := kafka.NewWriter(kafka.WriterConfig{Brokers: o.Brokers, Topic: topic, BatchSize: 10000, BatchBytes: 3 << 20, Compression: "lz4"}, nil)
	if err != nil {
		return fmt.Errorf("detectbench: %w", err)
	}
	defer w.Close()
	const chunk = 20000
	step := max(len(msgs)/10, 1)
	for done := 0; done < len(msgs); {
		next := min(done+chunk, len(msgs))
		if err := w.Write(ctx, msgs[done:next]...); err != nil {
			return fmt.Errorf("detectbench: produce after %d events: %w", done, err)
		}
		if next/step != done/step || next == len(msgs) {
			fmt.Fprintf(progress, "producing events: %d/%d (%.0f%%)\n", next, len(msgs), 100*float64(next)/float64(len(msgs)))
		}
		done = next
	}
	return nil
}

// timedSource wraps the detector's source to note when the first record
// arrives.
type timedSource struct {
	detect.Source
	once  sync.Once
	first chan time.Time
}

func (s *timedSource) Next(ctx context.Context) (detect.Generation, error) {
	g, err := s.Source.Next(ctx)
	if err != nil {
		return nil, err
	}
	return &timedGeneration{Generation: g, src: s}, nil
}

type timedGeneration struct {
	detect.Generation
	src *timedSource
}

func (g *timedGeneration) Fetch(ctx context.Context) (bus.Message, error) {
	m, err := g.Generation.Fetch(ctx)
	if err == nil {
		g.src.once.Do(func() { g.src.first <- time.Now() })
	}
	return m, err
}

func detectEndToEnd(ctx context.Context, cfg config.Config, rep *Report, log *slog.Logger, progress io.Writer) error {
	runtime.GC()
	reg := prometheus.NewRegistry()
	svc, err := detect.NewService(ctx, cfg, log, reg)
	if err != nil {
		return fmt.Errorf("detectbench: %w", err)
	}
	defer svc.Close()
	acked := &recordingHistogram{Histogram: svc.Detector.Metrics.CloseToPublish}
	svc.Detector.Metrics.CloseToPublish = acked
	store := &timedStore{Store: svc.Detector.Store}
	svc.Detector.Store = store
	src := &timedSource{Source: svc.Detector.Source, first: make(chan time.Time, 1)}
	svc.Detector.Source = src
	idle := make(chan time.Time, 16)
	svc.Detector.Idle = func() {
		select {
		case idle <- time.Now():
		default:
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- svc.Detector.Run(runCtx) }()

	var first, processed time.Time
	want := uint64(rep.Events)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	lastProgress := time.Now()
	sample := func() {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		rep.HeapInuseMax = max(rep.HeapInuseMax, ms.HeapInuse)
	}
	for {
		select {
		case first = <-src.first:
			continue
		case err := <-done:
			return fmt.Errorf("detectbench: detector stopped after %d events: %w", svc.Detector.Counts().Events, err)
		case <-ctx.Done():
			return fmt.Errorf("detectbench: %d of %d events processed: %w", svc.Detector.Counts().Events, want, ctx.Err())
		case at := <-idle:
			if processed.IsZero() {
				continue // an idle tick before the first record
			}
			rep.Drained = at.Sub(first)
		case <-tick.C:
			st := svc.Detector.Counts()
			if processed.IsZero() && st.Events >= want {
				processed = time.Now()
				rep.Detect = processed.Sub(first)
				rep.DetectWithJoin = processed.Sub(start)
			}
			if time.Since(lastProgress) > 5*time.Second {
				lastProgress = time.Now()
				fmt.Fprintf(progress, "  processed %d/%d (%.0f%%)\n", st.Events, want, 100*float64(st.Events)/float64(want))
				sample()
			}
			continue
		}
		break
	}
	sample()
	rep.Stats = svc.Detector.Counts()
	stop()
	if err := <-done; err != nil {
		return fmt.Errorf("detectbench: detector: %w", err)
	}
	store.mu.Lock()
	rep.StoreWrites, rep.ScoreRows = store.took, store.scores
	store.mu.Unlock()
	acked.mu.Lock()
	rep.Acked = slices.Clone(acked.obs)
	acked.mu.Unlock()
	slices.Sort(rep.Acked)
	return nil
}

// timedStore adds up the time the detector spends writing to its store.
// Safe for concurrent use.
type timedStore struct {
	detect.Store
	mu     sync.Mutex
	took   time.Duration
	scores int
}

func (s *timedStore) timed(n int, f func() error) error {
	start := time.Now()
	err := f()
	s.mu.Lock()
	s.took += time.Since(start)
	s.scores += n
	s.mu.Unlock()
	return err
}

func (s *timedStore) InsertScores(ctx context.Context, ss []anomaly.Score) error {
	return s.timed(len(ss), func() error { return s.Store.InsertScores(ctx, ss) })
}

func (s *timedStore) InsertAnomalies(ctx context.Context, as []anomaly.Anomaly) error {
	return s.timed(0, func() error { return s.Store.InsertAnomalies(ctx, as) })
}

func (s *timedStore) SaveStates(ctx context.Context, states []detstate.State) error {
	return s.timed(0, func() error { return s.Store.SaveStates(ctx, states) })
}

func (s *timedStore) SaveCheckpoints(ctx context.Context, cps []detstate.Checkpoint) error {
	return s.timed(0, func() error { return s.Store.SaveCheckpoints(ctx, cps) })
}

// recordingHistogram keeps every observation of the close-to-publish
// histogram as well, for exact quantiles. Safe for concurrent use.
type recordingHistogram struct {
	prometheus.Histogram
	mu  sync.Mutex
	obs []time.Duration
}

func (h *recordingHistogram) Observe(v float64) {
	h.Histogram.Observe(v)
	h.mu.Lock()
	h.obs = append(h.obs, time.Duration(v*float64(time.Second)))
	h.mu.Unlock()
}

// readBack reads every anomaly on the topic and notes how long after its
// window closed (DetectedMs) its record was produced.
func readBack(ctx context.Context, brokers []string, topic string, rep *Report) error {
	err := kafka.ReadSince(ctx, brokers, kafka.Security{}, topic, time.UnixMilli(0), func(m bus.Message) error {
		var a struct {
			DetectedMs int64 `json:"detected_ms"`
		}
		if err := json.Unmarshal(m.Value, &a); err != nil {
			return fmt.Errorf("decode anomaly at %s/%d@%d: %w", m.Topic, m.Partition, m.Offset, err)
		}
		rep.Published++
		if a.DetectedMs > 0 && !m.Time.IsZero() {
			rep.Latencies = append(rep.Latencies, m.Time.Sub(time.UnixMilli(a.DetectedMs)))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("detectbench: read anomalies back: %w", err)
	}
	slices.Sort(rep.Latencies)
	return nil
}
