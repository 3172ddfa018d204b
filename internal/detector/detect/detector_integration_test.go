package detect

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"encoding/json"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
)

// TestIntegrationDetectorFailover runs two real detector processes in one
// consumer group on a real events topic while events are published,
// SIGKILLs one mid-stream, and checks that the survivor took over its
// partitions with the saved baselines: every window of every agent is
// scored exactly as one uninterrupted in-process detector scores it (none
// lost, none different), every anomaly is the same, and no anomaly id
// reaches the anomalies topic twice.
func TestIntegrationDetectorFailover(t *testing.T) {
	detectorFailover(t, itest.PlainKafka(t))
}

// TestIntegrationDetectorFailoverSASLSSL is the same kill over the
// broker's SASL_SSL listener (TLS and SCRAM-SHA-512), for the two
// detectors and the test's own clients alike.
func TestIntegrationDetectorFailoverSASLSSL(t *testing.T) {
	detectorFailover(t, itest.SecureKafka(t, "scram-sha-512"))
}

func detectorFailover(t *testing.T, k itest.Kafka) {
	brokers, chAddr, sec := k.Brokers, itest.ClickHouseAddr(t), k.Security(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	bin := itest.BuildBinary(t, "detector")

	suffix := itest.RandHex(4)
	events, anomalies := "it-det-"+suffix+".events", "it-det-"+suffix+".anomalies"
	group, db := "it-det-"+suffix, "it_det_"+suffix
	if err := kafka.EnsureTopics(ctx, brokers, sec,
		kafka.TopicSpec{Name: events, Partitions: testPartitions, ReplicationFactor: 1},
		kafka.TopicSpec{Name: anomalies, Partitions: testPartitions, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	k.DeleteTopicsAfter(t, events, anomalies)
	itest.DropDatabaseAfter(t, chAddr, db)

	// Two days of 24 agents with the default incidents; registry and
	// route inventory in files, as an operator would configure them.
	rs, s := simRecords(t, twoDays(21))
	dir := t.TempDir()
	var rb, ib bytes.Buffer
	if err := sim.WriteRegistryYAML(&rb, s.Registry()); err != nil {
		t.Fatal(err)
	}
	if err := sim.WriteRoutesYAML(&ib, s.Routes()); err != nil {
		t.Fatal(err)
	}
	regFile, routesFile := filepath.Join(dir, "agents.yaml"), filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(regFile, rb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(routesFile, ib.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// What ingest would have stamped: the raw partition each line came
	// from and a parse time just after the event.
	for i := range rs {
		rs[i].ev.Topic, rs[i].ev.Partition, rs[i].ev.Offset = "raw", int32(i%3), int64(i/3)
		rs[i].ev.IngestTimeMs = rs[i].ev.EventTimeMs + 500
	}
	settings := map[string]string{
		"kafka.events_topic": events, "kafka.anomalies_topic": anomalies,
		"kafka.detector_group": group, "kafka.partitions": fmt.Sprint(testPartitions),
		"clickhouse.addr": strings.Join(chAddr, ","), "clickhouse.database": db,
		"detector.registry_file": regFile, "detector.routes_file": routesFile,
		// The idle flush closes a partition's windows after this long
		// without a record: long enough that a stall of the publisher or of
		// B (a loaded machine, the race detector) does not close a window
		// early and make the rest of it late, which the uninterrupted
		// reference never does.
		"detector.snapshot_every": "2s", "detector.idle_flush": "15s", "detector.session_timeout": "6s",
		"log.level": "info", "http.addr": "127.0.0.1:0",
	}
	maps.Copy(settings, k.Settings())
	var env []string
	for k, v := range settings {
		env = append(env, config.EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))+"="+v)
	}
	cfg, err := config.LoadEnv("", nil, env)
	if err != nil {
		t.Fatal(err)
	}

	// The reference: one uninterrupted in-process detector on the same
	// records in the same per-partition order, with the same settings.
	w, err := NewWatcher(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantA, wantS := norm(run(NewProcessor(SettingsFrom(cfg), WatcherCatalog{w}, nil), rs))
	t.Logf("%d records; reference: %d windows scored, %d anomalies", len(rs), len(wantS), len(wantA))

	// Publish over ~25 s so the kill lands mid-stream.
	wr, err := kafka.NewWriter(kafka.WriterConfig{Brokers: brokers, Security: sec, Topic: events}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wr.Close()
	pubDone := make(chan error, 1)
	go func() {
		const chunk = 2500
		var buf []byte
		for lo := 0; lo < len(rs); lo += chunk {
			var msgs []bus.Message
			for i := lo; i < min(lo+chunk, len(rs)); i++ {
				buf = event.AppendJSON(buf[:0], &rs[i].ev)
				msgs = append(msgs, bus.Message{Key: []byte(rs[i].ev.AgentID), Value: bytes.Clone(buf)})
			}
			if err := wr.Write(ctx, msgs...); err != nil {
				pubDone <- err
				return
			}
			time.Sleep(700 * time.Millisecond)
		}
		pubDone <- nil
	}()
	for i := range rs {
		if got := kafka.PartitionFor(rs[i].ev.AgentID, testPartitions); got != rs[i].part {
			t.Fatalf("record %d: writer partition %d, reference partition %d", i, got, rs[i].part)
		}
	}

	a := itest.Start(t, bin, env, "run")
	if _, ok := a.WaitLine(60*time.Second, 0, "partitions assigned"); !ok {
		t.Fatalf("detector A never got partitions:\n%s", a.Tail(30))
	}
	b := itest.Start(t, bin, env, "run")
	if _, ok := b.WaitLine(60*time.Second, 0, "partitions assigned"); !ok {
		t.Fatalf("detector B never got partitions:\n%s", b.Tail(30))
	}
	// Let both work, then kill A without warning.
	time.Sleep(time.Duration(4000+rand.IntN(4000)) * time.Millisecond)
	bLines := b.NumLines()
	if err := a.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.Done
	killedAt := time.Now()
	line, ok := b.WaitLine(60*time.Second, bLines, "partitions assigned", fmt.Sprintf(`"partitions":[%s]`, seq(testPartitions)))
	if !ok {
		t.Fatalf("B did not take over every partition after A was killed:\n%s", b.Tail(30))
	}
	t.Logf("B owned all %d partitions %s after the kill: %s", testPartitions, time.Since(killedAt).Round(100*time.Millisecond), line)
	if strings.Contains(line, `"agents":0`) {
		t.Errorf("B restored no agent state on takeover: %s", line)
	}
	if err := <-pubDone; err != nil {
		t.Fatalf("publish: %v", err)
	}

	// Wait until B has folded in every record: its checkpoints resume at
	// the end of every partition (open windows closed by the idle flush).
	st, err := chstore.Open(ctx, chstore.Options{Addr: chAddr, Database: db}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	end := map[int32]int64{}
	for _, r := range rs {
		end[r.part] = max(end[r.part], r.off+1)
	}
	parts := []int32{}
	for p := range int32(testPartitions) {
		parts = append(parts, p)
	}
	for deadline := time.Now().Add(90 * time.Second); ; {
		cps, _, err := st.LoadPartitions(ctx, group, events, parts)
		done := err == nil && len(cps) == testPartitions
		for p, e := range end {
			done = done && cps[p].ResumeOffset == e
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B did not finish: checkpoints %+v, want resume at %v (%v)\n%s", cps, end, err, b.Tail(20))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err := b.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.Done:
		if b.Err != nil {
			t.Errorf("B after SIGTERM: %v\n%s", b.Err, b.Tail(20))
		}
	case <-time.After(40 * time.Second):
		t.Error("B did not exit within 40s of SIGTERM")
	}

	gotS, err := st.Scores(ctx, "", 0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	gotA, err := st.Anomalies(ctx, "", 0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	gotAN, gotSN := norm(gotA, gotS)
	if len(gotSN) != len(wantS) {
		t.Errorf("store has %d window scores, the uninterrupted reference %d: windows lost or invented", len(gotSN), len(wantS))
	}
	diff := 0
	for i := range min(len(gotSN), len(wantS)) {
		if !reflect.DeepEqual(gotSN[i], wantS[i]) {
			if diff < 3 {
				t.Errorf("window score differs:\n got %+v\nwant %+v", gotSN[i], wantS[i])
			}
			diff++
		}
	}
	if !reflect.DeepEqual(gotAN, wantA) {
		t.Errorf("store has %d anomalies, the reference %d, or they differ", len(gotAN), len(wantA))
	}

	// The topic: every reference anomaly, each id exactly once.
	seen := map[string]int{}
	if err := kafka.ReadSince(ctx, brokers, sec, anomalies, time.Unix(0, 0), func(m bus.Message) error {
		var x anomaly.Anomaly
		if err := json.Unmarshal(m.Value, &x); err != nil {
			return err
		}
		seen[x.ID]++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	dups := 0
	for id, n := range seen {
		if n > 1 {
			dups++
			t.Errorf("anomaly %s published %d times", id, n)
		}
	}
	for _, x := range wantA {
		if seen[x.ID] == 0 {
			t.Errorf("anomaly %s (%s, %s) never published", x.ID, x.AgentID, x.Kind)
		}
	}
	t.Logf("store: %d windows (%d differ), %d anomalies; topic: %d distinct anomaly ids, %d duplicated", len(gotSN), diff, len(gotAN), len(seen), dups)
}

func seq(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprint(&b, i)
	}
	return b.String()
}
