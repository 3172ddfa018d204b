package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// TestIntegrationKillBetweenActionAndRecord SIGKILLs the responder after a
// revocation reached Kong and before the responder recorded it, then
// restarts it: the revocation must not be sent again, and nothing may be
// lost — it is recorded once in the audit log, and the alert queued behind
// it is posted once.
func TestIntegrationKillBetweenActionAndRecord(t *testing.T) {
	killBetweenActionAndRecord(t, itest.PlainKafka(t))
}

// TestIntegrationKillBetweenActionAndRecordSASLSSL is the same crash over
// the broker's SASL_SSL listener (TLS and SCRAM-SHA-512).
func TestIntegrationKillBetweenActionAndRecordSASLSSL(t *testing.T) {
	killBetweenActionAndRecord(t, itest.SecureKafka(t, "scram-sha-512"))
}

func killBetweenActionAndRecord(t *testing.T, k itest.Kafka) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	e := newE2EOn(t, ctx, false, k)
	e.settings["responder.group_wait"] = "5s" // the alert runs after the kill
	e.agent, e.credential = "agent-crash-1", "cred-crash-1"
	e.kong.Add(e.agent, e.credential, "the-agents-api-key")

	now := time.Now().UnixMilli()
	a := anomaly.Anomaly{V: anomaly.Version, ID: "crash-anomaly-1", AgentID: e.agent, CredentialID: e.credential, Kind: anomaly.Behaviour,
		Severity: "critical", Score: 40, WindowStartMs: now - 20*60_000, WindowEndMs: now - 19*60_000, DetectedMs: now, // its evidence window (after: 5m) has ended
		Summary:     "pulled 300 MB in a minute",
		Explanation: []anomaly.Feature{{Name: "response_bytes", Observed: 3e8, Expected: 1e6, Surprise: 40, Contribution: 0.8}}}
	b, _ := json.Marshal(a)
	w, err := kafka.NewWriter(kafka.WriterConfig{Brokers: e.brokers, Security: e.sec, Topic: e.anomalies}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(ctx, bus.Message{Key: []byte(a.AgentID), Value: b}); err != nil {
		t.Fatal(err)
	}

	marker := filepath.Join(t.TempDir(), "paused")
	p := e.startResponder("RESPONDER_FAILPOINT=pause-after-revoke:" + marker)
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revocation never reached the failpoint:\n%s", p.Tail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d := e.credDeletes(); d != 1 || e.kong.Has(e.credential) {
		t.Fatalf("at the failpoint Kong saw %d DELETEs (credential present: %v), want 1", d, e.kong.Has(e.credential))
	}
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done
	if roots, _ := e.agentPosts(); len(roots) != 0 {
		t.Fatalf("the alert was posted before the kill; the test wants it queued behind the revocation")
	}
	audit, _ := e.cli("audit", "--agent", e.agent, "--json")
	if strings.Contains(audit, `"action":"revoke"`) {
		t.Fatalf("the revocation was recorded before the kill; the failpoint is in the wrong place:\n%s", audit)
	}

	p = e.startResponder()
	deadline = time.Now().Add(90 * time.Second)
	var revokes int
	for time.Now().Before(deadline) {
		audit, _ = e.cli("audit", "--agent", e.agent, "--json")
		revokes = strings.Count(audit, `"action":"revoke"`)
		roots, _ := e.agentPosts()
		if revokes > 0 && len(roots) > 0 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	e.quiet(8*time.Second, time.Minute)
	audit, _ = e.cli("audit", "--agent", e.agent, "--json")
	revokes = strings.Count(audit, `"action":"revoke"`)
	roots, replies := e.agentPosts()
	if d := e.credDeletes(); d != 1 {
		t.Errorf("Kong saw %d DELETEs after the restart, want 1: the revocation was repeated", d)
	}
	if revokes != 1 {
		t.Errorf("the audit log has %d revoke records, want 1 (lost or doubled):\n%s", revokes, audit)
	}
	if len(roots) != 1 {
		t.Errorf("%d alerts posted, want 1 (%d replies)", len(roots), len(replies))
	}
	if !strings.Contains(audit, `"action":"snapshot"`) {
		t.Errorf("the evidence snapshot is not recorded:\n%s", audit)
	}
	t.Logf("after SIGKILL between action and record and a restart: %d DELETE, %d revoke record, %d alert", e.credDeletes(), revokes, len(roots))
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	<-p.Done
}
