package eval

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/tools/nab"
	"github.com/agentwatch/agentwatch/pkg/baseline"
)

// NABOptions says where the corpus is and what to write.
type NABOptions struct {
	// Data is the NAB checkout (data/, labels/, config/).
	Data string
	// Out receives one results CSV per data file at the same relative
	// path, and plots/ ("" writes nothing).
	Out string
	// Only restricts the run to these files ("category/file.csv").
	Only []string
	// Params are the series parameters: one set for every file.
	Params baseline.SeriesParams
	// Plots names the files to plot; nil picks a few.
	Plots []string
	// Progress gets a line per file; nil for none.
	Progress io.Writer
}

// ScoreScale maps a Series score (-log10 p, at most 300) to NAB's [0, 1]
// anomaly score. The map is linear and never saturates, so the one
// corpus-wide threshold NAB's sweep picks is a p-value threshold.
const ScoreScale = 300

// DefaultPlots are the files plotted for docs/evaluation.md: a planted level
// shift, a real incident with a known cause, and a noisy real series.
var DefaultPlots = []string{
	"artificialWithAnomaly/art_daily_jumpsup.csv",
	"realKnownCause/machine_temperature_system_failure.csv",
	"realKnownCause/nyc_taxi.csv",
	"realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv",
}

// NABResult is a scored corpus.
type NABResult struct {
	Report  nab.Report
	Files   int
	Points  int
	Windows int
	Elapsed time.Duration
	Plots   []string
}

// ScoreSeries streams one series through a fresh baseline.Series, a point
// at a time in time order, and returns NAB anomaly scores in [0, 1]. No
// point sees a later one, and labels are never read.
func ScoreSeries(p *baseline.SeriesParams, times []time.Time, values []float64) []float64 {
	var s baseline.Series
	out := make([]float64, len(values))
	for i, v := range values {
		r := s.Observe(p, times[i].UnixMilli(), v)
		out[i] = math.Min(r.Reported/ScoreScale, 1)
	}
	return out
}

// RunNAB scores every series of the corpus, writes the results and plots,
// and computes the NAB score.
func RunNAB(ctx context.Context, o NABOptions) (NABResult, error) {
	began := time.Now()
	if err := o.Params.Validate(); err != nil {
		return NABResult{}, fmt.Errorf("series parameters: %w", err)
	}
	c, err := nab.Load(o.Data, o.Only...)
	if err != nil {
		return NABResult{}, err
	}
	scores := make(map[string][]float64, len(c.Series))
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make([]error, len(c.Series))
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				s := c.Series[i]
				sc := ScoreSeries(&o.Params, s.Times, s.Values)
				if o.Out != "" {
					errs[i] = nab.WriteResults(o.Out, s, sc)
				}
				mu.Lock()
				scores[s.Name] = sc
				if o.Progress != nil {
					fmt.Fprintf(o.Progress, "nab: %d/%d %s (%d points)\n", len(scores), len(c.Series), s.Name, len(s.Values))
				}
				mu.Unlock()
			}
		}()
	}
	for i := range c.Series {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return NABResult{}, err
	}
	for _, err := range errs {
		if err != nil {
			return NABResult{}, err
		}
	}
	rep, err := nab.ScoreCorpus(c, scores)
	if err != nil {
		return NABResult{}, err
	}
	res := NABResult{Report: rep, Files: len(c.Series)}
	for _, s := range c.Series {
		res.Points += len(s.Values)
		res.Windows += len(s.Windows)
	}
	if o.Out != "" {
		plots := o.Plots
		if plots == nil {
			plots = DefaultPlots
		}
		thr := rep.Profiles[0].Threshold
		if err := os.MkdirAll(filepath.Join(o.Out, "plots"), 0o755); err != nil {
			return NABResult{}, fmt.Errorf("plots: %w", err)
		}
		for _, s := range c.Series {
			if !slices.Contains(plots, s.Name) {
				continue
			}
			path := filepath.Join(o.Out, "plots", strings.TrimSuffix(strings.ReplaceAll(s.Name, "/", "_"), ".csv")+".png")
			if err := nab.Plot(path, s, scores[s.Name], thr); err != nil {
				return NABResult{}, err
			}
			res.Plots = append(res.Plots, path)
		}
		sort.Strings(res.Plots)
	}
	res.Elapsed = time.Since(began)
	return res, nil
}
