package detect

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/tools/scenario"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
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

// TestUpstreamOutageIsOneGlobalEvent: an outage that hits every agent is
// one global_event (one id across partitions), not an alert per agent;
// without grouping the same traffic pages for dozens of agents.
func TestUpstreamOutageIsOneGlobalEvent(t *testing.T) {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	outage := 3*24*time.Hour + 12*time.Hour
	rs, s := simRecords(t, sim.Config{Seed: 21, Agents: 120, Start: start, Duration: 3*24*time.Hour + 14*time.Hour,
		Incidents: []sim.IncidentSpec{}, Benign: []sim.BenignSpec{{Kind: sim.UpstreamOutage, Offset: outage, Duration: 20 * time.Minute}}})
	from, to := start.Add(outage).UnixMilli(), start.Add(outage+22*time.Minute).UnixMilli()
	count := func(set Settings) (ids map[string]bool, perAgent int) {
		as, _ := run(NewProcessor(set, simCatalog(t, s), nil), rs)
		ids = map[string]bool{}
		shares := map[int32]string{}
		for _, a := range as {
			if a.WindowStartMs < from || a.WindowStartMs >= to {
				continue
			}
			if a.Kind == anomaly.GlobalEvent {
				ids[a.GroupKey()] = true
				if shares[a.Partition] != "" && shares[a.Partition] != a.ID || a.ID == a.Group {
					t.Errorf("partition %d's share of the global event has id %s (group %s), earlier %q: want one id per partition, not the group's", a.Partition, a.ID, a.Group, shares[a.Partition])
				}
				shares[a.Partition] = a.ID
				if !strings.Contains(a.Summary, "server_5xx") || a.Count < 5 {
					t.Errorf("global event does not say what it is: count %d, %s", a.Count, a.Summary)
				}
			} else {
				perAgent++
			}
		}
		return ids, perAgent
	}
	ids, grouped := count(testSettings())
	off := testSettings()
	off.GlobalMinAgents = 0
	offIDs, ungrouped := count(off)
	t.Logf("grouped: %d global event group(s) and %d per-agent alerts; ungrouped: %d per-agent alerts", len(ids), grouped, ungrouped)
	if len(ids) != 1 {
		t.Errorf("%d global event groups for one outage, want 1", len(ids))
	}
	if len(offIDs) != 0 || ungrouped < 30 {
		t.Errorf("without grouping: %d global ids and %d per-agent alerts, want 0 and many", len(offIDs), ungrouped)
	}
	// The outage's first window can leak a few alerts: it is only known to
	// be global once enough agents in one window agree.
	if grouped > 10 || grouped*20 > ungrouped {
		t.Errorf("%d per-agent alerts leaked past grouping (of %d), want at most 10 and 5%%", grouped, ungrouped)
	}
}

// TestNewSourceAddressRule: a credential replayed from a new address is
// one new_source_ip anomaly naming that address; quiet days raise none.
func TestNewSourceAddressRule(t *testing.T) {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	rs, s := simRecords(t, sim.Config{Seed: 22, Agents: 40, Start: start, Duration: 3 * 24 * time.Hour,
		Incidents: []sim.IncidentSpec{{Kind: sim.NewSourceAddress, Offset: 2*24*time.Hour + 10*time.Hour, Duration: 15 * time.Minute}}})
	as, _ := run(NewProcessor(testSettings(), simCatalog(t, s), nil), rs)
	inc := s.Incidents()[0]
	hits := 0
	for _, a := range as {
		if a.Kind != anomaly.NewSourceIP {
			continue
		}
		if a.AgentID != inc.Agent || !slices.Contains(a.SourceIPs, inc.SourceIP) {
			t.Errorf("new_source_ip for %s %v, want only %s from %s: %s", a.AgentID, a.SourceIPs, inc.Agent, inc.SourceIP, a.Summary)
			continue
		}
		hits++
	}
	if hits != 1 {
		t.Errorf("%d new_source_ip anomalies for the incident, want 1 (later windows know the address)", hits)
	}
}

// TestOffHoursJudgedAgainstTheQuietHour: the off-hours rule compares the
// hour with what the model knew before the hour began. Judged against the
// model as it learns the incident's own windows, the hour stops looking
// quiet after a few windows and the incident is missed (it was, whenever
// the demo ran about two hours after a 03:00 UTC incident start).
func TestOffHoursJudgedAgainstTheQuietHour(t *testing.T) {
	live := time.Date(2026, 11, 26, 1, 57, 0, 0, time.UTC)
	specs := sim.DefaultIncidents(live, 3*time.Hour)
	for i := range specs {
		specs[i].Offset += 72 * time.Hour
	}
	rs, s := simRecords(t, sim.Config{Seed: 0, Agents: 20, Start: live.Add(-72 * time.Hour), Duration: 75 * time.Hour, Incidents: specs})
	as, _ := run(NewProcessor(testSettings(), simCatalog(t, s), nil), rs)
	catches, _ := scenario.Match(s.Incidents(), as, time.Minute)
	for _, c := range catches {
		if c.Incident.Kind != sim.OffHours {
			continue
		}
		t.Logf("off_hours %s at %s: caught=%v after %d windows as %v", c.Incident.Agent, c.Incident.Start.Format("15:04"), c.Caught, c.Windows, c.Kinds)
		if !c.Caught || !slices.Contains(c.Kinds, anomaly.OffHours) {
			t.Errorf("off-hours incident not caught as off_hours: %+v", c)
		}
	}
}
