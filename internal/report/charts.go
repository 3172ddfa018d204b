package report

import (
	"bytes"
	"fmt"
	"image/color"
	"image/png"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Chart is one rendered chart of a report.
type Chart struct {
	// Name is a file-name-safe id ("anomalies", "zombie-calls", "denials").
	Name  string
	Title string
	// PNG is the image; the same report gives the same bytes.
	PNG []byte
}

// Chart size in points; rendered at 72 dpi, so in pixels too.
const (
	chartW = 720
	chartH = 240
)

var severityColors = []color.Color{
	color.NRGBA{R: 158, G: 202, B: 225, A: 255}, // low
	color.NRGBA{R: 253, G: 174, B: 97, A: 255},  // medium
	color.NRGBA{R: 244, G: 109, B: 67, A: 255},  // high
	color.NRGBA{R: 165, G: 0, B: 38, A: 255},    // critical
	color.NRGBA{R: 150, G: 150, B: 150, A: 255}, // other
}

var (
	zombieColor = color.NRGBA{R: 117, G: 107, B: 177, A: 255}
	denialColor = color.NRGBA{R: 49, G: 130, B: 189, A: 255}
)

// Charts draws the report's three charts: anomalies per day by severity,
// calls to zombie routes per day and denials (401/403) per day. Labels
// are dates and fixed words only: no agent id or route reaches an image.
func Charts(r *Report) ([]Chart, error) {
	sev := make([]plotter.Values, len(Severities))
	var zombie, denied plotter.Values
	for _, d := range r.Days {
		for i := range Severities {
			sev[i] = append(sev[i], float64(d.Anomalies[i]))
		}
		zombie = append(zombie, float64(d.ZombieCalls))
		denied = append(denied, float64(d.Denials))
	}
	specs := []struct {
		name, title, y string
		series         []plotter.Values
		labels         []string
		colors         []color.Color
	}{
		{"anomalies", "Anomalies per day by severity", "anomalies", sev, Severities, severityColors},
		{"zombie-calls", "Calls to zombie routes per day", "calls", []plotter.Values{zombie}, nil, []color.Color{zombieColor}},
		{"denials", "Calls denied (401/403) per day", "calls", []plotter.Values{denied}, nil, []color.Color{denialColor}},
	}
	out := make([]Chart, 0, len(specs))
	for _, s := range specs {
		b, err := barChart(r, s.title, s.y, s.series, s.labels, s.colors)
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", s.name, err)
		}
		out = append(out, Chart{Name: s.name, Title: s.title, PNG: b})
	}
	return out, nil
}

// barChart draws one bar per day, the series stacked.
func barChart(r *Report, title, ylabel string, series []plotter.Values, labels []string, colors []color.Color) ([]byte, error) {
	p := plot.New()
	p.Title.Text = title + " — " + r.Period.Name
	p.Y.Label.Text = ylabel
	p.X.Label.Text = "day (UTC)"
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.Padding = vg.Points(2)
	n := len(r.Days)
	w := vg.Points(float64(chartW-80) / float64(max(n, 1)) * 0.7)
	var below *plotter.BarChart
	top := 0.0
	for i, vals := range series {
		if vals == nil {
			vals = make(plotter.Values, n)
		}
		bc, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		bc.Color = colors[i]
		bc.LineStyle.Width = 0
		if below != nil {
			bc.StackOn(below)
		}
		below = bc
		p.Add(bc)
		if labels != nil && total(vals) > 0 {
			p.Legend.Add(labels[i], bc)
		}
	}
	for d := range n {
		sum := 0.0
		for _, vals := range series {
			if d < len(vals) {
				sum += vals[d]
			}
		}
		top = max(top, sum)
	}
	names := make([]string, n)
	for i, d := range r.Days {
		// Every day on a week, every other day on a month.
		if n <= 10 || i%2 == 0 {
			names[i] = strconv.Itoa(d.Day.Day())
		}
	}
	p.NominalX(names...)
	p.Y.Min = 0
	p.Y.Max = max(1, top*1.15)
	p.Y.Tick.Marker = intTicks{}
	img := vgimg.NewWith(vgimg.UseWH(vg.Points(chartW), vg.Points(chartH)), vgimg.UseDPI(72))
	p.Draw(draw.New(img))
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.DefaultCompression}).Encode(&buf, img.Image()); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return buf.Bytes(), nil
}

func total(v plotter.Values) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s
}

// intTicks puts ticks on whole numbers only: the charts count things.
type intTicks struct{}

func (intTicks) Ticks(lo, hi float64) []plot.Tick {
	// Steps of 1, 2, 5, 10, 20, 50, … until at most 6 ticks.
	step, mult := 1.0, []float64{2, 2.5, 2}
	for i := 0; (hi-lo)/step > 6; i++ {
		step *= mult[i%3]
	}
	var ts []plot.Tick
	for v := 0.0; v <= hi; v += step {
		if v >= lo {
			ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', 0, 64)})
		}
	}
	return ts
}
