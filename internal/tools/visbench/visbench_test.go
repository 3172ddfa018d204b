package visbench

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/tools/sim"
)

func TestPercentile(t *testing.T) {
	var ts []time.Duration
	for i := 1; i <= 20; i++ {
		ts = append(ts, time.Duration(21-i)*time.Millisecond) // unsorted on purpose
	}
	tm := Timing{Times: ts, Target: 19 * time.Millisecond}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 10 * time.Millisecond}, {95, 19 * time.Millisecond}, {100, 20 * time.Millisecond}, {0, time.Millisecond}} {
		if got := tm.Percentile(c.p); got != c.want {
			t.Errorf("p%v = %s, want %s", c.p, got, c.want)
		}
	}
	if !tm.Met() {
		t.Error("p95 19ms within a 19ms target not met")
	}
	tm.Target = 18 * time.Millisecond
	if tm.Met() {
		t.Error("p95 19ms within an 18ms target met")
	}
	if (Timing{}).Percentile(95) != 0 {
		t.Error("percentile of no times not 0")
	}
}

// TestMeasureInterleaves checks that every question gets every run, in
// round-robin order, and that a failing question stops the measurement
// with its name.
func TestMeasureInterleaves(t *testing.T) {
	var order []string
	q := func(name string, rows int) Question {
		return Question{Name: name, Target: time.Second, Ask: func(_ context.Context, run int) (int, error) {
			order = append(order, name)
			return rows + run, nil
		}}
	}
	split := func() map[string]time.Duration { return map[string]time.Duration{"Agents": time.Millisecond} }
	rep, err := Measure(t.Context(), MeasureOptions{Runs: 3}, []Question{q("a", 0), q("b", 10)}, split, &strings.Builder{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(order, ""); got != "ababab" {
		t.Errorf("order %q, want ababab", got)
	}
	if len(rep.Timings) != 2 || len(rep.Timings[0].Times) != 3 || rep.Timings[1].MinRows != 10 || rep.Timings[1].MaxRows != 12 {
		t.Errorf("timings %+v", rep.Timings)
	}
	s := rep.String()
	if rep.Timings[0].In["Agents"] != 3*time.Millisecond || !strings.Contains(s, "| a | Agents ") {
		t.Errorf("split %v, report:\n%s", rep.Timings[0].In, s)
	}
	if !strings.Contains(s, "| a | 0–2 |") || !strings.Contains(s, "| b | 10–12 |") || !strings.Contains(s, "≤ 1.00 s | yes |") {
		t.Errorf("report:\n%s", s)
	}

	boom := errors.New("boom")
	_, err = Measure(t.Context(), MeasureOptions{Runs: 2}, []Question{{Name: "bad", Ask: func(context.Context, int) (int, error) { return 0, boom }}}, nil, &strings.Builder{})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "bad, run 1") {
		t.Errorf("error %v, want boom naming the question and run", err)
	}
}

// TestSimulation checks the simulator accepts the load's incident
// schedule and that the month has what the questions ask about: calls to
// sensitive and deprecated routes, 401 and 403 answers and an agent the
// registry lacks.
func TestSimulation(t *testing.T) {
	o := Options{Agents: 50, Days: 30, RateScale: 0.01}
	if err := o.setDefaults(); err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(o.Simulation())
	if err != nil {
		t.Fatal(err)
	}
	sensitive, deprecated := tagged("sensitive"), tagged("deprecated")
	if len(sensitive) == 0 || len(deprecated) == 0 {
		t.Fatalf("inventory has %d sensitive and %d deprecated routes", len(sensitive), len(deprecated))
	}
	reg := s.Registry()
	var nSens, nDep, n401, n403, nShadow int
	for l, ok := s.Next(); ok; l, ok = s.Next() {
		e := l.Event
		switch {
		case contains(sensitive, e.Route):
			nSens++
		case contains(deprecated, e.Route):
			nDep++
		}
		switch e.Status {
		case 401:
			n401++
		case 403:
			n403++
		}
		if _, ok := reg.Lookup(e.AgentID); !ok && e.AgentID != "" {
			nShadow++
		}
	}
	if nSens == 0 || nDep == 0 || n401 == 0 || n403 == 0 || nShadow == 0 {
		t.Errorf("sensitive %d, deprecated %d, 401 %d, 403 %d, unregistered %d: want each > 0", nSens, nDep, n401, n403, nShadow)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func TestOptionsRefuseForeignDatabase(t *testing.T) {
	for _, db := range []string{"agentwatch", "bench_x; DROP", "bench-x"} {
		o := Options{Database: db}
		if err := o.setDefaults(); err == nil {
			t.Errorf("database %q accepted; --fresh would drop it", db)
		}
	}
	o := Options{}
	if err := o.setDefaults(); err != nil || o.Database != "bench_visibility" || o.Agents != 2000 || o.Days != 30 {
		t.Errorf("defaults %+v, %v", o, err)
	}
}

func TestInList(t *testing.T) {
	if got := inList([]string{"/a/{id}", `it's\`}); got != `'/a/{id}', 'it\'s\\'` {
		t.Errorf("inList = %s", got)
	}
}
