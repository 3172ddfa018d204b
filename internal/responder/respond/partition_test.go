package respond

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// TestIncidentAndOutboxMoveWithTheirPartition: an agent's incident (its
// Slack thread) and its queued actions go with its anomaly partition from
// one instance to the next through the changelog; the next instance posts
// into the same thread, repeats nothing the first did, and runs the
// approval the first asked for.
func TestIncidentAndOutboxMoveWithTheirPartition(t *testing.T) {
	ctx := context.Background()
	cl := partstate.NewMemChangelog(4)
	seen := &memBatchSeen{ids: map[string]bool{}}
	// One follow-up per anomaly (no summaries): the later anomaly's
	// follow-up shows which thread the new owner posts into.
	a := newRigWith(t, func(r *rig) {
		r.stateLog, r.seen = cl, seen
		r.cfg.Responder.Slack.DigestInterval = 0
	})
	z1 := anomaly.Anomaly{V: 1, ID: "z-1", AgentID: "agent-z", CredentialID: "cred-z", Kind: anomaly.ZombieRoute, Severity: "medium", Score: 3,
		WindowStartMs: 1, WindowEndMs: 60_001}
	if _, err := a.svc.Engine.Handle(ctx, z1); err != nil {
		t.Fatal(err)
	}
	a.settle()
	id := IncidentID(z1)
	roots, replies := postsAbout(a.slack.Posts(), "agent-z")
	if len(roots) != 1 || len(replies) != 1 {
		t.Fatalf("first instance: %d alerts and %d replies, want the alert and its approval request", len(roots), len(replies))
	}
	p := a.owner.Partition("agent-z")
	if !a.owner.Owns("agent-z") {
		t.Fatal("the first instance does not own agent-z")
	}
	if err := a.owner.Revoke(ctx, []int32{p}); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.svc.Engine.Incident(id); ok {
		t.Error("the first instance still holds the incident after handing its partition over")
	}
	if _, found, _ := a.svc.Worker.Store.Get(ctx, id+"-gated-1"); found {
		t.Error("the first instance still holds the approval entry after handing its partition over")
	}
	nPosts := len(a.slack.Posts())
	a.stop()

	// The second instance shares Slack, the changelog and the handled set.
	b := newRigWith(t, func(r *rig) {
		r.stateLog, r.seen = cl, seen
		r.slack = a.slack
		r.cfg.Responder.Slack.APIURL = a.slack.URL()
		r.cfg.Responder.Slack.DigestInterval = 0
	})
	in, ok := b.svc.Engine.Incident(id)
	if !ok || in.Roots["#soc-alerts"] == "" {
		t.Fatalf("incident after the move: %+v, %v; want it with its thread", in, ok)
	}
	if e, found, _ := b.svc.Worker.Store.Get(ctx, id+"-gated-1-timeout"); !found || e.State != outbox.StatePending {
		t.Errorf("approval timeout after the move: %+v, %v; want it pending", e, found)
	}
	if res, err := b.svc.Engine.Handle(ctx, z1); err != nil || !res.Duplicate {
		t.Errorf("redelivery of z-1 on the new owner: %+v, %v; want a duplicate", res, err)
	}
	z2 := z1
	z2.ID, z2.WindowStartMs, z2.WindowEndMs = "z-2", 60_001, 120_001
	if _, err := b.svc.Engine.Handle(ctx, z2); err != nil {
		t.Fatal(err)
	}
	b.settle()
	roots2, replies2 := postsAbout(b.slack.Posts(), "agent-z")
	if len(roots2) != 1 {
		t.Errorf("%d top-level alerts after the move, want the first one only", len(roots2))
	}
	if len(replies2) <= len(replies) || replies2[len(replies2)-1].ThreadTS != roots[0].TS {
		t.Errorf("the later anomaly did not go into the incident's thread %s: %+v", roots[0].TS, b.slack.Posts()[nPosts:])
	}

	// The approval asked by the first instance is answered on the second.
	codec, _ := slackui.NewActionCodec(testSecret)
	v, err := codec.Encode(slackui.ActionRef{Kind: slackui.Approve, IncidentID: id, AnomalyID: id + "-gated-1"})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	b.svc.Handler.ServeHTTP(w, signed(t, "aw_approve", v, "trig-1", time.Now()))
	if w.Code != http.StatusOK {
		t.Fatalf("approve click: %d", w.Code)
	}
	b.settle()
	has, _ := os.ReadFile(filepath.Join(b.cfg.Responder.StateDir, "denylist.txt"))
	if !bytes.Contains(has, []byte("cred-z")) {
		t.Fatalf("the approved revocation did not run on the new owner; deny-list:\n%s", has)
	}
	recs, _ := b.svc.Audit.Query(ctx, audit.Filter{AgentID: "agent-z"})
	revokes := 0
	for _, rec := range recs {
		if rec.Action == "revoke" && rec.Result == audit.ResultOK {
			revokes++
		}
	}
	if revokes != 1 {
		t.Errorf("%d revocations, want 1", revokes)
	}
}

// TestRedeliveredAnomalyStillAlertsWhenItsFirstHandlingStoppedBeforeTheAlert:
// the first handling of an anomaly queued the revocation but not the alert
// (the partition moved, or the process died, in between), and the
// revocation ran before the anomaly came again. The alert is then still
// the incident's first and is posted once; a later anomaly of the revoked
// agent stays suppressed.
func TestRedeliveredAnomalyStillAlertsWhenItsFirstHandlingStoppedBeforeTheAlert(t *testing.T) {
	ctx := context.Background()
	cl := partstate.NewMemChangelog(4)
	seen := &memBatchSeen{ids: map[string]bool{}}
	r := newRigWith(t, func(r *rig) {
		r.stateLog, r.seen = cl, seen
		r.playbooks = `
playbooks:
  - name: contain
    trigger: {kinds: [behaviour]}
    final: true
    steps:
      - revoke: {adapter: kong}
      - notify: {channel: "#soc-alerts"}
`
	})
	r.kong.Add("agent-r", "cred-r", "secret-key")
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()
	a1 := exfil("an-r1", "agent-r", "cred-r", start)
	cut := errors.New("partition moved")
	cl.FailRecords(func(rec partstate.Record) error {
		if bytes.Contains(rec.Value, []byte(`"kind":"`+kindAlert+`"`)) {
			return cut
		}
		return nil
	})
	if _, err := r.svc.Engine.Handle(ctx, a1); !errors.Is(err, cut) {
		t.Fatalf("first handling: %v, want it cut short at the alert", err)
	}
	cl.FailRecords(nil)
	r.settle()
	if r.kong.Has("cred-r") {
		t.Fatal("the revocation queued before the cut did not run")
	}
	if roots, _ := postsAbout(r.slack.Posts(), "agent-r"); len(roots) != 0 {
		t.Fatalf("alerted before the redelivery: %+v", roots)
	}
	if res, err := r.svc.Engine.Handle(ctx, a1); err != nil || res.Duplicate {
		t.Fatalf("redelivery: %+v, %v", res, err)
	}
	r.settle()
	if roots, _ := postsAbout(r.slack.Posts(), "agent-r"); len(roots) != 1 {
		t.Fatalf("redelivered anomaly: %d top-level alerts, want 1 (its alert was never queued)", len(roots))
	}
	if n := r.kong.Count(http.MethodDelete); n != 1 {
		t.Errorf("Kong DELETEs = %d, want 1", n)
	}
	// A later anomaly of the contained agent: recorded, not alerted.
	nPosts := len(r.slack.Posts())
	if _, err := r.svc.Engine.Handle(ctx, exfil("an-r2", "agent-r", "cred-r", start+60_000)); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if later := r.slack.Posts()[nPosts:]; !onlyNotes(later) {
		t.Errorf("a later anomaly of the revoked agent was alerted: %+v", later)
	}
}

// committingReader hands out its records, then blocks until ctx ends; it
// keeps what was committed.
type committingReader struct {
	oneThenWait
	mu        sync.Mutex
	committed []bus.Message
}

func (r *committingReader) Commit(_ context.Context, msgs ...bus.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.committed = append(r.committed, msgs...)
	return nil
}

// TestConsumerFinishesTheBatchItBeganWhenStopped: a generation ending (or
// a stop) in the middle of a batch lets the batch finish, mark its
// anomalies handled and commit them, so the partition's next owner finds
// every step queued and skips the anomaly, instead of finding half its
// steps.
func TestConsumerFinishesTheBatchItBeganWhenStopped(t *testing.T) {
	cl := partstate.NewMemChangelog(4)
	seen := &memBatchSeen{ids: map[string]bool{}}
	r := newRigWith(t, func(r *rig) { r.stateLog, r.seen = cl, seen })
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()
	a := exfil("an-s1", "agent-s", "cred-s", start)
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	reached, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	cl.FailRecords(func(rec partstate.Record) error {
		if bytes.Contains(rec.Value, []byte(`"kind":"`+kindAlert+`"`)) {
			once.Do(func() { close(reached) })
			<-release
		}
		return nil
	})
	rd := &committingReader{oneThenWait: oneThenWait{msgs: []bus.Message{{Topic: "anomalies", Partition: 2, Offset: 7, Value: b}}}}
	c := &Consumer{Reader: rd, Engine: r.svc.Engine, Log: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer never queued the anomaly's alert")
	}
	cancel() // the generation ends while the alert is being written
	time.Sleep(50 * time.Millisecond)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !seen.ids[a.ID] {
		t.Error("the anomaly of the batch begun was not marked handled")
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if len(rd.committed) != 1 || rd.committed[0].Offset != 7 {
		t.Errorf("committed %+v, want the batch's record", rd.committed)
	}
	in, ok := r.svc.Engine.Incident(IncidentID(a))
	if !ok || in.Roots["#soc-alerts"] == "" {
		t.Errorf("incident %+v: its alert is not recorded as the thread's root", in)
	}
}

// TestRevocationFinishingDuringHandOverStillNotesItsThread: a revocation
// that ends while its partition is being handed over queues its thread
// note in the changelog, for the next owner, instead of losing it.
func TestRevocationFinishingDuringHandOverStillNotesItsThread(t *testing.T) {
	ctx := context.Background()
	cl := partstate.NewMemChangelog(4)
	seen := &memBatchSeen{ids: map[string]bool{}}
	r := newRigWith(t, func(r *rig) { r.stateLog, r.seen = cl, seen })
	r.kong.Add("agent-h", "cred-h", "secret-key")
	reached, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	// The revocation reaches Kong once the alert was posted: a note is
	// queued only in a thread whose alert has started (one still queued
	// shows the revocation itself).
	r.kong.Before(func(*http.Request) {
		for deadline := time.Now().Add(10 * time.Second); len(r.slack.Posts()) == 0 && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	})
	// The revocation records itself in its incident before its note:
	// hold it there.
	cl.FailRecords(func(rec partstate.Record) error {
		if strings.HasPrefix(rec.Key, "i/") && bytes.Contains(rec.Value, []byte("cred-h")) && bytes.Contains(rec.Value, []byte(`"revoked"`)) {
			once.Do(func() {
				close(reached)
				<-release
			})
		}
		return nil
	})
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()
	if _, err := r.svc.Engine.Handle(ctx, exfil("an-h1", "agent-h", "cred-h", start)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		t.Fatal("the revocation never recorded itself in its incident")
	}
	p := r.owner.Partition("agent-h")
	handed := make(chan error, 1)
	go func() { handed <- r.owner.Revoke(ctx, []int32{p}) }()
	for r.owner.OwnsPartition(p) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-handed; err != nil {
		t.Fatal(err)
	}
	var notes []string
	for k, v := range cl.Live(p) {
		// The revocation's note is keyed by its step and channel.
		if bytes.Contains(v, []byte(`"kind":"`+kindNote+`"`)) && strings.HasSuffix(k, "-exfiltration-2@#soc-alerts") {
			notes = append(notes, k)
		}
	}
	if len(notes) != 1 {
		t.Fatalf("the changelog holds %d revocation notes for the next owner, want 1", len(notes))
	}
}
