package console

import (
	"cmp"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/features"
)

func fmtMs(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04:05")
}

func urlEscape(s string) string { return url.QueryEscape(s) }

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

var funcs = template.FuncMap{
	"ms":    fmtMs,
	"bytes": humanBytes,
	"join":  strings.Join,
	"day":   func(t time.Time) string { return t.UTC().Format(time.DateOnly) },
	"dtime": func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04") },
	"float": func(f float64) string { return features.FormatNumber(f) },
}

// parseTemplates parses each page with the layout.
func parseTemplates() (map[string]*template.Template, error) {
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(assets, "templates/layout.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", n, err)
		}
		out[base] = t
	}
	return out, nil
}

// featurePlot is one feature's observed values against the baseline's
// expectation and its usual band, drawn as inline SVG (paths computed
// here; the template only places them).
type featurePlot struct {
	Feature  string
	Observed string // SVG path
	Expected string
	Band     string // closed polygon; "" with too few trained windows
	Anomaly  []point
	Max, Min string
	From, To string
	Last     string
}

type point struct{ X, Y float64 }

// Plot geometry, in SVG user units.
const (
	plotW, plotH = 600.0, 120.0
	// bandSigmas and minBand follow the evidence plot: the band is the
	// expectation ± 2 robust standard deviations of the trained windows'
	// residuals, drawn with at least 3 of them.
	bandSigmas = 2.0
	minBand    = 3
)

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// featurePlots draws every feature that is not zero throughout.
func featurePlots(scores []anomaly.Score) []featurePlot {
	scores = slices.Clone(scores)
	slices.SortFunc(scores, func(a, b anomaly.Score) int { return cmp.Compare(a.WindowStartMs, b.WindowStartMs) })
	t0, t1 := scores[0].WindowStartMs, scores[len(scores)-1].WindowEndMs
	if t1 <= t0 {
		t1 = t0 + 1
	}
	var out []featurePlot
	for f := features.ID(0); f < features.NumFeatures; f++ {
		val := func(xs []float64) (float64, bool) {
			if int(f) < len(xs) && finite(xs[f]) {
				return xs[f], true
			}
			return 0, false
		}
		var res []float64
		lo, hi := math.Inf(1), math.Inf(-1)
		nonzero := false
		for _, s := range scores {
			v, ok := val(s.Values)
			e, eok := val(s.Expected)
			if ok {
				lo, hi = min(lo, v), max(hi, v)
				nonzero = nonzero || v != 0
			}
			if eok {
				lo, hi = min(lo, e), max(hi, e)
			}
			if ok && eok && s.Trained {
				res = append(res, v-e)
			}
		}
		if !nonzero {
			continue
		}
		sigma := 0.0
		if len(res) >= minBand {
			sigma = robustSigma(res)
		}
		lo = min(lo, 0)
		if sigma > 0 {
			for _, s := range scores {
				if e, ok := val(s.Expected); ok {
					hi = max(hi, e+bandSigmas*sigma)
				}
			}
		}
		if hi <= lo {
			hi = lo + 1
		}
		x := func(ms int64) float64 { return plotW * float64(ms-t0) / float64(t1-t0) }
		y := func(v float64) float64 { return plotH - plotH*(v-lo)/(hi-lo) }
		p := featurePlot{Feature: f.String(), Max: features.FormatNumber(hi), Min: features.FormatNumber(lo),
			From: fmtMs(t0), To: fmtMs(t1)}
		var obs, exp, up, down strings.Builder
		for _, s := range scores {
			mid := x((s.WindowStartMs + s.WindowEndMs) / 2)
			if v, ok := val(s.Values); ok {
				fmt.Fprintf(&obs, "%s%.1f %.1f ", cmd(obs.Len()), mid, y(v))
				p.Last = features.FormatNumber(v)
				if s.Severity != "" && s.Severity != "none" {
					p.Anomaly = append(p.Anomaly, point{mid, y(v)})
				}
			}
			if e, ok := val(s.Expected); ok {
				fmt.Fprintf(&exp, "%s%.1f %.1f ", cmd(exp.Len()), mid, y(e))
				if sigma > 0 {
					fmt.Fprintf(&up, "%s%.1f %.1f ", cmd(up.Len()), mid, y(e+bandSigmas*sigma))
					down.WriteString(fmt.Sprintf("%.1f %.1f,", mid, y(max(e-bandSigmas*sigma, lo))))
				}
			}
		}
		p.Observed, p.Expected = obs.String(), exp.String()
		if up.Len() > 0 {
			pts := strings.Split(strings.TrimSuffix(down.String(), ","), ",")
			slices.Reverse(pts)
			p.Band = up.String() + "L" + strings.Join(pts, " L") + " Z"
		}
		out = append(out, p)
	}
	return out
}

func cmd(n int) string {
	if n == 0 {
		return "M"
	}
	return "L"
}

// robustSigma is 1.4826 × the median absolute deviation.
func robustSigma(xs []float64) float64 {
	med := median(xs)
	dev := make([]float64, len(xs))
	for i, x := range xs {
		dev[i] = math.Abs(x - med)
	}
	return 1.4826 * median(dev)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
