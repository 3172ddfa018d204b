package sim

import (
	"bytes"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/gateway"
)

// parsedLine is a generated line and what pkg/gateway made of it.
type parsedLine struct {
	Line
	Parsed event.Event
}

// parseRun generates every line of s and parses each good one with
// pkg/gateway's default parser at the simulated clock, failing unless the
// parse gives the line's truth.
func parseRun(t *testing.T, s *Simulator) []parsedLine {
	t.Helper()
	p, err := gateway.NewParser(gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out []parsedLine
	for i := 0; ; i++ {
		l, ok := s.Next()
		if !ok {
			return out
		}
		if !l.Good {
			continue
		}
		got, err := p.Parse(l.Raw, gateway.Source{Topic: "raw", Offset: int64(i)}, s.Clock())
		if err != nil {
			t.Fatalf("good %s line rejected: %v\n  %s", l.Format, err, l.Raw)
		}
		got.EventID, got.IngestTimeMs, got.Topic, got.Partition, got.Offset = "", 0, "", 0, 0
		want := l.Event
		if len(got.QueryParams) == 0 && len(want.QueryParams) == 0 {
			got.QueryParams, want.QueryParams = nil, nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s line parses to something else than its truth: %s\n  line %.400s", l.Format, diff(want, got), l.Raw)
		}
		out = append(out, parsedLine{l, got})
	}
}

// TestAddedIncidentKinds checks that each kind not in IncidentKinds makes
// lines of the promised shape, as pkg/gateway reads them back.
func TestAddedIncidentKinds(t *testing.T) {
	start := tuesday.Add(9 * time.Hour)
	inventory := map[string]RouteSpec{}
	for _, r := range Inventory() {
		inventory[r.Template] = r
	}
	cases := []struct {
		kind     IncidentKind
		seed     uint64
		duration time.Duration
		min, max int // incident lines
		check    func(t *testing.T, s *Simulator, inc Incident, a Agent, lines []parsedLine)
	}{
		{SlowExfiltration, 1, 4 * time.Hour, 180, 300, func(t *testing.T, s *Simulator, inc Incident, a Agent, lines []parsedLine) {
			if !inventory[inc.Route].Sensitive || !roleUses(a.Role, inc.Route) {
				t.Errorf("route %s: want a sensitive route of the agent's role %s", inc.Route, a.Role)
			}
			var sizes []uint64
			for _, l := range lines {
				ev := l.Parsed
				if ev.Route != inc.Route || ev.Status != 200 {
					t.Fatalf("call %s %d; want 200s of %s", ev.Route, ev.Status, inc.Route)
				}
				if ev.ResponseBytes < 512<<10 || ev.ResponseBytes > 32<<20 {
					t.Fatalf("response of %d bytes; want a few MB", ev.ResponseBytes)
				}
				sizes = append(sizes, ev.ResponseBytes)
			}
			slices.Sort(sizes)
			if med := sizes[len(sizes)/2]; med < 2<<20 || med > 5<<20 {
				t.Errorf("median response %d bytes; want about 3 MB", med)
			}
			// Low and slow: no minute stands out.
			perMin := map[int64]int{}
			for _, l := range lines {
				perMin[l.Parsed.EventTimeMs/60_000]++
			}
			for m, n := range perMin {
				if n > 8 {
					t.Errorf("%d calls in minute %d; want about 1 a minute", n, m)
				}
			}
		}},
		{OutOfRoleSensitive, 2, 20 * time.Minute, 50, 120, func(t *testing.T, s *Simulator, inc Incident, a Agent, lines []parsedLine) {
			r := inventory[inc.Route]
			if !r.Sensitive || slices.Contains(r.Roles, a.Role) || slices.Contains(a.ApprovedRoutes, inc.Route) {
				t.Errorf("route %+v: want a sensitive route of another role than %s, not approved for %s", r, a.Role, a.ID)
			}
			for _, l := range lines {
				if ev := l.Parsed; ev.Route != inc.Route || ev.ResponseBytes > 2<<20 {
					t.Fatalf("call of %s with %d bytes; want normal-size calls of %s", ev.Route, ev.ResponseBytes, inc.Route)
				}
			}
			// The agent never calls it otherwise.
			for _, l := range parseRun(t, mustNew(t, s.cfg)) {
				if l.Incident == "" && l.Parsed.AgentID == a.ID && l.Parsed.Route == inc.Route {
					t.Fatalf("%s calls %s outside the incident", a.ID, inc.Route)
				}
			}
		}},
		{Enumeration, 3, 15 * time.Minute, 230, 380, checkEnumeration(false)}, // a random walk
		{Enumeration, 4, 15 * time.Minute, 230, 380, checkEnumeration(true)},  // a sequential one
		{NewSourceAddress, 5, 30 * time.Minute, 20, 400, func(t *testing.T, s *Simulator, inc Incident, a Agent, lines []parsedLine) {
			if !strings.HasPrefix(inc.SourceIP, "198.51.100.") || inc.SourceIP == a.SourceIP {
				t.Errorf("source %q; want a new address in 198.51.100.0/24", inc.SourceIP)
			}
			for _, l := range lines {
				if ev := l.Parsed; ev.SourceIP != inc.SourceIP || !slices.Contains(a.ApprovedRoutes, ev.Route) || ev.Status >= 500 {
					t.Fatalf("call %+v; want ordinary calls of approved routes from %s", ev, inc.SourceIP)
				}
			}
		}},
	}
	for _, c := range cases {
		t.Run(string(c.kind)+"/"+strconv.FormatUint(c.seed, 10), func(t *testing.T) {
			cfg := Config{Seed: c.seed, Agents: 30, Start: start, Duration: c.duration + time.Hour,
				Incidents: []IncidentSpec{{Kind: c.kind, Offset: 30 * time.Minute, Duration: c.duration}}}
			s := mustNew(t, cfg)
			incs := s.Incidents()
			if len(incs) != 1 {
				t.Fatalf("Incidents() = %+v", incs)
			}
			inc := incs[0]
			a, ok := s.Registry().Lookup(inc.Agent)
			if !ok || !slices.Contains(preferredRoles[c.kind], a.Role) {
				t.Fatalf("culprit %s (%s, registered %v) is not of a preferred role %v", inc.Agent, a.Role, ok, preferredRoles[c.kind])
			}
			var lines []parsedLine
			normal := 0
			for _, l := range parseRun(t, s) {
				ev := l.Parsed
				if l.Incident != inc.ID {
					if ev.AgentID == a.ID && ev.SourceIP != a.SourceIP {
						t.Fatalf("normal call of %s from %s", a.ID, ev.SourceIP)
					}
					if ev.AgentID == a.ID && ev.EventTimeMs >= inc.Start.UnixMilli() && ev.EventTimeMs < inc.End.UnixMilli() {
						normal++
					}
					continue
				}
				if ev.AgentID != a.ID || ev.CredentialID != l.Event.CredentialID || ev.EventTimeMs < inc.Start.UnixMilli()-1000 || ev.EventTimeMs >= inc.End.UnixMilli() {
					t.Fatalf("incident line %+v: want %s in %s..%s", ev, a.ID, inc.Start, inc.End)
				}
				lines = append(lines, l)
			}
			if len(lines) < c.min || len(lines) > c.max {
				t.Fatalf("%d incident lines; want %d to %d", len(lines), c.min, c.max)
			}
			if c.kind == NewSourceAddress && normal == 0 {
				t.Error("the agent made no normal calls beside the replayed ones")
			}
			c.check(t, s, inc, a, lines)
		})
	}
}

// checkEnumeration returns a check of an Enumeration incident that walks
// ids in sequence or at random.
func checkEnumeration(wantSequential bool) func(t *testing.T, s *Simulator, inc Incident, a Agent, lines []parsedLine) {
	return func(t *testing.T, s *Simulator, inc Incident, a Agent, lines []parsedLine) {
		enumerationShape(t, inc, a, lines, wantSequential)
	}
}

func enumerationShape(t *testing.T, inc Incident, a Agent, lines []parsedLine, wantSequential bool) {
	if !strings.Contains(inc.Route, "{id}") || !slices.Contains(a.ApprovedRoutes, inc.Route) {
		t.Errorf("route %s: want an {id} route the agent is approved for", inc.Route)
	}
	paths := map[string]bool{}
	perMin := map[int64]map[string]bool{}
	ok, missing := 0, 0
	var ids []int64
	for _, l := range lines {
		ev := l.Parsed
		if ev.Route != inc.Route || ev.Method != "GET" {
			t.Fatalf("call %s %s; want GETs of %s", ev.Method, ev.Route, inc.Route)
		}
		paths[ev.Path] = true
		m := ev.EventTimeMs / 60_000
		if perMin[m] == nil {
			perMin[m] = map[string]bool{}
		}
		perMin[m][ev.Path] = true
		switch ev.Status {
		case 200:
			ok++
		case 404:
			missing++
		default:
			t.Fatalf("status %d; want 200 or 404", ev.Status)
		}
		pre, _, _ := strings.Cut(inc.Route, "{id}")
		id, err := strconv.ParseInt(strings.SplitN(strings.TrimPrefix(ev.Path, pre), "/", 2)[0], 10, 64)
		if err != nil {
			t.Fatalf("path %s has no numeric id where %s has {id}", ev.Path, inc.Route)
		}
		ids = append(ids, id)
	}
	if len(paths) < len(lines)*9/10 {
		t.Errorf("%d distinct paths in %d calls; want nearly all distinct", len(paths), len(lines))
	}
	for m, ps := range perMin {
		if len(ps) < 8 && m != inc.End.UnixMilli()/60_000 {
			t.Errorf("minute %d: only %d distinct ids", m, len(ps))
		}
	}
	if ok < 2*missing || missing == 0 {
		t.Errorf("%d 200s and %d 404s; want mostly 200 with some 404", ok, missing)
	}
	sequential := slices.IsSorted(ids) && ids[len(ids)-1]-ids[0] == int64(len(ids)-1)
	if sequential != wantSequential {
		t.Errorf("ids %v...: sequential %v, want %v", ids[:5], sequential, wantSequential)
	}
	t.Logf("%s: %d calls, %d ids, sequential %v, %d 404s", inc.Route, len(lines), len(paths), sequential, missing)
}

// TestNewSourceAddressEveryFormat: the new address must survive every
// format's rendering, with the agent's identity intact.
func TestNewSourceAddressEveryFormat(t *testing.T) {
	for _, f := range KnownFormats {
		t.Run(f, func(t *testing.T) {
			s := mustNew(t, Config{Seed: 6, Agents: 10, Formats: []string{f}, Start: tuesday.Add(10 * time.Hour), Duration: 20 * time.Minute,
				Incidents: []IncidentSpec{{Kind: NewSourceAddress, Agent: "fin-agent-001", Offset: time.Minute, Duration: 15 * time.Minute}}})
			inc := s.Incidents()[0]
			n := 0
			for _, l := range parseRun(t, s) {
				if l.Incident == "" {
					continue
				}
				n++
				if l.Parsed.SourceIP != inc.SourceIP || l.Parsed.AgentID != "fin-agent-001" || !bytes.Contains(l.Raw, []byte(inc.SourceIP)) {
					t.Fatalf("line %s parsed to agent %q from %q; want fin-agent-001 from %s", l.Raw, l.Parsed.AgentID, l.Parsed.SourceIP, inc.SourceIP)
				}
			}
			if n < 10 {
				t.Fatalf("%d replayed calls", n)
			}
		})
	}
}

// TestAddedKindsLeaveTrafficAlone: the added kinds draw from their own
// stream, so every line they do not label is the line the run without
// them makes.
func TestAddedKindsLeaveTrafficAlone(t *testing.T) {
	cfg := Config{Seed: 8, Agents: 40, Start: tuesday.Add(9 * time.Hour), Duration: time.Hour, Incidents: []IncidentSpec{}}
	clean := all(mustNew(t, cfg))
	for _, k := range []IncidentKind{SlowExfiltration, OutOfRoleSensitive, Enumeration, NewSourceAddress} {
		cfg.Incidents = append(cfg.Incidents, IncidentSpec{Kind: k, Offset: 10 * time.Minute, Duration: 30 * time.Minute})
	}
	var rest []Line
	labeled := 0
	for _, l := range all(mustNew(t, cfg)) {
		if l.Incident != "" {
			labeled++
			continue
		}
		rest = append(rest, l)
	}
	if labeled == 0 || !reflect.DeepEqual(rest, clean) {
		t.Fatalf("with added incidents (%d lines): %d other lines, want the %d of the run without", labeled, len(rest), len(clean))
	}
}

func TestAddedKindErrors(t *testing.T) {
	bad := func(what string, cfg Config, want string) {
		t.Helper()
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: New = %v; want an error with %q", what, err, want)
		}
	}
	base := Config{Seed: 1, Agents: 10, Start: tuesday, Duration: 2 * time.Hour}
	c := base
	c.Incidents = []IncidentSpec{{Kind: "phishing", Duration: time.Minute}}
	bad("unknown kind", c, string(NewSourceAddress)) // the message lists every kind
	c = base
	c.History = time.Hour
	c.Incidents = []IncidentSpec{{Kind: Enumeration, Offset: 30 * time.Minute, Duration: time.Minute}}
	bad("incident in history", c, "history")
	c = base
	c.History = 3 * time.Hour
	c.Incidents = []IncidentSpec{}
	bad("history longer than the run", c, "history:")
}
