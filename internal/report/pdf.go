package report

import (
	"bytes"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"strings"
	"time"

	"codeberg.org/go-pdf/fpdf"
)

// PDF page layout, in millimetres (A4 portrait).
const (
	pdfMargin = 15.0
	pdfWidth  = 210.0 - 2*pdfMargin
	pdfLine   = 4.2 // line height of table text
)

// PDF renders r as an A4 document: the metrics with their definitions,
// the charts and the tables, with page numbers. Content streams are not
// compressed, so the numbers can be found in the file with grep; the
// creation date is the report's, so the same report and charts give the
// same bytes. The core fonts encode Windows-1252: characters outside it
// print as '?'.
func PDF(r *Report, charts []Chart) ([]byte, error) {
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetCompression(false)
	pdf.SetCatalogSort(true)
	at := time.UnixMilli(r.GeneratedMs).UTC()
	pdf.SetCreationDate(at)
	pdf.SetModificationDate(at)
	pdf.SetTitle("agentwatch report "+r.Period.Name, true)
	pdf.SetCreator("agentwatch", true)
	pdf.SetMargins(pdfMargin, pdfMargin, pdfMargin)
	pdf.SetAutoPageBreak(true, pdfMargin)
	pdf.AliasNbPages("")
	tr := pdf.UnicodeTranslatorFromDescriptor("")
	pdf.SetFooterFunc(func() {
		pdf.SetY(-10)
		pdf.SetFont("Helvetica", "", 8)
		pdf.SetTextColor(120, 120, 120)
		pdf.CellFormat(0, 5, fmt.Sprintf("agentwatch report %s - page %d of {nb}", r.Period.Name, pdf.PageNo()), "", 0, "C", false, 0, "")
	})
	pdf.AddPage()
	pdf.SetFont("Helvetica", "B", 18)
	pdf.CellFormat(0, 10, tr("agentwatch report "+r.Period.Name), "", 1, "L", false, 0, "")
	pdf.SetFont("Helvetica", "", 9)
	pdf.SetTextColor(100, 100, 100)
	pdf.CellFormat(0, 5, tr(fmt.Sprintf("%s to %s (UTC), compared with %s, written %s",
		r.Period.Span.From.Format(time.DateOnly), r.Period.Span.To.Add(-time.Nanosecond).Format(time.DateOnly), r.Previous.Name,
		at.Format("2006-01-02 15:04 UTC"))), "", 1, "L", false, 0, "")
	pdf.SetTextColor(0, 0, 0)

	t := &pdfTable{pdf: pdf, tr: tr}
	for _, s := range r.Sections {
		t.heading(s.Title)
		t.cols = []float64{34, 22, 44, pdfWidth - 100}
		t.header("Metric", "Value", "Detail", "Definition")
		for _, m := range s.Metrics {
			t.row(m.Label, m.Value, m.Detail, m.Definition)
		}
	}

	t.heading("Charts")
	// One image of the charts stacked: fpdf orders images by width, and
	// charts of one width would come out in map order, so the file would
	// differ between runs.
	if len(charts) > 0 {
		stacked, err := stack(charts)
		if err != nil {
			return nil, fmt.Errorf("render report %s as PDF: %w", r.Period.Name, err)
		}
		pdf.RegisterImageOptionsReader("charts", fpdf.ImageOptions{ImageType: "PNG"}, bytes.NewReader(stacked))
		const w = 150.0 // mm: three charts fit under the metrics' last page
		h := w * float64(chartH*len(charts)) / chartW
		if pdf.GetY()+h > 297-pdfMargin {
			pdf.AddPage()
		}
		pdf.ImageOptions("charts", pdfMargin+(pdfWidth-w)/2, pdf.GetY(), w, h, true, fpdf.ImageOptions{ImageType: "PNG"}, 0, "")
	}

	t.heading("Anomalies by kind and severity")
	if len(r.ByKind) == 0 {
		t.note("No anomalies in the period.")
	} else {
		t.cols = []float64{50}
		head := []string{"Kind"}
		for _, s := range Severities {
			t.cols = append(t.cols, (pdfWidth-50)/float64(len(Severities)+1))
			head = append(head, s)
		}
		t.cols = append(t.cols, (pdfWidth-50)/float64(len(Severities)+1))
		t.header(append(head, "total")...)
		for _, k := range r.ByKind {
			row := []string{k.Kind}
			for _, c := range k.BySeverity {
				row = append(row, fmt.Sprint(c))
			}
			t.row(append(row, fmt.Sprint(k.Total))...)
		}
	}

	t.heading("Zombie routes still called")
	if len(r.Zombies) == 0 {
		t.note("No deprecated route was called.")
	} else {
		t.cols = []float64{70, 20, 20, pdfWidth - 110}
		t.header("Route", "Calls", "Callers", "Some callers")
		for _, z := range r.Zombies {
			t.row(z.Route, fmt.Sprint(z.Calls), fmt.Sprint(z.CallerCount), strings.Join(z.Callers, ", "))
		}
	}

	t.heading("Unapproved routes called")
	if len(r.Violations) == 0 {
		t.note("No agent called a route outside its approved list.")
	} else {
		t.cols = []float64{55, 75, 20, pdfWidth - 150}
		t.header("Agent", "Route", "Calls", "Denied")
		for _, v := range r.Violations {
			t.row(v.AgentID, v.Route, fmt.Sprint(v.Calls), fmt.Sprint(v.Denied))
		}
	}

	t.heading("Agents to review")
	if len(r.Review) == 0 {
		t.note("No agent to review.")
	} else {
		t.cols = []float64{50, 35, pdfWidth - 85}
		t.header("Agent", "Owner", "Findings")
		for _, rv := range r.Review {
			t.row(rv.AgentID, rv.Owner, strings.Join(rv.Kinds, ", ")+": "+strings.Join(rv.Findings, "; "))
		}
		if r.Numbers.AgentsToReview > len(r.Review) {
			t.note(fmt.Sprintf("The first %d of %d agents are listed.", len(r.Review), r.Numbers.AgentsToReview))
		}
	}
	t.note("The SHA-256 of this file and of the HTML edition is recorded in agentwatch's evidence chain as a report bundle.")

	var buf bytes.Buffer
	if err := pdf.Output(&buf); err != nil {
		return nil, fmt.Errorf("render report %s as PDF: %w", r.Period.Name, err)
	}
	return buf.Bytes(), nil
}

// pdfTable draws tables whose cells wrap.
type pdfTable struct {
	pdf  *fpdf.Fpdf
	tr   func(string) string
	cols []float64
}

func (t *pdfTable) heading(s string) {
	if t.pdf.GetY() > 297-pdfMargin-30 {
		t.pdf.AddPage()
	}
	t.pdf.Ln(4)
	t.pdf.SetFont("Helvetica", "B", 12)
	t.pdf.CellFormat(0, 7, t.tr(s), "B", 1, "L", false, 0, "")
	t.pdf.Ln(1)
}

func (t *pdfTable) note(s string) {
	t.pdf.SetFont("Helvetica", "I", 8.5)
	t.pdf.MultiCell(0, pdfLine, t.tr(s), "", "L", false)
}

func (t *pdfTable) header(cells ...string) {
	t.pdf.SetFont("Helvetica", "B", 8.5)
	t.pdf.SetFillColor(238, 238, 238)
	t.draw(cells, true)
	t.pdf.SetFont("Helvetica", "", 8.5)
}

func (t *pdfTable) row(cells ...string) { t.draw(cells, false) }

// draw writes one row, each cell wrapped to its column, on a new page if
// it does not fit.
func (t *pdfTable) draw(cells []string, fill bool) {
	lines := make([][]string, len(cells))
	n := 1
	for i, c := range cells {
		// SplitLines measures bytes, as the core fonts encode them: the
		// text is Windows-1252 once translated, no longer UTF-8.
		for _, l := range t.pdf.SplitLines([]byte(t.tr(c)), t.cols[i]-2) {
			lines[i] = append(lines[i], string(l))
		}
		n = max(n, len(lines[i]))
	}
	h := float64(n)*pdfLine + 1
	if t.pdf.GetY()+h > 297-pdfMargin {
		t.pdf.AddPage()
	}
	x, y := pdfMargin, t.pdf.GetY()
	for i := range cells {
		t.pdf.SetXY(x, y)
		t.pdf.MultiCell(t.cols[i], pdfLine, strings.Join(lines[i], "\n"), "", "L", fill)
		if fill && len(lines[i]) < n {
			t.pdf.SetXY(x, y+float64(len(lines[i]))*pdfLine)
			t.pdf.CellFormat(t.cols[i], float64(n-len(lines[i]))*pdfLine, "", "", 0, "L", true, 0, "")
		}
		x += t.cols[i]
	}
	t.pdf.SetXY(pdfMargin, y+h)
	t.pdf.Line(pdfMargin, y+h-0.5, pdfMargin+sum(t.cols), y+h-0.5)
}

// stack draws the charts one under the other as one PNG.
func stack(charts []Chart) ([]byte, error) {
	out := image.NewRGBA(image.Rect(0, 0, chartW, chartH*len(charts)))
	for i, c := range charts {
		img, err := png.Decode(bytes.NewReader(c.PNG))
		if err != nil {
			return nil, fmt.Errorf("chart %s: %w", c.Name, err)
		}
		draw.Draw(out, image.Rect(0, i*chartH, chartW, (i+1)*chartH), img, img.Bounds().Min, draw.Src)
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.DefaultCompression}).Encode(&buf, out); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}
