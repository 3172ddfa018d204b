package evidence

import (
	"cmp"
	"fmt"
	"image/color"
	"image/png"
	"io"
	"math"
	"slices"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/attack"
	"github.com/agentwatch/agentwatch/pkg/baseline"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// minuteMs is the unit of the plot's buckets: the detector's windows are
// whole minutes, so a bucket of whole minutes never splits one.
const minuteMs = int64(time.Minute / time.Millisecond)

// bandSigmas is the half-width of the usual range in robust standard
// deviations of the trained windows' residuals.
const bandSigmas = 2

// minBandWindows is how many trained windows the usual range needs: fewer
// give no useful spread, and the panel then draws the expected value only.
const minBandWindows = 3

var (
	windowShade   = color.NRGBA{R: 255, G: 165, A: 80}
	bandFill      = color.NRGBA{R: 31, G: 119, B: 180, A: 45}
	observedColor = color.NRGBA{R: 200, G: 30, B: 30, A: 255}
	expectedColor = color.NRGBA{R: 31, G: 119, B: 180, A: 255}
	eventsColor   = color.NRGBA{R: 60, G: 60, B: 60, A: 255}
)

// bucketing returns the plot's time buckets over [fromMs, toMs): the first
// starts at the whole minute at or before fromMs, each is a whole number of
// minutes long, and there are at most plotBuckets of them.
func bucketing(fromMs, toMs int64) (startMs, bucketMs int64, n int) {
	startMs = floorDiv(fromMs, minuteMs) * minuteMs
	span := max(toMs-startMs, 1)
	minutes := max(1, ceilDiv(span, plotBuckets*minuteMs))
	bucketMs = minutes * minuteMs
	return startMs, bucketMs, int(ceilDiv(span, bucketMs))
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }

// seg is one value over a span of time [FromMs, ToMs): a bucket's or a
// window's. Drawn as a flat step over the span, so a value is shown for
// exactly the time it describes; a gap between two segs (minutes in which
// the agent made no call, so the detector scored nothing) breaks the line.
type seg struct {
	FromMs, ToMs int64
	Y            float64
}

// lineSpec is one line of a panel.
type lineSpec struct {
	Label string
	Color color.Color
	Segs  []seg
}

// panelSpec is one panel of plot.png, top to bottom.
type panelSpec struct {
	// Kind is "events", "feature" or "score".
	Kind string
	// Feature is the feature a feature panel shows.
	Feature features.ID
	YLabel  string
	// Format labels the y axis ticks in the panel's unit.
	Format func(float64) string
	// BandHi and BandLo bound the usual range, segment by segment (empty
	// when there is none); BandLabel says what it is.
	BandHi, BandLo []seg
	BandLabel      string
	Lines          []lineSpec
}

// plotSpec is everything plot.png shows, decided before anything is drawn
// so that tests can check what the picture says, not its pixels.
type plotSpec struct {
	Title string
	// FromMs and ToMs are the x range: the whole buckets over the
	// evidence window.
	FromMs, ToMs int64
	// BucketMs is the length of one bucket, a whole number of minutes.
	BucketMs int64
	// Shaded are the anomalous windows, merged where they touch, in order.
	Shaded [][2]int64
	// ShadeLabel is the shading's legend.
	ShadeLabel string
	Panels     []panelSpec
}

// buildPlot decides what plot.png shows for the bundle: a title with the
// anomaly's attack class when it has one; events per bucket on top; then for each feature of feats the observed value against the
// baseline's expectation and its usual range; then the window score. The
// windows the detector graded anomalous, and the anomaly's own window, are
// shaded in every panel. Scores are drawn per bucket: when a bucket holds
// several windows, the one with the highest score stands for it, so
// thinning a long span never hides an anomalous window.
func buildPlot(a *anomaly.Anomaly, m *Manifest, t *tally, scores []anomaly.Score, feats []features.ID) plotSpec {
	sp := plotSpec{
		Title:  fmt.Sprintf("%s  agent %s  %s (severity %s)", m.BundleID, text(a.AgentID, 60), text(a.Kind, 40), text(a.Severity, 20)),
		FromMs: t.fromMs, ToMs: t.fromMs + int64(t.nb)*t.bucketMs, BucketMs: t.bucketMs,
	}
	if c := attack.Classify(*a); c != attack.Unclassified {
		sp.Title += "  " + text(attack.Describe(c).Title, 80)
	}
	per := humanDuration(t.bucketMs)

	evLabel := "events in the bundle"
	if m.Truncated {
		evLabel += fmt.Sprintf(" (TRUNCATED at %d)", m.MaxEvents)
	}
	ev := lineSpec{Label: evLabel, Color: eventsColor, Segs: make([]seg, 0, t.nb)}
	for i := range int64(t.nb) {
		from := t.fromMs + i*t.bucketMs
		ev.Segs = append(ev.Segs, seg{from, from + t.bucketMs, t.buckets[i]})
	}
	sp.Panels = append(sp.Panels, panelSpec{Kind: "events", YLabel: "events per " + per, Format: features.FormatNumber, Lines: []lineSpec{ev}})

	// The windows inside the evidence window, where the events are; the
	// usual range's spread still comes from every window given.
	var inside []anomaly.Score
	for _, s := range scores {
		if s.WindowEndMs > m.FromMs && s.WindowStartMs < m.ToMs {
			inside = append(inside, s)
		}
	}
	shaded := [][2]int64{{a.WindowStartMs, max(a.WindowEndMs, a.WindowStartMs+1)}}
	for _, s := range inside {
		if anomalousScore(s) {
			shaded = append(shaded, [2]int64{s.WindowStartMs, max(s.WindowEndMs, s.WindowStartMs+1)})
		}
	}
	sp.Shaded = mergeSpans(shaded)
	sp.ShadeLabel = "anomalous windows"

	picked, spans := perBucket(inside, t.fromMs, t.bucketMs, t.nb)
	if len(picked) == 0 {
		return sp
	}
	winMs := picked[0].WindowEndMs - picked[0].WindowStartMs
	note := ""
	if t.bucketMs > winMs && winMs > 0 {
		note = fmt.Sprintf("; each %s the highest-scoring %s window in it", per, humanDuration(winMs))
	}
	for _, id := range feats {
		sp.Panels = append(sp.Panels, featurePanel(id, a, scores, picked, spans, winMs, note))
	}
	score := lineSpec{Label: "window score (-log10 p)" + note, Color: eventsColor}
	for i, s := range picked {
		if finite(s.Score) {
			score.Segs = append(score.Segs, seg{spans[i][0], spans[i][1], s.Score})
		}
	}
	if len(score.Segs) > 0 {
		sp.Panels = append(sp.Panels, panelSpec{Kind: "score", YLabel: "window score", Format: features.FormatNumber, Lines: []lineSpec{score}})
	}
	return sp
}

// anomalousScore reports whether the detector graded s's window anomalous
// (a severity other than none).
func anomalousScore(s anomaly.Score) bool {
	return s.Severity != "" && s.Severity != "none"
}

// mergeSpans sorts spans and joins those that overlap or touch.
func mergeSpans(spans [][2]int64) [][2]int64 {
	slices.SortFunc(spans, func(x, y [2]int64) int { return cmp.Or(cmp.Compare(x[0], y[0]), cmp.Compare(x[1], y[1])) })
	var out [][2]int64
	for _, s := range spans {
		if n := len(out); n > 0 && s[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], s[1])
			continue
		}
		out = append(out, s)
	}
	return out
}

// perBucket returns, in time order, one score per bucket that has any (the
// one with the highest score, the earliest on a tie; a non-finite score
// counts as lowest) and the span it is drawn over: its window when buckets
// are no longer than windows, else its bucket.
func perBucket(scores []anomaly.Score, startMs, bucketMs int64, n int) ([]anomaly.Score, [][2]int64) {
	best := make([]int, n)
	for i := range best {
		best[i] = -1
	}
	rank := func(s anomaly.Score) float64 {
		if finite(s.Score) {
			return s.Score
		}
		return math.Inf(-1)
	}
	for i, s := range scores { // scores are sorted by window start
		b := min(max(floorDiv(s.WindowStartMs-startMs, bucketMs), 0), int64(n-1))
		if j := best[b]; j < 0 || rank(s) > rank(scores[j]) {
			best[b] = i
		}
	}
	var out []anomaly.Score
	var spans [][2]int64
	for b, j := range best {
		if j < 0 {
			continue
		}
		s := scores[j]
		span := [2]int64{s.WindowStartMs, max(s.WindowEndMs, s.WindowStartMs+1)}
		if s.WindowEndMs-s.WindowStartMs < bucketMs {
			span[0] = startMs + int64(b)*bucketMs
			span[1] = span[0] + bucketMs
		}
		out = append(out, s)
		spans = append(spans, span)
	}
	return out, spans
}

// featurePanel is one feature's observed values against the baseline's
// expectation and the usual range around it.
// The observed line's legend gives the anomalous window's value against
// its expectation in the feature's unit.
func featurePanel(id features.ID, a *anomaly.Anomaly, all, picked []anomaly.Score, spans [][2]int64, winMs int64, note string) panelSpec {
	p := panelSpec{Kind: "feature", Feature: id, Format: unitFormat(id)}
	p.YLabel = id.String()
	if winMs > 0 {
		p.YLabel += " per " + humanDuration(winMs)
	}
	sigma, trained := residualSigma(all, id)
	obs := lineSpec{Label: "observed" + note, Color: observedColor}
	if w := windowScore(a, all); w != nil {
		v, ok1 := at(w.Values, id)
		e, ok2 := at(w.Expected, id)
		if ok1 && ok2 {
			obs.Label = fmt.Sprintf("observed (anomalous window %s)%s", features.FormatVersus(id.String(), v, e, winMs), note)
		}
	}
	exp := lineSpec{Label: "expected by the baseline", Color: expectedColor}
	for i, s := range picked {
		from, to := spans[i][0], spans[i][1]
		if v, ok := at(s.Values, id); ok {
			obs.Segs = append(obs.Segs, seg{from, to, v})
		}
		if e, ok := at(s.Expected, id); ok {
			exp.Segs = append(exp.Segs, seg{from, to, e})
			if trained >= minBandWindows {
				p.BandHi = append(p.BandHi, seg{from, to, e + bandSigmas*sigma})
				p.BandLo = append(p.BandLo, seg{from, to, max(0, e-bandSigmas*sigma)})
			}
		}
	}
	if len(p.BandHi) > 0 {
		p.BandLabel = fmt.Sprintf("usual range: expected ± %d robust σ (from %d trained windows)", bandSigmas, trained)
	}
	for _, l := range []lineSpec{exp, obs} {
		if len(l.Segs) > 0 {
			p.Lines = append(p.Lines, l)
		}
	}
	return p
}

// residualSigma is 1.4826 × the median absolute deviation of observed
// minus expected over the windows that trained the baseline, and how many
// there were: a robust measure of how far the agent usually strays from
// its expectation, since the Score record carries no spread of the model's
// own.
func residualSigma(scores []anomaly.Score, id features.ID) (float64, int) {
	var rs []float64
	for _, s := range scores {
		v, ok1 := at(s.Values, id)
		e, ok2 := at(s.Expected, id)
		if s.Trained && ok1 && ok2 {
			rs = append(rs, v-e)
		}
	}
	if len(rs) == 0 {
		return 0, 0
	}
	med := baseline.Median(rs)
	for i := range rs {
		rs[i] = math.Abs(rs[i] - med)
	}
	return 1.4826 * baseline.Median(rs), len(rs)
}

func at(xs []float64, id features.ID) (float64, bool) {
	if int(id) < len(xs) && finite(xs[id]) {
		return xs[id], true
	}
	return 0, false
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// humanDuration writes a whole number of minutes as "min", "5 min" or
// "2 h"; anything else as time.Duration does.
func humanDuration(ms int64) string {
	switch {
	case ms == minuteMs:
		return "min"
	case ms%(60*minuteMs) == 0:
		return fmt.Sprintf("%d h", ms/(60*minuteMs))
	case ms%minuteMs == 0:
		return fmt.Sprintf("%d min", ms/minuteMs)
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

// unitFormat returns how a feature's values are written on its axis: the
// axis label says "per min", so the ticks are plain numbers, or sizes.
func unitFormat(id features.ID) func(float64) string {
	if features.UnitOf(id.String()) == features.UnitBytes {
		return features.FormatBytes
	}
	return features.FormatNumber
}

// unitTicks labels gonum's default ticks in the panel's unit. With bytes
// the ticks are placed in the unit the labels use (KB, MB, GB of 1024), so
// they read 300 MB, 600 MB rather than 286 MB, 572 MB.
type unitTicks struct {
	format func(float64) string
	bytes  bool
}

// Ticks implements plot.Ticker.
func (u unitTicks) Ticks(lo, hi float64) []plot.Tick {
	scale := 1.0
	if u.bytes {
		for max(math.Abs(lo), math.Abs(hi))/scale >= 1024 && scale < 1<<50 {
			scale *= 1024
		}
	}
	ts := plot.DefaultTicks{}.Ticks(lo/scale, hi/scale)
	for i := range ts {
		ts[i].Value *= scale
		if ts[i].Label != "" {
			ts[i].Label = u.format(ts[i].Value)
		}
	}
	return ts
}

// minuteTicks puts the time axis' ticks on round minutes, hours or days
// (UTC), at most maxTimeTicks labelled ones, with unlabelled ones between.
type minuteTicks struct{ format string }

const maxTimeTicks = 8

// tickSteps are the spacings minuteTicks chooses from, in minutes, each
// with the spacing of its unlabelled ticks, which divides it.
var tickSteps = [][2]int64{
	{1, 1}, {2, 1}, {5, 1}, {10, 5}, {15, 5}, {30, 10}, {60, 15}, {120, 30}, {180, 60},
	{360, 60}, {720, 180}, {1440, 360}, {2880, 720}, {10080, 1440},
}

// Ticks implements plot.Ticker; lo and hi are Unix seconds.
func (mt minuteTicks) Ticks(lo, hi float64) []plot.Tick {
	i := 0
	for i < len(tickSteps)-1 && (hi-lo)/float64(tickSteps[i][0]*60) > maxTimeTicks {
		i++
	}
	step, minor := tickSteps[i][0]*60, tickSteps[i][1]*60
	var ts []plot.Tick
	for t := int64(math.Ceil(lo/float64(minor))) * minor; float64(t) <= hi; t += minor {
		tk := plot.Tick{Value: float64(t)}
		if t%step == 0 {
			tk.Label = time.Unix(t, 0).UTC().Format(mt.format)
		}
		ts = append(ts, tk)
	}
	return ts
}

// writePlot draws plot.png as buildPlot decides: one panel under another,
// 1000 pixels wide, times in UTC.
func writePlot(w io.Writer, a *anomaly.Anomaly, m *Manifest, t *tally, scores []anomaly.Score, feats []features.ID) error {
	return renderPlot(w, buildPlot(a, m, t, scores, feats))
}

func renderPlot(w io.Writer, sp plotSpec) error {
	sec := func(ms int64) float64 { return float64(ms) / 1000 }
	shade := bands{color: windowShade}
	for _, s := range sp.Shaded {
		shade.spans = append(shade.spans, [2]float64{sec(s[0]), sec(s[1])})
	}
	format := "15:04"
	if sp.ToMs-sp.FromMs > 2*24*3600*1000 {
		format = "01-02 15:04"
	}

	panels := make([]*plot.Plot, 0, len(sp.Panels))
	for i, ps := range sp.Panels {
		p := plot.New()
		p.X.Tick.Marker = minuteTicks{format}
		p.Y.Tick.Marker = unitTicks{format: ps.Format, bytes: ps.Kind == "feature" && features.UnitOf(ps.Feature.String()) == features.UnitBytes}
		p.Y.Label.Text = ps.YLabel
		// Top left: the anomaly sits near the right end of the default
		// evidence window (15 minutes before it, 5 after).
		p.Legend.Top, p.Legend.Left = true, true
		p.Add(shade)
		if i == 0 {
			p.Title.Text = sp.Title
		}
		his, los := steps(ps.BandHi, sec), steps(ps.BandLo, sec)
		var legendPoly *plotter.Polygon
		for i := range his {
			lo := slices.Clone(los[i])
			slices.Reverse(lo)
			poly, err := plotter.NewPolygon(append(slices.Clone(his[i]), lo...))
			if err != nil {
				return fmt.Errorf("plot %s: %w", ps.YLabel, err)
			}
			poly.Color = bandFill
			poly.LineStyle.Width = 0
			p.Add(poly)
			if legendPoly == nil {
				legendPoly = poly
			}
		}
		if legendPoly != nil {
			p.Legend.Add(ps.BandLabel, legendPoly)
		}
		drawn := false
		for _, l := range ps.Lines {
			var first *plotter.Line
			for _, run := range steps(l.Segs, sec) {
				f, err := addLine(p, run, l.Color)
				if err != nil {
					return fmt.Errorf("plot %s: %w", ps.YLabel, err)
				}
				if first == nil {
					first = f
				}
			}
			if first != nil {
				p.Legend.Add(l.Label, first)
				drawn = true
			}
		}
		if i == 0 {
			p.Legend.Add(sp.ShadeLabel, shade)
		}
		if !drawn {
			p.Y.Max = 1 // an empty panel still draws
		}
		p.Y.Min = min(p.Y.Min, 0)
		p.X.Min, p.X.Max = sec(sp.FromMs), sec(sp.ToMs) // after Add, which widens the range to the data
		panels = append(panels, p)
	}
	panels[len(panels)-1].X.Label.Text = "time (UTC)"

	rows := make([][]*plot.Plot, len(panels))
	for i, p := range panels {
		rows[i] = []*plot.Plot{p}
	}
	// 72 dpi: one point is one pixel, 1000 px wide; the default 96 dpi
	// would make 78% more pixels to rasterise and compress.
	img := vgimg.NewWith(vgimg.UseWH(vg.Points(1000), vg.Points(float64(30+170*len(panels)))), vgimg.UseDPI(72))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(panels), Cols: 1, PadTop: vg.Points(8), PadBottom: vg.Points(8),
		PadLeft: vg.Points(8), PadRight: vg.Points(16), PadY: vg.Points(10)}
	canvases := plot.Align(rows, tiles, dc)
	for i, p := range panels {
		p.Draw(canvases[i][0])
	}
	// BestSpeed: flat colours compress nearly as well, and the default
	// level would be most of the plot's time.
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(w, img.Image()); err != nil {
		return fmt.Errorf("encode plot: %w", err)
	}
	return nil
}

// steps turns segs into runs of vertices of a step line, a new run where
// a seg does not start where the previous one ended.
func steps(segs []seg, sec func(int64) float64) []plotter.XYs {
	var runs []plotter.XYs
	for i, s := range segs {
		if i == 0 || s.FromMs != segs[i-1].ToMs {
			runs = append(runs, nil)
		}
		r := &runs[len(runs)-1]
		*r = append(*r, plotter.XY{X: sec(s.FromMs), Y: s.Y}, plotter.XY{X: sec(s.ToMs), Y: s.Y})
	}
	return runs
}

// addLine draws xys as a line in strokes of lineChunk points and returns
// the first, for the legend. freetype's rasteriser, under gonum/plot's PNG
// canvas, searches its cell list linearly, so one long jagged stroke is
// slow; short strokes that share their end points look the same (see
// internal/tools/nab). A copy of nab's with its own chunk and width, on
// purpose: responder code does not import the tools.
func addLine(p *plot.Plot, xys plotter.XYs, c color.Color) (*plotter.Line, error) {
	const lineChunk = 64
	var first *plotter.Line
	for i := 0; i < len(xys)-1 || i == 0; i += lineChunk {
		l, err := plotter.NewLine(xys[i:min(i+lineChunk+1, len(xys))])
		if err != nil {
			return nil, err
		}
		l.Color = c
		l.Width = vg.Points(1)
		p.Add(l)
		if first == nil {
			first = l
		}
	}
	return first, nil
}

// bands shades vertical spans of the x axis over the plot's full height
// (as in internal/tools/nab): a polygon would stretch the y range instead.
// It is a copy of nab's on purpose: responder code does not import the
// tools, and a 15-line gonum plotter does not earn a shared package.
type bands struct {
	spans [][2]float64
	color color.Color
}

// Plot implements plot.Plotter.
func (b bands) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	for _, s := range b.spans {
		x0, x1 := trX(s[0]), trX(s[1])
		if x1-x0 < 1 {
			x1 = x0 + 1
		}
		c.FillPolygon(b.color, c.ClipPolygonX([]vg.Point{
			{X: x0, Y: c.Min.Y}, {X: x1, Y: c.Min.Y}, {X: x1, Y: c.Max.Y}, {X: x0, Y: c.Max.Y},
		}))
	}
}

// Thumbnail implements plot.Thumbnailer, for the legend.
func (b bands) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(b.color, []vg.Point{
		{X: c.Min.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Min.Y}, {X: c.Max.X, Y: c.Max.Y}, {X: c.Min.X, Y: c.Max.Y},
	})
}
