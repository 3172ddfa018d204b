package revoke

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// hookServer is an allowed webhook receiver counting its requests.
func hookServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func newWebhookGuard(t *testing.T, env *testEnv, eg *Egress, url string) *Guard {
	t.Helper()
	wh, err := NewWebhook(WebhookOptions{
		Revoke: WebhookRequest{URL: url, Body: `{"credential":"{{.CredentialID}}"}`},
		Egress: eg, Retry: fastRetry, Metrics: env.m,
	})
	if err != nil {
		t.Fatal(err)
	}
	return env.guard(t, wh, nil, nil)
}

func TestEgressRefusesAddressNotAllowed(t *testing.T) {
	env := newEnv(t)
	srv, _ := hookServer(t, func(w http.ResponseWriter, _ *http.Request) {})
	can := newCanary(t)
	eg := env.egress(t, srv.Listener.Addr().String())
	g := newWebhookGuard(t, env, eg, "http://"+can.addr()+"/revoke")

	res, err := g.Revoke(t.Context(), manual("c1", "", "inc-1"))
	var ee *EgressError
	if !errors.As(err, &ee) || ee.Reason != "address" || !errors.Is(err, ErrEgressRefused) {
		t.Fatalf("Revoke to a non-allowed address = %+v, %v; want EgressError(address)", res, err)
	}
	if res.Attempts != 1 {
		t.Fatalf("attempts %d; want 1: a refusal is not retried", res.Attempts)
	}
	can.assertUntouched(t)
	if got := testutil.ToFloat64(env.m.EgressRefusals.WithLabelValues("address")); got != 1 {
		t.Errorf("egress_refusals_total{address} = %v; want 1", got)
	}
}

func TestEgressRefusesNameResolvingToForbiddenAddress(t *testing.T) {
	env := newEnv(t)
	srv, hits := hookServer(t, func(w http.ResponseWriter, _ *http.Request) {})
	can := newCanary(t)
	allowed := srv.Listener.Addr().String()
	allowedPort := strconv.Itoa(int(netip.MustParseAddrPort(allowed).Port()))
	lo := netip.MustParseAddr("127.0.0.1")
	var lookups atomic.Int32
	eg, err := NewEgress(EgressOptions{
		// Same IP as the canary, other port: only the port tells them apart.
		Allow:   []string{allowed, "hook.test:" + allowedPort},
		Metrics: env.m,
		Resolve: func(_ context.Context, host string) ([]netip.Addr, error) {
			switch host {
			case "evil.test", "hook.test", "localhost":
				return []netip.Addr{lo}, nil
			case "rebind.test":
				// First answer passes any check, later ones point at the
				// metadata address: the dialer must connect to what it
				// checked, or refuse.
				if lookups.Add(1) == 1 {
					return []netip.Addr{lo}, nil
				}
				return []netip.Addr{netip.MustParseAddr("169.254.169.254")}, nil
			case "mapped.test":
				return []netip.Addr{netip.MustParseAddr("::ffff:127.0.0.1")}, nil
			}
			return nil, errors.New("no such host")
		},
	})
	if err != nil {
		t.Fatal(err)
	}

	for _, url := range []string{
		"http://evil.test:" + can.port() + "/x",
		"http://mapped.test:" + can.port() + "/x",
		"http://127.0.0.1:" + can.port() + "/x",
		"http://[::ffff:127.0.0.1]:" + can.port() + "/x",
		"http://localhost:" + can.port() + "/x",
	} {
		g := newWebhookGuard(t, env, eg, url)
		if _, err := g.Revoke(t.Context(), manual("c1", "", url)); !errors.Is(err, ErrEgressRefused) {
			t.Errorf("Revoke via %s = %v; want ErrEgressRefused", url, err)
		}
	}
	can.assertUntouched(t)

	// An allowed name and an allowed IP reach the server.
	for _, url := range []string{"http://hook.test:" + allowedPort + "/ok", srv.URL + "/ok"} {
		g := newWebhookGuard(t, env, eg, url)
		if res, err := g.Revoke(t.Context(), manual("c1", "", url)); err != nil || res.Status != StatusRevoked {
			t.Fatalf("Revoke via allowed %s = %+v, %v; want revoked", url, res, err)
		}
	}
	if hits.Load() != 2 {
		t.Fatalf("allowed server got %d requests; want 2", hits.Load())
	}

	// DNS rebinding: whatever the name answers, only checked addresses
	// are dialled, and 169.254.169.254 never is.
	g := newWebhookGuard(t, env, eg, "http://rebind.test:"+allowedPort+"/x")
	for i := range 3 {
		eg.client.Transport.(*http.Transport).CloseIdleConnections() // make each request dial
		_, err := g.Revoke(t.Context(), manual("c1", "", "rebind-"+string(rune('a'+i))))
		if i > 0 && !errors.Is(err, ErrEgressRefused) {
			t.Fatalf("rebinding lookup %d: %v; want ErrEgressRefused", i, err)
		}
	}
}

func TestEgressRefusesRedirect(t *testing.T) {
	env := newEnv(t)
	can := newCanary(t)
	srv, hits := hookServer(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+can.addr()+"/steal", http.StatusFound)
	})
	eg := env.egress(t, srv.Listener.Addr().String(), "127.0.0.2:1") // the canary is not allowed
	g := newWebhookGuard(t, env, eg, srv.URL+"/revoke")

	res, err := g.Revoke(t.Context(), manual("c1", "", "inc-1"))
	var ee *EgressError
	if !errors.As(err, &ee) || ee.Reason != "redirect" {
		t.Fatalf("Revoke answered 302 = %+v, %v; want EgressError(redirect)", res, err)
	}
	if hits.Load() != 1 {
		t.Fatalf("server got %d requests; want 1 (a redirect is not retried)", hits.Load())
	}
	can.assertUntouched(t)
	if got := testutil.ToFloat64(env.m.EgressRefusals.WithLabelValues("redirect")); got != 1 {
		t.Errorf("egress_refusals_total{redirect} = %v; want 1", got)
	}
}

func TestEgressIgnoresProxyEnvironment(t *testing.T) {
	env := newEnv(t)
	can := newCanary(t)
	srv, hits := hookServer(t, func(w http.ResponseWriter, _ *http.Request) {})
	// Loopback is never proxied by net/http, so use a name.
	t.Setenv("HTTP_PROXY", "http://"+can.addr())
	t.Setenv("http_proxy", "http://"+can.addr())
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	port := strconv.Itoa(int(netip.MustParseAddrPort(srv.Listener.Addr().String()).Port()))
	eg, err := NewEgress(EgressOptions{
		Allow: []string{"hook.test:" + port},
		Resolve: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	g := newWebhookGuard(t, env, eg, "http://hook.test:"+port+"/revoke")
	if _, err := g.Revoke(t.Context(), manual("c1", "", "inc-1")); err != nil {
		t.Fatal(err)
	}
	if hits.Load() != 1 {
		t.Fatalf("server got %d requests; want 1", hits.Load())
	}
	can.assertUntouched(t)
}

func TestParseAllow(t *testing.T) {
	bad := []string{"", "host", "host:0", "host:99999", "10.0.0.0/33:80", ":80"}
	for _, s := range bad {
		if _, err := NewEgress(EgressOptions{Allow: []string{s}}); err == nil {
			t.Errorf("NewEgress(allow %q) = nil error; want refused", s)
		}
	}
	good := []string{"10.1.0.0/16:8001", "[fd00::/8]:443", "kong-admin:8444", "127.0.0.1:8001", "[::1]:80"}
	if _, err := NewEgress(EgressOptions{Allow: good}); err != nil {
		t.Errorf("NewEgress(%q) = %v", good, err)
	}
	e, _ := NewEgress(EgressOptions{Allow: []string{"10.1.0.0/16:8001"}})
	ctx := t.Context()
	ok := func(ip string, port uint16, want bool) {
		t.Helper()
		if got := e.allowed(ctx, netip.MustParseAddr(ip), port); got != want {
			t.Errorf("allowed(%s:%d) = %v; want %v", ip, port, got, want)
		}
	}
	ok("10.1.2.3", 8001, true)
	ok("10.1.2.3", 8002, false)
	ok("10.2.0.1", 8001, false)
}
