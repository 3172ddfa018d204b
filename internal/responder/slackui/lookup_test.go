package slackui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
)

func TestMessageMarkerIsSentAsMetadata(t *testing.T) {
	srv := testsrv.NewSlack()
	defer srv.Close()
	p := NewPoster(slack.New("xoxb-test", slack.OptionAPIURL(srv.URL())))
	if _, err := p.PostAlert(t.Context(), "C1", Message{Text: "with", Marker: "slack:d1:post"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.PostAlert(t.Context(), "C1", Message{Text: "without"}); err != nil {
		t.Fatal(err)
	}
	posts := srv.Posts()
	if want := `"event_type":"agentwatch_outbox_post"`; !strings.Contains(posts[0].Metadata, want) || !strings.Contains(posts[0].Metadata, `"outbox_key":"slack:d1:post"`) {
		t.Errorf("metadata of a marked message = %q, want the event type and the outbox key", posts[0].Metadata)
	}
	if posts[1].Metadata != "" {
		t.Errorf("a message without a marker was sent metadata %q", posts[1].Metadata)
	}
}

func TestFindPosted(t *testing.T) {
	const marker = "slack:decision-1:post"
	type world struct {
		srv    *testsrv.Slack
		p      *Poster
		root   string // a root message's ts, from the bot
		thread string // where to look: "" for the channel
		since  time.Time
	}
	post := func(t *testing.T, w *world, thread, key string) string {
		t.Helper()
		var ts string
		var err error
		if thread == "" {
			ts, err = w.p.PostAlert(t.Context(), "C1", Message{Text: "m " + key, Marker: key})
		} else {
			ts, err = w.p.PostThreadReply(t.Context(), "C1", thread, Message{Text: "r " + key, Marker: key})
		}
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	noise := func(t *testing.T, w *world, thread string, n int) {
		for range n {
			post(t, w, thread, "")
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, w *world) (wantTS string)
		// wantErr: "" none; else a substring of the error; wantOp and
		// wantRetry describe the *PostError when there is one.
		wantErr    string
		wantRetry  bool
		wantAfter  time.Duration
		wantReads  int
		wantMethod string
	}{
		{name: "found at the top level", setup: func(t *testing.T, w *world) string {
			noise(t, w, "", 2)
			ts := post(t, w, "", marker)
			noise(t, w, "", 2)
			return ts
		}, wantReads: 1, wantMethod: "conversations.history"},
		{name: "not found", setup: func(t *testing.T, w *world) string {
			post(t, w, "", "slack:other-decision:post")
			noise(t, w, "", 3)
			return ""
		}, wantReads: 1, wantMethod: "conversations.history"},
		{name: "found on the fourth page", setup: func(t *testing.T, w *world) string {
			w.srv.SetPageLimit(2)
			ts := post(t, w, "", marker)
			noise(t, w, "", 7) // newest first: the marked one is the 8th
			return ts
		}, wantReads: 4, wantMethod: "conversations.history"},
		{name: "not found after paging to the start of the window", setup: func(t *testing.T, w *world) string {
			w.srv.SetPageLimit(3)
			noise(t, w, "", 7)
			return ""
		}, wantReads: 3, wantMethod: "conversations.history"},
		{name: "too many messages since: incomplete", setup: func(t *testing.T, w *world) string {
			w.srv.SetPageLimit(1)
			post(t, w, "", marker)
			noise(t, w, "", lookupMaxPages)
			return ""
		}, wantErr: ErrLookupIncomplete.Error(), wantReads: lookupMaxPages, wantMethod: "conversations.history"},
		{name: "older than the window", setup: func(t *testing.T, w *world) string {
			post(t, w, "", marker)
			w.since = time.Now().Add(time.Second)
			time.Sleep(1100 * time.Millisecond) // the stand-in's ts is the clock's
			noise(t, w, "", 1)
			return ""
		}, wantReads: 1, wantMethod: "conversations.history"},
		{name: "another app's message with the same marker does not count", setup: func(t *testing.T, w *world) string {
			w.srv.AddMessage("C1", "", "UOTHER", "BOTHER", "forged", map[string]any{"event_type": MarkerEventType, "event_payload": map[string]any{"outbox_key": marker}})
			return ""
		}, wantReads: 1, wantMethod: "conversations.history"},
		{name: "thread reply found in the thread", setup: func(t *testing.T, w *world) string {
			w.root = post(t, w, "", "slack:root:post")
			w.thread = w.root
			w.srv.SetPageLimit(2)
			noise(t, w, w.root, 2)
			ts := post(t, w, w.root, marker)
			noise(t, w, w.root, 3)
			return ts
		}, wantReads: 2, wantMethod: "conversations.replies"},
		{name: "a thread reply is not in the channel's history", setup: func(t *testing.T, w *world) string {
			w.root = post(t, w, "", "slack:root:post")
			post(t, w, w.root, marker)
			return ""
		}, wantReads: 1, wantMethod: "conversations.history"},
		{name: "missing scope is not retried", setup: func(t *testing.T, w *world) string {
			w.srv.FailNext("conversations.history", "missing_scope")
			return ""
		}, wantErr: "missing_scope", wantMethod: "conversations.history"},
		{name: "rate limited waits", setup: func(t *testing.T, w *world) string {
			w.srv.FailNext("conversations.history", "ratelimited")
			return ""
		}, wantErr: "rate limited", wantRetry: true, wantAfter: time.Second, wantMethod: "conversations.history"},
		{name: "internal error is retried", setup: func(t *testing.T, w *world) string {
			w.srv.FailNext("conversations.replies", "internal_error")
			w.root = post(t, w, "", "slack:root:post")
			w.thread = w.root
			return ""
		}, wantErr: "internal_error", wantRetry: true, wantMethod: "conversations.replies"},
		{name: "unknown thread", setup: func(t *testing.T, w *world) string {
			w.thread = "1700000000.000001"
			return ""
		}, wantErr: "thread_not_found", wantMethod: "conversations.replies"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := testsrv.NewSlack()
			defer srv.Close()
			reg := prometheus.NewRegistry()
			p := NewPoster(slack.New("xoxb-test", slack.OptionAPIURL(srv.URL())))
			p.Metrics = NewMetrics(reg)
			w := &world{srv: srv, p: p, since: time.Now().Add(-time.Minute)}
			wantTS := tc.setup(t, w)
			ts, found, err := p.FindPosted(t.Context(), "C1", w.thread, marker, w.since)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("FindPosted: %v", err)
				}
				if found != (wantTS != "") || ts != wantTS {
					t.Fatalf("FindPosted = %q, %v; want %q, %v", ts, found, wantTS, wantTS != "")
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("FindPosted error = %v, want one containing %q", err, tc.wantErr)
				}
				if found {
					t.Fatal("found with an error")
				}
				var pe *PostError
				if errors.As(err, &pe) {
					if pe.Retry != tc.wantRetry || pe.RetryAfter != tc.wantAfter || pe.Op != tc.wantMethod {
						t.Errorf("PostError = %+v, want Op %s, Retry %v, RetryAfter %s", pe, tc.wantMethod, tc.wantRetry, tc.wantAfter)
					}
				} else if !errors.Is(err, ErrLookupIncomplete) {
					t.Errorf("error %T is neither a *PostError nor ErrLookupIncomplete", err)
				}
			}
			if tc.wantReads > 0 {
				if got := srv.Reads(tc.wantMethod); got != tc.wantReads {
					t.Errorf("%s answered %d times, want %d", tc.wantMethod, got, tc.wantReads)
				}
			}
			if n := testutil.CollectAndCount(p.Metrics.Calls, "agentwatch_responder_slack_calls_total"); n == 0 {
				t.Error("the lookup's calls were not counted")
			}
		})
	}
}

func TestFindPostedAsksAuthTestOnce(t *testing.T) {
	srv := testsrv.NewSlack()
	defer srv.Close()
	reg := prometheus.NewRegistry()
	p := NewPoster(slack.New("xoxb-test", slack.OptionAPIURL(srv.URL())))
	p.Metrics = NewMetrics(reg)
	for range 3 {
		if _, _, err := p.FindPosted(t.Context(), "C1", "", "k", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(p.Metrics.Calls.WithLabelValues("auth.test", "ok")); got != 1 {
		t.Errorf("auth.test asked %v times for three lookups, want 1", got)
	}
	if _, _, err := p.FindPosted(context.Background(), "C1", "", "", time.Now()); err == nil {
		t.Error("an empty marker was accepted")
	}
}

func TestSlackTS(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Unix(1700000000, 123456789), "1700000000.123456"},
		{time.Unix(1700000000, 0), "1700000000.000000"},
		{time.Time{}, "0"},
	} {
		if got := slackTS(tc.in); got != tc.want {
			t.Errorf("slackTS(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestFindPostedResumesAfterRateLimit: under one read a minute, a lookup
// that started over after each 429 would never pass its second page.
func TestFindPostedResumesAfterRateLimit(t *testing.T) {
	srv := testsrv.NewSlack()
	defer srv.Close()
	p := NewPoster(slack.New("xoxb-test", slack.OptionAPIURL(srv.URL())))
	srv.SetPageLimit(2)
	want, err := p.PostAlert(t.Context(), "C1", Message{Text: "alert", Marker: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 { // newest first: the marked one is on the third page
		if _, err := p.PostAlert(t.Context(), "C1", Message{Text: "noise"}); err != nil {
			t.Fatal(err)
		}
	}
	since := time.Now().Add(-time.Minute)
	srv.FailNext("conversations.history", "", "ratelimited") // the second read is refused
	_, _, err = p.FindPosted(t.Context(), "C1", "", "k1", since)
	var pe *PostError
	if !errors.As(err, &pe) || pe.RetryAfter != time.Second {
		t.Fatalf("first lookup: %v, want the 429", err)
	}
	ts, found, err := p.FindPosted(t.Context(), "C1", "", "k1", since)
	if err != nil || !found || ts != want {
		t.Fatalf("resumed lookup = %q, %v, %v; want %q", ts, found, err, want)
	}
	if got := srv.Reads("conversations.history"); got != 3 {
		t.Errorf("%d pages read, want 3 (the first page is not read again)", got)
	}
	// Done: a new lookup of the same starts over.
	if _, found, err := p.FindPosted(t.Context(), "C1", "", "k1", since); err != nil || !found {
		t.Fatalf("third lookup: %v, %v", found, err)
	}
	if got := srv.Reads("conversations.history"); got != 6 {
		t.Errorf("%d pages read after a fresh lookup, want 6", got)
	}
}

// TestFindPostedByChannelName: playbooks name channels ("#soc-alerts");
// chat.postMessage takes a name, the reads only an ID.
func TestFindPostedByChannelName(t *testing.T) {
	srv := testsrv.NewSlack()
	defer srv.Close()
	newPoster := func() *Poster { return NewPoster(slack.New("xoxb-test", slack.OptionAPIURL(srv.URL()))) }
	for i := range 1500 { // two pages of conversations.list
		srv.ChannelID(fmt.Sprintf("other-%04d", i))
	}
	before := newPoster()
	want, err := before.PostAlert(t.Context(), "#soc-alerts", Message{Text: "alert", Marker: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-time.Minute)

	// The Poster that posted knows the ID from chat.postMessage's answer.
	if ts, found, err := before.FindPosted(t.Context(), "#soc-alerts", "", "k1", since); err != nil || !found || ts != want {
		t.Fatalf("same Poster: %q, %v, %v; want %q", ts, found, err, want)
	}
	if n := srv.Reads("conversations.list"); n != 0 {
		t.Errorf("conversations.list called %d times for a channel the Poster posted to", n)
	}

	// A restarted process resolves the name by listing the channels, once.
	after := newPoster()
	for range 2 {
		if ts, found, err := after.FindPosted(t.Context(), "#soc-alerts", "", "k1", since); err != nil || !found || ts != want {
			t.Fatalf("new Poster: %q, %v, %v; want %q", ts, found, err, want)
		}
	}
	if n := srv.Reads("conversations.list"); n != 2 {
		t.Errorf("conversations.list answered %d pages, want 2 (two pages, then cached)", n)
	}

	// A name no one can see, and a missing scope, are not retried.
	_, _, err = after.FindPosted(t.Context(), "#nowhere", "", "k1", since)
	var pe *PostError
	if !errors.As(err, &pe) || pe.Retry || pe.Op != "conversations.list" {
		t.Errorf("unknown channel: %v, want a final conversations.list error", err)
	}
	srv.FailNext("conversations.list", "missing_scope")
	_, _, err = newPoster().FindPosted(t.Context(), "#soc-alerts", "", "k1", since)
	if !errors.As(err, &pe) || pe.Retry || !strings.Contains(err.Error(), "missing_scope") {
		t.Errorf("missing channels:read: %v, want a final missing_scope error", err)
	}
}
