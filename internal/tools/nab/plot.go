package nab

import (
	"fmt"
	"image/color"
	"image/png"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	windowShade    = color.NRGBA{R: 255, G: 165, A: 70}
	probationShade = color.NRGBA{R: 128, G: 128, B: 128, A: 45}
	detectionColor = color.NRGBA{R: 220, A: 255}
)

// Plot draws s with a detector's scores to a PNG at path: the values on top
// with the labelled windows shaded orange and the probation period grey,
// the scores below with the threshold as a dashed line, and the detections
// (score >= threshold after probation, what NAB scores) as red dots on
// both. A threshold above 1, NAB's "detect nothing", draws no line and no
// dots. Calls for different paths may run concurrently.
func Plot(path string, s Series, scores []float64, threshold float64) error {
	if len(scores) != len(s.Values) || len(s.Times) != len(s.Values) {
		return fmt.Errorf("plot %s: %d scores for %d rows", s.Name, len(scores), len(s.Values))
	}
	if len(s.Values) == 0 {
		return fmt.Errorf("plot %s: no rows", s.Name)
	}
	ws, err := windowRows(s)
	if err != nil {
		return fmt.Errorf("plot %s: %w", s.Name, err)
	}

	n := len(s.Values)
	x := func(i int) float64 { return float64(s.Times[i].UnixNano()) / 1e9 }
	values, scoreXY := make(plotter.XYs, n), make(plotter.XYs, n)
	var detV, detS plotter.XYs
	for i := range n {
		values[i] = plotter.XY{X: x(i), Y: s.Values[i]}
		scoreXY[i] = plotter.XY{X: x(i), Y: scores[i]}
		if i >= Probation(n) && scores[i] >= threshold {
			detV = append(detV, values[i])
			detS = append(detS, scoreXY[i])
		}
	}
	spans := make([][2]float64, len(ws))
	for k, w := range ws {
		spans[k] = [2]float64{x(w.start), x(w.end)}
	}
	probation := bands{color: probationShade}
	if p := Probation(n); p > 0 {
		probation.spans = [][2]float64{{x(0), x(p - 1)}}
	}
	windows := bands{spans: spans, color: windowShade}

	top := plot.New()
	top.Title.Text = s.Name
	top.Y.Label.Text = "value"
	top.X.Tick.Marker = plot.TimeTicks{Format: "2006-01-02"}
	bottom := plot.New()
	bottom.Y.Label.Text = "anomaly score"
	bottom.X.Tick.Marker = plot.TimeTicks{Format: "2006-01-02"}
	bottom.X.Label.Text = "time (UTC)"
	// Headroom above the data keeps the legends, top right, off the lines.
	bottom.Y.Min, bottom.Y.Max = 0, 1.3
	lo, hi := slices.Min(s.Values), slices.Max(s.Values)
	pad := (hi - lo) * 0.05
	if pad == 0 {
		pad = 1
	}
	top.Y.Min, top.Y.Max = lo-pad, hi+6*pad

	for _, p := range []*plot.Plot{top, bottom} {
		p.Add(probation, windows)
		p.Legend.Top = true
	}
	top.Legend.Add("labelled window", windows)
	top.Legend.Add("probation", probation)

	if err := addLine(top, values, color.NRGBA{R: 31, G: 119, B: 180, A: 255}); err != nil {
		return fmt.Errorf("plot %s: %w", s.Name, err)
	}
	if err := addLine(bottom, scoreXY, color.NRGBA{G: 100, A: 255}); err != nil {
		return fmt.Errorf("plot %s: %w", s.Name, err)
	}
	if threshold <= 1 {
		thr, err := plotter.NewLine(plotter.XYs{{X: x(0), Y: threshold}, {X: x(n - 1), Y: threshold}})
		if err != nil {
			return fmt.Errorf("plot %s: threshold: %w", s.Name, err)
		}
		thr.Color = detectionColor
		thr.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		bottom.Add(thr)
		bottom.Legend.Add(fmt.Sprintf("threshold %.4g", threshold), thr)
	}
	for _, d := range []struct {
		p   *plot.Plot
		xys plotter.XYs
	}{{top, detV}, {bottom, detS}} {
		if len(d.xys) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(d.xys)
		if err != nil {
			return fmt.Errorf("plot %s: detections: %w", s.Name, err)
		}
		sc.Color = detectionColor
		sc.Shape = draw.CircleGlyph{}
		sc.Radius = vg.Points(2.5)
		d.p.Add(sc)
		if d.p == top {
			top.Legend.Add(fmt.Sprintf("detection (%d)", len(d.xys)), sc)
		}
	}

	img := vgimg.New(vg.Points(1400), vg.Points(760))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadTop: vg.Points(8), PadBottom: vg.Points(8),
		PadLeft: vg.Points(8), PadRight: vg.Points(16), PadY: vg.Points(12)}
	canvases := plot.Align([][]*plot.Plot{{top}, {bottom}}, tiles, dc)
	top.Draw(canvases[0][0])
	bottom.Draw(canvases[1][0])

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("plot %s: %w", s.Name, err)
	}
	// BestSpeed: a chart of flat colours compresses nearly as well, and
	// the default level is most of Plot's time.
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(f, img.Image()); err != nil {
		f.Close()
		return fmt.Errorf("plot %s: write %s: %w", s.Name, path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("plot %s: write %s: %w", s.Name, path, err)
	}
	return nil
}

// addLine draws xys as a line in chunks of lineChunk points. freetype's
// rasteriser, under gonum/plot's PNG canvas, searches its cell list
// linearly, so one stroke of a few thousand jagged points takes seconds;
// short strokes that share their end points look the same and take
// milliseconds. internal/responder/evidence keeps a tuned copy on purpose:
// responder code does not import the tools.
func addLine(p *plot.Plot, xys plotter.XYs, c color.Color) error {
	const lineChunk = 128
	for i := 0; i < len(xys)-1 || i == 0; i += lineChunk {
		l, err := plotter.NewLine(xys[i:min(i+lineChunk+1, len(xys))])
		if err != nil {
			return err
		}
		l.Color = c
		l.Width = vg.Points(0.8)
		p.Add(l)
	}
	return nil
}

// bands shades vertical spans of the x axis over the plot's full height.
// plotter has no such plotter; a rectangle polygon would stretch the y
// range to whatever height it was given. internal/responder/evidence keeps a
// copy on purpose: responder code does not import the tools.
type bands struct {
	spans [][2]float64
	color color.Color
}

// Plot implements plot.Plotter.
func (b bands) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	for _, s := range b.spans {
		x0, x1 := trX(s[0]), trX(s[1])
		if x1-x0 < 1 { // a one-row window would not show
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
