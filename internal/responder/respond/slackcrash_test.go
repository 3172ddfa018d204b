//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package respond

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

const alertOnlyPlaybooks = `
playbooks:
  - name: alert-only
    trigger: {kinds: [behaviour]}
    final: true
    steps:
      - notify: {channel: "#soc-alerts"}
`

// fileService builds a responder on the state files of dir that posts to
// the Slack at slackURL; afterAction is Deps.AfterAction.
func fileService(t *testing.T, dir, slackURL string, afterAction func(kind, key string)) *Service {
	t.Helper()
	cfg, err := config.LoadEnv("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Responder.StateDir = dir
	cfg.Responder.GroupWait = 0
	// One follow-up per anomaly: what is checked is that each is posted
	// once across the crash, not how the thread is summarised.
	cfg.Responder.Slack.DigestInterval = 0
	cfg.Responder.Slack.APIURL = slackURL
	set, err := playbooks.Parse("test.yaml", []byte(alertOnlyPlaybooks))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": testSecret}
	svc, err := Build(cfg, Deps{Set: set, Getenv: func(k string) string { return env[k] }, AfterAction: afterAction}, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func crashAnomaly(id string, start time.Time) anomaly.Anomaly {
	return exfil(id, "agent-crash", "cred-crash", start.UnixMilli())
}

// TestSIGKILLBetweenSlackPostAndRecord kills a real responder process on
// the state files with SIGKILL right after its alert reached Slack and
// before the post was recorded. The restarted responder must find the
// alert in the channel instead of posting it again, and the incident's next
// anomaly must go into the alert's thread.
func TestSIGKILLBetweenSlackPostAndRecord(t *testing.T) {
	if dir := os.Getenv("RESPOND_SLACK_SIGKILL_CHILD"); dir != "" {
		slackSIGKILLChild(t, dir, os.Getenv("RESPOND_SLACK_URL"))
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	slack := testsrv.NewSlack()
	defer slack.Close()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILLBetweenSlackPostAndRecord$", "-test.count=1")
	cmd.Env = append(os.Environ(), "RESPOND_SLACK_SIGKILL_CHILD="+dir, "RESPOND_SLACK_URL="+slack.URL())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child = %v; want it killed\n%s", err, out)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v; want SIGKILL\n%s", err, out)
	}
	roots, _ := postsAbout(slack.Posts(), "agent-crash")
	if len(roots) != 1 {
		t.Fatalf("before the restart Slack has %d alerts, want the 1 the child posted", len(roots))
	}

	svc := fileService(t, dir, slack.URL(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		svc.Close()
	}()
	settled := func() {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			open, err := svc.Worker.Store.List(ctx, outbox.StatePending, outbox.StateInFlight)
			if err != nil {
				t.Fatal(err)
			}
			open = slices.DeleteFunc(open, laterCardUpdate)
			if len(open) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("entries still open after 30s: %+v", open)
			}
		}
	}
	settled()
	start := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	if _, err := svc.Engine.Handle(ctx, crashAnomaly("crash-2", start.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	settled()

	roots, replies := postsAbout(slack.Posts(), "agent-crash")
	if len(roots) != 1 {
		t.Errorf("%d alerts after the restart, want 1: the alert was posted again", len(roots))
	}
	if len(replies) == 0 {
		t.Error("the incident's second anomaly posted no follow-up")
	}
	for _, r := range replies {
		if len(roots) > 0 && r.ThreadTS != roots[0].TS {
			t.Errorf("a follow-up is in thread %q, not the alert's %s", r.ThreadTS, roots[0].TS)
		}
	}
	if slack.Reads("conversations.history") == 0 {
		t.Error("the restarted responder did not read the channel's history")
	}
}

// slackSIGKILLChild handles one anomaly and kills its own process as soon
// as the alert is posted, before the post is recorded.
func slackSIGKILLChild(t *testing.T, dir, slackURL string) {
	svc := fileService(t, dir, slackURL, func(kind, _ string) {
		if kind == string(playbooks.KindNotify) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	})
	ctx := t.Context()
	go func() { _ = svc.Run(ctx) }()
	start := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	if _, err := svc.Engine.Handle(ctx, crashAnomaly("crash-1", start)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Second)
	t.Fatal("the alert was not posted in 30s; want the process killed after it")
}
