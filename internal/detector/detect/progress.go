package detect

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress shows a bar with rate and ETA on a terminal, and log lines
// every 5 s otherwise.
type progress struct {
	bar      *progressbar.ProgressBar
	w        io.Writer
	log      *slog.Logger
	from, to int64
	started  time.Time
	lastLog  time.Time
}

var _ Progress = (*progress)(nil)

// newProgress reports a backfill of event time [from, to) to w when it is
// a terminal, else to log.
func newProgress(w io.Writer, log *slog.Logger, from, to int64) *progress {
	p := &progress{w: w, log: log, from: from, to: to, started: time.Now(), lastLog: time.Now()}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64((to-from)/60_000,
			progressbar.OptionSetWriter(w), progressbar.OptionSetDescription("backfill (minutes of event time)"),
			progressbar.OptionShowCount(), progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionFullWidth())
	}
	return p
}

// Update implements Progress.
func (p *progress) Update(events uint64, through int64) {
	done := float64(through-p.from) / float64(p.to-p.from)
	rate := float64(events) / time.Since(p.started).Seconds()
	if p.bar != nil {
		_ = p.bar.Set64((through - p.from) / 60_000)
		p.bar.Describe(fmt.Sprintf("backfill: %d events, %.0f/s", events, rate))
		return
	}
	if time.Since(p.lastLog) < 5*time.Second && done < 1 {
		return
	}
	p.lastLog = time.Now()
	eta := time.Duration(0)
	if done > 0 {
		eta = time.Duration(float64(time.Since(p.started)) * (1 - done) / done)
	}
	p.log.Info("backfill progress", "done_pct", fmt.Sprintf("%.1f", 100*done), "through", time.UnixMilli(through).UTC(),
		"events", events, "events_per_s", int(rate), "eta", eta.Round(time.Second))
}

// Finish ends the bar's line, if there is a bar.
func (p *progress) Finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
	}
}
