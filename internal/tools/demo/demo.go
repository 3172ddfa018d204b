// Package demo runs the whole job in one process on the embedded default:
// the traffic simulator publishes gateway access-log lines of every format
// to an in-process log, the ingest stage turns them into canonical events
// stored in day files and published to the events topic, and the detector
// scores every agent's windows and publishes explained anomalies. A few days
// of quiet history are replayed first, as fast as possible, so baselines are
// warm (what `detector backfill` does for a new deployment); then the last
// day, with injected incidents, is paced. It prints what flows through each
// stage and each anomaly while it runs, and at the end which incidents were
// caught and how many alerts were false.
package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detect"
	"github.com/agentwatch/agentwatch/internal/ingest"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/bus/membus"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/embedstore"
	"github.com/agentwatch/agentwatch/internal/platform/obs"
	"github.com/agentwatch/agentwatch/internal/platform/pipeline"
	"github.com/agentwatch/agentwatch/internal/responder/preview"
	"github.com/agentwatch/agentwatch/internal/tools/scenario"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// Options say what to simulate and how fast. Zero values mean defaults.
type Options struct {
	Config config.Config
	// Seed selects the simulated run.
	Seed uint64
	// Agents simulated; default 60.
	Agents int
	// SimDuration is the paced, simulated span ending now; default 24h.
	SimDuration time.Duration
	// End is when the simulated span ends; zero means now. It must not be
	// in the future. Tests pin it, so the incidents land at the same times
	// of day whenever they run.
	End time.Time
	// History is quiet traffic replayed unpaced before it; default 72h.
	// Ingest rejects events older than ingest.max_age (7 days by default).
	History time.Duration
	// Speed is simulated seconds per wall second; default 1440 (a day in a minute).
	Speed float64
	// GarbageRate is the share of bad lines; default 0.02.
	GarbageRate float64
	// Every is the progress interval; default 2s.
	Every time.Duration
}

// Summary is what a demo run did.
type Summary struct {
	Published, Good, Bad uint64
	Ingest               ingest.Stats
	Detector             detect.Stats
	DetectorAgents       int
	Anomalies            []anomaly.Anomaly
	Caught               []scenario.Catch
	FalseAlerts          int
	AgentDays            float64
	Incidents            []sim.Incident
	IncidentEvents       map[string]uint64
	DataDir              string
	DeadLetterFile       string
	StoredEvents         int
	Responder            responderSummary
	Report               reportSummary
}

const (
	topicRaw    = "agentwatch.raw"
	topicEvents = "agentwatch.events"
	topicDLQ    = "agentwatch.deadletter"
	topicAnom   = "agentwatch.anomalies"
)

// Run runs the demo until the simulated span is replayed (or ctx ends),
// printing progress and the summary to out.
func Run(ctx context.Context, o Options, out io.Writer, log *slog.Logger) (Summary, error) {
	if o.Agents <= 0 {
		o.Agents = 60
	}
	if o.SimDuration <= 0 {
		o.SimDuration = 24 * time.Hour
	}
	if o.History == 0 {
		o.History = 72 * time.Hour
	}
	if o.Speed <= 0 {
		o.Speed = 1440
	}
	if o.GarbageRate == 0 {
		o.GarbageRate = 0.02
	}
	if o.Every <= 0 {
		o.Every = 2 * time.Second
	}
	cfg := o.Config
	sum := Summary{DataDir: cfg.Embedded.DataDir, IncidentEvents: map[string]uint64{}}
	// The stages and the responder's console print from their own
	// goroutines: one lock keeps their lines whole.
	out = &lockedWriter{w: out}

	// Each run starts from an empty store so its counts are its own.
	if err := os.RemoveAll(cfg.Embedded.DataDir); err != nil {
		return sum, fmt.Errorf("clear %s: %w", cfg.Embedded.DataDir, err)
	}
	store, err := embedstore.Open(filepath.Join(cfg.Embedded.DataDir, "events"))
	if err != nil {
		return sum, err
	}
	defer store.Close()
	sum.DeadLetterFile = filepath.Join(cfg.Embedded.DataDir, "deadletter.jsonl")

	b := membus.New(1 << 15)
	defer b.Close()
	b.CreateTopic(topicRaw, cfg.Kafka.Partitions)
	b.CreateTopic(topicEvents, cfg.Kafka.Partitions)
	b.CreateTopic(topicDLQ, 1)
	b.CreateTopic(topicAnom, cfg.Kafka.Partitions)

	now := time.Now().UTC()
	if !o.End.IsZero() && o.End.Before(now) {
		now = o.End.UTC()
	}
	liveStart := now.Add(-o.SimDuration)
	simStart := liveStart.Add(-o.History)
	specs := sim.DefaultIncidents(liveStart, o.SimDuration)
	for i := range specs {
		specs[i].Offset += o.History
	}
	s, err := sim.New(sim.Config{
		Seed: o.Seed, Agents: o.Agents, Start: simStart, Duration: o.History + o.SimDuration,
		GarbageRate: o.GarbageRate, Incidents: specs,
		// Lines over 1 MiB are dead-lettered like any other garbage; they are
		// left out only to keep the demo's memory small.
		GarbageKinds: withoutTooLarge(),
	})
	if err != nil {
		return sum, fmt.Errorf("simulator: %w", err)
	}
	sum.Incidents = s.Incidents()
	if err := writeSimFiles(cfg.Embedded.DataDir, s); err != nil {
		return sum, err
	}

	reg := obs.NewRegistry()
	// simClock is the simulated time reached by the feeder.
	var simClock atomic.Value
	simClock.Store(simStart)
	rt, err := cfg.RouteNormalizer()
	if err != nil {
		return sum, err
	}
	memRaw, err := b.Reader("ingest", topicRaw)
	if err != nil {
		return sum, err
	}
	// Ingest judges timestamps against the replayed clock, as it would
	// against the wall clock live: the simulated time of the newest raw
	// line it has read (the feeder runs hours ahead while it replays the
	// history, so its own clock would not do).
	rawReader := &clockReader{Reader: memRaw}
	rawReader.ms.Store(simStart.UnixMilli())
	in, err := ingest.New(rawReader, store, b.Writer(""), b.Writer(""), ingest.Options{
		EventsTopic: topicEvents, DeadLetterTopic: topicDLQ,
		BatchSize: 1000, BatchWait: 200 * time.Millisecond,
		Parser: cfg.ParserOptions(rt), TopicFormats: cfg.Ingest.TopicFormats,
		RetryInitial: cfg.Ingest.RetryInitial, RetryMax: cfg.Ingest.RetryMax, ShutdownGrace: cfg.Ingest.ShutdownGrace,
		Now: rawReader.now,
	}, log, ingest.NewMetrics(reg))
	if err != nil {
		return sum, err
	}
	evReader, err := b.Reader("detector", topicEvents)
	if err != nil {
		return sum, err
	}
	det, closeDet, err := newDetector(cfg, b, evReader, log, reg)
	if err != nil {
		return sum, err
	}
	defer closeDet()
	resp, err := newResponder(cfg, store, det, det.store, out, log, reg)
	if err != nil {
		return sum, err
	}
	detectorIdle := make(chan struct{}, 1)
	det.Idle = func() {
		select {
		case detectorIdle <- struct{}{}:
		default:
		}
	}
	anomReader, err := b.Reader("demo-anomalies", topicAnom)
	if err != nil {
		return sum, err
	}
	var anomalies []anomaly.Anomaly
	anomCount := atomic.Int64{}
	dlqReader, err := b.Reader("demo-deadletter", topicDLQ)
	if err != nil {
		return sum, err
	}
	dlqFile, err := os.Create(sum.DeadLetterFile)
	if err != nil {
		return sum, fmt.Errorf("create dead-letter file: %w", err)
	}
	defer dlqFile.Close()

	fmt.Fprintf(out, "agentwatch demo: %d agents; %s of quiet history replayed at full speed to warm the baselines, then %s replayed at %gx with %.0f%% garbage and %d injected incidents\n",
		o.Agents, o.History, o.SimDuration, o.Speed, o.GarbageRate*100, len(sum.Incidents))
	fmt.Fprintf(out, "embedded mode: in-process log, events stored under %s\n\n", store.Dir())

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	feederDone := make(chan struct{})
	// published is read by the progress stage while the feeder writes it.
	var published atomic.Uint64
	var good, bad uint64
	incidentOf := map[string]uint64{}
	feeder := pipeline.StageFunc(func(ctx context.Context) error {
		defer close(feederDone)
		w := b.Writer(topicRaw)
		var p *sim.Pacer
		var batch []bus.Message
		for {
			line, ok := s.Next()
			if !ok || len(batch) >= 500 {
				if err := w.Write(ctx, batch...); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return fmt.Errorf("publish simulated lines: %w", err)
				}
				batch = batch[:0]
			}
			if !ok {
				return nil
			}
			if !s.Clock().Before(liveStart) {
				if p == nil {
					p = &sim.Pacer{SimStart: liveStart, WallStart: time.Now(), Speed: o.Speed, NotAfterWall: true}
				}
				if err := p.Wait(ctx, s.Clock()); err != nil {
					return nil
				}
			}
			simClock.Store(s.Clock())
			batch = append(batch, bus.Message{Value: line.Raw, Time: s.Clock()})
			published.Add(1)
			if line.Good {
				good++
			} else {
				bad++
			}
			if line.Incident != "" {
				incidentOf[line.Incident]++
			}
		}
	})
	dlqSink := pipeline.StageFunc(func(ctx context.Context) error {
		w := bufio.NewWriter(dlqFile)
		defer w.Flush()
		for {
			m, err := dlqReader.Fetch(ctx)
			if err != nil {
				return nil
			}
			rec := map[string]any{"raw": truncate(string(m.Value), 300)}
			for _, h := range m.Headers {
				rec[h.Key] = string(h.Value)
			}
			line, _ := json.Marshal(rec)
			w.Write(append(line, '\n'))
			if err := dlqReader.Commit(ctx, m); err != nil {
				return nil
			}
		}
	})
	anomSink := pipeline.StageFunc(func(ctx context.Context) error {
		for {
			m, err := anomReader.Fetch(ctx)
			if err != nil {
				return nil
			}
			var a anomaly.Anomaly
			if err := json.Unmarshal(m.Value, &a); err != nil {
				return fmt.Errorf("demo: undecodable anomaly: %w", err)
			}
			anomalies = append(anomalies, a)
			if err := resp.handle(ctx, a); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("responder: %w", err)
			}
			if n := anomCount.Add(1); n <= maxPrinted {
				fmt.Fprintf(out, "ANOMALY %s  %-22s %-8s %s\n", time.UnixMilli(a.WindowStartMs).UTC().Format("Jan 02 15:04"), a.Kind, a.Severity, a.Summary)
			} else if n == maxPrinted+1 {
				fmt.Fprintf(out, "(more anomalies: the rest are in %s)\n", filepath.Join(cfg.Embedded.DataDir, "detector"))
			}
			if err := anomReader.Commit(ctx, m); err != nil {
				return nil
			}
		}
	})
	progress := pipeline.StageFunc(func(ctx context.Context) error {
		// The common ticker-and-select loop (as in invwatch.Watcher.Run); the
		// shape is shared, what each tick does is not.
		t := time.NewTicker(o.Every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-feederDone:
				// Wait for the pipeline to drain and the detector to close
				// its last windows, then stop everything.
				for ctx.Err() == nil {
					st := in.Stats()
					if st.Committed >= published.Load() && b.Lag("detector", topicEvents) == 0 && b.Lag("demo-deadletter", topicDLQ) == 0 {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-detectorIdle:
				}
				for ctx.Err() == nil && b.Lag("demo-anomalies", topicAnom) > 0 {
					time.Sleep(50 * time.Millisecond)
				}
				cancel()
				return nil
			case <-t.C:
				if _, err := resp.approveAll(ctx); err != nil && ctx.Err() == nil {
					return err
				}
				st := in.Stats()
				ds := det.Counts()
				fmt.Fprintf(out, "sim clock %s | published %d | ingest: %d events stored, %d dead-lettered | detector: %d events, %d windows scored, %d anomalies\n",
					simClock.Load().(time.Time).Format("Jan 02 15:04"), published.Load(), st.Events, st.DeadLettered, ds.Events, ds.Windows, anomCount.Load())
			}
		}
	})
	httpSrv := &obs.Server{Addr: cfg.HTTP.Addr, WebConfigFile: cfg.HTTP.WebConfigFile, Registry: reg, Readiness: &obs.Readiness{}, Log: log}
	err = pipeline.Run(runCtx, feeder, in, det, dlqSink, anomSink, progress, httpSrv)

	sum.Published, sum.Good, sum.Bad = published.Load(), good, bad
	sum.Ingest = in.Stats()
	sum.Detector = det.Counts()
	sum.DetectorAgents = det.Proc.Agents()
	sum.Anomalies = anomalies
	sum.Caught, sum.FalseAlerts = scenario.Match(sum.Incidents, anomalies, cfg.Detector.Window)
	sum.AgentDays = float64(o.Agents) * (o.History + o.SimDuration).Hours() / 24
	sum.IncidentEvents = incidentOf
	sum.StoredEvents = store.Count()
	if err != nil && !errors.Is(err, context.Canceled) {
		return sum, err
	}
	rs, err := resp.finish(ctx)
	sum.Responder = rs
	if err != nil {
		return sum, err
	}
	sum.Report = writeReport(ctx, cfg, liveStart.Add(o.SimDuration/2), log)
	printSummary(out, sum)
	return sum, nil
}

// clockReader is a bus.Reader that remembers the newest record time it
// returned: the demo's feeder stamps each raw line with its simulated time.
type clockReader struct {
	bus.Reader
	ms atomic.Int64
}

func (r *clockReader) Fetch(ctx context.Context) (bus.Message, error) {
	m, err := r.Reader.Fetch(ctx)
	if err == nil {
		if t := m.Time.UnixMilli(); t > r.ms.Load() {
			r.ms.Store(t)
		}
	}
	return m, err
}

func (r *clockReader) now() time.Time { return time.UnixMilli(r.ms.Load()).UTC() }

func withoutTooLarge() []sim.GarbageKind {
	var ks []sim.GarbageKind
	for _, k := range sim.GarbageKinds {
		if k != sim.GarbageTooLarge {
			ks = append(ks, k)
		}
	}
	return ks
}

func writeSimFiles(dir string, s *sim.Simulator) error {
	var errs []error
	write := func(name string, fn func(io.Writer) error) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			errs = append(errs, err)
			return
		}
		errs = append(errs, fn(f), f.Close())
	}
	write("agents.yaml", func(w io.Writer) error { return sim.WriteRegistryYAML(w, s.Registry()) })
	write("openapi.yaml", func(w io.Writer) error { return sim.WriteOpenAPI(w, s.Routes()) })
	write("incidents.json", func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s.Incidents())
	})
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("write simulator files: %w", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func printSummary(w io.Writer, s Summary) {
	fmt.Fprintf(w, "\n=== what flowed ===\n")
	fmt.Fprintf(w, "simulator  %8d lines published (%d good, %d garbage)\n", s.Published, s.Good, s.Bad)
	fmt.Fprintf(w, "ingest     %8d records read, %d events stored and published, %d dead-lettered, %d committed\n",
		s.Ingest.Records, s.Ingest.Events, s.Ingest.DeadLettered, s.Ingest.Committed)
	fmt.Fprintf(w, "detector   %8d events consumed from %d agents (%d unattributed), %d windows scored, %d late events\n",
		s.Detector.Events, s.Detector.Agents, s.Detector.Unattributed, s.Detector.Windows, s.Detector.Late)
	fmt.Fprintf(w, "responder  %8d incidents, %d audited actions\n", len(s.Responder.Incidents), countActions(s.Responder.Actions))
	if len(s.Ingest.ByReason) > 0 {
		fmt.Fprintf(w, "\ndead-lettered by reason:\n")
		var rs []string
		for r := range s.Ingest.ByReason {
			rs = append(rs, r)
		}
		sort.Strings(rs)
		for _, r := range rs {
			fmt.Fprintf(w, "  %-26s %d\n", r, s.Ingest.ByReason[r])
		}
	}
	printDetection(w, s)
	printResponder(w, s.Responder)
	fmt.Fprintf(w, "\n=== where the results are ===\n")
	fmt.Fprintf(w, "events (canonical JSON lines, one file per day): %s\n", filepath.Join(s.DataDir, "events"))
	fmt.Fprintf(w, "dead letters with reason and source offset:      %s\n", s.DeadLetterFile)
	fmt.Fprintf(w, "anomalies, window scores, detector state:        %s\n", filepath.Join(s.DataDir, "detector"))
	fmt.Fprintf(w, "agent registry, route inventory, incidents:      %s\n", strings.Join([]string{
		filepath.Join(s.DataDir, "agents.yaml"), filepath.Join(s.DataDir, "openapi.yaml"), filepath.Join(s.DataDir, "incidents.json")}, ", "))
	fmt.Fprintf(w, "responder: audit log, outbox, silences, ledger:   %s\n", s.Responder.StateDir)
	fmt.Fprintf(w, "evidence bundles (check: responder verify --responder.state_dir %s): %s\n", s.Responder.StateDir, s.Responder.Evidence)
	fmt.Fprintf(w, "deny-list the gateway would load:                %s\n", s.Responder.Denylist)
	if s.Responder.PreviewErr == nil && s.Responder.Preview != "" {
		fmt.Fprintf(w, "Slack messages (Block Kit JSON, HTML view):      %s, %s\n",
			filepath.Join(s.Responder.Preview, preview.JSONFile), filepath.Join(s.Responder.Preview, preview.HTMLFile))
	}
	if r := s.Report; r.Err != nil {
		fmt.Fprintf(w, "report of %s: not written: %v\n", r.Period, r.Err)
	} else if len(r.Files) > 0 {
		fmt.Fprintf(w, "report of %s (agentwatch report --period %s):  %s; in the evidence chain as %s\n", r.Period, r.Period, strings.Join(r.Files, ", "), r.Bundle)
	}
}

func countActions(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
