package detectbench

import (
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/testkit/itest"
)

// floodPeakLimit is the peak RSS the README promises for a flood of one
// million fake ids at detector.max_agents 100,000 (see README, Memory).
const floodPeakLimit = 1 << 30 // 1 GiB

// TestIntegrationDetectorMemoryFlood runs the detector binary on real Kafka
// and ClickHouse, fed a flood of one million fake agent ids straight onto
// its events topic, with detector.max_agents 100,000: its peak RSS stays
// under what the README states and it holds at most the cap; restarted on
// what it saved with a smaller cap, it loads at most that; and with a short
// detector.unregistered_ttl every fake id then leaves detector_state,
// rows included.
func TestIntegrationDetectorMemoryFlood(t *testing.T) {
	brokers, ch := itest.KafkaBrokers(t), itest.ClickHouseAddr(t)
	bin := itest.BuildBinary(t, "detector")
	// The restart gets a smaller cap than what the flood left stored, so
	// that it must leave agents out.
	const capAgents, restartCap = 100_000, 50_000
	start := time.Now()
	var progress strings.Builder
	rep, err := RunMemory(t.Context(), MemoryOptions{
		Brokers: brokers, ClickHouse: ch, Detector: bin,
		Agents: 1_000_000, Fake: true, MaxAgents: capAgents, RestartMaxAgents: restartCap,
		UnregisteredTTL: 20 * time.Second, ExpireWait: 3 * time.Minute,
	}, nil, &progress)
	t.Logf("took %s\n%s\n%s", time.Since(start).Round(time.Second), progress.String(), rep)
	if err != nil {
		t.Fatal(err)
	}
	if rep.PeakRSS >= floodPeakLimit {
		t.Errorf("peak RSS %d MiB under the flood; the README states under %d MiB", rep.PeakRSS>>20, floodPeakLimit>>20)
	}
	if rep.Late > rep.Events/100 {
		// Late events create no agent: the flood would not have reached the cap.
		t.Errorf("%d of %d events late; want the flood to reach the detector's windows", rep.Late, rep.Events)
	}
	if rep.Held > capAgents || rep.Shed == 0 {
		t.Errorf("%d agents held, %d events shed; want at most %d held and the rest of the flood shed", rep.Held, rep.Shed, capAgents)
	}
	if rep.Stored <= restartCap {
		t.Errorf("only %d agents stored after the flood; want more than the restart's cap %d", rep.Stored, restartCap)
	}
	if !rep.Restarted || rep.RestartHeld > restartCap*9/10 || rep.RestartHeld == 0 {
		t.Errorf("restart on %d stored agents with max_agents %d loaded %d; want between 1 and %d (90%% of its cap)", rep.Stored, restartCap, rep.RestartHeld, restartCap*9/10)
	}
	if rep.RestartPeakRSS >= floodPeakLimit {
		t.Errorf("peak RSS %d MiB at restart; want under %d MiB", rep.RestartPeakRSS>>20, floodPeakLimit>>20)
	}
	if rep.ExpiredAfter == 0 || rep.StoredAfterExpire != 0 || rep.RowsAfterPurge != 0 {
		t.Errorf("after the idle time %d fake agents (%d rows) left in detector_state", rep.StoredAfterExpire, rep.RowsAfterPurge)
	}
}
