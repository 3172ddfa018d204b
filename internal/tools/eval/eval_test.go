package eval

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detect"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/tools/nab"
	"github.com/agentwatch/agentwatch/internal/tools/scenario"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/attack"
	"github.com/agentwatch/agentwatch/pkg/baseline"
)

// The reduced NAB run of make test: three real NAB files (the nab
// package's testdata), results and a plot written the way NAB reads them.
func TestNABReducedSetOutputShape(t *testing.T) {
	data := filepath.Join("..", "nab", "testdata", "nab")
	out := t.TempDir()
	plot := "artificialWithAnomaly/art_daily_jumpsup.csv"
	res, err := RunNAB(context.Background(), NABOptions{Data: data, Out: out, Params: baseline.DefaultSeriesParams(), Plots: []string{plot}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := nab.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != len(c.Series) || res.Files != 3 {
		t.Fatalf("scored %d files, corpus has %d", res.Files, len(c.Series))
	}
	for _, s := range c.Series {
		f, err := os.Open(filepath.Join(out, filepath.FromSlash(s.Name)))
		if err != nil {
			t.Fatalf("no results for %s: %v", s.Name, err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan()
		if sc.Text() != "timestamp,value,anomaly_score" {
			t.Errorf("%s: header %q", s.Name, sc.Text())
		}
		rows := 0
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ",")
			if len(fields) != 3 {
				t.Fatalf("%s row %d: %q", s.Name, rows+1, sc.Text())
			}
			v, err := strconv.ParseFloat(fields[2], 64)
			if err != nil || v < 0 || v > 1 {
				t.Fatalf("%s row %d: anomaly_score %q not in [0, 1]", s.Name, rows+1, fields[2])
			}
			rows++
		}
		f.Close()
		if rows != len(s.Values) {
			t.Errorf("%s: %d rows, want %d", s.Name, rows, len(s.Values))
		}
	}
	if len(res.Plots) != 1 {
		t.Fatalf("plots %v, want one", res.Plots)
	}
	if b, err := os.ReadFile(res.Plots[0]); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("plot %s is not a PNG: %v", res.Plots[0], err)
	}
	if len(res.Report.Profiles) != 3 {
		t.Fatalf("%d profiles, want 3", len(res.Report.Profiles))
	}
	var table bytes.Buffer
	if err := nab.Table(&table, "agentwatch", res.Report); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"agentwatch", "Numenta HTM", "ARTime"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	// The planted jump in art_daily_jumpsup is the easy case: it must be
	// found, inside its window.
	std := res.Report.Profiles[0]
	if std.PerFile["artificialWithAnomaly/art_daily_jumpsup.csv"] <= 0 {
		t.Errorf("art_daily_jumpsup scores %.3f under the standard profile, want a detection in its window", std.PerFile["artificialWithAnomaly/art_daily_jumpsup.csv"])
	}
	t.Logf("reduced NAB: %s", table.String())
}

// The short scenario run of make test: every incident kind simulated once,
// through the real parser and processor, and a report of the full shape.
func TestScenarioShortRunShape(t *testing.T) {
	cfg, err := config.LoadEnv("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := RunScenario(context.Background(), ScenarioOptions{
		Seed: 3, Agents: 30, HistoryDays: 3, TestDays: 1, Start: time.Date(2026, 10, 5, 0, 0, 0, 0, time.UTC),
		Settings: detect.SettingsFrom(cfg),
	})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	WriteScenarioTable(&b, r)
	t.Logf("\n%s", b.String())
	if len(r.Kinds) != len(sim.AllIncidentKinds) {
		t.Fatalf("%d kinds reported, want %d", len(r.Kinds), len(sim.AllIncidentKinds))
	}
	caught := 0
	for _, k := range r.Kinds {
		if k.Incidents != 1 {
			t.Errorf("%s: %d incidents, want 1", k.Kind, k.Incidents)
		}
		if !strings.Contains(b.String(), "| "+string(k.Kind)+" |") {
			t.Errorf("table has no row for %s", k.Kind)
		}
		caught += k.Caught
	}
	if r.Matched+r.False == 0 || r.Alerts != r.Matched+r.False+r.Grouped {
		t.Errorf("alerts %d != matched %d + false %d + grouped %d", r.Alerts, r.Matched, r.False, r.Grouped)
	}
	if len(r.Benign) == 0 || r.Benign[0].Kind == "" {
		t.Errorf("no benign events judged: %+v", r.Benign)
	}
	for _, k := range r.Kinds {
		if len(k.Classes) != k.Caught || k.RightClass > k.Caught {
			t.Errorf("%s: %d card classes and %d right for %d caught", k.Kind, len(k.Classes), k.RightClass, k.Caught)
		}
		if _, ok := TrueClass[k.Kind]; !ok {
			t.Errorf("%s has no true class", k.Kind)
		}
	}
	if share, right, n := r.ClassAccuracy(); n != caught || !(share >= 0 && share <= 1) || right > n {
		t.Errorf("class accuracy %g (%d of %d) for %d caught", share, right, n, caught)
	}
	for _, want := range []string{"precision", "false alerts per 100 agent-days", "median time to detect", "upstream_outage", "right attack class"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}
	// The low-and-slow incidents and benign long changes: apart from the
	// kinds, every speed and length once, and their own tables.
	if len(r.LowAndSlow) != 9 || len(r.Long) != 2 {
		t.Fatalf("%d low-and-slow incidents and %d long changes; want 9 and 2", len(r.LowAndSlow), len(r.Long))
	}
	for _, l := range r.LowAndSlow {
		if l.Caught != (l.First != "") || (l.Caught && (l.Minutes < 1 || l.Minutes > int(l.Incident.End.Sub(l.Incident.Start).Minutes())+2)) {
			t.Errorf("%s: caught %v, first %q after %d min", l.Incident.ID, l.Caught, l.First, l.Minutes)
		}
		if !strings.Contains(b.String(), "| "+l.Incident.ID+" | "+l.Incident.Agent) {
			t.Errorf("no low-and-slow row for %s", l.Incident.ID)
		}
	}
	if c, n, _ := r.LowAndSlowSummary(3, 2*time.Hour); n != 6 || c > n {
		t.Errorf("low-and-slow >=3x for >=2h: %d of %d", c, n)
	}
	longAlerts := 0
	for _, l := range r.Long {
		if len(l.PerAgent) != 1 {
			t.Errorf("%s concerns %v", l.ID, l.PerAgent)
		}
		longAlerts += l.Alerts()
	}
	if longAlerts > r.False {
		t.Errorf("%d alerts about long changes, more than the %d false alerts", longAlerts, r.False)
	}
	for _, want := range []string{"low-and-slow ≥3× for ≥2 h: caught", "| new_batch_job", "| traffic_rollout", "of which about the agents of benign long changes"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}
	// Three history days are little warm-up; the rules still catch most
	// kinds at once.
	if caught < 7 {
		t.Errorf("only %d of %d kinds caught on the short run", caught, len(r.Kinds))
	}
}

func TestClassAccuracy(t *testing.T) {
	r := ScenarioReport{Kinds: []KindResult{
		{Kind: sim.Exfiltration, Incidents: 3, Caught: 3, RightClass: 2},
		{Kind: sim.AuthStorm, Incidents: 3, Caught: 0},
		{Kind: sim.OffHours, Incidents: 3, Caught: 1, RightClass: 1},
	}}
	if share, right, caught := r.ClassAccuracy(); right != 3 || caught != 4 || share != 0.75 {
		t.Errorf("ClassAccuracy = %g, %d of %d; want 0.75, 3 of 4", share, right, caught)
	}
	if share, right, caught := (ScenarioReport{}).ClassAccuracy(); share != 0 || right != 0 || caught != 0 {
		t.Errorf("ClassAccuracy of nothing caught = %g, %d of %d", share, right, caught)
	}
	for _, k := range sim.AllIncidentKinds {
		if c, ok := TrueClass[k]; !ok || !attack.Known(string(c)) || c == attack.Unclassified {
			t.Errorf("TrueClass[%s] = %q", k, c)
		}
	}
}

// Time to detect a low-and-slow incident counts to the end of the first
// alert's window, so an alert over a long window that began before the
// incident is not instant; the summary takes only the speeds and lengths
// asked for.
func TestLowAndSlowTimeToDetect(t *testing.T) {
	start := time.Date(2026, 10, 19, 10, 0, 0, 0, time.UTC)
	inc := sim.Incident{ID: "low_and_slow-1", Kind: sim.LowAndSlow, Agent: "a", Start: start, End: start.Add(2 * time.Hour), Multiplier: 3}
	ms := func(d time.Duration) int64 { return start.Add(d).UnixMilli() }
	c := scenario.Catch{Incident: inc, Caught: true, Anomalies: []anomaly.Anomaly{
		{AgentID: "a", Kind: "behaviour", WindowStartMs: ms(50 * time.Minute), WindowEndMs: ms(51 * time.Minute)},
		{AgentID: "a", Kind: "accumulated", WindowStartMs: ms(-30 * time.Minute), WindowEndMs: ms(44*time.Minute + 30*time.Second)},
	}}
	l := lowSlowResult(c, "hr")
	if !l.Caught || l.Minutes != 45 || l.First != "accumulated" || l.Role != "hr" {
		t.Errorf("lowSlowResult = %+v; want caught after 45 min by accumulated", l)
	}
	r := ScenarioReport{LowAndSlow: []LowSlowResult{
		l,
		{Incident: sim.Incident{Multiplier: 2, Start: start, End: start.Add(8 * time.Hour)}, Caught: true, Minutes: 300},
		{Incident: sim.Incident{Multiplier: 4, Start: start, End: start.Add(4 * time.Hour)}, Caught: true, Minutes: 15},
		{Incident: sim.Incident{Multiplier: 3, Start: start, End: start.Add(8 * time.Hour)}},
	}}
	if c, n, m := r.LowAndSlowSummary(3, 2*time.Hour); c != 2 || n != 3 || m != 30 {
		t.Errorf("summary >=3x >=2h: %d of %d, median %g; want 2 of 3, 30", c, n, m)
	}
	if c, n, m := r.LowAndSlowSummary(0, 0); c != 3 || n != 4 || m != 45 {
		t.Errorf("summary of all: %d of %d, median %g; want 3 of 4, 45", c, n, m)
	}
}
