package slackui

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// click is what Slack sends when an analyst clicks a button: a block_actions
// payload, form-encoded.
type click struct {
	actionID, value, triggerID, actionTS string
	typ                                  string
}

func (c click) body(t testing.TB) string {
	t.Helper()
	typ := c.typ
	if typ == "" {
		typ = "block_actions"
	}
	p := map[string]any{
		"type":         typ,
		"user":         map[string]any{"id": "U0ANALYST", "username": "alice", "name": "alice", "team_id": "T0001"},
		"api_app_id":   "A0001",
		"container":    map[string]any{"type": "message", "message_ts": "1795600592.000100", "channel_id": "C0SOC", "is_ephemeral": false},
		"trigger_id":   c.triggerID,
		"team":         map[string]any{"id": "T0001", "domain": "acme"},
		"channel":      map[string]any{"id": "C0SOC", "name": "soc-alerts"},
		"message":      map[string]any{"type": "message", "ts": "1795600592.000100", "text": "alert"},
		"response_url": "https://hooks.example/actions/T0001/1/xyz",
		"actions": []any{map[string]any{
			"action_id": c.actionID, "block_id": "aw_actions", "value": c.value, "type": "button",
			"text": map[string]any{"type": "plain_text", "text": "Revoke now"}, "action_ts": c.actionTS,
		}},
		"state": map[string]any{"values": map[string]any{}},
	}
	js, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return url.Values{"payload": {string(js)}}.Encode()
}

// sign builds the request Slack would send, signed the v0 way with secret
// at ts. It does not use slack-go, so it checks the handler against the
// scheme, not against itself.
func sign(secret string, ts time.Time, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	stamp := strconv.FormatInt(ts.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + stamp + ":" + body))
	r.Header.Set("X-Slack-Request-Timestamp", stamp)
	r.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(m.Sum(nil)))
	return r
}

// rig is a handler with a recording on and a fixed clock.
type rig struct {
	h     *InteractionHandler
	m     *Metrics
	now   time.Time
	mu    sync.Mutex
	calls []Action
	fail  error
}

func newRig(t testing.TB) *rig {
	rg := &rig{now: time.Now()}
	clock := func() time.Time { return rg.now }
	rg.h = NewInteractionHandler(testSecret, NewMemoryDeduper(0, clock), clock, func(_ context.Context, a Action) error {
		rg.mu.Lock()
		defer rg.mu.Unlock()
		rg.calls = append(rg.calls, a)
		return rg.fail
	})
	rg.m = NewMetrics(prometheus.NewRegistry())
	rg.h.Metrics = rg.m
	return rg
}

func (rg *rig) serve(r *http.Request) int {
	w := httptest.NewRecorder()
	rg.h.ServeHTTP(w, r)
	return w.Code
}

func (rg *rig) ncalls() int {
	rg.mu.Lock()
	defer rg.mu.Unlock()
	return len(rg.calls)
}

// revokeClick is a click on the revoke button of a real rendered alert.
func revokeClick(t testing.TB) click {
	t.Helper()
	m, err := Render(sample(), sampleContext(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range buttonsOf(m) {
		if b.ActionID == "aw_revoke" {
			return click{actionID: b.ActionID, value: b.Value, triggerID: "1337.42.deadbeef", actionTS: "1795600600.123456"}
		}
	}
	t.Fatal("no revoke button")
	return click{}
}

func TestInteractionValid(t *testing.T) {
	rg := newRig(t)
	if code := rg.serve(sign(testSecret, rg.now, revokeClick(t).body(t))); code != http.StatusOK {
		t.Fatalf("valid click: status %d; want 200", code)
	}
	if rg.ncalls() != 1 {
		t.Fatalf("on called %d times; want 1", rg.ncalls())
	}
	a := rg.calls[0]
	want := Action{
		Kind: Revoke, IncidentID: "inc-7f3a", AnomalyID: sample().ID,
		UserID: "U0ANALYST", UserName: "alice", TeamID: "T0001",
		ChannelID: "C0SOC", MessageTS: "1795600592.000100",
		ResponseURL: "https://hooks.example/actions/T0001/1/xyz", TriggerID: "1337.42.deadbeef",
		Key: DedupKey("T0001", "1337.42.deadbeef", "1795600600.123456", revokeClick(t).value),
		At:  rg.now,
	}
	if a != want {
		t.Errorf("Action = %+v\nwant     %+v", a, want)
	}
}

func TestInteractionRefusesForgedExpiredReplayed(t *testing.T) {
	c := revokeClick(t)
	forgedValue := c
	other, _ := NewActionCodec("not-our-secret")
	forgedValue.value, _ = other.Encode(ActionRef{Kind: Revoke, IncidentID: "inc-7f3a", AnomalyID: sample().ID})
	swapped := c
	swapped.actionID = "aw_ack" // the revoke value behind an acknowledge button
	outcome := map[int]string{401: "unauthorized", 400: "bad_request", 413: "too_large", 405: "method"}
	tests := []struct {
		name string
		req  func(rg *rig) *http.Request
		want int
	}{
		{"forged signature", func(rg *rig) *http.Request { return sign("wrong-secret", rg.now, c.body(t)) }, 401},
		{"tampered body", func(rg *rig) *http.Request {
			r := sign(testSecret, rg.now, c.body(t))
			tampered := sign(testSecret, rg.now, strings.Replace(c.body(t), "U0ANALYST", "U0MALLORY", 1))
			tampered.Header = r.Header
			return tampered
		}, 401},
		{"no signature", func(rg *rig) *http.Request {
			r := sign(testSecret, rg.now, c.body(t))
			r.Header.Del("X-Slack-Signature")
			return r
		}, 401},
		{"garbage signature", func(rg *rig) *http.Request {
			r := sign(testSecret, rg.now, c.body(t))
			r.Header.Set("X-Slack-Signature", "v0=zz")
			return r
		}, 401},
		{"expired 6 min", func(rg *rig) *http.Request { return sign(testSecret, rg.now.Add(-6*time.Minute), c.body(t)) }, 401},
		{"6 min in the future", func(rg *rig) *http.Request { return sign(testSecret, rg.now.Add(6*time.Minute), c.body(t)) }, 401},
		{"our clock 6 min ahead", func(rg *rig) *http.Request {
			r := sign(testSecret, rg.now, c.body(t)) // fresh by the wall clock slack-go checks...
			rg.now = rg.now.Add(6 * time.Minute)     // ...but not by the handler's clock
			return r
		}, 401},
		{"button value from another key", func(rg *rig) *http.Request { return sign(testSecret, rg.now, forgedValue.body(t)) }, 400},
		{"action_id does not match value", func(rg *rig) *http.Request { return sign(testSecret, rg.now, swapped.body(t)) }, 400},
		{"not block_actions", func(rg *rig) *http.Request {
			v := c
			v.typ = "view_submission"
			return sign(testSecret, rg.now, v.body(t))
		}, 400},
		{"no payload", func(rg *rig) *http.Request { return sign(testSecret, rg.now, "foo=bar") }, 400},
		{"too large", func(rg *rig) *http.Request {
			return sign(testSecret, rg.now, "payload="+strings.Repeat("x", maxBody+1))
		}, 413},
		{"GET", func(rg *rig) *http.Request { return httptest.NewRequest(http.MethodGet, "/", nil) }, 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t)
			if code := rg.serve(tc.req(rg)); code != tc.want {
				t.Errorf("status %d; want %d", code, tc.want)
			}
			if rg.ncalls() != 0 {
				t.Errorf("on called %d times; want 0", rg.ncalls())
			}
			if n := testutil.ToFloat64(rg.m.Interactions.WithLabelValues(outcome[tc.want])); n != 1 {
				t.Errorf("outcome %s counted %v times; want 1", outcome[tc.want], n)
			}
		})
	}
}

func TestInteractionReplayRunsOnce(t *testing.T) {
	rg := newRig(t)
	body := revokeClick(t).body(t)
	req := func() *http.Request { return sign(testSecret, rg.now, body) }
	for i := range 3 {
		if code := rg.serve(req()); code != http.StatusOK {
			t.Fatalf("request %d: status %d; want 200", i, code)
		}
	}
	if rg.ncalls() != 1 {
		t.Errorf("replayed 3 times: on called %d times; want 1", rg.ncalls())
	}
	if ok, dup := testutil.ToFloat64(rg.m.Interactions.WithLabelValues("ok")), testutil.ToFloat64(rg.m.Interactions.WithLabelValues("duplicate")); ok != 1 || dup != 2 {
		t.Errorf("counted ok %v, duplicate %v; want 1 and 2", ok, dup)
	}
}

func TestInteractionSlackRetryRunsOnce(t *testing.T) {
	rg := newRig(t)
	body := revokeClick(t).body(t)
	if code := rg.serve(sign(testSecret, rg.now, body)); code != http.StatusOK {
		t.Fatalf("first: status %d", code)
	}
	rg.now = rg.now.Add(2 * time.Second)
	retry := sign(testSecret, time.Now(), body) // re-signed, same payload
	retry.Header.Set("X-Slack-Retry-Num", "1")
	retry.Header.Set("X-Slack-Retry-Reason", "http_timeout")
	if code := rg.serve(retry); code != http.StatusOK {
		t.Fatalf("retry: status %d; want 200", code)
	}
	if rg.ncalls() != 1 {
		t.Errorf("on called %d times; want 1", rg.ncalls())
	}
}

func TestInteractionConcurrentReplaysRunOnce(t *testing.T) {
	rg := newRig(t)
	body := revokeClick(t).body(t)
	srv := httptest.NewServer(rg.h)
	defer srv.Close()
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range 20 {
		wg.Go(func() {
			r := sign(testSecret, rg.now, body)
			req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
			req.Header = r.Header
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 20 || rg.ncalls() != 1 {
		t.Errorf("%d of 20 answered 200, on called %d times; want 20 and 1", ok.Load(), rg.ncalls())
	}
}

func TestInteractionNewClickRunsAgain(t *testing.T) {
	rg := newRig(t)
	rg.fail = errors.New("outbox down")
	c := revokeClick(t)
	if code := rg.serve(sign(testSecret, rg.now, c.body(t))); code != http.StatusInternalServerError {
		t.Fatalf("failing on: status %d; want 500", code)
	}
	rg.fail = nil
	if code := rg.serve(sign(testSecret, rg.now, c.body(t))); code != http.StatusOK || rg.ncalls() != 1 {
		t.Fatalf("replay after failure: status %d, %d calls; want 200 and no new call (at most once)", code, rg.ncalls())
	}
	c.triggerID, c.actionTS = "1337.43.cafe", "1795600700.000001" // the analyst clicks again
	if code := rg.serve(sign(testSecret, rg.now, c.body(t))); code != http.StatusOK || rg.ncalls() != 2 {
		t.Fatalf("new click: status %d, %d calls; want 200 and a second call", code, rg.ncalls())
	}
}

type brokenDeduper struct{}

func (brokenDeduper) Seen(context.Context, string) (bool, error) { return false, errors.New("down") }
func (brokenDeduper) Mark(context.Context, string) (bool, error) { return false, errors.New("down") }

func TestInteractionDedupDownRunsNothing(t *testing.T) {
	called := false
	now := time.Now()
	h := NewInteractionHandler(testSecret, brokenDeduper{}, func() time.Time { return now },
		func(context.Context, Action) error { called = true; return nil })
	w := httptest.NewRecorder()
	h.ServeHTTP(w, sign(testSecret, now, revokeClick(t).body(t)))
	if w.Code != http.StatusServiceUnavailable || called {
		t.Errorf("status %d, called %v; want 503 and nothing run", w.Code, called)
	}
}

func TestInteractionEmptySecretRefusesAll(t *testing.T) {
	now := time.Now()
	h := NewInteractionHandler("", NewMemoryDeduper(0, time.Now), time.Now,
		func(context.Context, Action) error { t.Error("on called"); return nil })
	w := httptest.NewRecorder()
	h.ServeHTTP(w, sign("", now, revokeClick(t).body(t)))
	if w.Code != http.StatusUnauthorized {
		t.Errorf("status %d; want 401", w.Code)
	}
}

// Every button of every rendering decodes through the handler to its kind.
func TestInteractionEveryButton(t *testing.T) {
	for _, kind := range []string{anomaly.Behaviour, anomaly.GlobalEvent} {
		a := sample()
		a.Kind = kind
		for _, render := range []func(anomaly.Anomaly, AlertContext) (Message, error){Render, RenderFollowUp} {
			m, err := render(a, sampleContext(t))
			if err != nil {
				t.Fatal(err)
			}
			for i, b := range buttonsOf(m) {
				rg := newRig(t)
				c := click{actionID: b.ActionID, value: b.Value, triggerID: "t" + strconv.Itoa(i), actionTS: "1.2"}
				if code := rg.serve(sign(testSecret, rg.now, c.body(t))); code != http.StatusOK || rg.ncalls() != 1 {
					t.Fatalf("%s %s: status %d, %d calls", kind, b.ActionID, code, rg.ncalls())
				}
				if got := rg.calls[0]; slackActionID[got.Kind] != b.ActionID || got.AnomalyID != a.ID {
					t.Errorf("%s %s: decoded %+v", kind, b.ActionID, got)
				}
			}
		}
	}
}

func TestMemoryDeduper(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	d := NewMemoryDeduper(time.Minute, func() time.Time { return now }) // raised to MinDedupRetention
	ctx := context.Background()
	if first, _ := d.Mark(ctx, "k"); !first {
		t.Fatal("first Mark reported a duplicate")
	}
	if first, _ := d.Mark(ctx, "k"); first {
		t.Fatal("second Mark reported new")
	}
	now = now.Add(MinDedupRetention - time.Second)
	if seen, _ := d.Seen(ctx, "k"); !seen {
		t.Fatal("forgot the key before MinDedupRetention")
	}
	now = now.Add(2 * time.Second)
	if seen, _ := d.Seen(ctx, "k"); seen {
		t.Fatal("kept the key after its retention")
	}
	if first, _ := d.Mark(ctx, "other"); !first || len(d.keys) != 1 {
		t.Fatalf("expired keys not pruned: %d left", len(d.keys))
	}
}

// TestInteractionRoute checks the hook several responders use: a click
// for an agent another instance owns is handed on, neither marked nor run
// here, and answered with the owner's outcome.
func TestInteractionRoute(t *testing.T) {
	for _, tc := range []struct {
		name      string
		forwarded bool
		err       error
		code      int
		outcome   string
		runsHere  bool
	}{
		{name: "owner ran it", forwarded: true, code: 200, outcome: "forwarded"},
		{name: "owner refused the user", forwarded: true, err: fmt.Errorf("approve: %w", ErrNotAllowed), code: 200, outcome: "refused"},
		{name: "owner failed", forwarded: true, err: errors.New("outbox closed"), code: 500, outcome: "action_error"},
		{name: "owned here", code: 200, outcome: "ok", runsHere: true},
		{name: "cannot tell", err: errors.New("table down"), code: 503, outcome: "route_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t)
			var routed []Action
			rg.h.Route = func(_ context.Context, a Action) (bool, error) {
				routed = append(routed, a)
				return tc.forwarded, tc.err
			}
			c := revokeClick(t)
			if code := rg.serve(sign(testSecret, rg.now, c.body(t))); code != tc.code {
				t.Fatalf("status %d; want %d", code, tc.code)
			}
			if len(routed) != 1 || routed[0].Key != DedupKey("T0001", c.triggerID, c.actionTS, c.value) || !routed[0].At.Equal(rg.now) {
				t.Fatalf("Route got %+v; want the decoded click once, with its key and time", routed)
			}
			if got := testutil.ToFloat64(rg.m.Interactions.WithLabelValues(tc.outcome)); got != 1 {
				t.Errorf("outcome %s counted %v times; want 1", tc.outcome, got)
			}
			if tc.runsHere != (rg.ncalls() == 1) {
				t.Fatalf("on called %d times; runs here: %v", rg.ncalls(), tc.runsHere)
			}
			marked, _ := rg.h.dedup.Seen(context.Background(), routed[0].Key)
			if marked != tc.runsHere {
				t.Fatalf("marked here: %v; want %v (only a click run here is marked here)", marked, tc.runsHere)
			}
		})
	}
}
