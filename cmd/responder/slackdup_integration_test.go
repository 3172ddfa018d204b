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

// TestIntegrationKillBetweenPostAndRecord SIGKILLs the responder after the
// incident's alert reached Slack and before the responder recorded it, then
// restarts it: the restarted responder must find the alert in the channel
// (by the outbox key in its metadata) instead of posting it again, and a
// later anomaly of the incident must land on that alert (its thread or
// its card).
func TestIntegrationKillBetweenPostAndRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	e := newE2EOn(t, ctx, false, itest.PlainKafka(t))
	e.agent, e.credential = "agent-postcrash-1", "cred-postcrash-1"
	// One follow-up per anomaly (no summaries): the second anomaly's
	// follow-up shows the thread the restarted responder found.
	e.settings["responder.slack.digest_interval"] = "0s"
	e.kong.Add(e.agent, e.credential, "the-agents-api-key")

	w, err := kafka.NewWriter(kafka.WriterConfig{Brokers: e.brokers, Security: e.sec, Topic: e.anomalies}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	now := time.Now()
	send := func(id string, windowStart time.Time) {
		t.Helper()
		a := anomaly.Anomaly{V: anomaly.Version, ID: id, AgentID: e.agent, CredentialID: e.credential, Kind: anomaly.Behaviour,
			Severity: "critical", Score: 40, WindowStartMs: windowStart.UnixMilli(), WindowEndMs: windowStart.Add(time.Minute).UnixMilli(),
			DetectedMs: time.Now().UnixMilli(), Summary: "pulled 300 MB in a minute",
			Explanation: []anomaly.Feature{{Name: "response_bytes", Observed: 3e8, Expected: 1e6, Surprise: 40, Contribution: 0.8}}}
		b, _ := json.Marshal(a)
		if err := w.Write(ctx, bus.Message{Key: []byte(a.AgentID), Value: b}); err != nil {
			t.Fatal(err)
		}
	}
	// Its evidence window (after: 5m) has ended, so the alert does not wait
	// for the snapshot.
	send("postcrash-anomaly-1", now.Add(-20*time.Minute))

	marker := filepath.Join(t.TempDir(), "paused")
	p := e.startResponder("RESPONDER_FAILPOINT=pause-after-post:" + marker)
	waitFor(t, 90*time.Second, func() bool { _, err := os.Stat(marker); return err == nil }, func() string { return p.Tail(30) })
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Done
	roots, _ := e.agentPosts()
	if len(roots) != 1 {
		t.Fatalf("at the failpoint Slack has %d alerts about the agent, want 1", len(roots))
	}
	if !strings.Contains(roots[0].Metadata, `"event_type":"agentwatch_outbox_post"`) {
		t.Fatalf("the alert carries no outbox marker: metadata %q", roots[0].Metadata)
	}
	audit, _ := e.cli("audit", "--agent", e.agent, "--json")
	if strings.Contains(audit, `"action":"notify"`) {
		t.Fatalf("the alert was recorded before the kill; the failpoint is in the wrong place:\n%s", audit)
	}

	p = e.startResponder()
	lookups := e.slack.Reads("conversations.history")
	waitFor(t, 90*time.Second, func() bool {
		audit, _ = e.cli("audit", "--agent", e.agent, "--json")
		return strings.Contains(audit, `"action":"notify"`)
	}, func() string { return p.Tail(30) })
	send("postcrash-anomaly-2", now.Add(-19*time.Minute))
	// The second anomaly lands on the alert found: a follow-up in its
	// thread, or (the incident contained, which posts no follow-up) an
	// update of its card counting both anomalies.
	onFound := func() bool {
		roots, replies := e.agentPosts()
		if len(replies) > 0 {
			return true
		}
		for _, u := range e.slack.Posts() {
			if u.Method == "chat.update" && len(roots) > 0 && u.TS == roots[0].TS && strings.Contains(u.Text, "2 anomalies") {
				return true
			}
		}
		return false
	}
	waitFor(t, 90*time.Second, onFound, func() string { return p.Tail(30) })
	e.quiet(5*time.Second, time.Minute)

	roots, replies := e.agentPosts()
	if len(roots) != 1 {
		t.Errorf("%d top-level alerts about the agent after the restart, want 1: the alert was posted again", len(roots))
	}
	for _, r := range replies {
		if len(roots) > 0 && r.ThreadTS != roots[0].TS {
			t.Errorf("a follow-up is in thread %q, not the alert's %s", r.ThreadTS, roots[0].TS)
		}
	}
	if lookups == 0 && e.slack.Reads("conversations.history") == 0 {
		t.Error("the restarted responder never read the channel's history")
	}
	audit, _ = e.cli("audit", "--agent", e.agent, "--json")
	if n := strings.Count(audit, `by an interrupted run, found in the channel`); n != 1 {
		t.Errorf("%d notify records say the alert was found, want 1:\n%s", n, audit)
	}
	if d := e.credDeletes(); d != 1 {
		t.Errorf("Kong saw %d DELETEs, want 1", d)
	}
	t.Logf("after SIGKILL between post and record and a restart: %d alert, %d follow-ups in its thread; %d conversations.list and %d conversations.history reads",
		len(roots), len(replies), e.slack.Reads("conversations.list"), e.slack.Reads("conversations.history"))
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	<-p.Done
}

// waitFor polls cond until it holds or d passes; then it fails the test
// with what tail says.
func waitFor(t *testing.T, d time.Duration, cond func() bool, tail func() string) {
	t.Helper()
	if !pollUntil(d, cond) {
		t.Fatalf("not reached in %s:\n%s", d, tail())
	}
}
