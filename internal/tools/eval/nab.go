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
	// Split restricts the run to a part of the corpus (nab.Splits; "" is
	// the whole corpus). Parameters are chosen on nab.SplitTune.
	Split nab.Split
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
	// Parts are the whole corpus, its tuning part and its held-out part
	// (nab.Splits), each scored on its own windows; empty when the run
	// scored a subset (NABOptions.Only or Split).
	Parts []NABPart
	// Muted counts the points the rarity bar held back
	// (baseline.SeriesResult.Muted) and MutedFiles the files they are in.
	Muted, MutedFiles int
}

// NABPart is the NAB score of one part of the corpus (nab.Split), by NAB's
// method applied to that part alone: its own windows, its own null and
// perfect detectors, its own best threshold per profile.
type NABPart struct {
	Split                  nab.Split
	Files, Points, Windows int
	Report                 nab.Report
	// AtTune is the held-out part scored at the thresholds NAB's sweep
	// picked on the tuning part, the stricter reading of "held out"
	// (the threshold too was chosen without these files). Only for
	// nab.SplitHoldout.
	AtTune *nab.Report
}

// ScoreSeries streams one series through a fresh baseline.Series, a point
// at a time in time order, and returns NAB anomaly scores in [0, 1]. No
// point sees a later one, and labels are never read.
func ScoreSeries(p *baseline.SeriesParams, times []time.Time, values []float64) []float64 {
	out, _ := scoreSeries(p, times, values)
	return out
}

// scoreSeries is ScoreSeries that also counts the points the rarity bar
// held back.
func scoreSeries(p *baseline.SeriesParams, times []time.Time, values []float64) (out []float64, muted int) {
	var s baseline.Series
	out = make([]float64, len(values))
	for i, v := range values {
		r := s.Observe(p, times[i].UnixMilli(), v)
		out[i] = math.Min(r.Reported/ScoreScale, 1)
		if r.Muted {
			muted++
		}
	}
	return out, muted
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
	whole := len(o.Only) == 0 && (o.Split == "" || o.Split == nab.SplitAll)
	if o.Split != "" {
		if c = c.Subset(o.Split); len(c.Series) == 0 {
			return NABResult{}, fmt.Errorf("nab: no file of the %s part in this corpus", o.Split)
		}
	}
	scores := make(map[string][]float64, len(c.Series))
	muted := make([]int, len(c.Series))
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
				sc, m := scoreSeries(&o.Params, s.Times, s.Values)
				muted[i] = m
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
	for i, s := range c.Series {
		res.Points += len(s.Values)
		res.Windows += len(s.Windows)
		res.Muted += muted[i]
		if muted[i] > 0 {
			res.MutedFiles++
		}
	}
	if whole {
		if res.Parts, err = scoreParts(c, scores); err != nil {
			return NABResult{}, err
		}
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

// scoreParts scores the corpus's parts (nab.Splits) one by one, and the
// held-out part again at the tuning part's thresholds. A part with no
// labelled window is left out.
func scoreParts(c *nab.Corpus, scores map[string][]float64) ([]NABPart, error) {
	var parts []NABPart
	tuneThr := map[string]float64{}
	for _, sp := range nab.Splits {
		sub := c.Subset(sp)
		part := NABPart{Split: sp, Files: len(sub.Series)}
		sc := make(map[string][]float64, len(sub.Series))
		for _, s := range sub.Series {
			sc[s.Name] = scores[s.Name]
			part.Points += len(s.Values)
			part.Windows += len(s.Windows)
		}
		if part.Windows == 0 {
			// NAB's normalisation divides by the part's windows: a part
			// without any (a reduced corpus) has no score.
			continue
		}
		rep, err := nab.ScoreCorpus(sub, sc)
		if err != nil {
			return nil, fmt.Errorf("nab %s part: %w", sp, err)
		}
		part.Report = rep
		switch sp {
		case nab.SplitTune:
			for _, p := range rep.Profiles {
				tuneThr[p.Name] = p.Threshold
			}
		case nab.SplitHoldout:
			if len(tuneThr) == 0 {
				break
			}
			at, err := nab.ScoreCorpusAt(sub, sc, tuneThr)
			if err != nil {
				return nil, fmt.Errorf("nab %s part at the tuning thresholds: %w", sp, err)
			}
			part.AtTune = &at
		}
		parts = append(parts, part)
	}
	return parts, nil
}

// writeNABParts writes the parts' scores as a markdown table, then one
// line per part and profile.
func writeNABParts(w io.Writer, parts []NABPart) {
	if len(parts) == 0 {
		return
	}
	fmt.Fprintf(w, "\nParts of the corpus (%d files held out, listed in internal/tools/nab/split.go), each scored by NAB's method on its own windows:\n\n", len(nab.HoldoutFiles))
	fmt.Fprintln(w, "| part | files | windows | Standard | Reward low FP | Reward low FN |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	row := func(name string, p NABPart, r nab.Report) {
		e := r.Entry("")
		fmt.Fprintf(w, "| %s | %d | %d | %.1f | %.1f | %.1f |\n", name, p.Files, p.Windows, e.Standard, e.LowFP, e.LowFN)
	}
	for _, p := range parts {
		row(string(p.Split), p, p.Report)
		if p.AtTune != nil {
			row(string(p.Split)+" at the tune thresholds", p, *p.AtTune)
		}
	}
	fmt.Fprintln(w)
	for _, p := range parts {
		reps := []nab.Report{p.Report}
		names := []string{string(p.Split)}
		if p.AtTune != nil {
			reps, names = append(reps, *p.AtTune), append(names, string(p.Split)+"@tune")
		}
		for i, r := range reps {
			for _, pr := range r.Profiles {
				fmt.Fprintf(w, "%-12s %-20s threshold %.4f  TP %d  FP %d  FN %d  raw %.2f (null %.2f, perfect %.2f)\n",
					names[i], pr.Name, pr.Threshold, pr.TP, pr.FP, pr.FN, pr.Raw, pr.Null, pr.Perfect)
			}
		}
	}
}
