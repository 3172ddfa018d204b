package slackui

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
)

func TestPosterAgainstSlacktest(t *testing.T) {
	srv := slacktest.NewTestServer()
	srv.Start()
	defer srv.Stop()
	p := NewPoster(slack.New("xoxb-test", slack.OptionAPIURL(srv.GetAPIURL())))
	a := hostileAnomaly("<!channel> `x` <https://evil|click>")
	m, err := Render(a, hostileContext(t, "<@U123>"))
	if err != nil {
		t.Fatal(err)
	}
	// slacktest decodes the blocks with slack-go's types and answers 500 if
	// it cannot.
	ts, err := p.PostAlert(context.Background(), "C0SOC", m)
	if err != nil || ts == "" {
		t.Fatalf("PostAlert = %q, %v", ts, err)
	}
	if _, err := p.PostThreadReply(context.Background(), "C0SOC", ts, m); err != nil {
		t.Fatalf("PostThreadReply: %v", err)
	}
}

// recorder is a local Slack Web API stand-in that records each call's form
// and answers from a script.
type recorder struct {
	mu     sync.Mutex
	calls  []recorded
	answer func(n int, w http.ResponseWriter) // n counts calls from 0
}

type recorded struct {
	path string
	form url.Values
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	rc.mu.Lock()
	n := len(rc.calls)
	rc.calls = append(rc.calls, recorded{path: r.URL.Path, form: form})
	rc.mu.Unlock()
	if rc.answer != nil {
		rc.answer(n, w)
		return
	}
	ok(w)
}

func ok(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"ok":true,"channel":"C0SOC","ts":"1795600592.000100"}`)
}

func newRecorded(t *testing.T, answer func(int, http.ResponseWriter)) (*Poster, *recorder) {
	rc := &recorder{answer: answer}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return NewPoster(slack.New("xoxb-test", slack.OptionAPIURL(srv.URL+"/"))), rc
}

func TestPosterRateLimited(t *testing.T) {
	p, rc := newRecorded(t, func(n int, w http.ResponseWriter) {
		if n == 0 {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		ok(w)
	})
	p.Metrics = NewMetrics(prometheus.NewRegistry())
	m, _ := Render(sample(), sampleContext(t))
	_, err := p.PostAlert(context.Background(), "C0SOC", m)
	var pe *PostError
	if !errors.As(err, &pe) || !pe.Retry || pe.RetryAfter != 7*time.Second || pe.Op != "chat.postMessage" {
		t.Fatalf("429: err = %#v; want a retryable *PostError with RetryAfter 7s", err)
	}
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 7*time.Second {
		t.Errorf("429: slack-go's *RateLimitedError not reachable through errors.As: %v", err)
	}
	ts, err := p.PostAlert(context.Background(), "C0SOC", m)
	if err != nil || ts != "1795600592.000100" {
		t.Fatalf("after the 429: %q, %v", ts, err)
	}
	if len(rc.calls) != 2 {
		t.Fatalf("%d calls; want 2 (slack-go must not retry by itself)", len(rc.calls))
	}
	for _, o := range []string{"rate_limited", "ok"} {
		if n := testutil.ToFloat64(p.Metrics.Calls.WithLabelValues("chat.postMessage", o)); n != 1 {
			t.Errorf("outcome %s counted %v times; want 1", o, n)
		}
	}
}

func TestPosterSendsWhatWasRendered(t *testing.T) {
	p, rc := newRecorded(t, nil)
	a := hostileAnomaly("<!here> & `x`")
	m, err := Render(a, sampleContext(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := p.PostAlert(ctx, "C0SOC", m); err != nil {
		t.Fatal(err)
	}
	if _, err := p.PostThreadReply(ctx, "C0SOC", "1795600592.000100", m); err != nil {
		t.Fatal(err)
	}
	if err := p.UpdateMessage(ctx, "C0SOC", "1795600592.000100", m); err != nil {
		t.Fatal(err)
	}
	wantPaths := []string{"/chat.postMessage", "/chat.postMessage", "/chat.update"}
	for i, c := range rc.calls {
		f := c.form
		if c.path != wantPaths[i] {
			t.Errorf("call %d to %s; want %s", i, c.path, wantPaths[i])
		}
		if f.Get("channel") != "C0SOC" || f.Get("unfurl_links") != "false" || f.Get("unfurl_media") != "false" ||
			f.Get("parse") != "none" || f.Get("link_names") != "false" {
			t.Errorf("call %d: form %v", i, f)
		}
		if f.Get("text") != m.Text {
			t.Errorf("call %d: text %q; want %q as rendered (not escaped twice)", i, f.Get("text"), m.Text)
		}
		var blocks []any
		if err := json.Unmarshal([]byte(f.Get("blocks")), &blocks); err != nil || len(blocks) != len(m.Blocks) {
			t.Fatalf("call %d: blocks %v", i, err)
		}
		for _, b := range blocks {
			checkBlock(t, b.(map[string]any))
		}
		if strings.Contains(f.Get("blocks"), "&amp;lt;") {
			t.Errorf("call %d: blocks escaped twice", i)
		}
	}
	if rc.calls[0].form.Has("thread_ts") || rc.calls[1].form.Get("thread_ts") != "1795600592.000100" ||
		rc.calls[1].form.Has("reply_broadcast") || rc.calls[2].form.Get("ts") != "1795600592.000100" {
		t.Errorf("thread_ts/ts wrong: %v / %v / %v", rc.calls[0].form, rc.calls[1].form, rc.calls[2].form)
	}
}

func TestPosterClassifiesErrors(t *testing.T) {
	tests := []struct {
		name       string
		answer     func(w http.ResponseWriter)
		retry      bool
		retryAfter time.Duration
	}{
		{"429 without Retry-After", func(w http.ResponseWriter) { w.WriteHeader(http.StatusTooManyRequests) }, true, DefaultRetryAfter},
		{"503", func(w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) }, true, 0},
		{"channel_not_found", func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{"ok":false,"error":"channel_not_found"}`) }, false, 0},
		{"invalid_blocks", func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{"ok":false,"error":"invalid_blocks"}`) }, false, 0},
		{"internal_error", func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{"ok":false,"error":"internal_error"}`) }, true, 0},
		{"ratelimited in body", func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{"ok":false,"error":"ratelimited"}`) }, true, DefaultRetryAfter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := newRecorded(t, func(_ int, w http.ResponseWriter) { tc.answer(w) })
			err := p.UpdateMessage(context.Background(), "C0SOC", "1.2", Message{Text: "x"})
			var pe *PostError
			if !errors.As(err, &pe) || pe.Retry != tc.retry || pe.RetryAfter != tc.retryAfter || pe.Op != "chat.update" {
				t.Errorf("err = %v (%#v); want retry %v after %s", err, pe, tc.retry, tc.retryAfter)
			}
		})
	}
	// A server that is not there: a transport error, retryable.
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	p := NewPoster(slack.New("xoxb-test", slack.OptionAPIURL(srv.URL+"/")))
	_, err := p.PostAlert(context.Background(), "C0SOC", Message{Text: "x"})
	var pe *PostError
	if !errors.As(err, &pe) || !pe.Retry {
		t.Errorf("connection refused: %v; want retryable", err)
	}
}
