package sim

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

// longRun is a 10-hour business day of 40 agents with a low-and-slow
// incident of each shape, a new batch job and a traffic rollout, and the
// same run without them.
func longRun(t *testing.T) (cfg Config, s *Simulator, lines, clean []Line) {
	t.Helper()
	start := tuesday.Add(8 * time.Hour)
	cfg = Config{Seed: 21, Agents: 40, Start: start, Duration: 10 * time.Hour, Incidents: []IncidentSpec{}}
	clean = all(mustNew(t, cfg))
	cfg.Incidents = []IncidentSpec{{Kind: LowAndSlow, Agent: "cs-agent-001", Offset: time.Hour, Duration: 8 * time.Hour, Multiplier: 3, BytesMultiplier: 4}}
	for i := 1; i <= 8; i++ {
		cfg.Incidents = append(cfg.Incidents, IncidentSpec{Kind: LowAndSlow, Agent: agentID(2 + 5*(i-1)), Offset: time.Hour, Duration: 2 * time.Hour, Multiplier: 2, Focus: true})
	}
	cfg.Benign = []BenignSpec{
		{Kind: TrafficRollout, Agent: "fin-agent-001", Offset: time.Hour},
		{Kind: NewBatchJob, Agent: "itops-agent-001", Offset: 70 * time.Minute},
	}
	s = mustNew(t, cfg)
	return cfg, s, all(s), clean
}

func TestLowAndSlowAndLongChanges(t *testing.T) {
	cfg, s, lines, clean := longRun(t)
	long := map[string]bool{"fin-agent-001": true, "itops-agent-001": true}
	// Everything else is as without them, line for line.
	var rest, restClean []Line
	byAgent, byAgentClean := map[string][]Line{}, map[string][]Line{}
	for _, l := range lines {
		switch {
		case l.Incident != "":
			byAgent["incident "+l.Event.AgentID] = append(byAgent["incident "+l.Event.AgentID], l)
		case long[l.Event.AgentID]:
			byAgent[l.Event.AgentID] = append(byAgent[l.Event.AgentID], l)
		default:
			rest = append(rest, l)
		}
	}
	for _, l := range clean {
		if long[l.Event.AgentID] {
			byAgentClean[l.Event.AgentID] = append(byAgentClean[l.Event.AgentID], l)
		} else {
			restClean = append(restClean, l)
		}
	}
	if len(rest) != len(restClean) {
		t.Fatalf("%d other lines, want the %d of the run without", len(rest), len(restClean))
	}
	for i := range rest {
		if !bytes.Equal(rest[i].Raw, restClean[i].Raw) {
			t.Fatalf("line %d changed:\n%s\n%s", i, rest[i].Raw, restClean[i].Raw)
		}
	}
	from := cfg.Start.Add(time.Hour).UnixMilli()
	// The long changes only add calls to their agents.
	for id := range long {
		have := map[string]bool{}
		for _, l := range byAgent[id] {
			have[string(l.Raw)] = true
		}
		for _, l := range byAgentClean[id] {
			if !have[string(l.Raw)] {
				t.Fatalf("%s: line of the run without is gone: %s", id, l.Raw)
			}
		}
	}
	count := func(ls []Line, lo, hi int64) (n int, b uint64) {
		for _, l := range ls {
			if at := l.Event.EventTimeMs; at >= lo && at < hi {
				n++
				b += l.Event.ResponseBytes
			}
		}
		return n, b
	}
	end := cfg.Start.Add(cfg.Duration).UnixMilli()
	// A rollout doubles the agent's calls.
	n2, _ := count(byAgent["fin-agent-001"], from, end)
	n1, _ := count(byAgentClean["fin-agent-001"], from, end)
	if r := float64(n2) / float64(n1); r < 1.7 || r > 2.3 {
		t.Errorf("traffic rollout: %d calls against %d without, ratio %.2f; want about 2", n2, n1, r)
	}
	if n, _ := count(byAgent["fin-agent-001"], cfg.Start.UnixMilli(), from); n != len(byAgentClean["fin-agent-001"])-n1 {
		t.Errorf("traffic rollout: calls changed before its start")
	}
	// A batch job adds a burst an hour, 5 minutes long, from its start.
	bursts := map[int64]int{}
	jobStart := cfg.Start.Add(70 * time.Minute).UnixMilli()
	for _, l := range byAgent["itops-agent-001"] {
		if slices.ContainsFunc(byAgentClean["itops-agent-001"], func(c Line) bool { return bytes.Equal(c.Raw, l.Raw) }) {
			continue
		}
		off := l.Event.EventTimeMs - jobStart
		if off < 0 || off%time.Hour.Milliseconds() >= BatchBurst.Milliseconds() {
			t.Fatalf("batch job call at %s, outside its bursts", time.UnixMilli(l.Event.EventTimeMs).UTC())
		}
		bursts[off/time.Hour.Milliseconds()]++
	}
	if len(bursts) != 9 {
		t.Errorf("batch job bursts %v; want 9, one an hour", bursts)
	}
	for k, n := range bursts {
		if n < 5 {
			t.Errorf("burst %d has %d calls; want a burst (%g a minute at least)", k, n, batchMin)
		}
	}
	// A low-and-slow incident: calls and bytes at its multipliers of the
	// agent's own, on its own routes.
	incs := s.Incidents()
	a, _ := s.Registry().Lookup("cs-agent-001")
	lo, hi := incs[0].Start.UnixMilli(), incs[0].End.UnixMilli()
	var own []Line
	for _, l := range clean {
		if l.Event.AgentID == a.ID {
			own = append(own, l)
		}
	}
	ni, bi := count(byAgent["incident "+a.ID], lo, hi)
	no, bo := count(own, lo, hi)
	if r := float64(ni) / float64(no); r < 1.7 || r > 2.3 {
		t.Errorf("low-and-slow 3x: %d extra calls over %d own, ratio %.2f; want about 2", ni, no, r)
	}
	if r := float64(bi) / float64(bo); r < 2 || r > 4.5 {
		t.Errorf("low-and-slow 4x bytes: %d extra bytes over %d own, ratio %.2f; want about 3", bi, bo, r)
	}
	focused := 0
	for _, inc := range incs {
		if inc.Kind != LowAndSlow || inc.Multiplier == 0 || inc.BytesMultiplier == 0 {
			t.Fatalf("incident %+v", inc)
		}
		ag, _ := s.Registry().Lookup(inc.Agent)
		if inc.Route != "" {
			focused++
			if !slices.Contains(ag.ApprovedRoutes, inc.Route) || !strings.Contains(inc.Route, "/") {
				t.Errorf("%s focuses on %s, not approved for %s", inc.ID, inc.Route, ag.ID)
			}
		}
		for _, l := range byAgent["incident "+inc.Agent] {
			if l.Incident != inc.ID {
				continue
			}
			if !slices.Contains(ag.ApprovedRoutes, l.Event.Route) || (inc.Route != "" && l.Event.Route != inc.Route) {
				t.Fatalf("%s calls %s", inc.ID, l.Event.Route)
			}
			if l.Event.SourceIP != ag.SourceIP || l.Event.EventTimeMs < inc.Start.UnixMilli() || l.Event.EventTimeMs >= inc.End.UnixMilli() {
				t.Fatalf("%s: call from %s at %d", inc.ID, l.Event.SourceIP, l.Event.EventTimeMs)
			}
		}
	}
	if focused == 0 {
		t.Error("no focused low-and-slow incident found a sensitive route")
	}
	bs := s.BenignEvents()
	if len(bs) != 2 || bs[0].Kind != TrafficRollout || bs[0].Factor != 2 || !slices.Equal(bs[0].Agents, []string{"fin-agent-001"}) ||
		bs[1].Every != time.Hour || bs[1].Rate != BatchRate || !bs[1].End.Equal(cfg.Start.Add(cfg.Duration)) {
		t.Errorf("benign labels %+v", bs)
	}
}

// A seasonal multiplier: low-and-slow at night is a multiple of the
// night's trickle, not of the day's rate.
func TestLowAndSlowFollowsTheProfile(t *testing.T) {
	cfg := Config{Seed: 4, Agents: 10, Start: tuesday, Duration: 24 * time.Hour, Incidents: []IncidentSpec{
		{Kind: LowAndSlow, Agent: "cs-agent-001", Offset: 0, Duration: 24 * time.Hour, Multiplier: 4},
	}}
	night, day := 0, 0
	for l := range mustNew(t, cfg).All() {
		if l.Incident == "" {
			continue
		}
		switch h := time.UnixMilli(l.Event.EventTimeMs).UTC().Hour(); {
		case h < 6:
			night++
		case h >= 10 && h < 16:
			day++
		}
	}
	if day < 20*max(night, 1) {
		t.Errorf("extra calls: %d from 10:00 to 16:00, %d from 00:00 to 06:00; want the business curve", day, night)
	}
	// On a holiday the agent's day is its weekend's, and so is the excess.
	cfg.Benign = []BenignSpec{{Kind: Holiday, Duration: 24 * time.Hour}}
	holiday := 0
	for l := range mustNew(t, cfg).All() {
		if l.Incident != "" {
			if h := time.UnixMilli(l.Event.EventTimeMs).UTC().Hour(); h >= 10 && h < 16 {
				holiday++
			}
		}
	}
	if holiday*5 > day {
		t.Errorf("extra calls from 10:00 to 16:00: %d on a holiday, %d on a weekday; want the weekend's tenth", holiday, day)
	}
}

func TestLongErrors(t *testing.T) {
	base := Config{Seed: 1, Agents: 10, Start: tuesday, Duration: 2 * time.Hour, Incidents: []IncidentSpec{}}
	for _, c := range []struct {
		what string
		inc  []IncidentSpec
		ben  []BenignSpec
		want string
	}{
		{"multiplier 1", []IncidentSpec{{Kind: LowAndSlow, Duration: time.Hour, Multiplier: 1}}, nil, "multiplier > 1"},
		{"bytes below 1", []IncidentSpec{{Kind: LowAndSlow, Duration: time.Hour, BytesMultiplier: 0.5}}, nil, "bytes_multiplier >= 1"},
		{"job of nobody", nil, []BenignSpec{{Kind: NewBatchJob}}, "needs the agent"},
		{"unknown agent", nil, []BenignSpec{{Kind: TrafficRollout, Agent: "ghost"}}, `agent "ghost" is not in the registry`},
		{"agent of a holiday", nil, []BenignSpec{{Kind: Holiday, Agent: "cs-agent-001", Duration: time.Hour}}, "benign[0].agent"},
		{"factor 1", nil, []BenignSpec{{Kind: TrafficRollout, Agent: "cs-agent-001", Factor: 1}}, "benign[0].factor"},
		{"negative rate", nil, []BenignSpec{{Kind: NewBatchJob, Agent: "cs-agent-001", Rate: -1}}, "benign[0].rate"},
		{"every minute", nil, []BenignSpec{{Kind: NewBatchJob, Agent: "cs-agent-001", Every: time.Minute}}, "benign[0].every"},
	} {
		cfg := base
		if c.inc != nil {
			cfg.Incidents = c.inc
		}
		cfg.Benign = c.ben
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: New = %v; want an error with %q", c.what, err, c.want)
		}
	}
	// A role-wide batch job concerns every registered agent of the role.
	cfg := base
	cfg.Benign = []BenignSpec{{Kind: NewBatchJob, Role: RoleHR}}
	if b := mustNew(t, cfg).BenignEvents(); len(b) != 1 || !slices.Equal(b[0].Agents, []string{"hr-agent-001", "hr-agent-002"}) {
		t.Errorf("role-wide job: %+v", b)
	}
}

// Two of each speed and length fit the evaluation's 7 test days and 200
// agents, each on an agent of its own; none is lost.
func TestLongPlanRepeat(t *testing.T) {
	p := DefaultLongPlan()
	p.Repeat = 2
	for seed := uint64(1); seed <= 3; seed++ {
		sc := EvalScenarioPlan(seed, monday, 200, 14, 7, p)
		agents := map[string]bool{}
		n := 0
		for _, sp := range sc.Incidents {
			agents[sp.Agent] = true
			if sp.Kind == LowAndSlow {
				n++
			}
		}
		if n != 18 || len(agents) != len(sc.Incidents) {
			t.Errorf("seed %d: %d low-and-slow incidents, %d incidents on %d agents; want 18, on distinct agents", seed, n, len(sc.Incidents), len(agents))
		}
		s := mustNew(t, sc.Config)
		for _, inc := range s.Incidents() {
			if inc.Kind == LowAndSlow {
				checkLowAndSlow(t, s, sc, inc, "repeat 2")
			}
		}
	}
	if sc := EvalScenarioPlan(1, monday, 200, 14, 7, LongPlan{}); slices.ContainsFunc(sc.Incidents, func(sp IncidentSpec) bool { return sp.Kind == LowAndSlow }) || len(sc.Benign) != 5 {
		t.Errorf("an empty plan adds %+v", sc)
	}
}
