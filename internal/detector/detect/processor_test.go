package detect

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/baseline"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/features"
	"github.com/agentwatch/agentwatch/pkg/gateway"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

func simCatalog(t testing.TB, s *sim.Simulator) StaticCatalog {
	t.Helper()
	reg, inv, err := s.Catalog()
	if err != nil {
		t.Fatal(err)
	}
	return StaticCatalog{reg, inv}
}

// rec is one events-topic record: its partition, offset and event.
type rec struct {
	part int32
	off  int64
	ev   event.Event
}

const testPartitions = 4

// simRecords generates cfg's good lines as events-topic records, keyed to
// partitions like ingest does, with per-partition offsets.
func simRecords(t testing.TB, cfg sim.Config) ([]rec, *sim.Simulator) {
	t.Helper()
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Events go through the real parser, as ingest would make them: the
	// formats differ in what they log (request size with or without
	// headers, or none), and the detector must cope with all of them.
	parser, err := gateway.NewParser(gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var out []rec
	next := make([]int64, testPartitions)
	for {
		l, ok := s.Next()
		if !ok {
			break
		}
		if !l.Good {
			continue
		}
		ev, err := parser.Parse(l.Raw, gateway.Source{Topic: "raw", Offset: int64(len(out))}, time.UnixMilli(l.Event.EventTimeMs+1000))
		if err != nil {
			t.Fatalf("simulated good line does not parse: %v\n%s", err, l.Raw)
		}
		key := ev.AgentID
		if ev.Unattributed || key == "" {
			key = "unattributed/" + ev.SourceIP
		}
		p := kafka.PartitionFor(key, testPartitions)
		out = append(out, rec{p, next[p], ev})
		next[p]++
	}
	return out, s
}

func testSettings() Settings {
	set := Settings{
		Features:           features.Config{WindowMs: 60_000, LatenessMs: 30_000},
		NewAgentsPerWindow: 50, RuleRepeatMs: time.Hour.Milliseconds(), NoveltyMatureMs: 2 * time.Hour.Milliseconds(),
		GlobalMinAgents: 5, GlobalShare: 0.1, GlobalGapMs: time.Hour.Milliseconds(), NewIPMaxKnown: 4,
		FleetGauge: true,
	}
	set.Baseline = baseline.DefaultParams()
	return set
}

func run(p *Processor, rs []rec) ([]anomaly.Anomaly, []anomaly.Score) {
	var as []anomaly.Anomaly
	var ss []anomaly.Score
	for i := range rs {
		p.Add(rs[i].part, rs[i].off, &rs[i].ev)
		if i%1000 == 0 {
			a, s := p.Take()
			as, ss = append(as, a...), append(ss, s...)
		}
	}
	p.FlushAll()
	a, s := p.Take()
	return append(as, a...), append(ss, s...)
}

func norm(as []anomaly.Anomaly, ss []anomaly.Score) ([]anomaly.Anomaly, []anomaly.Score) {
	as = slices.Clone(as)
	for i := range as {
		as[i].DetectedMs = 0
	}
	slices.SortFunc(as, func(x, y anomaly.Anomaly) int { return cmp.Compare(x.ID, y.ID) })
	ss = slices.Clone(ss)
	slices.SortFunc(ss, func(x, y anomaly.Score) int {
		return cmp.Or(cmp.Compare(x.AgentID, y.AgentID), cmp.Compare(x.WindowStartMs, y.WindowStartMs))
	})
	return as, ss
}

func twoDays(seed uint64) sim.Config {
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	return sim.Config{Seed: seed, Agents: 24, Start: start, Duration: 48 * time.Hour}
}

// TestRestoreAndReplayEqualsLive: a detector that saves its state midway,
// crashes a while later and is replaced by one that restores the state and
// re-reads from the checkpoint produces exactly what one uninterrupted
// detector produces, with no anomaly written twice.
func TestRestoreAndReplayEqualsLive(t *testing.T) {
	rs, s := simRecords(t, twoDays(1))
	cat := simCatalog(t, s)
	wantA, wantS := norm(run(NewProcessor(testSettings(), cat, nil), rs))
	if len(wantA) == 0 {
		t.Fatal("the simulated incidents raised no anomaly at all")
	}
	kinds := map[string]int{}
	for _, a := range wantA {
		kinds[a.Kind]++
	}
	t.Logf("%d anomalies by kind: %v", len(wantA), kinds)

	first := NewProcessor(testSettings(), cat, nil)
	cut, crash := len(rs)*6/10, len(rs)*7/10
	var gotA []anomaly.Anomaly
	var gotS []anomaly.Score
	for i := range rs[:cut] {
		first.Add(rs[i].part, rs[i].off, &rs[i].ev)
	}
	cps := map[int32]detstate.Checkpoint{}
	var saved []detstate.State
	for _, p := range first.Partitions() {
		cp, st := first.Snapshot(p, "g", "events", 1)
		cps[p] = cp
		saved = append(saved, st...)
	}
	for i := range rs[cut:crash] {
		r := &rs[cut+i]
		first.Add(r.part, r.off, &r.ev)
	}
	a, sc := first.Take()
	gotA, gotS = append(gotA, a...), append(gotS, sc...)
	written := map[string]anomaly.Anomaly{}
	for _, x := range gotA {
		x.DetectedMs = 0
		written[x.ID] = x
	}

	second := NewProcessor(testSettings(), cat, nil)
	for p, cp := range cps {
		var st []detstate.State
		for _, x := range saved {
			if x.Partition == p {
				st = append(st, x)
			}
		}
		if errs := second.Restore(p, cp, true, st); len(errs) > 0 {
			t.Fatal(errs)
		}
	}
	var replay []rec
	for _, r := range rs {
		if cp, ok := cps[r.part]; ok && r.off >= cp.ResumeOffset {
			replay = append(replay, r)
		} else if !ok {
			replay = append(replay, r)
		}
	}
	a, sc = run(second, replay)
	// The detector does not publish again what was published before
	// (Detector.published); the store collapses the repeats.
	again := 0
	for _, x := range a {
		first, done := written[x.ID]
		if !done {
			gotA = append(gotA, x)
			continue
		}
		again++
		x.DetectedMs = 0
		if !reflect.DeepEqual(x, first) {
			t.Errorf("re-processed window gave a different anomaly for id %s:\n got %+v\nwant %+v", x.ID, x, first)
		}
	}
	t.Logf("%d anomalies written before the crash were produced again, identical, after the restore", again)
	gotS = append(gotS, sc...)

	ids := map[string]int{}
	for _, x := range gotA {
		ids[x.ID]++
		if ids[x.ID] > 1 {
			t.Errorf("anomaly %s (%s, %s) written twice", x.ID, x.AgentID, x.Kind)
		}
	}
	// Scores are rewritten for re-processed windows (the store collapses
	// them); keep the last of each.
	last := map[string]anomaly.Score{}
	for _, x := range gotS {
		last[fmt.Sprint(x.AgentID, x.WindowStartMs)] = x
	}
	gotS = gotS[:0]
	for _, x := range last {
		gotS = append(gotS, x)
	}
	gotAN, gotSN := norm(gotA, gotS)
	if !reflect.DeepEqual(gotAN, wantA) {
		t.Errorf("anomalies after restore differ: got %d, want %d", len(gotAN), len(wantA))
		for i := range min(len(gotAN), len(wantA)) {
			if !reflect.DeepEqual(gotAN[i], wantA[i]) {
				t.Errorf("first difference:\n got %+v\nwant %+v", gotAN[i], wantA[i])
				break
			}
		}
	}
	if !reflect.DeepEqual(gotSN, wantS) {
		t.Errorf("window scores after restore differ: got %d, want %d", len(gotSN), len(wantS))
	}
}

// TestShuffledWithinLatenessSameResults: records that arrive out of order,
// but within the allowed lateness, give the same windows, scores and
// anomalies as ordered ones.
func TestShuffledWithinLatenessSameResults(t *testing.T) {
	rs, s := simRecords(t, twoDays(2))
	cat := simCatalog(t, s)
	set := testSettings()
	wantA, wantS := norm(run(NewProcessor(set, cat, nil), rs))

	rng := rand.New(rand.NewPCG(9, 9))
	type keyed struct {
		at int64
		r  rec
	}
	byPart := map[int32][]keyed{}
	for _, r := range rs {
		// Delay each record by up to half the lateness.
		byPart[r.part] = append(byPart[r.part], keyed{r.ev.EventTimeMs + rng.Int64N(set.Features.LatenessMs/2), r})
	}
	var shuffled []rec
	for p := range int32(testPartitions) {
		ks := byPart[p]
		slices.SortStableFunc(ks, func(x, y keyed) int { return cmp.Compare(x.at, y.at) })
		for i, k := range ks {
			k.r.off = int64(i)
			shuffled = append(shuffled, k.r)
		}
	}
	moved := 0
	for p := range int32(testPartitions) {
		var prev int64
		for _, r := range shuffled {
			if r.part == p {
				if r.ev.EventTimeMs < prev {
					moved++
				}
				prev = max(prev, r.ev.EventTimeMs)
			}
		}
	}
	if moved < 100 {
		t.Fatalf("only %d records out of order: the test would prove nothing", moved)
	}
	proc := NewProcessor(set, cat, nil)
	gotA, gotS := norm(run(proc, shuffled))
	if st := proc.Stats(); st.Late != 0 {
		t.Errorf("%d records counted late although within the lateness", st.Late)
	}
	if !reflect.DeepEqual(gotA, wantA) || !reflect.DeepEqual(gotS, wantS) {
		t.Errorf("shuffled within lateness: %d anomalies, %d scores; ordered: %d, %d", len(gotA), len(gotS), len(wantA), len(wantS))
		for i := range min(len(gotA), len(wantA)) {
			if !reflect.DeepEqual(gotA[i], wantA[i]) {
				t.Errorf("first anomaly difference:\n got %+v\nwant %+v", gotA[i], wantA[i])
				break
			}
		}
		for i := range min(len(gotS), len(wantS)) {
			if !reflect.DeepEqual(gotS[i], wantS[i]) {
				t.Errorf("first score difference:\n got %+v\nwant %+v", gotS[i], wantS[i])
				break
			}
		}
	}
}

func TestLateEventsAreCounted(t *testing.T) {
	cat := StaticCatalog{inventory.EmptyRegistry(), inventory.EmptyInventory()}
	set := testSettings()
	set.StartupHold = -1
	p := NewProcessor(set, cat, nil)
	ev := func(at int64) *event.Event {
		return &event.Event{AgentID: "a", EventTimeMs: at, Route: "/x", Path: "/x", Method: "GET", Status: 200}
	}
	base := int64(1_800_000_000_000) // a minute boundary
	p.Add(0, 0, ev(base+1000))
	p.Add(0, 1, ev(base+200_000)) // a jump ahead: held until confirmed
	p.Add(0, 2, ev(base+200_500)) // confirmed: closes the first window (lateness 30 s)
	p.Add(0, 3, ev(base+5000))    // its window is closed: late
	p.Add(0, 4, ev(base+400_000))
	p.FlushAll()
	_, ss := p.Take()
	if st := p.Stats(); st.Late != 1 {
		t.Fatalf("late = %d, want 1", st.Late)
	}
	late := 0
	for _, s := range ss {
		late += s.Late
	}
	if late != 1 || len(ss) != 3 {
		t.Errorf("windows %d (want 3), late carried %d (want 1)", len(ss), late)
	}
}

// TestRules checks each rule that needs no statistics on hand-made events.
func TestRules(t *testing.T) {
	reg, err := inventory.ParseRegistry("agents.yaml", []byte(`agents:
  - id: billing-bot
    role: finance
    owner: fin@example.com
    credential_id: key-1
    approved_routes: ["/invoices", "/accounts/{id}/balance"]
  - id: free-bot
    role: support
`))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.ParseRoutes("routes.yaml", []byte(`routes:
  - template: /invoices
  - template: /accounts/{id}/balance
    tags: [sensitive]
  - template: /payroll/export
    tags: [sensitive]
  - template: /v1/legacy
    tags: [deprecated]
`))
	if err != nil {
		t.Fatal(err)
	}
	set := testSettings()
	set.NoveltyMatureMs = 0
	p := NewProcessor(set, StaticCatalog{reg, inv}, nil)
	base := int64(1_800_000_000_000)
	add := func(off int64, agent, route string, at int64) {
		p.Add(0, off, &event.Event{AgentID: agent, EventTimeMs: base + at, Route: route, Path: route, Method: "GET", Status: 200, RequestID: fmt.Sprint("r", off)})
	}
	add(0, "billing-bot", "/invoices", 0)
	add(1, "billing-bot", "/payroll/export", 1000)        // unapproved + first sensitive
	add(2, "ghost", "/invoices", 2000)                    // shadow agent
	add(3, "free-bot", "/v1/legacy", 3000)                // zombie; free-bot has no approved list
	add(4, "free-bot", "/payroll/export", 4000)           // first sensitive, no approved list, mature seen-set
	add(5, "billing-bot", "/accounts/{id}/balance", 5000) // approved sensitive: no alert
	p.FlushAll()
	as, _ := p.Take()
	got := map[string][]string{}
	for _, a := range as {
		got[a.AgentID] = append(got[a.AgentID], a.Kind)
		if a.Summary == "" || a.ID != anomaly.ID(a.AgentID, a.WindowStartMs, a.Kind) {
			t.Errorf("anomaly %+v: missing summary or wrong id", a)
		}
	}
	for _, ks := range got {
		slices.Sort(ks)
	}
	want := map[string][]string{
		"billing-bot": {anomaly.FirstSensitive, anomaly.UnapprovedRoute},
		"ghost":       {anomaly.ShadowAgent},
		"free-bot":    {anomaly.FirstSensitive, anomaly.ZombieRoute},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("rule anomalies = %v, want %v", got, want)
	}
	for _, a := range as {
		if a.AgentID == "billing-bot" && (a.Owner != "fin@example.com" || a.CredentialID != "key-1" || a.Role != "finance") {
			t.Errorf("registry fields missing: %+v", a)
		}
	}
	// The same hits an hour later repeat at most once per RuleRepeat.
	add(6, "ghost", "/invoices", 10*60_000)
	p.FlushAll()
	if as, _ := p.Take(); len(as) != 0 {
		t.Errorf("rule repeated within rule_repeat: %v", as)
	}
}

// TestAgentFloodIsOneAlertAndMemoryIsCapped: thousands of fake agent ids
// in one window raise one agent_flood anomaly instead of a shadow-agent
// alert each, and eviction keeps memory to the cap; an evicted agent that
// returns gets its state back.
func TestAgentFloodIsOneAlertAndMemoryIsCapped(t *testing.T) {
	reg, err := inventory.ParseRegistry("agents.yaml", []byte("agents:\n  - id: real\n    role: r\n"))
	if err != nil {
		t.Fatal(err)
	}
	set := testSettings()
	p := NewProcessor(set, StaticCatalog{reg, inventory.EmptyInventory()}, nil)
	saved := map[string][]byte{}
	p.Loader = func(id string) ([]byte, bool) { b, ok := saved[id]; return b, ok }
	base := int64(1_800_000_000_000)
	for i := range 5000 {
		p.Add(0, int64(i), &event.Event{AgentID: fmt.Sprintf("fake-%04d", i), EventTimeMs: base + int64(i), Route: "/x", Path: "/x", Method: "GET", Status: 200})
	}
	p.Add(0, 5000, &event.Event{AgentID: "real", EventTimeMs: base + 120_000, Route: "/x", Path: "/x", Method: "GET", Status: 200})
	p.Add(0, 5001, &event.Event{AgentID: "real", EventTimeMs: base + 120_500, Route: "/x", Path: "/x", Method: "GET", Status: 200})
	as, _ := p.Take()
	kinds := map[string]int{}
	for _, a := range as {
		kinds[a.Kind]++
	}
	if kinds[anomaly.AgentFlood] != 1 || kinds[anomaly.ShadowAgent] != 0 {
		t.Fatalf("flood of 5000 fake ids raised %v, want one agent_flood and no shadow_agent", kinds)
	}
	for _, st := range p.Evict(1000, "events", 1) {
		saved[st.Key] = st.Blob
	}
	if n := p.Agents(); n > 1000 {
		t.Fatalf("%d agents in memory after eviction to 1000", n)
	}
	// fake-0000 was evicted (least recently active); it comes back whole.
	if _, ok := saved["fake-0000"]; !ok {
		t.Fatal("the least recently active agent was not evicted")
	}
	p.Add(0, 5002, &event.Event{AgentID: "fake-0000", EventTimeMs: base + 130_000, Route: "/x", Path: "/x", Method: "GET", Status: 200})
	if st := p.Stats(); st.Restored != 1 {
		t.Errorf("restored = %d, want 1", st.Restored)
	}
}

// TestWatermarkWaitsForSlowSourceAndIgnoresOneFutureLine: ingest reads its
// raw partitions at different paces, and a log line can claim any time.
// Neither may make ordinary events late.
func TestWatermarkWaitsForSlowSourceAndIgnoresOneFutureLine(t *testing.T) {
	cat := StaticCatalog{inventory.EmptyRegistry(), inventory.EmptyInventory()}
	p := NewProcessor(testSettings(), cat, nil)
	base := int64(1_800_000_000_000)
	off := int64(0)
	add := func(raw int32, at int64) {
		p.Add(0, off, &event.Event{AgentID: fmt.Sprint("agent-", raw), EventTimeMs: at, IngestTimeMs: base + 10*3_600_000,
			Topic: "raw", Partition: raw, Route: "/x", Path: "/x", Method: "GET", Status: 200})
		off++
	}
	// Raw partition 0 runs an hour ahead of raw partition 1 on the events
	// topic, as when ingest catches up a backlog unevenly.
	for i := range int64(3600) {
		add(0, base+3_600_000+i*1000)
		add(1, base+i*1000)
	}
	// Lines stamped hours and days ahead on the slow source, each far from
	// the others: none confirms another.
	add(1, base+86_400_000)
	add(1, base+2*86_400_000)
	add(1, base+6*3_600_000)
	for i := range int64(1800) {
		add(1, base+3_600_000+i*1000)
	}
	if st := p.Stats(); st.Late != 0 || st.Windows < 60 {
		t.Errorf("%d events late, %d windows closed: the watermark ran ahead of the slower source, followed one mis-stamped line, or never moved", st.Late, st.Windows)
	}
}

func TestSlotDays(t *testing.T) {
	mon := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC).UnixMilli() // a Monday
	day := int64(86_400_000)
	for _, tt := range []struct {
		from, to int64
		slot     int
		want     float64
	}{
		{mon, mon + 7*day, 3, 5},                // 03:00 on Mon–Fri
		{mon, mon + 7*day, 24 + 3, 2},           // 03:00 on Sat, Sun
		{mon + 4*3_600_000, mon + 2*day, 3, 1},  // Monday 03:00 was before the start
		{mon, mon + 3*3_600_000 + 59_000, 3, 0}, // Monday 03:00 not over yet
		{mon - 2*day, mon + day, 10, 1},         // the weekend does not count for a weekday slot
	} {
		if got := slotDays(tt.from, tt.to, tt.slot); got != tt.want {
			t.Errorf("slotDays(%d, %d, %d) = %v, want %v", tt.from, tt.to, tt.slot, got, tt.want)
		}
	}
}
