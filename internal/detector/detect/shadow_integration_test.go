package detect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// TestIntegrationShadowAgentsFold runs the real detector binary on a real
// events topic carrying the hostile tester's stream: 50 never-registered
// agent ids a minute on every partition for 5 minutes, below agent_flood.
// The anomalies topic must carry one shadow-agent finding per partition and
// window, each counting its 50 agents and listing them, every fake id in
// exactly one, and exactly the findings an in-process detector computes
// from the same records (live equals replay).
func TestIntegrationShadowAgentsFold(t *testing.T) {
	brokers, chAddr := itest.KafkaBrokers(t), itest.ClickHouseAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	bin := itest.BuildBinary(t, "detector")

	suffix := itest.RandHex(4)
	events, anomalies := "it-shadow-"+suffix+".events", "it-shadow-"+suffix+".anomalies"
	group, db := "it-shadow-"+suffix, "it_shadow_"+suffix
	if err := kafka.EnsureTopics(ctx, brokers, kafka.Security{},
		kafka.TopicSpec{Name: events, Partitions: testPartitions, ReplicationFactor: 1},
		kafka.TopicSpec{Name: anomalies, Partitions: testPartitions, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	itest.DeleteTopicsAfter(t, brokers, events, anomalies)
	itest.DropDatabaseAfter(t, chAddr, db)

	// Agent ids are keyed to partitions as ingest keys them, so each
	// partition gets its own 50 a minute, and one registered agent.
	const perMinute, minutes = 50, 5
	ids := make([][]string, testPartitions)
	reals := make([]string, testPartitions)
	for i := 0; ; i++ {
		id := fmt.Sprintf("ghost-%06d", i)
		if p := kafka.PartitionFor(id, testPartitions); len(ids[p]) < perMinute*minutes {
			ids[p] = append(ids[p], id)
		}
		r := fmt.Sprintf("real-%d", i)
		if p := kafka.PartitionFor(r, testPartitions); reals[p] == "" {
			reals[p] = r
		}
		full := !slices.Contains(reals, "")
		for _, l := range ids {
			full = full && len(l) == perMinute*minutes
		}
		if full {
			break
		}
	}
	// Stamped in the recent past, as a live gateway would.
	base := time.Now().Add(-time.Hour).Truncate(time.Minute).UnixMilli()
	none := func(int) string { return "" }
	rs := shadowGen{
		base: base, parts: testPartitions, perMinute: perMinute, minutes: minutes,
		id: func(part, n int) string { return ids[part][n] }, real: func(part int) string { return reals[part] },
		cred: none, ip: func(n int) string { return "203.0.113.7" },
	}.records()
	for i := range rs {
		if got := kafka.PartitionFor(rs[i].ev.AgentID, testPartitions); got != rs[i].part {
			t.Fatalf("record %d: writer partition %d, stream partition %d", i, got, rs[i].part)
		}
	}

	dir := t.TempDir()
	var reg strings.Builder
	reg.WriteString("agents:\n")
	for _, r := range reals {
		fmt.Fprintf(&reg, "  - id: %s\n    role: batch\n", r)
	}
	regFile := filepath.Join(dir, "agents.yaml")
	if err := os.WriteFile(regFile, []byte(reg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{
		"kafka.brokers": strings.Join(brokers, ","), "kafka.events_topic": events, "kafka.anomalies_topic": anomalies,
		"kafka.detector_group": group, "kafka.partitions": fmt.Sprint(testPartitions),
		"clickhouse.addr": strings.Join(chAddr, ","), "clickhouse.database": db,
		"detector.registry_file":  regFile,
		"detector.snapshot_every": "2s", "detector.idle_flush": "6s", "detector.session_timeout": "6s",
		"log.level": "info", "http.addr": "127.0.0.1:0",
	}
	var env []string
	for k, v := range settings {
		env = append(env, config.EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))+"="+v)
	}
	cfg, err := config.LoadEnv("", nil, env)
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.Detector.NewAgentsPerWindow; n > 0 && n <= perMinute {
		t.Fatalf("detector.new_agents_per_window is %d: the stream would be an agent_flood, not below it", n)
	}
	w, err := NewWatcher(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []anomaly.Anomaly
	ref, _ := run(NewProcessor(SettingsFrom(cfg), WatcherCatalog{w}, nil), rs)
	for _, a := range ref {
		if a.Kind == anomaly.ShadowAgent {
			want = append(want, a)
		}
	}
	want, _ = norm(want, nil)

	det := itest.Start(t, bin, env, "run")
	if _, ok := det.WaitLine(60*time.Second, 0, "partitions assigned"); !ok {
		t.Fatalf("detector never got partitions:\n%s", det.Tail(30))
	}
	wr, err := kafka.NewWriter(kafka.WriterConfig{Brokers: brokers, Topic: events}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wr.Close()
	var buf []byte
	msgs := make([]bus.Message, 0, len(rs))
	for i := range rs {
		buf = event.AppendJSON(buf[:0], &rs[i].ev)
		msgs = append(msgs, bus.Message{Key: []byte(rs[i].ev.AgentID), Value: bytes.Clone(buf)})
	}
	if err := wr.Write(ctx, msgs...); err != nil {
		t.Fatalf("publish %d events: %v", len(msgs), err)
	}

	// Read the anomalies topic until every partition's five windows are
	// there (generous deadline; the detector publishes within seconds).
	var got []anomaly.Anomaly
	for deadline := time.Now().Add(120 * time.Second); ; {
		got = got[:0]
		err := kafka.ReadSince(ctx, brokers, kafka.Security{}, anomalies, time.Unix(0, 0), func(m bus.Message) error {
			var x anomaly.Anomaly
			if err := json.Unmarshal(m.Value, &x); err != nil {
				return fmt.Errorf("anomaly record %q: %w", m.Value, err)
			}
			if x.Kind == anomaly.ShadowAgent || x.Kind == anomaly.AgentFlood {
				got = append(got, x)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= testPartitions*minutes || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if err := det.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-det.Done

	if len(got) != testPartitions*minutes {
		t.Fatalf("%d shadow-agent/agent-flood findings on the topic, want %d (one per partition and window)\n%s",
			len(got), testPartitions*minutes, det.Tail(20))
	}
	listed := map[string]int{}
	for _, a := range got {
		if a.Kind != anomaly.ShadowAgent || !a.Grouped() || a.Count != perMinute || len(a.AgentIDs) != perMinute {
			t.Errorf("finding %s %s: count %d, %d ids; want a grouped shadow_agent of %d", a.Kind, a.AgentID, a.Count, len(a.AgentIDs), perMinute)
		}
		for _, id := range a.AgentIDs {
			listed[id]++
		}
	}
	for p, l := range ids {
		for _, id := range l {
			if listed[id] != 1 {
				t.Errorf("partition %d agent %s listed in %d findings, want 1", p, id, listed[id])
			}
		}
	}
	gotN, _ := norm(got, nil)
	if !reflect.DeepEqual(gotN, want) {
		t.Errorf("the live detector's findings differ from the in-process replay's:\n got %d %+v\nwant %d %+v", len(gotN), gotN, len(want), want)
	}
	// ClickHouse keeps the same records, agent lists included.
	st, err := chstore.Open(ctx, chstore.Options{Addr: chAddr, Database: db}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stored, err := st.Anomalies(ctx, "", 0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	var storedShadow []anomaly.Anomaly
	for _, a := range stored {
		if a.Kind == anomaly.ShadowAgent {
			storedShadow = append(storedShadow, a)
		}
	}
	if storedN, _ := norm(storedShadow, nil); !reflect.DeepEqual(storedN, want) {
		t.Errorf("ClickHouse holds %d shadow-agent findings that differ from the replay's %d", len(storedN), len(want))
	}
	t.Logf("%d events, %d unregistered agents on %d partitions over %d minutes: %d shadow-agent findings on the topic", len(rs), len(listed), testPartitions, minutes, len(got))
}
