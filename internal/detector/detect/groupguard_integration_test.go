package detect

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/detector/detstate"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// TestIntegrationSecondGroupRefused: a ClickHouse database holds the state
// of a live detector group. A real detector process started under another
// consumer group against the same database and topics exits with an error
// that names the live group and the fixes, before it reads a record: no
// window scored, no checkpoint or agent state written. Started with
// detector.take_over_group naming the live group, it continues from the
// live group's checkpoints instead.
func TestIntegrationSecondGroupRefused(t *testing.T) {
	brokers, chAddr := itest.KafkaBrokers(t), itest.ClickHouseAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	bin := itest.BuildBinary(t, "detector")

	suffix := itest.RandHex(4)
	events, anomalies := "it-grp-"+suffix+".events", "it-grp-"+suffix+".anomalies"
	live, second, db := "it-grp-live-"+suffix, "it-grp-second-"+suffix, "it_grp_"+suffix
	if err := kafka.EnsureTopics(ctx, brokers, kafka.Security{},
		kafka.TopicSpec{Name: events, Partitions: 2, ReplicationFactor: 1},
		kafka.TopicSpec{Name: anomalies, Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	itest.DeleteTopicsAfter(t, brokers, events, anomalies)
	itest.DropDatabaseAfter(t, chAddr, db)

	// Records a detector that read them would score (their windows are
	// long closed, so the idle flush closes them at once).
	wr, err := kafka.NewWriter(kafka.WriterConfig{Brokers: brokers, Topic: events}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wr.Close()
	now := time.Now().UnixMilli()
	var msgs []bus.Message
	for i := range int64(200) {
		at := now - time.Hour.Milliseconds() + i*10_000
		ev := event.Event{EventID: event.ID("raw", 0, i), EventTimeMs: at, IngestTimeMs: at + 500, AgentID: "agent-" + string(rune('a'+i%4)),
			Method: "GET", Route: "/orders/{id}", Path: "/orders/1", Status: 200, Topic: "raw", Offset: i}
		msgs = append(msgs, bus.Message{Key: []byte(ev.AgentID), Value: event.AppendJSON(nil, &ev)})
	}
	if err := wr.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}

	st, err := chstore.OpenMigrated(ctx, config.ClickHouse{Addr: chAddr, Database: db}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	liveCps := []detstate.Checkpoint{
		{Group: live, Topic: events, Partition: 0, ClosedThroughMs: now, WatermarkMs: now, ResumeOffset: 7, LastOffset: 6, UpdatedMs: now - 5_000},
		{Group: live, Topic: events, Partition: 1, ClosedThroughMs: now, WatermarkMs: now, ResumeOffset: 9, LastOffset: 8, UpdatedMs: now - 4_000},
	}
	if err := st.SaveCheckpoints(ctx, liveCps); err != nil {
		t.Fatal(err)
	}
	baseline := []byte("the live group's baseline")
	if err := st.SaveStates(ctx, []detstate.State{{Topic: events, Partition: 0, Kind: detstate.KindAgent, Key: "agent-a", UpdatedMs: now - 5_000, Blob: baseline}}); err != nil {
		t.Fatal(err)
	}

	env := func(group string, extra ...string) []string {
		settings := map[string]string{
			"kafka.brokers": strings.Join(brokers, ","), "kafka.events_topic": events, "kafka.anomalies_topic": anomalies,
			"kafka.detector_group": group, "kafka.partitions": "2",
			"clickhouse.addr": strings.Join(chAddr, ","), "clickhouse.database": db,
			"detector.snapshot_every": "1s", "detector.idle_flush": "1s", "detector.session_timeout": "6s",
			"log.level": "info", "http.addr": "127.0.0.1:0",
		}
		for i := 0; i+1 < len(extra); i += 2 {
			settings[extra[i]] = extra[i+1]
		}
		var out []string
		for k, v := range settings {
			out = append(out, config.EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))+"="+v)
		}
		return out
	}

	p := itest.Start(t, bin, env(second), "run")
	select {
	case <-p.Done:
	case <-time.After(90 * time.Second):
		t.Fatalf("the second group's detector did not stop within 90s:\n%s", p.Tail(20))
	}
	if p.Err == nil {
		t.Fatalf("the second group's detector exited cleanly:\n%s", p.Tail(20))
	}
	refusal := p.Lines(`consumer group "` + live + `"`)
	if len(refusal) == 0 || !strings.Contains(refusal[0], "detector.take_over_group") || !strings.Contains(refusal[0], "clickhouse.database") {
		t.Fatalf("no refusal naming group %s and the fixes:\n%s", live, p.Tail(20))
	}
	t.Logf("refused: %s", refusal[0])
	if lines := p.Lines("partitions assigned"); len(lines) != 0 {
		t.Errorf("the refused detector was assigned partitions: %s", lines[0])
	}
	scores, err := st.Scores(ctx, "", 0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	cps, err := st.Checkpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, ok, err := st.LoadState(ctx, detstate.KindAgent, "agent-a")
	if err != nil {
		t.Fatal(err)
	}
	if len(scores) != 0 || len(cps) != 2 || !ok || string(s.Blob) != string(baseline) {
		t.Errorf("after the refusal: %d window scores, checkpoints %+v, agent-a's state %q; want none, live's two, the live baseline", len(scores), cps, s.Blob)
	}

	// The group renamed: it takes over the live group's checkpoints.
	p = itest.Start(t, bin, env(second, "detector.take_over_group", live), "run")
	if _, ok := p.WaitLine(60*time.Second, 0, "partitions assigned"); !ok {
		t.Fatalf("the detector taking over never got its partitions:\n%s", p.Tail(20))
	}
	if len(p.Lines("took over the detector state")) == 0 {
		t.Errorf("no take-over logged:\n%s", p.Tail(20))
	}
	cps2, _, err := st.LoadPartitions(ctx, second, events, []int32{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range liveCps {
		if got := cps2[c.Partition]; got.ResumeOffset < c.ResumeOffset || got.ClosedThroughMs < c.ClosedThroughMs {
			t.Errorf("partition %d: group %s resumes at %d (closed through %d), want from the live group's %d (%d)",
				c.Partition, second, got.ResumeOffset, got.ClosedThroughMs, c.ResumeOffset, c.ClosedThroughMs)
		}
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done:
	case <-time.After(40 * time.Second):
		t.Error("the detector did not stop within 40s of SIGTERM")
	}
}
