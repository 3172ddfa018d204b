package respond

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// postedIncident runs two anomalies of one incident through a rig and
// returns the rig and its done entries by kind: the alert, its follow-up
// in the thread and the note of an acknowledgement clicked once the alert
// was posted.
func postedIncident(t *testing.T) (*rig, map[string]outbox.Entry) {
	t.Helper()
	// One follow-up per anomaly (no summaries), so the incident has a
	// reply entry to rerun.
	r := newRig(t, func(c *config.Config) { c.Responder.Slack.DigestInterval = 0 })
	ctx := t.Context()
	r.kong.Add("agent-1", "cred-1", "secret-key")
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()
	for _, a := range []anomaly.Anomaly{exfil("an-1", "agent-1", "cred-1", start), exfil("an-2", "agent-1", "cred-1", start+60_000)} {
		if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	r.settle()
	// The revocation ended before the alert was posted, which shows it:
	// it has no note. A click on the posted alert has.
	if err := r.svc.Engine.OnClick(ctx, slackui.Action{Kind: slackui.Acknowledge, IncidentID: IncidentID(exfil("an-1", "agent-1", "cred-1", start)),
		AnomalyID: "an-1", UserID: "U0ACK", UserName: "ana"}); err != nil {
		t.Fatal(err)
	}
	r.settle()
	done, err := r.svc.Worker.Store.List(ctx, outbox.StateDone)
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string]outbox.Entry{}
	for _, en := range done {
		if _, seen := byKind[en.Kind]; !seen {
			byKind[en.Kind] = en
		}
	}
	for _, k := range []string{kindAlert, kindReply, kindNote} {
		if _, ok := byKind[k]; !ok {
			t.Fatalf("no done %s entry; done: %+v", k, done)
		}
	}
	return r, byKind
}

// pendingCards counts the card updates waiting in r's outbox.
func pendingCards(t *testing.T, r *rig) int {
	t.Helper()
	all, err := r.svc.Worker.Store.List(t.Context(), outbox.StatePending)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, en := range all {
		if en.Kind == kindCard {
			n++
		}
	}
	return n
}

// rerun hands en to its kind's handler as the Worker would.
func rerun(t *testing.T, r *rig, en outbox.Entry) ([]byte, error) {
	t.Helper()
	return r.svc.Engine.Kinds()[en.Kind].Handler(t.Context(), en)
}

func TestRecoveredPostIsFoundNotPostedAgain(t *testing.T) {
	r, byKind := postedIncident(t)
	for _, k := range []string{kindAlert, kindReply, kindNote} {
		en := byKind[k]
		if !strings.Contains(postWithMarker(t, r, en.Key).Metadata, en.Key) {
			t.Fatalf("the %s was posted without its marker", k)
		}
		if k == kindAlert {
			// No card update waits (one queued by the click for the next
			// card slot runs first), so one pending after the rerun was
			// queued by it.
			for deadline := time.Now().Add(cardEvery + 5*time.Second); pendingCards(t, r) > 0; time.Sleep(100 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("a card update still pending after its slot")
				}
				r.settle()
			}
		}
		before := r.messages()
		en.Recovered = true
		res, err := rerun(t, r, en)
		if err != nil {
			t.Fatalf("%s: recovered run: %v", k, err)
		}
		if n := r.messages(); n != before {
			t.Errorf("%s: the recovered run posted again (%d posts, was %d)", k, n, before)
		}
		if k != kindNote && string(res) != string(en.Result) {
			t.Errorf("%s: recovered run's result %q, want the first run's %q (the same message)", k, res, en.Result)
		}
		if k == kindAlert {
			// The alert found was rendered by the interrupted run, before
			// the changes that left their showing to the alert: its card
			// is updated.
			if pendingCards(t, r) == 0 {
				t.Error("the alert found in the channel queued no card update")
			}
		}
	}
	if r.slack.Reads("conversations.history") == 0 || r.slack.Reads("conversations.replies") == 0 {
		t.Errorf("lookups: history %d, replies %d; the alert is looked up in the channel, the others in the thread",
			r.slack.Reads("conversations.history"), r.slack.Reads("conversations.replies"))
	}
	recs, err := r.svc.Audit.Query(t.Context(), audit.Filter{AgentID: "agent-1"})
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, rec := range recs {
		if strings.Contains(rec.Detail, "by an interrupted run") {
			found++
		}
	}
	if found != 2 {
		t.Errorf("%d audit records say the post was found, want 2 (alert and follow-up; a note is no action)", found)
	}
}

// messages counts the messages posted to Slack; updates of a card (a
// later slot's, which may land at any time) are none.
func (r *rig) messages() int {
	n := 0
	for _, p := range r.slack.Posts() {
		if p.Method != "chat.update" {
			n++
		}
	}
	return n
}

// postWithMarker returns the post whose metadata names key.
func postWithMarker(t *testing.T, r *rig, key string) testsrv.SlackPost {
	t.Helper()
	for _, p := range r.slack.Posts() {
		if strings.Contains(p.Metadata, `"outbox_key":"`+key+`"`) {
			return p
		}
	}
	t.Fatalf("no post carries the marker %q", key)
	return testsrv.SlackPost{}
}

func TestInterruptedPostLookup(t *testing.T) {
	r, byKind := postedIncident(t)
	alert := byKind[kindAlert]
	tests := []struct {
		name string
		// mod changes the alert entry: a fresh key makes its message one
		// that was never posted.
		mod       func(*outbox.Entry)
		fail      string // the lookup's Slack error
		wantPost  bool
		wantLook  bool
		wantErr   string
		wantWait  time.Duration
		wantAudit string
	}{
		{name: "recovered, never posted: posts", mod: func(e *outbox.Entry) { e.Key, e.Recovered = "slack:never-posted-1", true },
			wantPost: true, wantLook: true},
		{name: "no scope: posts and says it may be a duplicate", mod: func(e *outbox.Entry) { e.Key, e.Recovered = "slack:never-posted-2", true },
			fail: "missing_scope", wantPost: true, wantLook: true, wantAudit: "may be a duplicate: conversations.history to #soc-alerts (C0|): missing_scope"},
		{name: "rate limited: waits, tagged to look again", mod: func(e *outbox.Entry) { e.Key, e.Recovered = "slack:never-posted-3", true },
			fail: "ratelimited", wantLook: true, wantErr: unconfirmedTag, wantWait: time.Second},
		{name: "5xx-like error: retried, tagged", mod: func(e *outbox.Entry) { e.Key, e.Recovered = "slack:never-posted-4", true },
			fail: "internal_error", wantLook: true, wantErr: unconfirmedTag},
		{name: "tagged by an earlier run: looks and finds", mod: func(e *outbox.Entry) {
			e.LastError = unconfirmedTag + ": retry after 1s: conversations.history to #soc-alerts: rate limited"
		}, wantLook: true},
		{name: "a first run does not look", mod: func(e *outbox.Entry) { e.Key = "slack:never-posted-5" }, wantPost: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			en := alert
			tc.mod(&en)
			if tc.fail != "" {
				r.slack.FailNext("conversations.history", tc.fail)
			}
			posts, looks := r.messages(), r.slack.Reads("conversations.history")
			_, err := rerun(t, r, en)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("run: %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("run error %v, want one containing %q", err, tc.wantErr)
			}
			var ra outbox.RetryAfterer
			if tc.wantWait > 0 {
				if !errors.As(err, &ra) {
					t.Fatalf("error %v asks for no wait", err)
				}
				if w, _ := ra.RetryAfter(); w != tc.wantWait {
					t.Errorf("wait %s, want %s", w, tc.wantWait)
				}
			}
			if got := r.messages() - posts; got != map[bool]int{true: 1}[tc.wantPost] {
				t.Errorf("%d posts, want posted=%v", got, tc.wantPost)
			}
			// A failed lookup is not answered with messages, so it does
			// not count as a read; it is seen through its error above.
			looked := r.slack.Reads("conversations.history") > looks || tc.fail != ""
			if looked != tc.wantLook {
				t.Errorf("looked up: %v, want %v", looked, tc.wantLook)
			}
			if tc.wantAudit != "" {
				recs, err := r.svc.Audit.Query(t.Context(), audit.Filter{AgentID: "agent-1"})
				if err != nil {
					t.Fatal(err)
				}
				ok := false
				for _, rec := range recs {
					has := true
					for _, part := range strings.Split(tc.wantAudit, "|") {
						has = has && strings.Contains(rec.Detail, part)
					}
					ok = ok || has
				}
				if !ok {
					t.Errorf("no audit record says %q", tc.wantAudit)
				}
			}
		})
	}
}

func TestCheckPostsTagsWhatMayHavePosted(t *testing.T) {
	ambiguous := &slackui.PostError{Op: "chat.postMessage", Retry: true, Err: context.DeadlineExceeded}
	limited := &slackui.PostError{Op: "chat.postMessage", Retry: true, RetryAfter: time.Second, Err: errors.New("429")}
	refused := &slackui.PostError{Op: "chat.postMessage", Err: errors.New("channel_not_found")}
	tests := []struct {
		name   string
		en     outbox.Entry
		err    error
		tagged bool
	}{
		{"timeout of a post: tagged", outbox.Entry{}, ambiguous, true},
		{"429 of a first post: it did not post", outbox.Entry{}, outbox.RetryAfter(time.Second, limited), false},
		{"refused post: not posted", outbox.Entry{}, outbox.Permanent(refused), false},
		{"recovered run failing before its lookup: tagged", outbox.Entry{Recovered: true}, outbox.Wait(time.Second, "waiting"), true},
		{"tagged run failing again: still tagged, once", outbox.Entry{LastError: unconfirmedTag + ": x"}, unconfirmed(ambiguous), true},
		{"a plain wait: not tagged", outbox.Entry{}, outbox.Wait(time.Second, "waiting"), false},
		{"success: nothing", outbox.Entry{Recovered: true}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := checkPosts(func(context.Context, outbox.Entry) ([]byte, error) { return nil, tc.err })
			_, err := h(t.Context(), tc.en)
			if tc.err == nil {
				if err != nil {
					t.Fatalf("error %v from a handler that succeeded", err)
				}
				return
			}
			msg := err.Error()
			if got := strings.Contains(msg, unconfirmedTag); got != tc.tagged {
				t.Errorf("tagged = %v, want %v: %s", got, tc.tagged, msg)
			}
			if strings.Count(msg, unconfirmedTag) > 1 {
				t.Errorf("tagged twice: %s", msg)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("the tag hides the handler's error: %v", err)
			}
			var ra outbox.RetryAfterer
			if errors.As(tc.err, &ra) && !errors.As(err, &ra) {
				t.Errorf("the tag hides the wait")
			}
			var pe *slackui.PostError
			if errors.As(tc.err, &pe) != errors.As(err, &pe) {
				t.Errorf("the tag hides the PostError")
			}
			// next run sees the tag in LastError.
			if tc.tagged && !mayHavePosted(outbox.Entry{LastError: msg}) {
				t.Errorf("the next run would not look: %s", msg)
			}
		})
	}
}

func TestRecoveredApprovalRequestIsFoundNotPostedAgain(t *testing.T) {
	r := newRig(t, nil)
	ctx := t.Context()
	a := anomaly.Anomaly{V: 1, ID: "z-1", AgentID: "agent-z", CredentialID: "cred-z", Kind: anomaly.ZombieRoute, Severity: "medium", Score: 3,
		WindowStartMs: 1, WindowEndMs: 60_001}
	if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
		t.Fatal(err)
	}
	r.settle()
	en, ok, err := r.svc.Worker.Store.Get(ctx, IncidentID(a)+"-gated-1")
	if err != nil || !ok || en.Kind != kindApprove || en.State != outbox.StateDone {
		t.Fatalf("approval request entry = %+v, %v, %v; want a done %s", en, ok, err, kindApprove)
	}
	asked := postWithMarker(t, r, en.Key)
	if asked.ThreadTS == "" {
		t.Fatalf("the approval request was not posted in the incident's thread: %+v", asked)
	}
	before, reads := r.messages(), r.slack.Reads("conversations.replies")
	en.Recovered = true
	if _, err := rerun(t, r, en); err != nil {
		t.Fatal(err)
	}
	if n := r.messages(); n != before {
		t.Errorf("the recovered approval request was posted again (%d posts, was %d)", n, before)
	}
	if r.slack.Reads("conversations.replies") == reads {
		t.Error("the recovered approval request was not looked up in the thread")
	}
}
