package detect

import (
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/scenario"
	"github.com/agentwatch/agentwatch/internal/sim"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// TestQuietWeekFewAlerts runs a simulated week of normal traffic (60
// agents, no incidents) and reports the alerts; the bound is the issue's
// target of at most 1 false alert per 100 agent-days.
func TestQuietWeekFewAlerts(t *testing.T) {
	if testing.Short() {
		t.Skip("a simulated week takes a few seconds")
	}
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	const agents, days = 60, 7
	rs, s := simRecords(t, sim.Config{Seed: 11, Agents: agents, Start: start, Duration: days * 24 * time.Hour, Incidents: []sim.IncidentSpec{}})
	p := NewProcessor(testSettings(), simCatalog(t, s), nil)
	as, ss := run(p, rs)
	kinds := map[string]int{}
	for _, a := range as {
		kinds[a.Kind]++
	}
	perHundred := 100 * float64(len(as)) / (agents * days)
	t.Logf("quiet week: %d events, %d agent windows, %d alerts (%.2f per 100 agent-days) by kind %v", len(rs), len(ss), len(as), perHundred, kinds)
	for _, a := range as {
		t.Logf("  %s", a.Summary)
	}
	if perHundred > 1 {
		t.Errorf("%.2f alerts per 100 agent-days on quiet traffic, want at most 1", perHundred)
	}
}

// TestIncidentsDetected runs four quiet days then a day with one incident
// of every kind the simulator injects, and requires each to be caught.
func TestIncidentsDetected(t *testing.T) {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	const agents = 60
	live := start.Add(4 * 24 * time.Hour)
	specs := sim.DefaultIncidents(live, 24*time.Hour)
	for i := range specs {
		specs[i].Offset += 4 * 24 * time.Hour
	}
	rs, s := simRecords(t, sim.Config{Seed: 12, Agents: agents, Start: start, Duration: 5 * 24 * time.Hour, Incidents: specs})
	p := NewProcessor(testSettings(), simCatalog(t, s), nil)
	as, _ := run(p, rs)
	catches, falseAlerts := scenario.Match(s.Incidents(), as, time.Minute)
	for _, c := range catches {
		t.Logf("%-20s agent %-22s caught=%v after %d windows as %v", c.Incident.Kind, c.Incident.Agent, c.Caught, c.Windows, c.Kinds)
		if !c.Caught {
			t.Errorf("incident %s (%s) not detected", c.Incident.Kind, c.Incident.Agent)
		}
	}
	t.Logf("%d alerts, %d matched no incident over %d agent-days", len(as), falseAlerts, agents*5)
	for _, a := range as {
		if a.Kind == anomaly.Behaviour || a.Kind == anomaly.Drift {
			t.Logf("  %s", a.Summary)
		}
	}
}
