package detect

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/features"
)

// TestIntegrationFutureStampDoesNotBlindPartition: a partition goes quiet,
// one event stamped nine minutes ahead arrives, the idle flush runs, then
// one agent bursts (400 calls of 500 kB to a sensitive payroll route). The
// real detector process, on a real events topic and ClickHouse, must score
// the burst's window with every call, raise its anomaly once the wall
// clock has passed the window and the lateness, and count no correctly
// stamped event late.
func TestIntegrationFutureStampDoesNotBlindPartition(t *testing.T) {
	brokers, chAddr := itest.KafkaBrokers(t), itest.ClickHouseAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	bin := itest.BuildBinary(t, "detector")

	suffix := itest.RandHex(4)
	events, anomalies := "it-liar-"+suffix+".events", "it-liar-"+suffix+".anomalies"
	group, db := "it-liar-"+suffix, "it_liar_"+suffix
	if err := kafka.EnsureTopics(ctx, brokers, kafka.Security{},
		kafka.TopicSpec{Name: events, Partitions: 1, ReplicationFactor: 1},
		kafka.TopicSpec{Name: anomalies, Partitions: 1, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	itest.DeleteTopicsAfter(t, brokers, events, anomalies)
	itest.DropDatabaseAfter(t, chAddr, db)

	dir := t.TempDir()
	regFile, routesFile := filepath.Join(dir, "agents.yaml"), filepath.Join(dir, "routes.yaml")
	reg := "agents:\n  - id: payroll-bot\n    role: finance\n  - id: skewed-bot\n    role: finance\n"
	routes := "routes:\n  - template: /orders/{id}\n  - template: /payroll/{id}\n    tags: [sensitive]\n"
	if err := os.WriteFile(regFile, []byte(reg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(routesFile, []byte(routes), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := l.Addr().String()
	_ = l.Close()
	settings := map[string]string{
		"kafka.brokers": strings.Join(brokers, ","), "kafka.events_topic": events, "kafka.anomalies_topic": anomalies,
		"kafka.detector_group": group, "kafka.partitions": "1",
		"clickhouse.addr": strings.Join(chAddr, ","), "clickhouse.database": db,
		"detector.registry_file": regFile, "detector.routes_file": routesFile,
		"detector.warmup": "10", "detector.snapshot_every": "2s", "detector.idle_flush": "3s",
		"detector.session_timeout": "6s", "log.level": "info", "http.addr": metricsAddr,
	}
	var env []string
	for k, v := range settings {
		env = append(env, config.EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))+"="+v)
	}
	if _, err := config.LoadEnv("", nil, env); err != nil {
		t.Fatal(err)
	}

	wr, err := kafka.NewWriter(kafka.WriterConfig{Brokers: brokers, Topic: events}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wr.Close()
	rawOff := int64(0)
	publish := func(evs ...event.Event) {
		t.Helper()
		var msgs []bus.Message
		for i := range evs {
			evs[i].Topic, evs[i].Partition, evs[i].Offset = "raw", 0, rawOff
			evs[i].EventID = event.ID("raw", 0, rawOff)
			rawOff++
			msgs = append(msgs, bus.Message{Key: []byte(evs[i].AgentID), Value: event.AppendJSON(nil, &evs[i])})
		}
		if err := wr.Write(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	call := func(agent string, at, ingest int64, route string, bytes uint64) event.Event {
		return event.Event{AgentID: agent, EventTimeMs: at, IngestTimeMs: ingest, Method: "GET", Route: route,
			Path: strings.Replace(route, "{id}", "17", 1), Status: 200, ResponseBytes: bytes, SourceIP: "10.1.2.3"}
	}

	// Forty minutes of ordinary history, ending five minutes ago: enough
	// windows for payroll-bot's own baseline (warmup 10).
	now := time.Now().UnixMilli()
	var hist []event.Event
	for m := int64(45); m > 5; m-- {
		for i := range int64(5) {
			at := now - m*60_000 + i*9_000
			hist = append(hist, call("payroll-bot", at, at+500, "/orders/{id}", 3_000+uint64(i)*100))
		}
	}
	publish(hist...)

	det := itest.Start(t, bin, env, "run")
	if _, ok := det.WaitLine(60*time.Second, 0, "partitions assigned"); !ok {
		t.Fatalf("detector never got its partition:\n%s", det.Tail(30))
	}
	st, err := chstore.Open(ctx, chstore.Options{Addr: chAddr, Database: db}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The history is folded in and its windows closed by the idle flush
	// once the checkpoint resumes after its last record.
	waitResume := func(want int64) {
		t.Helper()
		for deadline := time.Now().Add(2 * time.Minute); ; {
			cps, _, err := st.LoadPartitions(ctx, group, events, []int32{0})
			if err == nil && cps[0].ResumeOffset == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("checkpoint %+v (%v), want resume at %d\n%s", cps, err, want, det.Tail(20))
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	waitResume(int64(len(hist)))

	// One line stamped nine minutes ahead of the time ingest read it, then
	// silence long enough for the idle flush (3 s) to run several times.
	skewAt := time.Now().UnixMilli()
	publish(call("skewed-bot", skewAt+9*60_000, skewAt, "/orders/{id}", 1_000))
	time.Sleep(10 * time.Second)

	// The burst, correctly stamped: one agent, one window.
	burstAt := time.Now().UnixMilli()
	win := features.Config{WindowMs: 60_000}
	if win.WindowStart(burstAt+4_000) != win.WindowStart(burstAt) {
		time.Sleep(5 * time.Second) // keep the burst inside one window
		burstAt = time.Now().UnixMilli()
	}
	ws := win.WindowStart(burstAt)
	var burst []event.Event
	for i := range int64(400) {
		burst = append(burst, call("payroll-bot", burstAt-1_000+i, burstAt+i/100, "/payroll/{id}", 500_000))
	}
	publish(burst...)
	sent := time.Now()

	var raised *anomaly.Anomaly
	for deadline := time.Now().Add(4 * time.Minute); raised == nil; {
		as, err := st.Anomalies(ctx, "payroll-bot", ws, ws+60_000)
		if err != nil {
			t.Fatal(err)
		}
		for i := range as {
			if as[i].WindowStartMs == ws {
				raised = &as[i]
				break
			}
		}
		if raised == nil && time.Now().After(deadline) {
			t.Fatalf("no anomaly for payroll-bot's burst window %d within 4 minutes\n%s", ws, det.Tail(20))
		}
		time.Sleep(time.Second)
	}
	t.Logf("burst raised %s (%s, score %.1f) %s after it was sent; its window closes %s after the burst started",
		raised.Kind, raised.Severity, raised.Score, time.Since(sent).Round(time.Second), time.Duration(ws+90_000-burstAt)*time.Millisecond)

	ss, err := st.Scores(ctx, "payroll-bot", ws, ws+60_000)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ss, func(s anomaly.Score) bool { return s.WindowStartMs == ws })
	if i < 0 {
		t.Fatalf("burst window %d not scored: %+v", ws, ss)
	}
	if calls := ss[i].Values[features.Calls]; calls != 400 || ss[i].Late != 0 {
		t.Errorf("burst window scored with %.0f calls and %d late, want 400 and 0", calls, ss[i].Late)
	}
	if late := metricValue(t, metricsAddr, "agentwatch_detector_late_events_total"); late != 0 {
		t.Errorf("late_events_total = %v after correctly stamped events, want 0", late)
	}
}

// metricValue scrapes one unlabelled metric from a service's /metrics.
func metricValue(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("metric %s not served:\n%s", name, firstLines(body, 20))
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatalf("metric %s: %v", name, err)
	}
	return v
}

func firstLines(b []byte, n int) string {
	lines := bytes.SplitN(b, []byte("\n"), n+1)
	return string(bytes.Join(lines[:min(n, len(lines))], []byte("\n")))
}
