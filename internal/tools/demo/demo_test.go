package demo

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/preview"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

func TestDemoRunsEveryStageAndAccountsForEveryLine(t *testing.T) {
	cfg, err := config.LoadEnv("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Embedded.DataDir = filepath.Join(t.TempDir(), "demo")
	cfg.HTTP.Addr = ""
	cfg.Responder.Playbooks = []string{"../../../deploy/playbooks/default.yaml"}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The span ends at the last weekday's 05:30 UTC, so it holds 03:00, where the
	// off-hours incident is quiet for every role, whenever the test runs:
	// a 3-hour span ending at, say, 09:15 has no quiet hour, and the
	// incident lands where its agent is busy anyway.
	end := time.Now().UTC().Truncate(24 * time.Hour).Add(5*time.Hour + 30*time.Minute)
	if end.After(time.Now()) {
		end = end.Add(-24 * time.Hour)
	}
	// A weekday's: the simulator's weekends are quieter, and the detector
	// keeps weekend hours apart, so a Saturday's 03:00 is not the quiet
	// hour the incident is planted against (it went undetected on
	// Saturdays).
	for end.Weekday() == time.Saturday || end.Weekday() == time.Sunday {
		end = end.Add(-24 * time.Hour)
	}
	sum, err := Run(ctx, Options{Config: cfg, Agents: 20, SimDuration: 3 * time.Hour, End: end, Speed: 200000, GarbageRate: 0.05, Every: 5 * time.Millisecond},
		&out, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if sum.Published == 0 || sum.Bad == 0 {
		t.Fatalf("simulator published %d lines (%d bad)", sum.Published, sum.Bad)
	}
	if sum.Ingest.Committed != sum.Published {
		t.Fatalf("ingest committed %d of %d published lines", sum.Ingest.Committed, sum.Published)
	}
	if sum.Ingest.Events+sum.Ingest.DeadLettered != sum.Published {
		t.Fatalf("events %d + dead letters %d != published %d", sum.Ingest.Events, sum.Ingest.DeadLettered, sum.Published)
	}
	if sum.Detector.Events != sum.Ingest.Events {
		t.Fatalf("detector consumed %d of %d events", sum.Detector.Events, sum.Ingest.Events)
	}
	if sum.Detector.Windows == 0 {
		t.Fatal("detector scored no window")
	}
	for _, c := range sum.Caught {
		if !c.Caught {
			t.Errorf("incident %s (%s, agent %s) was not detected\n%s", c.Incident.ID, c.Incident.Kind, c.Incident.Agent, out.String())
		}
	}
	t.Logf("%d anomalies, %d matched no incident over %.0f agent-days; detector %+v", len(sum.Anomalies), sum.FalseAlerts, sum.AgentDays, sum.Detector)
	for _, c := range sum.Caught {
		t.Logf("%-20s caught=%v after %d windows as %v", c.Incident.Kind, c.Caught, c.Windows, c.Kinds)
	}
	if uint64(sum.StoredEvents) != sum.Ingest.Events {
		t.Fatalf("store holds %d events, ingest stored %d", sum.StoredEvents, sum.Ingest.Events)
	}
	// Garbage generated against the replayed clock can be accepted (see
	// docs/ingest.md); everything else garbage must be dead-lettered.
	if sum.Ingest.DeadLettered == 0 || sum.Ingest.DeadLettered > sum.Bad {
		t.Fatalf("dead-lettered %d with %d garbage lines", sum.Ingest.DeadLettered, sum.Bad)
	}
	if len(sum.Incidents) == 0 {
		t.Fatal("no incidents injected")
	}
	if len(sum.Responder.Bundles) == 0 || sum.Responder.ChainOK != nil {
		t.Errorf("%d evidence bundles; the chain against the audit trail: %v", len(sum.Responder.Bundles), sum.Responder.ChainOK)
	}
	checkBundleScores(t, sum.Responder)
	dl, err := os.ReadFile(sum.DeadLetterFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := bytes.Count(dl, []byte("\n")); uint64(got) != sum.Ingest.DeadLettered {
		t.Fatalf("dead-letter file has %d records, want %d", got, sum.Ingest.DeadLettered)
	}
	// What its notifier received, counted per incident and written as the
	// preview.
	ms := sum.Responder.Messages
	if ms.Incidents == 0 || ms.Incidents > len(sum.Responder.Incidents) || ms.Top < ms.Incidents || float64(ms.Max) < ms.Median {
		t.Errorf("messages per incident %+v for %d incidents", ms, len(sum.Responder.Incidents))
	}
	if sum.Responder.PreviewErr != nil {
		t.Fatal(sum.Responder.PreviewErr)
	}
	pj, err := os.ReadFile(filepath.Join(sum.Responder.Preview, preview.JSONFile))
	if err != nil {
		t.Fatal(err)
	}
	var pf preview.File
	if err := json.Unmarshal(pj, &pf); err != nil {
		t.Fatal(err)
	}
	if pf.Stats.Incidents != ms.Incidents || pf.Stats.TopLevel != ms.Top || pf.Stats.Thread != ms.Thread || len(pf.Incidents) < ms.Incidents {
		t.Errorf("%s: %+v, %d incidents; the demo counted %+v", preview.JSONFile, pf.Stats, len(pf.Incidents), ms)
	}
	if page, err := os.ReadFile(filepath.Join(sum.Responder.Preview, preview.HTMLFile)); err != nil || !bytes.Contains(page, []byte(`<div class="header">`)) {
		t.Errorf("%s: %v, %d bytes without an alert's header", preview.HTMLFile, err, len(page))
	}
	// The report of the demo's week: written, recorded, and the chain
	// still verifies.
	if r := sum.Report; r.Err != nil || len(r.Files) != 2 || !strings.HasPrefix(r.Bundle, "report-"+r.Period+"-") {
		t.Errorf("report: %+v", r)
	} else if page, err := os.ReadFile(r.Files[0]); err != nil || !bytes.Contains(page, []byte(`id="anomalies.total"`)) {
		t.Errorf("report %s: %v", r.Files[0], err)
	}
	for _, want := range []string{"what flowed", "dead-lettered by reason", "injected incidents", "what the detector found", "caught", "where the results are", cfg.Embedded.DataDir,
		"Slack messages per incident: median", preview.HTMLFile, "agentwatch report --period"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}

// checkBundleScores checks that the demo's responder reads the detector's
// window scores: the bundle of every single agent's anomaly holds the
// agent's windows in scores.csv, among them the anomalous window when the
// detector scored it, and its plot draws them.
func checkBundleScores(t *testing.T, r responderSummary) {
	t.Helper()
	withScores := 0
	for _, id := range r.Bundles {
		dir := filepath.Join(r.Evidence, id)
		var a anomaly.Anomaly
		if err := json.Unmarshal(mustRead(t, filepath.Join(dir, evidence.AnomalyJSON)), &a); err != nil {
			t.Fatalf("bundle %s: %v", id, err)
		}
		rows, err := csv.NewReader(bytes.NewReader(mustRead(t, filepath.Join(dir, evidence.ScoresCSV)))).ReadAll()
		if err != nil {
			t.Fatalf("bundle %s scores.csv: %v", id, err)
		}
		if a.Grouped() {
			continue // many agents: no one agent's windows
		}
		if len(rows) < 2 {
			t.Errorf("bundle %s (%s of agent %s): scores.csv holds no window", id, a.Kind, a.AgentID)
			continue
		}
		withScores++
		own := false
		for _, row := range rows[1:] {
			own = own || row[1] == strconv.FormatInt(a.WindowStartMs, 10)
		}
		if a.Kind == anomaly.Behaviour && !own {
			t.Errorf("bundle %s: scores.csv lacks the anomalous window %d", id, a.WindowStartMs)
		}
	}
	if withScores == 0 {
		t.Errorf("none of the %d bundles holds window scores", len(r.Bundles))
	}
	t.Logf("%d of %d bundles hold window scores", withScores, len(r.Bundles))
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
