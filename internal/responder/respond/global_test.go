package respond

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// globalShare is partition's share of one fleet-wide 5xx event, as the
// detector publishes it: its own id, the event's group, its own count.
func globalShare(group string, partition int32, count, active int, start int64) anomaly.Anomaly {
	return anomaly.Anomaly{V: 1, ID: anomaly.ShareID(group, partition), Group: group, AgentID: "*global/server_5xx",
		Kind: anomaly.GlobalEvent, Severity: "high", Score: 30, WindowStartMs: start, WindowEndMs: start + 60_000,
		Count: count, Partition: partition, Summary: "a global event",
		Explanation: []anomaly.Feature{{Name: "server_5xx", Observed: float64(count * 40), Expected: 1, Surprise: 20, Contribution: 0.8}}}
}

// TestGlobalEventSharesMakeOneIncidentWhateverTheOrder: two partitions
// report the same fleet-wide event with different counts (19 of 31 agents,
// 22 of 30). In either order, and with the second share arriving after the
// incident window, the responder handles both (neither is dropped as a
// duplicate of the other), and ends with one incident holding both shares,
// the same content whichever came first, and one alert with the second
// share in its thread.
func TestGlobalEventSharesMakeOneIncidentWhateverTheOrder(t *testing.T) {
	start := time.Now().Truncate(time.Minute).UnixMilli()
	group := anomaly.ID("*global/server_5xx", start-start%3_600_000, anomaly.GlobalEvent)
	p0, p1 := globalShare(group, 0, 19, 31, start), globalShare(group, 1, 22, 30, start+60_000)
	if p0.ID == p1.ID {
		t.Fatal("two partitions' shares have one id")
	}
	type outcome struct {
		id        string
		count     int
		anomalies []anomaly.Anomaly
	}
	var got []outcome
	for _, order := range [][]anomaly.Anomaly{{p0, p1}, {p1, p0}} {
		// A short incident window, which the second share arrives after:
		// it still joins its event.
		// One follow-up per share (no summaries): the thread shows each
		// share as it joins.
		r := newRig(t, func(c *config.Config) {
			c.Responder.IncidentWindow = time.Millisecond
			c.Responder.Slack.DigestInterval = 0
		})
		ctx := context.Background()
		for i, a := range order {
			if i == 1 {
				time.Sleep(10 * time.Millisecond)
			}
			res, err := r.svc.Engine.Handle(ctx, a)
			if err != nil {
				t.Fatal(err)
			}
			if res.Duplicate {
				t.Fatalf("share of partition %d dropped as a duplicate", a.Partition)
			}
			if res.NewIncident != (i == 0) {
				t.Errorf("share %d of partition %d: new incident %v", i, a.Partition, res.NewIncident)
			}
		}
		r.settle()
		var ins []Incident
		for _, in := range r.svc.Engine.Incidents() {
			if in.AgentID == "*global/server_5xx" {
				ins = append(ins, in)
			}
		}
		if len(ins) != 1 {
			t.Fatalf("%d incidents for one fleet-wide event, want 1: %+v", len(ins), ins)
		}
		got = append(got, outcome{ins[0].ID, ins[0].Count, ins[0].Anomalies})
		roots, replies := 0, 0
		for _, p := range r.slack.Posts() {
			if p.Channel != "#soc-fleet" || p.Method != "chat.postMessage" {
				continue
			}
			if p.ThreadTS == "" {
				roots++
			} else {
				replies++
			}
		}
		if roots != 1 || replies != 1 {
			t.Errorf("%d alerts and %d thread replies for one event in two shares, want 1 and 1", roots, replies)
		}
		r.stop()
	}
	want := outcome{IncidentID(p0), 2, []anomaly.Anomaly{p0, p1}}
	for i, o := range got {
		if !reflect.DeepEqual(o, want) {
			t.Errorf("order %d: incident %s with %d anomalies %+v;\nwant %s with both shares %+v", i, o.id, o.count, o.anomalies, want.id, want.anomalies)
		}
	}
}
