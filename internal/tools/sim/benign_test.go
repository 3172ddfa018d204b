package sim

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestUpstreamOutage(t *testing.T) {
	cfg := Config{Seed: 31, Agents: 40, Start: tuesday.Add(10 * time.Hour), Duration: 90 * time.Minute, Incidents: []IncidentSpec{}}
	clean := all(mustNew(t, cfg))
	cfg.Benign = []BenignSpec{{Kind: UpstreamOutage, Offset: 30*time.Minute + 20*time.Second, Duration: 20 * time.Minute}}
	s := mustNew(t, cfg)
	labels := s.BenignEvents()
	if len(labels) != 1 || labels[0].Kind != UpstreamOutage || labels[0].Role != "" || labels[0].ID != "upstream_outage-1" ||
		!labels[0].Start.Equal(cfg.Start.Add(cfg.Benign[0].Offset)) || !labels[0].End.Equal(labels[0].Start.Add(20*time.Minute)) {
		t.Fatalf("BenignEvents() = %+v", labels)
	}
	from, to := labels[0].Start.UnixMilli(), labels[0].End.UnixMilli()
	in := func(l Line) bool { return l.Event.EventTimeMs >= from && l.Event.EventTimeMs < to }
	roles := map[Role]bool{}
	var during, outside []Line
	for _, l := range parseRun(t, s) {
		if !in(l.Line) {
			outside = append(outside, l.Line)
			continue
		}
		during = append(during, l.Line)
		ev := l.Parsed
		if ev.Status < 502 || ev.Status > 504 || ev.ResponseBytes > 1000 || ev.DurationUs > 100_000 {
			t.Fatalf("call in the outage answered %d with %d bytes after %dµs; want a fast 502-504 with a small body", ev.Status, ev.ResponseBytes, ev.DurationUs)
		}
		a, _ := s.Registry().Lookup(ev.AgentID)
		roles[a.Role] = true
	}
	if len(roles) != len(Roles) {
		t.Errorf("outage calls of roles %v; want every role", roles)
	}
	// Lines outside the window are those of the run without the outage.
	var cleanDuring int
	var cleanOutside []Line
	for _, l := range clean {
		if in(l) {
			cleanDuring++
		} else {
			cleanOutside = append(cleanOutside, l)
		}
	}
	if len(outside) != len(cleanOutside) {
		t.Fatalf("%d lines outside the outage; %d without it", len(outside), len(cleanOutside))
	}
	for i := range outside {
		if !bytes.Equal(outside[i].Raw, cleanOutside[i].Raw) {
			t.Fatalf("line %d outside the outage changed:\n%s\n%s", i, outside[i].Raw, cleanOutside[i].Raw)
		}
	}
	if ratio := float64(len(during)) / float64(cleanDuring); ratio < 1.3 || ratio > 1.7 {
		t.Errorf("%d calls in the outage, %d without: ratio %.2f, want about 1.5 (retries)", len(during), cleanDuring, ratio)
	}
}

// TestHoliday: a Tuesday that is a holiday looks like a Saturday.
func TestHoliday(t *testing.T) {
	saturday := tuesday.AddDate(0, 0, 4)
	byRole := func(start time.Time, benign []BenignSpec) map[Role]int {
		s := mustNew(t, Config{Seed: 11, Start: start, Duration: 24 * time.Hour, Incidents: []IncidentSpec{}, Benign: benign})
		out := map[Role]int{}
		for l := range s.All() {
			a, _ := s.Registry().Lookup(l.Event.AgentID)
			out[a.Role]++
		}
		return out
	}
	weekday := byRole(tuesday, nil)
	holiday := byRole(tuesday, []BenignSpec{{Kind: Holiday, Duration: 24 * time.Hour}})
	weekend := byRole(saturday, nil)
	for _, r := range Roles {
		t.Logf("%s: Tuesday %d, holiday %d, Saturday %d", r, weekday[r], holiday[r], weekend[r])
		if h, w := float64(holiday[r]), float64(weekend[r]); h < 0.8*w || h > 1.2*w {
			t.Errorf("%s: %d calls on the holiday, %d on a Saturday; want about the same", r, holiday[r], weekend[r])
		}
	}
	if holiday[RoleFinance]*4 > weekday[RoleFinance] {
		t.Errorf("finance: holiday %d not well below a weekday's %d", holiday[RoleFinance], weekday[RoleFinance])
	}
	// A holiday of one role leaves the others alone.
	hrOnly := byRole(tuesday, []BenignSpec{{Kind: Holiday, Role: RoleHR, Duration: 24 * time.Hour}})
	if hrOnly[RoleFinance] != weekday[RoleFinance] || hrOnly[RoleHR]*4 > weekday[RoleHR] {
		t.Errorf("hr holiday: finance %d (weekday %d), hr %d (weekday %d)", hrOnly[RoleFinance], weekday[RoleFinance], hrOnly[RoleHR], weekday[RoleHR])
	}
}

func TestRoleRollout(t *testing.T) {
	start := tuesday.Add(6 * time.Hour)
	offset := 4 * time.Hour // 10:00
	s := mustNew(t, Config{Seed: 13, Agents: 60, Start: start, Duration: 10 * time.Hour, Incidents: []IncidentSpec{},
		Benign: []BenignSpec{{Kind: RoleRollout, Role: RoleHR, Offset: offset}}})
	labels := s.BenignEvents()
	if len(labels) != 1 || labels[0].Kind != RoleRollout || labels[0].Role != RoleHR || labels[0].Route == "" ||
		!labels[0].Start.Equal(start.Add(offset)) || !labels[0].End.Equal(start.Add(10*time.Hour)) {
		t.Fatalf("BenignEvents() = %+v", labels)
	}
	route := labels[0].Route
	if slices.ContainsFunc(Inventory(), func(r RouteSpec) bool { return r.Template == route }) {
		t.Errorf("Inventory() lists %s, which only this run rolls out", route)
	}
	i := slices.IndexFunc(s.Routes(), func(r RouteSpec) bool { return r.Template == route })
	if i < 0 || !slices.Equal(s.Routes()[i].Roles, []Role{RoleHR}) || s.Routes()[i].Sensitive || s.Routes()[i].Deprecated {
		t.Fatalf("Routes() lacks %s for hr: %+v", route, s.Routes())
	}
	hr := 0
	for _, a := range s.Registry().Agents {
		if approved := slices.Contains(a.ApprovedRoutes, route); approved != (a.Role == RoleHR) {
			t.Errorf("%s (%s): approved for %s = %v", a.ID, a.Role, route, approved)
		}
		if a.Role == RoleHR {
			hr++
		}
	}
	callers := map[string]bool{}
	hrCalls, routeCalls := 0, 0
	for _, l := range parseRun(t, s) {
		ev := l.Parsed
		a, _ := s.Registry().Lookup(ev.AgentID)
		if ev.EventTimeMs >= start.Add(offset).UnixMilli() && a.Role == RoleHR {
			hrCalls++
		}
		if ev.Route != route {
			continue
		}
		routeCalls++
		callers[ev.AgentID] = true
		if ev.EventTimeMs < start.Add(offset).UnixMilli() || a.Role != RoleHR || l.Incident != "" {
			t.Fatalf("%s (%s) calls %s at %s; want only hr agents after %s", ev.AgentID, a.Role, route, time.UnixMilli(ev.EventTimeMs).UTC(), start.Add(offset))
		}
	}
	if len(callers) < hr*3/4 {
		t.Errorf("%d of %d hr agents took up %s", len(callers), hr, route)
	}
	if share := float64(routeCalls) / float64(hrCalls); share < 0.03 || share > 0.3 {
		t.Errorf("%s has %.3f of hr calls after the rollout; want a share like an ordinary route's", route, share)
	}
	t.Logf("%s: %d calls by %d of %d hr agents, %.3f of hr calls", route, routeCalls, len(callers), hr, float64(routeCalls)/float64(hrCalls))
}

// TestRolloutsOnlyAddCalls: a rollout approves ahead but only adds calls,
// from its start; every other line is the run's without it.
func TestRolloutsOnlyAddCalls(t *testing.T) {
	cfg := Config{Seed: 14, Agents: 30, Start: tuesday.Add(9 * time.Hour), Duration: time.Hour}
	clean := all(mustNew(t, cfg))
	cfg.Benign = []BenignSpec{{Kind: RoleRollout, Role: RoleCustomerService, Offset: 40 * time.Minute}, {Kind: RoleRollout, Role: RoleCustomerService, Offset: 50 * time.Minute}}
	s := mustNew(t, cfg)
	routes := map[string]time.Time{}
	for _, b := range s.BenignEvents() {
		routes[b.Route] = b.Start
	}
	if len(routes) != 2 {
		t.Fatalf("two rollouts of one role share a route: %+v", s.BenignEvents())
	}
	var rest []Line
	added := 0
	for _, l := range all(s) {
		if from, ok := routes[l.Event.Route]; ok {
			if l.Event.EventTimeMs < from.UnixMilli() {
				t.Fatalf("%s called at %s, before its rollout at %s", l.Event.Route, time.UnixMilli(l.Event.EventTimeMs).UTC(), from)
			}
			added++
			continue
		}
		rest = append(rest, l)
	}
	if added == 0 || len(rest) != len(clean) {
		t.Fatalf("%d rollout calls and %d others; want some, and the %d lines of the run without", added, len(rest), len(clean))
	}
	for i := range rest {
		if !bytes.Equal(rest[i].Raw, clean[i].Raw) {
			t.Fatalf("line %d changed by the rollouts:\n%s\n%s", i, rest[i].Raw, clean[i].Raw)
		}
	}
}

func TestBenignErrors(t *testing.T) {
	_, err := New(Config{Seed: 1, Start: tuesday, Duration: time.Hour, Benign: []BenignSpec{
		{Kind: "eclipse", Duration: time.Minute},
		{Kind: RoleRollout},
		{Kind: Holiday, Role: "pilot", Duration: time.Hour},
		{Kind: UpstreamOutage, Offset: 2 * time.Hour, Duration: time.Minute},
		{Kind: UpstreamOutage},
		{Kind: RoleRollout, Role: RoleHR}, {Kind: RoleRollout, Role: RoleHR}, {Kind: RoleRollout, Role: RoleHR},
	}})
	if err == nil {
		t.Fatal("bad benign specs accepted")
	}
	for _, want := range []string{"benign[0].kind", "benign[1].role", "benign[2].role", "benign[3].offset", "benign[4].duration", "benign[7]: role hr has only"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "benign[6]") {
		t.Errorf("error %q: two rollouts of hr are fine", err)
	}
}
