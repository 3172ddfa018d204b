package opsfiles

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/agentwatch/agentwatch/internal/detector/detect"
	"github.com/agentwatch/agentwatch/internal/ingest"
	"github.com/agentwatch/agentwatch/internal/platform/invwatch"
	"github.com/agentwatch/agentwatch/internal/platform/obs"
	"github.com/agentwatch/agentwatch/internal/responder/clientlimit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
)

const (
	rulesFile     = "../../../deploy/prometheus/rules.yml"
	rulesTestFile = "../../../deploy/prometheus/rules_test.yml"
	dashboardFile = "../../../deploy/grafana/agentwatch.json"
	runbookFile   = "../../../docs/runbook.md"
)

// prometheusOwn are series Prometheus makes itself for every target.
var prometheusOwn = []string{"up", "scrape_duration_seconds", "scrape_samples_scraped"}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// productMetrics returns the name of every series the three services
// (and the embedded run) can export: each package's metrics registered on
// one registry, as the services register them, plus the registry base and
// the readiness gauge of obs.
func productMetrics(t *testing.T) map[string]bool {
	t.Helper()
	reg := obs.NewRegistry()
	reg.MustRegister(obs.NewReadyCollector(nil))
	ingest.NewMetrics(reg)
	detect.NewMetrics(reg)
	if _, err := invwatch.NewWatcher(invwatch.Files{}, time.Second, nil, reg); err != nil {
		t.Fatal(err)
	}
	respond.NewMetrics(reg)
	respond.NewConsumerMetrics(reg)
	outbox.NewMetrics(reg)
	revoke.NewMetrics(reg)
	budget, err := revoke.NewBudget(1, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	revoke.RegisterBudget(reg, budget)
	slackui.NewMetrics(reg)
	respapi.NewMetrics(reg)
	clientlimit.NewMetrics(reg)
	silence.NewMetrics(reg)
	evidence.NewMetrics(reg)
	descs := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(descs)
		close(descs)
	}()
	names := map[string]bool{}
	for d := range descs {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no fqName in %s", d)
		}
		names[m[1]] = true
	}
	if len(names) < 50 || !names["agentwatch_ingest_records_total"] || !names["agentwatch_responder_outbox_parked"] {
		t.Fatalf("registry of the services looks incomplete: %d names", len(names))
	}
	return names
}

// known reports whether a queried name exists: exported as is, as a
// histogram's _bucket, _sum or _count, or made by Prometheus.
func known(names map[string]bool, name string) bool {
	if names[name] || slices.Contains(prometheusOwn, name) {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && names[base] {
			return true
		}
	}
	return false
}

type ruleFile struct {
	Groups []struct {
		Name  string
		Rules []struct {
			Alert       string
			Record      string
			Expr        string
			For         string
			Labels      map[string]string
			Annotations map[string]string
		}
	}
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(b, &rf); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	return rf
}

// anchors returns the GitHub anchors of the headings of a Markdown file.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			out[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return out
}

// TestAlertRulesMatchTheCode: every metric an alert queries exists in the
// services' registries, and every alert has a severity and a runbook_url
// to an entry of docs/runbook.md.
func TestAlertRulesMatchTheCode(t *testing.T) {
	names := productMetrics(t)
	rf := readRules(t)
	heads := anchors(t, runbookFile)
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			what := r.Alert + r.Record
			used, err := MetricNames(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
			if len(used) == 0 {
				t.Errorf("%s: expression %q queries no series", what, r.Expr)
			}
			for _, n := range used {
				if !known(names, n) {
					t.Errorf("%s queries %s, which no service exports", what, n)
				}
			}
			if r.Alert == "" {
				continue
			}
			alerts = append(alerts, r.Alert)
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
			}
			url := r.Annotations["runbook_url"]
			_, anchor, ok := strings.Cut(url, "docs/runbook.md#")
			switch {
			case !ok:
				t.Errorf("%s: runbook_url %q does not point into docs/runbook.md", r.Alert, url)
			case anchor != strings.ToLower(r.Alert):
				t.Errorf("%s: runbook_url anchor %q, want %q", r.Alert, anchor, strings.ToLower(r.Alert))
			case !heads[anchor]:
				t.Errorf("%s: docs/runbook.md has no heading for #%s", r.Alert, anchor)
			}
		}
	}
	for _, want := range []string{"AgentwatchIngestLagHigh", "AgentwatchDetectorLagHigh", "AgentwatchDetectorFallingBehind", "AgentwatchDeadLetterRateHigh",
		"AgentwatchNotReady", "AgentwatchTargetDown", "AgentwatchWriteRetries", "AgentwatchOutboxParked", "AgentwatchRevocationBudgetExhausted"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("rules.yml lacks alert %s", want)
		}
	}
	// Every alert is shown firing by a promtool unit test.
	b, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		}
	}
	if err := yaml.Unmarshal(b, &tf); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range tf.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	for _, a := range alerts {
		if !fires[a] {
			t.Errorf("%s: no test in rules_test.yml expects it to fire", a)
		}
	}
}

type dashboard struct {
	Title         string
	UID           string
	SchemaVersion int
	Templating    struct {
		List []struct {
			Name, Type string
			Query      any
		}
	}
	Panels []struct {
		ID         int
		Type       string
		Title      string
		Datasource struct{ Type, UID string }
		GridPos    struct{ X, Y, W, H int }
		Targets    []struct {
			RefID      string `json:"refId"`
			Expr       string
			Datasource struct{ Type, UID string }
		}
	}
}

// TestDashboardMatchesTheCode: the dashboard is JSON a current Grafana
// imports (timeseries and stat panels on a Prometheus datasource variable),
// it has the panels operators need, and every query's metrics exist.
func TestDashboardMatchesTheCode(t *testing.T) {
	names := productMetrics(t)
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	var d dashboard
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 36 {
		t.Errorf("title %q, uid %q, schemaVersion %d: want both set and a schema of Grafana 9 or later", d.Title, d.UID, d.SchemaVersion)
	}
	var dsVar bool
	for _, v := range d.Templating.List {
		if v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus" {
			dsVar = true
		}
	}
	if !dsVar {
		t.Error("no templating variable datasource of type datasource with query prometheus")
	}
	ids := map[int]bool{}
	var titles []string
	for _, p := range d.Panels {
		titles = append(titles, p.Title)
		if ids[p.ID] {
			t.Errorf("panel %q: id %d used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type != "timeseries" && p.Type != "stat" {
			t.Errorf("panel %q: type %q, want timeseries or stat", p.Title, p.Type)
		}
		if p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v off the 24-column grid", p.Title, p.GridPos)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no query", p.Title)
		}
		for _, q := range p.Targets {
			if q.Expr == "" || q.RefID == "" {
				t.Errorf("panel %q: target without expr or refId", p.Title)
				continue
			}
			used, err := MetricNames(q.Expr)
			if err != nil {
				t.Errorf("panel %q: %v", p.Title, err)
			}
			if len(used) == 0 {
				t.Errorf("panel %q: %q queries no series", p.Title, q.Expr)
			}
			for _, n := range used {
				if !known(names, n) {
					t.Errorf("panel %q queries %s, which no service exports", p.Title, n)
				}
			}
		}
	}
	for _, want := range []string{"Input lag", "Throughput per stage", "Dead letters by reason", "Anomalies by kind",
		"Responder queue", "Outbox parked", "Action latency", "Budget use"} {
		if !slices.Contains(titles, want) {
			t.Errorf("dashboard lacks the panel %q", want)
		}
	}
}

// TestPromtool runs Prometheus' own checks on the rules: promtool check
// rules and promtool test rules (rules_test.yml fires each alert on
// synthetic series). deploy/test-tools.sh installs promtool.
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("REQUIRE_INTEGRATION") != "" || os.Getenv("CI") != "" {
			t.Fatalf("promtool not on PATH: run deploy/test-tools.sh (Debian package prometheus): %v", err)
		}
		t.Skip("promtool not on PATH; run deploy/test-tools.sh (make test does)")
	}
	for _, args := range [][]string{
		{"check", "rules", filepath.Base(rulesFile)},
		{"test", "rules", filepath.Base(rulesTestFile)},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Dir(rulesFile)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
