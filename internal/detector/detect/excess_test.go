package detect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/attack"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// TestSustainedExcess: an agent making about two calls a minute for four
// weekdays, then three times that for two hours: one sustained_excess
// anomaly within the hour, explained in calls and bytes, and nothing from
// the normal days. The state round-trips through the agent codec mid-run.
func TestSustainedExcess(t *testing.T) {
	reg, err := inventory.ParseRegistry("agents.yaml", []byte(`agents:
  - id: steady-bot
    role: finance
    approved_routes: ["/invoices/{id}", "/invoices"]
`))
	if err != nil {
		t.Fatal(err)
	}
	inv, err := inventory.ParseRoutes("routes.yaml", []byte("routes:\n  - template: /invoices/{id}\n  - template: /invoices\n"))
	if err != nil {
		t.Fatal(err)
	}
	p := NewProcessor(testSettings(), StaticCatalog{reg, inv}, nil)
	const minute, hour, day = int64(60_000), int64(3_600_000), int64(86_400_000)
	base := int64(1_793_577_600_000) // Monday 2026-11-02 00:00 UTC
	start := base + 4*day + 10*hour  // Friday 10:00
	rng := rand.New(rand.NewPCG(1, 2))
	off := int64(0)
	for m := base; m < start+2*hour; m += minute {
		rate := 2.0
		if m >= start {
			rate = 6
		}
		// Poisson calls this minute (Knuth), spread over the minute.
		k := 0
		for q := rng.Float64(); q > math.Exp(-rate); q *= rng.Float64() { // Knuth
			k++
		}
		for i := range k {
			route := "/invoices/{id}"
			if i%3 == 0 {
				route = "/invoices"
			}
			p.Add(0, off, &event.Event{AgentID: "steady-bot", EventTimeMs: m + int64(i)*minute/int64(k+1), Route: route,
				Path: fmt.Sprintf("/invoices/%d", rng.IntN(50)), Method: "GET", Status: 200, ResponseBytes: uint64(1500 + rng.IntN(1000)),
				RequestID: fmt.Sprint("r", off)})
			off++
		}
		if m == base+2*day {
			// Round-trip the agent's state halfway, as a restart would.
			a := p.parts[0].agents["steady-bot"]
			blob := a.marshal(nil)
			var back agentState
			if err := back.unmarshal(blob); err != nil || back.model != a.model {
				t.Fatalf("agent state round trip: %v", err)
			}
		}
	}
	p.FlushAll()
	as, ss := p.Take()
	t.Logf("%d events, %d windows, %d anomalies", off, len(ss), len(as))
	var ex []anomaly.Anomaly
	for _, a := range as {
		if a.Kind == anomaly.SustainedExcess {
			ex = append(ex, a)
		}
	}
	if len(ex) != 1 {
		t.Fatalf("%d sustained_excess anomalies, want 1: %+v", len(ex), ex)
	}
	a := ex[0]
	t.Logf("%s: %s", a.Severity, a.Summary)
	if a.WindowStartMs < start || a.WindowStartMs > start+hour {
		t.Errorf("raised at +%d min, want within the excess's first hour", (a.WindowStartMs-start)/minute)
	}
	if len(a.Explanation) != 2 || a.Explanation[0].Observed < 2*a.Explanation[0].Expected {
		t.Errorf("explanation %+v, want calls and response bytes well above expected", a.Explanation)
	}
	for _, want := range []string{"steady-bot", "its usual calls", "its usual response bytes", "mostly on /invoices"} {
		if !strings.Contains(a.Summary, want) {
			t.Errorf("summary %q lacks %q", a.Summary, want)
		}
	}
	if a.Severity != "medium" || a.Role != "finance" || a.ID != anomaly.ID(a.AgentID, a.WindowStartMs, a.Kind) {
		t.Errorf("anomaly fields %+v", a)
	}
	if c := attack.Classify(a); c != attack.SlowExfiltration {
		t.Errorf("class %s, want %s", c, attack.SlowExfiltration)
	}
}

func TestFormatSpan(t *testing.T) {
	for ms, want := range map[int64]string{
		45 * 60_000: "45 min", 190 * 60_000: "3 h 10 min", 120 * 60_000: "2 h", 52 * 3_600_000: "2 d 4 h", 48 * 3_600_000: "2 d",
	} {
		if got := formatSpan(ms); got != want {
			t.Errorf("formatSpan(%d) = %q, want %q", ms, got, want)
		}
	}
}
