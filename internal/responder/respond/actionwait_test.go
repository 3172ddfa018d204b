package respond

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// waitPosts waits up to 20 s for n chat.postMessage calls and returns
// every call Slack received.
func waitPosts(t *testing.T, s *testsrv.Slack, n int) []testsrv.SlackPost {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		posts := s.Posts()
		got := 0
		for _, p := range posts {
			if p.Method == "chat.postMessage" {
				got++
			}
		}
		if got >= n {
			return posts
		}
		select {
		case <-s.Changes():
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%d of %d alerts posted in 20 s: %+v", got, n, posts)
		}
	}
}

// waitingRig is a rig whose playbook revokes, then notifies, with no group
// wait and an hour's action wait (only the revocation's end can bring
// the alert forward), and agent-1's credential at Kong; mod changes it
// further. It returns the rig and agent-1's anomaly.
func waitingRig(t *testing.T, mod func(*rig)) (*rig, anomaly.Anomaly) {
	t.Helper()
	r := newRigWith(t, func(r *rig) {
		r.playbooks = revokeThenNotify
		r.cfg.Responder.GroupWait = 0
		r.cfg.Responder.ActionWait = time.Hour
		if mod != nil {
			mod(r)
		}
	})
	r.kong.Add("agent-1", "cred-1", "secret-key")
	a := exfil("an-1", "agent-1", "cred-1", time.Now().Add(-5*time.Minute).Truncate(time.Minute).UnixMilli())
	a.Severity = "high"
	return r, a
}

// TestAlertWaitsForTheRevocation: an alert whose playbook revokes first is
// queued an action wait out (an hour here, so only the revocation's end
// can bring it forward) and posted once the revocation is on the
// incident, showing it: one message, with neither a card update nor a
// thread note after it. On both outbox stores (the embedded file, the
// distributed mode's changelog).
func TestAlertWaitsForTheRevocation(t *testing.T) {
	for _, distributed := range []bool{false, true} {
		name := "file"
		if distributed {
			name = "changelog"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			r, a := waitingRig(t, func(r *rig) {
				if distributed {
					r.stateLog, r.seen = partstate.NewMemChangelog(4), &memBatchSeen{ids: map[string]bool{}}
				}
			})
			if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
				t.Fatal(err)
			}
			posts := waitPosts(t, r.slack, 1)
			if r.kong.Count("DELETE") != 1 {
				t.Fatalf("Kong DELETEs %d, want 1", r.kong.Count("DELETE"))
			}
			alert := posts[0]
			if !strings.Contains(alert.Blocks, "revoke done") || !strings.Contains(alert.Blocks, "cred-1") {
				t.Errorf("the alert does not show the revocation it waited for: %s", alert.Blocks)
			}
			r.settle()
			// Given a moment for anything wrongly queued after it.
			time.Sleep(300 * time.Millisecond)
			r.settle()
			for _, p := range r.slack.Posts()[1:] {
				t.Errorf("%s after the alert (thread %q): %q; the alert already showed the revocation", p.Method, p.ThreadTS, p.Text)
			}
			all, err := r.svc.Worker.Store.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, en := range all {
				if en.Kind == kindCard || en.Kind == kindNote {
					t.Errorf("%s %s queued", en.Kind, en.Key)
				}
			}
		})
	}
}

// TestAlertWaitsForTheFirstRunOnly: a revocation that fails (Kong answers
// 503, retried later) brings its waiting alert forward all the same: the
// alert does not wait through the retries.
func TestAlertWaitsForTheFirstRunOnly(t *testing.T) {
	ctx := context.Background()
	r, a := waitingRig(t, nil)
	r.kong.FailNext(503, 503, 503, 503, 503, 503, 503, 503)
	if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
		t.Fatal(err)
	}
	waitPosts(t, r.slack, 1)
	in, _ := r.svc.Engine.Incident(IncidentID(a))
	if len(in.Revoked) != 0 {
		t.Fatalf("revoked %v before the alert, want the alert posted while the revocation is retried", in.Revoked)
	}
}

// TestAlertBroughtForwardByItself: the revocation ends before its alert
// is queued (its write held here), so it finds no alert to bring forward;
// the alert, queued next, sees the revocation done and brings itself
// forward.
func TestAlertBroughtForwardByItself(t *testing.T) {
	ctx := context.Background()
	gc := newGate(alertPayload)
	r, a := waitingRig(t, func(r *rig) {
		r.stateLog, r.seen = &gatesChangelog{MemChangelog: partstate.NewMemChangelog(4), gates: []*writeGate{gc}}, &memBatchSeen{ids: map[string]bool{}}
	})
	handled := handleHeld(ctx, t, r, a, gc)
	// The revocation's run ends, outcome recorded, while the alert's
	// write is held.
	deadline := time.Now().Add(20 * time.Second)
	for {
		en, found, err := r.svc.Worker.Store.Get(ctx, IncidentID(a)+"-contain-0")
		if err != nil {
			t.Fatal(err)
		}
		if found && en.State == outbox.StateDone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revocation entry not done in 20 s: %+v (found %v)", en, found)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(gc.open)
	if err := <-handled; err != nil {
		t.Fatal(err)
	}
	posts := waitPosts(t, r.slack, 1)
	if !strings.Contains(posts[0].Blocks, "revoke done") {
		t.Errorf("the alert does not show the revocation: %s", posts[0].Blocks)
	}
}

// handleHeld handles a in the background and returns once each of gates
// holds a write; the channel gets Handle's error.
func handleHeld(ctx context.Context, t *testing.T, r *rig, a anomaly.Anomaly, gates ...*writeGate) <-chan error {
	t.Helper()
	handled := make(chan error, 1)
	go func() {
		_, err := r.svc.Engine.Handle(ctx, a)
		handled <- err
	}()
	for _, g := range gates {
		select {
		case <-g.held:
		case err := <-handled:
			t.Fatalf("handled before every gated write was held: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatal("a gated write was not held in 20 s")
		}
	}
	return handled
}

// alertPayload matches the payload record of an alert queued for
// #soc-alerts (a job with a channel).
func alertPayload(r partstate.Record) bool {
	return strings.HasPrefix(r.Key, "o/\x00") && bytes.Contains(r.Value, []byte(`"channel":"#soc-alerts"`))
}

// gatesChangelog holds back each Append carrying a record a gate matches,
// until that gate is opened, telling the gate's held channel once.
type gatesChangelog struct {
	*partstate.MemChangelog
	gates []*writeGate
}

type writeGate struct {
	match func(partstate.Record) bool
	held  chan struct{}
	open  chan struct{}
}

func newGate(match func(partstate.Record) bool) *writeGate {
	return &writeGate{match: match, held: make(chan struct{}, 1), open: make(chan struct{})}
}

func (g *gatesChangelog) Append(ctx context.Context, p int32, recs ...partstate.Record) error {
	for _, gt := range g.gates {
		if slices.ContainsFunc(recs, gt.match) {
			select {
			case gt.held <- struct{}{}:
			default:
			}
			<-gt.open
		}
	}
	return g.MemChangelog.Append(ctx, p, recs...)
}

// TestAlertBroughtForwardAfterAFailedStep: the revocation fails (Kong
// answers 403) before its alert is queued, and its outcome is not written
// yet when the alert names itself root: the alert finds the step ended by
// the mark its run left, not by its entry, and brings itself forward.
func TestAlertBroughtForwardAfterAFailedStep(t *testing.T) {
	ctx := context.Background()
	alert := newGate(alertPayload)
	failed := newGate(func(r partstate.Record) bool {
		return strings.HasSuffix(r.Key, "-contain-0") && bytes.Contains(r.Value, []byte(`"state":"failed"`))
	})
	gc := &gatesChangelog{MemChangelog: partstate.NewMemChangelog(4), gates: []*writeGate{alert, failed}}
	r, a := waitingRig(t, func(r *rig) { r.stateLog, r.seen = gc, &memBatchSeen{ids: map[string]bool{}} })
	// Registered after the rig's, so run before its stop, which waits for
	// the held writes.
	t.Cleanup(func() {
		for _, g := range gc.gates {
			select {
			case <-g.open:
			default:
				close(g.open)
			}
		}
	})
	r.kong.FailNext(403, 403, 403, 403)
	handled := handleHeld(ctx, t, r, a, alert, failed)
	// The revocation's run has ended (its outcome is being written);
	// now the alert is queued.
	close(alert.open)
	if err := <-handled; err != nil {
		t.Fatal(err)
	}
	waitPosts(t, r.slack, 1)
	if r.kong.Count("DELETE") != 0 {
		t.Errorf("Kong DELETEs %d, want 0 (the revocation failed)", r.kong.Count("DELETE"))
	}
}
