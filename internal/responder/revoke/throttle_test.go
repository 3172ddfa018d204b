package revoke

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
)

// newThrottleKong starts a testsrv Kong with credential cred-1 of consumer
// bot and returns it with an adapter allowed to reach it.
func newThrottleKong(t *testing.T, env *testEnv) (*testsrv.Kong, *Kong) {
	t.Helper()
	srv := testsrv.NewKong()
	t.Cleanup(srv.Close)
	srv.Add("bot", "cred-1", "key-one")
	k, err := NewKong(KongOptions{AdminURL: srv.URL(), Token: "s3cret", Egress: env.egress(t, srv.Addr()), Retry: fastRetry, Metrics: env.m})
	if err != nil {
		t.Fatal(err)
	}
	return srv, k
}

func paths(reqs []testsrv.KongRequest) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.Method + " " + r.Path
	}
	return out
}

func TestKongThrottleCreatesOncePerIncident(t *testing.T) {
	tag := incidentTag("inc-1")
	for _, tc := range []struct {
		name, consumer string
		want           []string // requests of the first Throttle
	}{
		{"consumer given", "bot", []string{
			"GET /consumers/bot/key-auth/cred-1",
			"GET /consumers/bot/plugins",
			"POST /consumers/bot/plugins",
		}},
		{"consumer from credential", "", []string{
			"GET /key-auths/cred-1",
			"GET /consumers/uuid-bot/plugins",
			"POST /consumers/uuid-bot/plugins",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			srv, k := newThrottleKong(t, env)
			tg := manual("cred-1", tc.consumer, "inc-1")

			res, saved, err := k.Throttle(t.Context(), tg, 30)
			if err != nil || res.Status != StatusThrottled || res.Attempts != 1 {
				t.Fatalf("Throttle = %+v, %v; want throttled after 1 attempt", res, err)
			}
			if got := paths(srv.Requests()); !slices.Equal(got, tc.want) {
				t.Fatalf("kong got %q; want %q", got, tc.want)
			}
			ps := srv.Plugins("bot")
			if len(ps) != 1 {
				t.Fatalf("bot has %d plugins; want 1", len(ps))
			}
			p := ps[0]
			if p.Name != "rate-limiting" || p.Config["minute"] != float64(30) || p.Config["policy"] != "local" ||
				!slices.Equal(p.Tags, []string{"agentwatch", tag}) {
				t.Fatalf("plugin %+v; want rate-limiting, minute 30, policy local, tags [agentwatch %s]", p, tag)
			}
			var s kongThrottle
			if err := json.Unmarshal(saved, &s); err != nil || s.PluginID != p.ID {
				t.Fatalf("saved %s (%v); want the plugin id %s", saved, err, p.ID)
			}

			// A retry (or a resumed step) finds the plugin and creates none.
			res, saved2, err := k.Throttle(t.Context(), tg, 30)
			if err != nil || res.Status != StatusAlreadyThrottled || res.Attempts != 0 {
				t.Fatalf("second Throttle = %+v, %v; want already_throttled, no call", res, err)
			}
			if string(saved2) != string(saved) {
				t.Fatalf("second Throttle saved %s; want %s", saved2, saved)
			}
			if n := srv.Count(http.MethodPost); n != 1 {
				t.Fatalf("%d POSTs; want 1", n)
			}
			// A different limit asked later keeps the plugin, and says so.
			res, _, err = k.Throttle(t.Context(), tg, 5)
			if err != nil || res.Status != StatusAlreadyThrottled || !strings.Contains(res.Detail, "30/min, not the 5/min") {
				t.Fatalf("Throttle at another rate = %+v, %v; want already_throttled naming both rates", res, err)
			}
			if got := testutil.ToFloat64(env.m.Actions.WithLabelValues("kong", "throttled")); got != 1 {
				t.Errorf("revocations_total{kong,throttled} = %v; want 1", got)
			}
		})
	}
}

func TestKongThrottleRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setup     func(*testsrv.Kong)
		target    Target
		perMinute int
		want      string // in the error
		wantErr   error  // errors.Is, if set
	}{
		{
			name:      "foreign plugin",
			setup:     func(k *testsrv.Kong) { k.AddPlugin("bot", "rate-limiting", map[string]any{"minute": 1000}, "team-ops") },
			target:    manual("cred-1", "bot", "inc-1"),
			perMinute: 10,
			want:      `consumer "bot" already has a rate-limiting plugin`,
		},
		{
			name: "another incident's plugin",
			setup: func(k *testsrv.Kong) {
				k.AddPlugin("bot", "rate-limiting", map[string]any{"minute": 5}, "agentwatch", incidentTag("inc-0"))
			},
			target:    manual("cred-1", "", "inc-1"),
			perMinute: 10,
			want:      "this incident did not create (kong answered 409)",
		},
		{
			name:      "missing credential",
			target:    manual("cred-404", "", "inc-1"),
			perMinute: 10,
			want:      "no credential cred-404",
		},
		{
			name:      "credential under another consumer",
			target:    manual("cred-1", "someone-else", "inc-1"),
			perMinute: 10,
			want:      `under consumer "someone-else"`,
		},
		{
			name:      "zero rate",
			target:    manual("cred-1", "bot", "inc-1"),
			perMinute: 0,
			wantErr:   ErrInvalidTarget,
		},
		{
			name:      "no incident",
			target:    manual("cred-1", "bot", ""),
			perMinute: 10,
			wantErr:   ErrInvalidTarget,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			srv, k := newThrottleKong(t, env)
			if tc.setup != nil {
				tc.setup(srv)
			}
			before := srv.Plugins("bot")
			res, saved, err := k.Throttle(t.Context(), tc.target, tc.perMinute)
			if err == nil || (tc.want != "" && !strings.Contains(err.Error(), tc.want)) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("Throttle = %+v, %s, %v; want an error containing %q / is %v", res, saved, err, tc.want, tc.wantErr)
			}
			if Retryable(err) {
				t.Errorf("Retryable(%v) = true; want false, a human must act", err)
			}
			if after := srv.Plugins("bot"); !slices.EqualFunc(before, after, func(a, b testsrv.KongPlugin) bool { return a.ID == b.ID }) {
				t.Fatalf("plugins changed from %+v to %+v on a refused throttle", before, after)
			}
		})
	}
}

// TestKongThrottleLostAnswer: the create went through but its answer was
// lost (a 502 from a proxy), so the retried POST gets 409; that plugin is
// the incident's own and counts as throttled.
func TestKongThrottleLostAnswer(t *testing.T) {
	env := newEnv(t)
	srv := testsrv.NewKong()
	t.Cleanup(srv.Close)
	srv.Add("bot", "cred-1", "k")
	target, _ := url.Parse(srv.URL())
	var lost atomic.Bool
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.Request.Method == http.MethodPost && lost.CompareAndSwap(false, true) {
			r.StatusCode = http.StatusBadGateway
		}
		return nil
	}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	k, err := NewKong(KongOptions{AdminURL: front.URL, Egress: env.egress(t, front.Listener.Addr().String()), Retry: fastRetry})
	if err != nil {
		t.Fatal(err)
	}
	res, saved, err := k.Throttle(t.Context(), manual("cred-1", "bot", "inc-1"), 60)
	if err != nil || res.Status != StatusThrottled || res.Attempts != 2 {
		t.Fatalf("Throttle = %+v, %v; want throttled after 2 attempts", res, err)
	}
	ps := srv.Plugins("bot")
	if len(ps) != 1 || !strings.Contains(string(saved), ps[0].ID) {
		t.Fatalf("plugins %+v, saved %s; want one plugin, saved", ps, saved)
	}
}

func TestKongUnthrottle(t *testing.T) {
	for _, tc := range []struct {
		name       string
		before     func(srv *testsrv.Kong, id string) // between Throttle and Unthrottle
		saved      func(saved []byte) []byte
		incident   string // of the Unthrottle; default inc-1
		want       Status
		wantErr    string
		keepPlugin bool
	}{
		{name: "removes", want: StatusUnthrottled},
		{name: "after manual removal", before: func(srv *testsrv.Kong, id string) { srv.RemovePlugin(id) }, want: StatusAlreadyUnthrottled},
		{name: "5xx retried", before: func(srv *testsrv.Kong, _ string) { srv.FailNext(503, 502) }, want: StatusUnthrottled},
		{name: "nothing saved", saved: func([]byte) []byte { return nil }, wantErr: "saved value names no kong plugin", keepPlugin: true},
		{name: "other incident", incident: "inc-2", wantErr: "not this incident's", keepPlugin: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			srv, k := newThrottleKong(t, env)
			_, saved, err := k.Throttle(t.Context(), manual("cred-1", "bot", "inc-1"), 30)
			if err != nil {
				t.Fatal(err)
			}
			id := srv.Plugins("bot")[0].ID
			if tc.before != nil {
				tc.before(srv, id)
			}
			if tc.saved != nil {
				saved = tc.saved(saved)
			}
			inc := tc.incident
			if inc == "" {
				inc = "inc-1"
			}
			res, err := k.Unthrottle(t.Context(), manual("cred-1", "bot", inc), saved)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || Retryable(err) {
					t.Fatalf("Unthrottle = %+v, %v; want a permanent error containing %q", res, err, tc.wantErr)
				}
			} else if err != nil || res.Status != tc.want {
				t.Fatalf("Unthrottle = %+v, %v; want %s", res, err, tc.want)
			}
			if got := len(srv.Plugins("bot")) == 1; got != tc.keepPlugin {
				t.Fatalf("plugin still there: %v; want %v", got, tc.keepPlugin)
			}
			if tc.wantErr != "" {
				return
			}
			// Again: already done, and no DELETE sent.
			dels := srv.Count(http.MethodDelete)
			res, err = k.Unthrottle(t.Context(), manual("cred-1", "bot", inc), saved)
			if err != nil || res.Status != StatusAlreadyUnthrottled || srv.Count(http.MethodDelete) != dels {
				t.Fatalf("second Unthrottle = %+v, %v (%d DELETEs, were %d); want already_unthrottled, no DELETE", res, err, srv.Count(http.MethodDelete), dels)
			}
		})
	}
}

func TestKongThrottleRetries5xx(t *testing.T) {
	env := newEnv(t)
	srv, k := newThrottleKong(t, env)
	srv.FailNext(503, 500) // the credential read, twice
	res, _, err := k.Throttle(t.Context(), manual("cred-1", "bot", "inc-1"), 30)
	if err != nil || res.Status != StatusThrottled {
		t.Fatalf("Throttle = %+v, %v; want throttled", res, err)
	}
	if got := testutil.ToFloat64(env.m.Retries.WithLabelValues("kong")); got != 2 {
		t.Errorf("retries_total = %v; want 2", got)
	}

	// A create answered 5xx every time is bounded and retryable.
	srv2, k2 := newThrottleKong(t, newEnv(t))
	codes := make([]int, fastRetry.Attempts)
	for i := range codes {
		codes[i] = http.StatusServiceUnavailable
	}
	_, _, err = k2.Throttle(t.Context(), manual("cred-1", "bot", "inc-1"), 30)
	if err != nil {
		t.Fatal(err)
	}
	srv2.FailNext(codes...)
	_, err = k2.Unthrottle(t.Context(), manual("cred-1", "bot", "inc-1"), []byte(`{"plugin_id":"x"}`))
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusServiceUnavailable || !Retryable(err) {
		t.Fatalf("Unthrottle answered 503s = %v; want a retryable StatusError 503", err)
	}
}

func TestKongThrottleEgressGuard(t *testing.T) {
	env := newEnv(t)
	srv := testsrv.NewKong()
	t.Cleanup(srv.Close)
	srv.Add("bot", "cred-1", "k")
	// Allowed: another address on Kong's port, never Kong's own.
	_, port, _ := net.SplitHostPort(srv.Addr())
	k, err := NewKong(KongOptions{AdminURL: srv.URL(), Egress: env.egress(t, "10.0.0.1:"+port), Retry: fastRetry, Metrics: env.m})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = k.Throttle(t.Context(), manual("cred-1", "bot", "inc-1"), 30)
	if !errors.Is(err, ErrEgressRefused) || Retryable(err) {
		t.Fatalf("Throttle to a refused address = %v; want ErrEgressRefused, not retryable", err)
	}
	_, err = k.Unthrottle(t.Context(), manual("cred-1", "bot", "inc-1"), []byte(`{"plugin_id":"p"}`))
	if !errors.Is(err, ErrEgressRefused) {
		t.Fatalf("Unthrottle to a refused address = %v; want ErrEgressRefused", err)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Fatalf("kong got %d requests; want none", n)
	}
	if got := testutil.ToFloat64(env.m.EgressRefusals.WithLabelValues("address")); got < 2 {
		t.Errorf("egress_refusals_total{address} = %v; want 2 or more", got)
	}
}

func TestIncidentTag(t *testing.T) {
	ok := func(incident, want string) {
		t.Helper()
		if got := incidentTag(incident); got != want {
			t.Fatalf("incidentTag(%q) = %q; want %q", incident, got, want)
		}
	}
	ok("inc-1", "agentwatch-incident-inc-1")
	ok("INC_2024.07:x~y", "agentwatch-incident-INC_2024.07:x~y")

	seen := map[string]string{}
	for _, inc := range []string{"a/b", "a,b", "a b", "a_b", "a\x00b", "a\u00e9b", strings.Repeat("x", 64), strings.Repeat("x", 65), strings.Repeat("x", 66)} {
		tag := incidentTag(inc)
		if strings.ContainsAny(tag, ",/ ") || len(tag) > 100 {
			t.Fatalf("incidentTag(%q) = %q; want no , / or space, at most 100 bytes", inc, tag)
		}
		for _, c := range []byte(tag) {
			if c < 0x21 || c > 0x7e {
				t.Fatalf("incidentTag(%q) = %q; want printable ASCII", inc, tag)
			}
		}
		if other, dup := seen[tag]; dup {
			t.Fatalf("incidents %q and %q share tag %q", other, inc, tag)
		}
		seen[tag] = inc
	}
}
