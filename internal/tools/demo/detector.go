package demo

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/detector/detect"
	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/bus/membus"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// maxPrinted bounds the anomaly lines printed while the demo runs.
const maxPrinted = 40

// embeddedDetector is the demo's detector stage. In-process there is no
// feedback table to poll: the demo's responder hands an analyst's
// false-positive verdict straight to ApplyVerdict.
type embeddedDetector struct {
	*detect.Detector
	// store holds the detector's state and results; the demo's responder
	// reads the window scores for its evidence bundles from it, as the
	// distributed responder reads them from ClickHouse.
	store *detstate.FileStore
}

// ApplyVerdict folds a false-positive verdict's window into the agent's
// baseline through the running detector's loop (detect.Detector's
// ApplyVerdicts; see detect.Processor.ApplyVerdict for which verdicts
// apply). It reports whether the verdict changed the agent's state, and
// waits for the detector until ctx ends. Safe for concurrent use.
func (d *embeddedDetector) ApplyVerdict(ctx context.Context, v anomaly.Verdict) (bool, error) {
	n, err := d.ApplyVerdicts(ctx, []anomaly.Verdict{v})
	return n > 0, err
}

// Put hands a verdict to ApplyVerdict, as the distributed responder puts it
// in the feedback table (the responder's FeedbackSink). A verdict the
// detector has nothing to learn from (see detect.Processor.ApplyVerdict) is
// not an error. The fold is in memory until the detector's next snapshot
// (every second in the demo). Safe for concurrent use.
func (d *embeddedDetector) Put(ctx context.Context, v anomaly.Verdict) error {
	_, err := d.ApplyVerdict(ctx, v)
	return err
}

// newDetector builds the embedded detector: the registry and inventory
// the simulator wrote, state and results in files under the data dir.
func newDetector(cfg config.Config, b *membus.Broker, r bus.Reader, log *slog.Logger, reg prometheus.Registerer) (*embeddedDetector, func(), error) {
	if cfg.Detector.RegistryFile == "" {
		cfg.Detector.RegistryFile = filepath.Join(cfg.Embedded.DataDir, "agents.yaml")
	}
	if cfg.Detector.OpenAPIFile == "" && cfg.Detector.RoutesFile == "" {
		cfg.Detector.OpenAPIFile = filepath.Join(cfg.Embedded.DataDir, "openapi.yaml")
	}
	w, err := detect.NewWatcher(cfg, log, reg)
	if err != nil {
		return nil, nil, err
	}
	st, err := detstate.OpenFileStore(filepath.Join(cfg.Embedded.DataDir, "detector"))
	if err != nil {
		return nil, nil, fmt.Errorf("detector store: %w", err)
	}
	set := detect.SettingsFrom(cfg)
	// Ingest stamps events with the replayed clock, which runs thousands
	// of times faster than the wall clock: a raw partition is idle only
	// after hours of simulated silence.
	set.IdleSourceMs = (6 * time.Hour).Milliseconds()
	parts := make([]int32, cfg.Kafka.Partitions)
	for i := range parts {
		parts[i] = int32(i)
	}
	// The in-process log holds records until every group commits them, and
	// the detector commits at snapshots: snapshot often so that ingest is
	// never held back long enough for a partition to look idle.
	d := detect.New(cfg, set, detect.Wiring{
		Source: &detect.ReaderSource{Reader: r, Topic: topicEvents, Partitions: parts},
		Group:  "detector", EventsTopic: topicEvents,
		Store: st, Out: b.Writer(topicAnom), AnomaliesTopic: topicAnom,
		Catalog: detect.WatcherCatalog{W: w},
	}, log, reg)
	d.SnapshotEvery, d.IdleFlush = time.Second, 5*time.Second
	// The demo's feed is a finished replay whose last window ends at the
	// demo's start: once it is quiet, every window may close.
	d.ReplayIdleFlush = true
	return &embeddedDetector{Detector: d, store: st}, func() { _ = st.Close() }, nil
}

func printDetection(w io.Writer, s Summary) {
	byKind := map[string]int{}
	for _, a := range s.Anomalies {
		byKind[a.Kind]++
	}
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	fmt.Fprintf(w, "\n=== what the detector found ===\n")
	fmt.Fprintf(w, "%d anomalies:", len(s.Anomalies))
	for _, k := range kinds {
		fmt.Fprintf(w, " %s %d", k, byKind[k])
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "\ninjected incidents:\n")
	caught := 0
	for _, c := range s.Caught {
		status := "MISSED"
		if c.Caught {
			caught++
			status = fmt.Sprintf("caught after %d window(s) as %v", c.Windows, c.Kinds)
		}
		fmt.Fprintf(w, "  %-20s agent %-22s %s–%s  %s\n", c.Incident.Kind, c.Incident.Agent,
			c.Incident.Start.Format("Jan 02 15:04"), c.Incident.End.Format("15:04"), status)
	}
	fmt.Fprintf(w, "caught %d of %d; %d alert(s) matched no incident (%.2f per 100 agent-days over %.0f agent-days)\n",
		caught, len(s.Caught), s.FalseAlerts, 100*float64(s.FalseAlerts)/max(s.AgentDays, 1), s.AgentDays)
	// Show the explanation of the strongest anomaly per incident, so the
	// analyst's view is visible in the demo output.
	for _, c := range s.Caught {
		var best *anomaly.Anomaly
		for i := range s.Anomalies {
			a := &s.Anomalies[i]
			if a.AgentID == c.Incident.Agent && a.WindowEndMs > c.Incident.Start.UnixMilli() && a.WindowStartMs <= c.Incident.End.UnixMilli() {
				if best == nil || cmp.Compare(a.Score, best.Score) > 0 {
					best = a
				}
			}
		}
		if best == nil {
			continue
		}
		fmt.Fprintf(w, "\n[%s] %s\n", c.Incident.Kind, best.Summary)
		for _, f := range best.Explanation {
			fmt.Fprintf(w, "    %-20s observed %-12s expected %-10s surprise %.1f\n", f.Name, fnum(f.Observed), fnum(f.Expected), f.Surprise)
		}
	}
}

func fnum(x float64) string {
	if x == float64(int64(x)) {
		return fmt.Sprintf("%d", int64(x))
	}
	return fmt.Sprintf("%.2f", x)
}
