package report

import (
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the sample report in docs/img")

// built is the fixture's report and charts, made once: the tests only
// read them, and drawing is most of their time under -race.
var built = func() func(t *testing.T) (*Report, []Chart) {
	var once sync.Once
	var r *Report
	var charts []Chart
	var err error
	return func(t *testing.T) (*Report, []Chart) {
		t.Helper()
		once.Do(func() {
			b, _ := fixtureBuilder()
			if r, err = b.Build(context.Background(), november); err == nil {
				charts, err = Charts(r)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return r, charts
	}
}()

func TestCharts(t *testing.T) {
	r, charts := built(t)
	if len(charts) != 3 {
		t.Fatalf("%d charts", len(charts))
	}
	for _, c := range charts {
		img, err := png.Decode(bytes.NewReader(c.PNG))
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if b := img.Bounds(); b.Dx() != chartW || b.Dy() != chartH {
			t.Errorf("%s: %v", c.Name, b)
		}
	}
	again, err := Charts(r)
	if err != nil {
		t.Fatal(err)
	}
	for i := range charts {
		if !bytes.Equal(charts[i].PNG, again[i].PNG) {
			t.Errorf("%s: not the same bytes twice", charts[i].Name)
		}
	}
}

func TestHTML(t *testing.T) {
	r, charts := built(t)
	page, err := HTML(r, charts)
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	for _, want := range []string{
		"agentwatch report 2026-11",
		`<tr id="inventory.agents_registered"><td>Agents registered</td><td class="value">66.7%</td><td>2 of 3 agents seen</td>`,
		`<td class="value">33.3%</td><td>1 of 3 judged anomalies; above the 10% goal; 3 of 4 anomalies were judged</td>`,
		`<td class="value">2m 00s</td>`,
		"&#43;300% vs 2026-10 (1)",
		"over the anomalies of the period that were judged",
		`<td><code>billing-bot</code></td><td><code>/v0/customers</code></td><td class="num">3</td><td class="num">2</td>`,
		"payments-team",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	// The hostile strings are text: escaped, never markup.
	for _, bad := range []string{"<script>alert", "<img src=x", `"><img`} {
		if strings.Contains(s, bad) {
			t.Errorf("HTML holds %q unescaped", bad)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;"} {
		if !strings.Contains(s, want) {
			t.Errorf("HTML lacks the escaped %q", want)
		}
	}
	// Self-contained: no script, nothing fetched.
	if strings.Contains(s, "<script") || regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(s) || strings.Contains(s, "@import") {
		t.Error("HTML refers to something outside itself or runs script")
	}
	if n := strings.Count(s, `src="data:image/png;base64,`); n != 3 {
		t.Errorf("%d inline charts", n)
	}
	again, _ := HTML(r, charts)
	if sha256.Sum256(page) != sha256.Sum256(again) {
		t.Error("HTML not the same bytes twice")
	}
}

func TestPDF(t *testing.T) {
	r, charts := built(t)
	doc, err := PDF(r, charts)
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	if !strings.HasPrefix(s, "%PDF-1.") || !strings.HasSuffix(strings.TrimSpace(s), "%%EOF") {
		t.Fatalf("not a PDF: %q … %q", s[:min(20, len(s))], s[max(0, len(s)-20):])
	}
	pages := regexp.MustCompile(`/Type /Page\b`).FindAllString(s, -1)
	if len(pages) < 2 {
		t.Errorf("%d pages", len(pages))
	}
	if n := regexp.MustCompile(`/Subtype /Image`).FindAllString(s, -1); len(n) != 1 {
		t.Errorf("%d images", len(n))
	}
	if !strings.Contains(s, "startxref") || !strings.Contains(s, "/Root") {
		t.Error("no trailer")
	}
	for _, want := range []string{"(agentwatch report 2026-11)", "(66.7%)", "(33.3%)", "(2m 00s)", "(billing-bot)", "(/v0/customers)", "(Agents to review)"} {
		if !strings.Contains(s, want) {
			t.Errorf("PDF text lacks %s", want)
		}
	}
	// The hostile agent is text in a string: its parentheses escaped.
	if !strings.Contains(s, `<script>alert\(1\)</script>`) {
		t.Error("PDF lacks the hostile agent id as escaped text")
	}
	again, _ := PDF(r, charts)
	if !bytes.Equal(doc, again) {
		t.Error("PDF not the same bytes twice")
	}
}

// TestSample writes the sample report of docs/reports.md with -update and
// otherwise checks that the committed one is current.
func TestSample(t *testing.T) {
	r, charts := built(t)
	page, err := HTML(r, charts)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := PDF(r, charts)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "..", "docs", "img")
	files := map[string][]byte{
		"report-sample.html":         page,
		"report-sample.pdf":          doc,
		"report-chart-anomalies.png": charts[0].PNG,
	}
	for name, b := range files {
		path := filepath.Join(dir, name)
		if *update {
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./internal/report -run TestSample -update)", err)
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s is out of date: run go test ./internal/report -run TestSample -update", path)
		}
	}
}
