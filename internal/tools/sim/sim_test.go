package sim

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// tuesday 00:00 UTC, so a one-day run is a full weekday.
var tuesday = time.Date(2025, 3, 4, 0, 0, 0, 0, time.UTC)

func mustNew(t testing.TB, cfg Config) *Simulator {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return s
}

func all(s *Simulator) []Line {
	var out []Line
	for {
		l, ok := s.Next()
		if !ok {
			return out
		}
		out = append(out, l)
	}
}

func TestDeterminism(t *testing.T) {
	cfg := Config{Seed: 42, Start: tuesday.Add(8 * time.Hour), Duration: 2 * time.Hour, GarbageRate: 0.02}
	a, b := all(mustNew(t, cfg)), all(mustNew(t, cfg))
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("same seed gave %d and %d lines", len(a), len(b))
	}
	for i := range a {
		if !reflect.DeepEqual(a[i], b[i]) {
			t.Fatalf("line %d differs with the same seed:\n%q\n%q", i, a[i].Raw, b[i].Raw)
		}
	}
	cfg.Seed = 43
	c := all(mustNew(t, cfg))
	if len(c) == len(a) && bytes.Equal(c[0].Raw, a[0].Raw) && bytes.Equal(c[len(c)/2].Raw, a[len(a)/2].Raw) {
		t.Fatal("seeds 42 and 43 gave the same lines")
	}
}

// Garbage has its own random stream, so turning it on must not change what
// the good traffic is.
func TestGarbageLeavesTrafficAlone(t *testing.T) {
	cfg := Config{Seed: 7, Start: tuesday.Add(10 * time.Hour), Duration: 30 * time.Minute}
	clean := all(mustNew(t, cfg))
	cfg.GarbageRate = 0.1
	dirty := all(mustNew(t, cfg))
	if len(clean) != len(dirty) {
		t.Fatalf("garbage changed the number of slots: %d vs %d", len(clean), len(dirty))
	}
	replaced := 0
	for i := range clean {
		if !dirty[i].Good {
			replaced++
			continue
		}
		if !reflect.DeepEqual(clean[i].Event, dirty[i].Event) {
			t.Fatalf("slot %d: event changed by garbage: %+v vs %+v", i, clean[i].Event, dirty[i].Event)
		}
	}
	if replaced == 0 {
		t.Fatal("GarbageRate 0.1 replaced nothing")
	}
}

func TestEventTimeOrderAndWindow(t *testing.T) {
	start := tuesday.Add(13*time.Hour + 30*time.Second)
	s := mustNew(t, Config{Seed: 3, Start: start, Duration: 90 * time.Minute})
	prev := int64(0)
	n := 0
	for {
		l, ok := s.Next()
		if !ok {
			break
		}
		n++
		ms := s.Clock().UnixMilli()
		if ms < prev {
			t.Fatalf("line %d at %d goes back from %d", n, ms, prev)
		}
		if ms < start.UnixMilli() || ms >= start.Add(90*time.Minute).UnixMilli() {
			t.Fatalf("line %d at %s outside the run", n, s.Clock())
		}
		if l.Event.EventTimeMs > ms || ms-l.Event.EventTimeMs >= 1000 {
			t.Fatalf("line %d: truth time %d does not match clock %d", n, l.Event.EventTimeMs, ms)
		}
		prev = ms
	}
	if n == 0 {
		t.Fatal("no lines")
	}
}

// TestSeasonality checks every role's curve on a full weekday and that
// business roles go quiet at the weekend.
func TestSeasonality(t *testing.T) {
	count := func(start time.Time) (byRoleHour map[Role]*[24]int, total int) {
		s := mustNew(t, Config{Seed: 11, Start: start, Duration: 24 * time.Hour, Incidents: []IncidentSpec{}})
		roles := map[string]Role{}
		for _, a := range s.Registry().Agents {
			roles[a.ID] = a.Role
		}
		byRoleHour = map[Role]*[24]int{}
		for _, r := range Roles {
			byRoleHour[r] = new([24]int)
		}
		for {
			l, ok := s.Next()
			if !ok {
				return byRoleHour, total
			}
			total++
			byRoleHour[roles[l.Event.AgentID]][time.UnixMilli(l.Event.EventTimeMs).UTC().Hour()]++
		}
	}
	sum := func(h *[24]int, from, to int) int {
		n := 0
		for i := from; i < to; i++ {
			n += h[i]
		}
		return n
	}
	weekday, total := count(tuesday)
	if perHour := total / 24; perHour < 1500 || perHour > 8000 {
		t.Errorf("60 agents made %d events per hour; want a few thousand", perHour)
	}
	t.Logf("weekday: %d events, %d per hour", total, total/24)
	for _, r := range []Role{RoleCustomerService, RoleFinance, RoleHR} {
		day, night := sum(weekday[r], 9, 17), sum(weekday[r], 0, 6)+sum(weekday[r], 22, 24)
		t.Logf("%s: 09-17 %d, 22-06 %d", r, day, night)
		if day < 10*night {
			t.Errorf("%s: business hours %d not well above night %d", r, day, night)
		}
	}
	batchNight, batchDay := sum(weekday[RoleBatchReporting], 1, 5), sum(weekday[RoleBatchReporting], 9, 17)
	if batchNight < 10*batchDay {
		t.Errorf("batch_reporting: night 01-05 %d not well above day 09-17 %d", batchNight, batchDay)
	}
	opsDay, opsNight := sum(weekday[RoleITOps], 9, 17), sum(weekday[RoleITOps], 0, 6)*8/6
	if ratio := float64(opsDay) / float64(opsNight); ratio < 1.1 || ratio > 2.5 {
		t.Errorf("it_ops: day/night ratio %.2f; want flat-ish (1.1-2.5)", ratio)
	}

	saturday, _ := count(tuesday.AddDate(0, 0, 4))
	if wd, we := sum(weekday[RoleFinance], 0, 24), sum(saturday[RoleFinance], 0, 24); we*4 > wd {
		t.Errorf("finance: Saturday %d not well below Tuesday %d", we, wd)
	}
	if wd, we := sum(weekday[RoleBatchReporting], 0, 24), sum(saturday[RoleBatchReporting], 0, 24); math.Abs(float64(we-wd)) > 0.25*float64(wd) {
		t.Errorf("batch_reporting: Saturday %d differs too much from Tuesday %d; batch runs daily", we, wd)
	}
}

func TestIncidents(t *testing.T) {
	start := tuesday.Add(12 * time.Hour)
	s := mustNew(t, Config{Seed: 5, Start: start, Duration: 24 * time.Hour})
	incs := s.Incidents()
	inventory := map[string]RouteSpec{}
	for _, r := range s.Routes() {
		inventory[r.Template] = r
	}
	byID := map[string]Incident{}
	kinds := map[IncidentKind]bool{}
	agents := map[string]bool{}
	for _, inc := range incs {
		byID[inc.ID] = inc
		kinds[inc.Kind] = true
		if agents[inc.Agent] {
			t.Errorf("agent %s has two incidents; defaults should use distinct agents", inc.Agent)
		}
		agents[inc.Agent] = true
		_, registered := s.Registry().Lookup(inc.Agent)
		if registered == (inc.Kind == UnregisteredAgent) {
			t.Errorf("%s: agent %s registered=%v", inc.ID, inc.Agent, registered)
		}
		if inc.Start.Before(start.Add(8*time.Hour)) || inc.End.After(start.Add(24*time.Hour)) {
			t.Errorf("%s: %s..%s not in the later part of the run", inc.ID, inc.Start, inc.End)
		}
	}
	for _, k := range IncidentKinds {
		if !kinds[k] {
			t.Errorf("default set lacks %s", k)
		}
	}

	lines := map[string][]Line{}
	for _, l := range all(s) {
		if l.Incident == "" {
			continue
		}
		inc, ok := byID[l.Incident]
		if !ok {
			t.Fatalf("line labeled with unknown incident %q", l.Incident)
		}
		ev := l.Event
		if !l.Good || ev.AgentID != inc.Agent {
			t.Fatalf("%s: line good=%v by %q, want a good line by %s", inc.ID, l.Good, ev.AgentID, inc.Agent)
		}
		if ts := time.UnixMilli(ev.EventTimeMs); ts.Before(inc.Start.Add(-time.Second)) || !ts.Before(inc.End) {
			t.Fatalf("%s: line at %s outside %s..%s", inc.ID, ts, inc.Start, inc.End)
		}
		lines[inc.ID] = append(lines[inc.ID], l)
	}
	for _, inc := range incs {
		ls := lines[inc.ID]
		if len(ls) < 5 {
			t.Errorf("%s: only %d lines", inc.ID, len(ls))
			continue
		}
		frac := func(f func(Line) bool) float64 {
			n := 0
			for _, l := range ls {
				if f(l) {
					n++
				}
			}
			return float64(n) / float64(len(ls))
		}
		switch inc.Kind {
		case Exfiltration:
			if f := frac(func(l Line) bool { return inventory[l.Event.Route].Sensitive && l.Event.ResponseBytes > 5<<20 }); f < 0.95 {
				t.Errorf("%s: %.2f of calls are huge reads of a sensitive route", inc.ID, f)
			}
		case EndpointSprawl:
			if f := frac(func(l Line) bool { _, known := inventory[l.Event.Route]; return !known }); f != 1 {
				t.Errorf("%s: %.2f of probes hit unknown routes; want all", inc.ID, f)
			}
			if f := frac(func(l Line) bool { return l.Event.Status == 404 }); f < 0.6 {
				t.Errorf("%s: %.2f of probes were 404", inc.ID, f)
			}
		case OffHours:
			if h := inc.Start.Hour(); h != 3 {
				t.Errorf("%s starts at %s; want 03:00", inc.ID, inc.Start)
			}
			a, _ := s.Registry().Lookup(inc.Agent)
			if a.Role == RoleITOps || a.Role == RoleBatchReporting {
				t.Errorf("%s: agent %s is %s, not a business-hours role", inc.ID, a.ID, a.Role)
			}
		case AuthStorm:
			if f := frac(func(l Line) bool { return l.Event.Status == 401 || l.Event.Status == 403 }); f != 1 {
				t.Errorf("%s: %.2f of calls were 401/403", inc.ID, f)
			}
		case ZombieAPI:
			if f := frac(func(l Line) bool { return inventory[l.Event.Route].Deprecated }); f != 1 {
				t.Errorf("%s: %.2f of calls hit deprecated routes", inc.ID, f)
			}
		}
	}
}

func TestCustomIncident(t *testing.T) {
	s := mustNew(t, Config{Seed: 1, Agents: 10, Start: tuesday, Duration: time.Hour, Incidents: []IncidentSpec{
		{Kind: AuthStorm, Agent: "fin-agent-001", Offset: 10 * time.Minute, Duration: 5 * time.Minute, Rate: 100},
		{Kind: UnregisteredAgent, Agent: "ghost-1", Offset: 0, Duration: time.Hour},
	}})
	got := s.Incidents()
	if len(got) != 2 || got[0].Kind != UnregisteredAgent || got[0].Agent != "ghost-1" ||
		got[1].Agent != "fin-agent-001" || !got[1].Start.Equal(tuesday.Add(10*time.Minute)) {
		t.Fatalf("Incidents() = %+v", got)
	}
	storm := 0
	for _, l := range all(s) {
		if l.Incident == got[1].ID {
			storm++
		}
	}
	if storm < 400 || storm > 600 {
		t.Errorf("rate 100/min for 5 min gave %d calls", storm)
	}
	if _, err := New(Config{Seed: 1, Start: tuesday, Duration: time.Hour, Incidents: []IncidentSpec{{Kind: Exfiltration, Agent: "nobody", Duration: time.Minute}}}); err == nil {
		t.Error("an incident of an unknown agent was accepted")
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := New(Config{Agents: -1, Formats: []string{"apache"}, GarbageRate: 2, GarbageKinds: []GarbageKind{"nope"}})
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"agents:", "duration:", "start:", "formats:", "garbage_rate:", "garbage_kinds:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestFormatsAndIdentity(t *testing.T) {
	s := mustNew(t, Config{Seed: 9, Start: tuesday.Add(10 * time.Hour), Duration: time.Hour})
	agents := map[string]*agent{}
	for _, a := range s.agents {
		agents[a.ID] = a
	}
	formats := map[string]int{}
	carriers := map[string]bool{}
	for _, l := range all(s) {
		formats[l.Format]++
		ev := l.Event
		carriers[l.Format+"/"+ev.IdentitySource] = true
		if a, ok := agents[ev.AgentID]; ok && a.registered {
			if ev.Format != a.Format || ev.CredentialID != a.eventCred || ev.SourceIP != a.SourceIP || ev.UserAgent != a.UserAgent {
				t.Fatalf("event %+v does not match its agent %+v", ev, a)
			}
			if l.Incident == "" && !slices.Contains(a.ApprovedRoutes, ev.Route) {
				t.Fatalf("normal call of %s to unapproved route %s", a.ID, ev.Route)
			}
		}
		if !utf8.Valid(l.Raw) || len(l.Raw) > MaxLineBytes || bytes.IndexByte(l.Raw, '\n') >= 0 {
			t.Fatalf("good line is not one valid UTF-8 line under 1 MiB: %q", l.Raw)
		}
		if l.Format != "nginx_combined" && !json.Valid(l.Raw) {
			t.Fatalf("%s line is not JSON: %s", l.Format, l.Raw)
		}
	}
	for _, f := range KnownFormats {
		if formats[f] < 50 {
			t.Errorf("format %s: %d lines", f, formats[f])
		}
	}
	for f, cs := range formatCarriers {
		for _, c := range cs {
			if !carriers[f+"/"+string(c)] {
				t.Errorf("no %s line carries identity by %s", f, c)
			}
		}
	}
}

func TestGarbage(t *testing.T) {
	const rate = 0.05
	s := mustNew(t, Config{Seed: 13, Start: tuesday.Add(9 * time.Hour), Duration: 3 * time.Hour, GarbageRate: rate})
	lines := all(s)
	kinds := map[GarbageKind]int{}
	bad := 0
	for _, l := range lines {
		if l.Good {
			continue
		}
		bad++
		kinds[l.Garbage]++
		if l.Reason != garbageReason[l.Garbage] || l.Reason == "" {
			t.Fatalf("%s line has reason %q", l.Garbage, l.Reason)
		}
		if l.Event.EventTimeMs != 0 || l.Incident != "" {
			t.Fatalf("bad line carries truth: %+v", l)
		}
		checkGarbage(t, l)
	}
	got := float64(bad) / float64(len(lines))
	if math.Abs(got-rate) > 0.15*rate {
		t.Errorf("garbage fraction %.4f of %d lines; want about %.2f", got, len(lines), rate)
	}
	per := bad / len(GarbageKinds)
	for _, k := range GarbageKinds {
		if kinds[k] < per || kinds[k] > per+1 {
			t.Errorf("%s: %d bad lines; want %d or %d (kinds cycle)", k, kinds[k], per, per+1)
		}
	}
}

// checkGarbage asserts the one defect a bad line is supposed to have.
func checkGarbage(t *testing.T, l Line) {
	t.Helper()
	raw := l.Raw
	tooLarge := len(raw) > MaxLineBytes
	if tooLarge != (l.Garbage == GarbageTooLarge) {
		t.Fatalf("%s line of %d bytes", l.Garbage, len(raw))
	}
	if utf8.Valid(raw) == (l.Garbage == GarbageInvalidUTF8) {
		t.Fatalf("%s line: utf8.Valid = %v", l.Garbage, utf8.Valid(raw))
	}
	switch l.Garbage {
	case GarbageNotJSON:
		if json.Valid(raw) || raw[0] != '{' {
			t.Fatalf("not_json line is valid JSON or not JSON-looking: %s", raw)
		}
	case GarbageUnknownFormat, GarbageNoTimestamp:
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s line is not a JSON object: %v", l.Garbage, err)
		}
		if l.Garbage == GarbageNoTimestamp {
			// Every time key of pkg/gateway's default layouts.
			for _, k := range []string{"start_time", "started_at", "msec", "time_iso8601", "requestTimeEpoch", "requestTime", "event_time_ms"} {
				if _, ok := m[k]; ok {
					t.Fatalf("no_timestamp line keeps %q: %s", k, raw)
				}
			}
			if len(m) < 5 {
				t.Fatalf("no_timestamp line lost more than its time: %s", raw)
			}
		}
	case GarbageTooDeep:
		depth, maxDepth := 0, 0
		for _, c := range raw {
			switch c {
			case '{', '[':
				depth++
				maxDepth = max(maxDepth, depth)
			case '}', ']':
				depth--
			}
		}
		if maxDepth <= 32 || !json.Valid(raw) {
			t.Fatalf("too_deep line nests %d deep (valid=%v)", maxDepth, json.Valid(raw))
		}
	case GarbageHostileAgentID:
		found := false
		for _, h := range hostileIDs {
			enc, _ := json.Marshal(h)
			found = found || bytes.Contains(raw, []byte(h)) || bytes.Contains(raw, enc[1:len(enc)-1]) || bytes.Contains(raw, nginxEscaped(nil, h))
		}
		if !found && !bytes.Contains(raw, []byte("eyJ")) { // a JWT hides the id in base64
			t.Fatalf("hostile line carries no hostile id: %q", raw)
		}
	}
}

func TestOutOfWindowTimestamps(t *testing.T) {
	s := mustNew(t, Config{Seed: 2, Start: tuesday.Add(9 * time.Hour), Duration: time.Hour, GarbageRate: 0.2,
		GarbageKinds: []GarbageKind{GarbageTooOld, GarbageFuture}, Formats: []string{"kong"}})
	n := 0
	for {
		l, ok := s.Next()
		if !ok {
			break
		}
		if l.Good {
			continue
		}
		var v struct {
			StartedAt int64 `json:"started_at"`
		}
		if err := json.Unmarshal(l.Raw, &v); err != nil {
			t.Fatal(err)
		}
		skew := time.UnixMilli(v.StartedAt).Sub(s.Clock())
		switch l.Garbage {
		case GarbageTooOld:
			if skew > -7*24*time.Hour-time.Hour {
				t.Fatalf("too-old line only %s old", -skew)
			}
		case GarbageFuture:
			if skew < 10*time.Minute+time.Minute {
				t.Fatalf("future line only %s ahead", skew)
			}
		}
		n++
	}
	if n < 50 {
		t.Fatalf("only %d out-of-window lines", n)
	}
}

func TestBoundedMemory(t *testing.T) {
	s := mustNew(t, Config{Seed: 1, Agents: 20, Start: tuesday, Duration: 14 * 24 * time.Hour, RateScale: 0.2, Incidents: []IncidentSpec{}})
	n := 0
	for {
		if _, ok := s.Next(); !ok {
			break
		}
		n++
	}
	if n < 10000 || cap(s.buf) > 2000 {
		t.Fatalf("two weeks gave %d lines with a buffer of %d", n, cap(s.buf))
	}
}

func BenchmarkNext(b *testing.B) {
	s := mustNew(b, Config{Seed: 1, Agents: 2000, Start: tuesday.Add(10 * time.Hour), Duration: 365 * 24 * time.Hour})
	var bytes int64
	b.ReportAllocs()
	for b.Loop() {
		l, ok := s.Next()
		if !ok {
			b.Fatal("ran out of lines")
		}
		bytes += int64(len(l.Raw))
	}
	b.SetBytes(bytes / int64(b.N))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

func TestDefaultOffHoursWithoutANight(t *testing.T) {
	// 10:00 to 22:00: no 03:00, so the incident goes to the evening.
	for _, sp := range DefaultIncidents(tuesday.Add(10*time.Hour), 12*time.Hour) {
		if sp.Kind != OffHours {
			continue
		}
		at := tuesday.Add(10*time.Hour + sp.Offset)
		if h := at.Hour(); h < 19 {
			t.Errorf("off_hours placed at %s, inside business hours", at)
		}
		return
	}
	t.Fatal("no off_hours incident in the default set")
}

// TestDefaultIncidentsNeverBeforeStart: whatever the time of day the run
// starts at, every default incident starts inside it. A start shortly
// after 03:00 used to put the off-hours incident before the start.
func TestDefaultIncidentsNeverBeforeStart(t *testing.T) {
	base := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	for m := 0; m < 24*60; m += 7 {
		start := base.Add(time.Duration(m) * time.Minute).Add(13 * time.Second)
		for _, d := range []time.Duration{10 * time.Minute, time.Hour, 3 * time.Hour, 24 * time.Hour} {
			for _, sp := range DefaultIncidents(start, d) {
				if sp.Offset < 0 || sp.Offset+sp.Duration > d {
					t.Fatalf("start %s, duration %s: %s at offset %s for %s is outside the run", start.Format(time.TimeOnly), d, sp.Kind, sp.Offset, sp.Duration)
				}
			}
		}
	}
}
