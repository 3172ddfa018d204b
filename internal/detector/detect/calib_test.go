package detect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// TestScoreCalibrationGatesBehaviour runs one agent through the processor
// for a day of steady minutes, then one window with a burst of refused
// calls, over detector.alert_score but below the high-severity score. A
// smooth agent (its own scores learnt from its quiet minutes) pages; the
// same agent whose own scores are routinely near the threshold does not,
// and its window is still recorded, with severity none.
func TestScoreCalibrationGatesBehaviour(t *testing.T) {
	const minute = int64(60_000)
	base := int64(1_800_000_000_000) - int64(1_800_000_000_000)%(24*60*minute)
	run := func(noisy bool, burst int) ([]anomaly.Anomaly, *anomaly.Score) {
		set := testSettings()
		set.Baseline.ScoreWarmup = 200
		reg, err := inventory.ParseRegistry("agents.yaml", []byte("agents:\n  - id: steady\n    role: ops\n    approved_routes: [\"/orders\"]\n"))
		if err != nil {
			t.Fatal(err)
		}
		inv, err := inventory.ParseRoutes("routes.yaml", []byte("routes:\n  - template: /orders\n"))
		if err != nil {
			t.Fatal(err)
		}
		p := NewProcessor(set, StaticCatalog{reg, inv}, nil)
		rng := rand.New(rand.NewPCG(1, 2))
		off := int64(0)
		add := func(at int64, status uint16) {
			p.Add(0, off, &event.Event{AgentID: "steady", EventTimeMs: at, Route: "/orders", Path: "/orders", Method: "GET", Status: status, RequestID: fmt.Sprint("r", off)})
			off++
		}
		const minutes = 24 * 60
		for m := range int64(minutes) {
			for range 3 + rng.IntN(3) {
				add(base+m*minute+rng.Int64N(minute), 200)
			}
		}
		p.FlushAll()
		p.Take()
		a := p.parts[0].agents["steady"]
		if bar, ok := a.model.ScoreBar(&set.Baseline); !ok || bar > set.Baseline.AlertScore {
			t.Fatalf("after a day of steady minutes: bar %.2f (warm %v), want a warm bar below the threshold", bar, ok)
		}
		if noisy {
			for range 5000 {
				a.model.LearnScore(&set.Baseline, math.Expm1(max(1.6+0.45*rng.NormFloat64(), 0)), 1)
			}
		}
		at := base + minutes*minute
		for range 4 {
			add(at+rng.Int64N(minute), 200)
		}
		for range burst {
			add(at+rng.Int64N(minute), 403)
		}
		add(at+2*minute, 200) // closes the burst's window
		p.FlushAll()
		as, ss := p.Take()
		for i := range ss {
			if ss[i].WindowStartMs == at {
				return as, &ss[i]
			}
		}
		t.Fatal("no score for the burst's window")
		return nil, nil
	}
	// The smallest burst that scores over the threshold.
	burst := 0
	for b := 1; b < 40; b++ {
		if _, s := run(false, b); s.Score >= 7 {
			burst = b
			break
		}
	}
	if burst == 0 {
		t.Fatal("no burst scores over the threshold")
	}
	smoothAs, smooth := run(false, burst)
	noisyAs, noisy := run(true, burst)
	t.Logf("burst of %d refused calls: score %.2f (smooth) and %.2f (noisy)", burst, smooth.Score, noisy.Score)
	if smooth.Score >= 25 || noisy.Score != smooth.Score {
		t.Fatalf("scores %.2f and %.2f: want the same, below the high score", smooth.Score, noisy.Score)
	}
	behaviour := func(as []anomaly.Anomaly) int {
		n := 0
		for _, a := range as {
			if a.Kind == anomaly.Behaviour || a.Kind == anomaly.Drift {
				n++
			}
		}
		return n
	}
	if behaviour(smoothAs) != 1 || smooth.Severity == "none" {
		t.Errorf("smooth agent: %d behaviour anomalies, severity %s; want 1 and graded", behaviour(smoothAs), smooth.Severity)
	}
	if behaviour(noisyAs) != 0 || noisy.Severity != "none" {
		t.Errorf("noisy agent: %d behaviour anomalies, severity %s; want none", behaviour(noisyAs), noisy.Severity)
	}
}
