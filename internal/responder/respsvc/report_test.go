package respsvc

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/report"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
)

// TestReportSchedule: with report.schedule the embedded responder runs a
// Scheduler on its own evidence chain, audit trail and Slack token.
func TestReportSchedule(t *testing.T) {
	srv := testsrv.NewSlack()
	defer srv.Close()
	cfg := testConfig(t)
	cfg.Embedded.DataDir = t.TempDir()
	cfg.Report.Schedule, cfg.Report.SlackChannel = "weekly 06:00", "C0SOC"
	cfg.Responder.Slack.Token, cfg.Responder.Slack.APIURL = "xoxb-test", srv.URL()
	r, err := New(t.Context(), cfg, Options{Stores: testStores(t), Getenv: noSecrets})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer func() {
		_ = filepath.Walk(cfg.Responder.StateDir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	}()
	var s *report.Scheduler
	for _, st := range r.stages {
		if rs, ok := st.(*report.Scheduler); ok {
			s = rs
		}
	}
	if s == nil {
		t.Fatal("no report scheduler among the stages")
	}
	s.Now = func() time.Time { return time.Date(2026, 11, 23, 7, 0, 0, 0, time.UTC) }
	for i, want := range []bool{true, false} {
		ran, err := s.Tick(t.Context())
		if err != nil || ran != want {
			t.Fatalf("tick %d: ran %v, %v", i, ran, err)
		}
	}
	recs, err := evidence.FindReports(t.Context(), r.Service.Chain, "2026-W47")
	if err != nil || len(recs) != 1 {
		t.Fatalf("chain: %+v %v", recs, err)
	}
	if err := evidence.VerifyChain(t.Context(), r.Service.Chain, r.Service.Evidence); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg.Embedded.DataDir, "reports", "agentwatch-report-2026-W47.pdf")); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Files()); n != 2 {
		t.Errorf("%d files posted", n)
	}
	asked, err := r.Service.Audit.Query(t.Context(), audit.Filter{Action: audit.ActionAsk})
	if err != nil || len(asked) == 0 {
		t.Errorf("questions audited: %d, %v", len(asked), err)
	}

	cfg.Kafka.Brokers = []string{"127.0.0.1:1"}
	if _, err := reportScheduler(cfg, r.Service, r.log); err == nil {
		t.Error("a schedule in the distributed mode was accepted")
	}
}
