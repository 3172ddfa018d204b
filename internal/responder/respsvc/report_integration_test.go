package respsvc

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/syncbuf"
	"github.com/agentwatch/agentwatch/internal/report"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
)

// TestIntegrationReportScheduleTwoResponders: two distributed responders
// (one consumer group, one global table, one ClickHouse database) with
// report.schedule tick for the same period at once. One writes it: one
// report on the local Slack, one report record in ClickHouse's
// evidence_chain, placed through the global table, and the chain
// verifies against the writer's evidence directory. The report reads the
// (empty) visibility tables of the test's database: this test is about
// who writes.
func TestIntegrationReportScheduleTwoResponders(t *testing.T) {
	k := itest.PlainKafka(t)
	chAddr := itest.ClickHouseAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	sec := k.Security(t)
	suffix := itest.RandHex(4)
	topic, state, global, db := "it-report-"+suffix+".anomalies", "it-report-"+suffix+".state", "it-report-"+suffix+".global", "it_report_"+suffix
	if err := kafka.EnsureTopics(ctx, k.Brokers, sec, kafka.TopicSpec{Name: topic, Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	k.DeleteTopicsAfter(t, topic, state, global)
	itest.DropDatabaseAfter(t, chAddr, db)
	srv := testsrv.NewSlack()
	defer srv.Close()
	dir := t.TempDir()
	pb := filepath.Join(dir, "playbooks.yaml")
	if err := os.WriteFile(pb, []byte(alertPlaybook), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("responder logs:\n%s", logs.String())
		}
	})
	start := func(name string) *Responder {
		s := map[string]string{
			"kafka.brokers": strings.Join(k.Brokers, ","), "kafka.anomalies_topic": topic, "kafka.partitions": "2",
			"kafka.responder_group": "it-report-" + suffix, "kafka.responder_state_topic": state, "kafka.responder_global_topic": global,
			"clickhouse.addr": strings.Join(chAddr, ","), "clickhouse.database": db,
			"http.addr": "", "responder.api_addr": "", "responder.playbooks": pb,
			"responder.slack.api_url": srv.URL(), "responder.slack.token": "xoxb-report",
			"responder.state_dir": filepath.Join(dir, name), "embedded.data_dir": filepath.Join(dir, name, "data"),
			"report.schedule": "monthly 06:00", "report.slack_channel": "C0REPORTS", "report.formats": "html,pdf",
		}
		for key, v := range k.Settings() {
			s[key] = v
		}
		var env []string
		for key, v := range s {
			env = append(env, config.EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))+"="+v)
		}
		cfg, err := config.LoadEnv("", nil, env)
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(ctx, cfg, Options{Log: log.With("instance", name), Getenv: noSecrets, Instance: name})
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() {
			_ = filepath.Walk(r.Service.Evidence, func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.IsDir() {
					_ = os.Chmod(p, 0o755)
				}
				return nil
			})
			r.Close()
		})
		return r
	}
	var rs [2]*Responder
	var wg sync.WaitGroup
	for i, name := range []string{"a", "b"} {
		wg.Go(func() { rs[i] = start(name) })
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	scheds := make([]*report.Scheduler, 2)
	for i, r := range rs {
		for _, st := range r.stages {
			if s, ok := st.(*report.Scheduler); ok {
				scheds[i] = s
			}
		}
		if scheds[i] == nil {
			t.Fatalf("responder %d: no report scheduler among the stages", i)
		}
		if _, ok := r.Service.Chain.(*evidence.SequencedChain); !ok {
			t.Fatalf("responder %d: chain %T, want the sequenced chain", i, r.Service.Chain)
		}
		scheds[i].Now = func() time.Time { return time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC) }
	}
	ran := make([]bool, 2)
	errs := make([]error, 2)
	for i, s := range scheds {
		wg.Go(func() { ran[i], errs[i] = s.Tick(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("responder %d: %v", i, err)
		}
	}
	if ran[0] == ran[1] {
		t.Fatalf("ran %v: want exactly one responder to write the report", ran)
	}
	w := 0
	if ran[1] {
		w = 1
	}
	if n := len(srv.Files()); n != 2 {
		t.Errorf("%d files posted to Slack, want 2 (one report's HTML and PDF)", n)
	}
	st, err := chstore.Open(ctx, chstore.Options{Addr: chAddr, Database: db}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stored := chstore.NewChain(st)
	recs, err := evidence.FindReports(ctx, stored, "2026-11")
	if err != nil || len(recs) != 1 {
		t.Fatalf("evidence_chain holds %d report records of 2026-11 (%v), want 1", len(recs), err)
	}
	if err := evidence.VerifyChain(ctx, stored, rs[w].Service.Evidence); err != nil {
		t.Fatalf("VerifyChain: %v", err)
	}
	// Both find the period done in the shared chain now.
	for i, s := range scheds {
		if again, err := s.Tick(ctx); err != nil || again {
			t.Errorf("responder %d ticks again: ran %v, %v", i, again, err)
		}
	}
	if got := fmt.Sprint(len(srv.Files())); got != "2" {
		t.Errorf("%s files posted after the second ticks", got)
	}
}
