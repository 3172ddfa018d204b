package report

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"strings"
	"time"
)

//go:embed report.html.tmpl
var htmlSource string

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"date": func(t time.Time) string { return t.UTC().Format("2006-01-02") },
	"ms":   func(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04 UTC") },
	"join": strings.Join,
	"png": func(b []byte) template.URL {
		// A data URI of bytes we encoded ourselves: safe to mark.
		return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(b))
	},
	"last": func(t time.Time) string { return t.Add(-time.Nanosecond).UTC().Format("2006-01-02") },
}).Parse(htmlSource))

// HTML renders r as one self-contained page: styles inline, charts as
// data URIs, nothing fetched. Every string from the data (agent ids,
// routes, owners, findings) goes through html/template's escaping. The
// same report and charts give the same bytes.
func HTML(r *Report, charts []Chart) ([]byte, error) {
	var buf bytes.Buffer
	err := htmlTmpl.Execute(&buf, struct {
		*Report
		Charts     []Chart
		Severities []string
	}{r, charts, Severities})
	if err != nil {
		return nil, fmt.Errorf("render report %s as HTML: %w", r.Period.Name, err)
	}
	return buf.Bytes(), nil
}
