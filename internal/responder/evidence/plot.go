package evidence

import (
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
	"github.com/agentwatch/agentwatch/pkg/features"
)

// maxPlotPoints caps the windows drawn per line: gonum/plot's rasteriser
// slows down with long strokes, and a few hundred points fill the width.
const maxPlotPoints = 400

// bandSigmas is the half-width of the baseline band in robust standard
// deviations of the trained windows' residuals.
const bandSigmas = 2

var (
	windowShade   = color.NRGBA{R: 255, G: 165, A: 80}
	bandFill      = color.NRGBA{R: 31, G: 119, B: 180, A: 45}
	observedColor = color.NRGBA{R: 200, G: 30, B: 30, A: 255}
	expectedColor = color.NRGBA{R: 31, G: 119, B: 180, A: 255}
	eventsColor   = color.NRGBA{R: 60, G: 60, B: 60, A: 255}
)

// writePlot draws plot.png over the evidence window: the bundle's events
// per time bucket on top, then each feature of feats observed against the
// baseline (expected value and a band of ±2 robust σ of the trained
// windows' residuals, the Score record carrying no spread of its own),
// each window's value drawn at its middle, then the window score; the
// anomalous window is shaded orange throughout.
func writePlot(w io.Writer, a *anomaly.Anomaly, m *Manifest, t *tally, scores []anomaly.Score, feats []features.ID) error {
	sec := func(ms int64) float64 { return float64(ms) / 1000 }
	xmin, xmax := sec(m.FromMs), sec(m.ToMs)
	shade := bands{spans: [][2]float64{{sec(a.WindowStartMs), sec(max(a.WindowEndMs, a.WindowStartMs+1))}}, color: windowShade}
	format := "15:04"
	if m.ToMs-m.FromMs > 2*24*3600*1000 {
		format = "01-02 15:04"
	}
	newPlot := func(ylabel string) *plot.Plot {
		p := plot.New()
		p.X.Tick.Marker = plot.TimeTicks{Format: format}
		p.Y.Label.Text = ylabel
		p.Legend.Top = true
		p.Add(shade)
		return p
	}

	var panels []*plot.Plot
	top := newPlot(fmt.Sprintf("events / %s", time.Duration(t.bucketMs)*time.Millisecond))
	top.Title.Text = fmt.Sprintf("%s  agent %s  %s (severity %s)", m.BundleID, text(a.AgentID, 60), text(a.Kind, 40), text(a.Severity, 20))
	counts := make(plotter.XYs, plotBuckets)
	for i := range plotBuckets {
		counts[i] = plotter.XY{X: sec(m.FromMs + int64(i)*t.bucketMs), Y: t.buckets[i]}
	}
	l, err := addLine(top, counts, eventsColor, plotter.PostStep)
	if err != nil {
		return fmt.Errorf("plot events: %w", err)
	}
	label := "events in the bundle"
	if m.Truncated {
		label += fmt.Sprintf(" (TRUNCATED at %d)", m.MaxEvents)
	}
	top.Legend.Add(label, l)
	top.Legend.Add("anomalous window", shade)
	top.Y.Min = 0
	panels = append(panels, top)

	// Only the windows inside the evidence window, where the events are;
	// the band's spread still comes from every window given.
	var inside []anomaly.Score
	for _, s := range scores {
		if s.WindowEndMs > m.FromMs && s.WindowStartMs < m.ToMs {
			inside = append(inside, s)
		}
	}
	sample := thin(inside, maxPlotPoints)
	if len(sample) > 0 {
		for _, id := range feats {
			p, err := featurePanel(newPlot(id.String()), id, scores, sample, sec)
			if err != nil {
				return fmt.Errorf("plot %s: %w", id, err)
			}
			panels = append(panels, p)
		}
		sp := newPlot("window score")
		xys := make(plotter.XYs, 0, len(sample))
		for _, s := range sample {
			if finite(s.Score) {
				xys = append(xys, plotter.XY{X: mid(s, sec), Y: s.Score})
			}
		}
		if len(xys) > 0 {
			if _, err := addLine(sp, xys, eventsColor, plotter.NoStep); err != nil {
				return fmt.Errorf("plot scores: %w", err)
			}
			sp.Y.Min = 0
			panels = append(panels, sp)
		}
	}
	panels[len(panels)-1].X.Label.Text = "time (UTC)"
	for _, p := range panels {
		p.X.Min, p.X.Max = xmin, xmax // after Add, which widens the range to the data
	}

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

// featurePanel draws one feature's observed values over its baseline.
func featurePanel(p *plot.Plot, id features.ID, all, sample []anomaly.Score, sec func(int64) float64) (*plot.Plot, error) {
	sigma, hasBand := residualSigma(all, id)
	var obs, exp, hi, lo plotter.XYs
	for _, s := range sample {
		x := mid(s, sec)
		if v, ok := at(s.Values, id); ok {
			obs = append(obs, plotter.XY{X: x, Y: v})
		}
		if e, ok := at(s.Expected, id); ok {
			exp = append(exp, plotter.XY{X: x, Y: e})
			if hasBand {
				hi = append(hi, plotter.XY{X: x, Y: e + bandSigmas*sigma})
				lo = append(lo, plotter.XY{X: x, Y: max(0, e-bandSigmas*sigma)})
			}
		}
	}
	if len(hi) > 1 {
		slices.Reverse(lo)
		poly, err := plotter.NewPolygon(append(hi, lo...))
		if err != nil {
			return nil, err
		}
		poly.Color = bandFill
		poly.LineStyle.Width = 0
		p.Add(poly)
		p.Legend.Add(fmt.Sprintf("baseline band (expected ± %d robust σ of trained windows)", bandSigmas), poly)
	}
	if len(exp) > 0 {
		l, err := addLine(p, exp, expectedColor, plotter.NoStep)
		if err != nil {
			return nil, err
		}
		p.Legend.Add("expected", l)
	}
	if len(obs) > 0 {
		l, err := addLine(p, obs, observedColor, plotter.NoStep)
		if err != nil {
			return nil, err
		}
		p.Legend.Add("observed", l)
	}
	if len(obs) == 0 && len(exp) == 0 {
		p.Y.Min, p.Y.Max = 0, 1 // an empty panel still draws
	}
	p.Y.Min = min(p.Y.Min, 0)
	return p, nil
}

// mid is the middle of a score's window: a window's value is drawn there.
func mid(s anomaly.Score, sec func(int64) float64) float64 {
	return sec(s.WindowStartMs+s.WindowEndMs) / 2
}

// addLine draws xys as a line in strokes of lineChunk points and returns
// the first, for the legend. freetype's rasteriser, under gonum/plot's PNG
// canvas, searches its cell list linearly, so one long jagged stroke is
// slow; short strokes that share their end points look the same (see
// internal/tools/nab). A copy of nab's with its own chunk, width and step
// style, on purpose: responder code does not import the tools.
func addLine(p *plot.Plot, xys plotter.XYs, c color.Color, step plotter.StepKind) (*plotter.Line, error) {
	const lineChunk = 64
	var first *plotter.Line
	for i := 0; i < len(xys)-1 || i == 0; i += lineChunk {
		l, err := plotter.NewLine(xys[i:min(i+lineChunk+1, len(xys))])
		if err != nil {
			return nil, err
		}
		l.Color = c
		l.Width = vg.Points(1)
		l.StepStyle = step
		p.Add(l)
		if first == nil {
			first = l
		}
	}
	return first, nil
}

// residualSigma is 1.4826 × the median absolute deviation of observed
// minus expected over the windows that trained the baseline: a robust
// stand-in for the baseline's spread, which the Score record does not
// carry. It needs three such windows.
func residualSigma(scores []anomaly.Score, id features.ID) (float64, bool) {
	var rs []float64
	for _, s := range scores {
		v, ok1 := at(s.Values, id)
		e, ok2 := at(s.Expected, id)
		if s.Trained && ok1 && ok2 {
			rs = append(rs, v-e)
		}
	}
	if len(rs) < 3 {
		return 0, false
	}
	med := median(rs)
	for i := range rs {
		rs[i] = math.Abs(rs[i] - med)
	}
	return 1.4826 * median(rs), true
}

func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

func at(xs []float64, id features.ID) (float64, bool) {
	if int(id) < len(xs) && finite(xs[id]) {
		return xs[id], true
	}
	return 0, false
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// thin returns at most n of xs, evenly spaced, keeping the first and last.
func thin(xs []anomaly.Score, n int) []anomaly.Score {
	if len(xs) <= n {
		return xs
	}
	out := make([]anomaly.Score, 0, n)
	for i := range n {
		out = append(out, xs[i*(len(xs)-1)/(n-1)])
	}
	return out
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
