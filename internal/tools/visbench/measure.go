package visbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"
)

// MeasureOptions say how to measure. The zero value of each field is its
// default.
type MeasureOptions struct {
	// Runs is how many times each question is asked; default 20.
	Runs int
}

// Question is one thing the benchmark times: Ask answers its run-th
// variant (another day, tag or agent each run) and says how many rows the
// answer held, so that an empty answer is not mistaken for a fast one.
type Question struct {
	Name string
	// Target is the p95 to meet; 0 when there is none.
	Target time.Duration
	Ask    func(ctx context.Context, run int) (rows int, err error)
}

// Timing is one question's times over its runs.
type Timing struct {
	Name             string
	Target           time.Duration
	Times            []time.Duration
	MinRows, MaxRows int
	// In is the time its runs spent in each method of the Source, when
	// Measure was given a split.
	In map[string]time.Duration
}

// Total is the sum of the times.
func (t Timing) Total() time.Duration {
	var s time.Duration
	for _, d := range t.Times {
		s += d
	}
	return s
}

// Percentile is the p-th percentile (0..100) of the times, nearest rank.
func (t Timing) Percentile(p float64) time.Duration {
	if len(t.Times) == 0 {
		return 0
	}
	s := slices.Clone(t.Times)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Met says the p95 is within the target (true without a target).
func (t Timing) Met() bool { return t.Target == 0 || t.Percentile(95) <= t.Target }

// MeasureReport is the times of every question, measured in one run.
type MeasureReport struct {
	Runs    int
	Timings []Timing
	// Machine is what the run ran on.
	Machine string
}

// Measure asks each question o.Runs times, round-robin (run 1 of every
// question, then run 2, …), so that every question sees the same
// machine: a slow moment of the shared machine hits them all alike.
//
// split, when not nil, returns the time spent in each Source method since
// its last call; it is called after each answer.
func Measure(ctx context.Context, o MeasureOptions, qs []Question, split func() map[string]time.Duration, progress io.Writer) (MeasureReport, error) {
	if o.Runs <= 0 {
		o.Runs = 20
	}
	rep := MeasureReport{Runs: o.Runs, Machine: machine()}
	rep.Timings = make([]Timing, len(qs))
	for i, q := range qs {
		rep.Timings[i] = Timing{Name: q.Name, Target: q.Target, MinRows: math.MaxInt}
	}
	for run := range o.Runs {
		for i, q := range qs {
			if split != nil {
				split()
			}
			start := time.Now()
			n, err := q.Ask(ctx, run)
			d := time.Since(start)
			if err != nil {
				return rep, fmt.Errorf("visbench: %s, run %d: %w", q.Name, run+1, err)
			}
			t := &rep.Timings[i]
			t.Times = append(t.Times, d)
			if split != nil {
				if t.In == nil {
					t.In = map[string]time.Duration{}
				}
				for m, d := range split() {
					t.In[m] += d
				}
			}
			t.MinRows, t.MaxRows = min(t.MinRows, n), max(t.MaxRows, n)
		}
		fmt.Fprintf(progress, "measured run %d of %d\n", run+1, o.Runs)
	}
	return rep, nil
}

// String renders the report as a Markdown table.
func (r MeasureReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d runs of each question, interleaved; %s\n\n", r.Runs, r.Machine)
	b.WriteString("| question | rows per answer | p50 | p95 | max | target (p95) | met |\n|---|---:|---:|---:|---:|---:|:---:|\n")
	for _, t := range r.Timings {
		target, met := "", ""
		if t.Target > 0 {
			target, met = "≤ "+fmtDur(t.Target), "no"
			if t.Met() {
				met = "yes"
			}
		}
		rows := fmt.Sprint(t.MinRows)
		if t.MaxRows != t.MinRows {
			rows = fmt.Sprintf("%d–%d", t.MinRows, t.MaxRows)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", t.Name, rows,
			fmtDur(t.Percentile(50)), fmtDur(t.Percentile(95)), fmtDur(t.Percentile(100)), target, met)
	}
	var split bool
	for _, t := range r.Timings {
		split = split || len(t.In) > 0
	}
	if !split {
		return b.String()
	}
	b.WriteString("\nwhere the time went, over all runs (share of the question's time in each visibility.Source method; the rest is the service, the audit write and rendering; reads asked at once add up to more than 100%):\n\n")
	b.WriteString("| question | Source methods |\n|---|---|\n")
	for _, t := range r.Timings {
		if len(t.In) == 0 {
			continue
		}
		ms := make([]string, 0, len(t.In))
		for m := range t.In {
			ms = append(ms, m)
		}
		slices.SortFunc(ms, func(a, b string) int { return int(t.In[b] - t.In[a]) })
		parts := make([]string, len(ms))
		for i, m := range ms {
			parts[i] = fmt.Sprintf("%s %.0f%%", m, 100*t.In[m].Seconds()/t.Total().Seconds())
		}
		fmt.Fprintf(&b, "| %s | %s |\n", t.Name, strings.Join(parts, ", "))
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000)
}

// machine describes the host: CPUs, Go version, load average.
func machine() string {
	s := fmt.Sprintf("%d CPUs, %s", runtime.NumCPU(), runtime.Version())
	if la := loadAvg(); la != "" {
		s += ", load average " + la
	}
	return s
}

// Report is a Run's load and measurements.
type Report struct {
	Load    LoadReport
	Measure *MeasureReport
}

// String renders both parts.
func (r Report) String() string {
	s := r.Load.String()
	if r.Measure != nil {
		s += "\n" + r.Measure.String()
	} else if !r.Load.Complete() {
		s += fmt.Sprintf("\nnot measured: %d of %d days are loaded; run again to load the rest\n", r.Load.Days, r.Load.Want)
	}
	return s
}

// Run loads (or checks) the database, then, unless loadOnly or the load is
// not complete, measures the questions on it.
func Run(ctx context.Context, o Options, m MeasureOptions, loadOnly bool, log *slog.Logger, progress io.Writer) (Report, error) {
	lr, err := Load(ctx, o, log, progress)
	rep := Report{Load: lr}
	if err != nil || loadOnly || !lr.Complete() {
		return rep, err
	}
	qs, split, closeQs, err := Questions(ctx, o, log)
	if err != nil {
		return rep, err
	}
	defer closeQs()
	mr, err := Measure(ctx, m, qs, split, progress)
	rep.Measure = &mr
	return rep, err
}
