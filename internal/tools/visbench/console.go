package visbench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"time"

	"github.com/agentwatch/agentwatch/internal/console"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// consoleQuestions time the web console's pages as its handler serves
// them (server time: the request handled in-process by an httptest
// recorder, no network and no browser), signed in through the
// authenticating-proxy header from a trusted address.
func consoleQuestions(st *chstore.Store, svc *visibility.Service, src visibility.Source, reg *inventory.Registry, o Options) ([]Question, error) {
	now := o.now()
	h, err := console.New(console.Options{
		Visibility: svc, Records: src, Scores: st,
		Proxy:    console.Proxy{Header: "X-Forwarded-User", Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, DefaultScope: "read"},
		ReadOnly: true, Prefix: "/console", Now: func() time.Time { return now },
	})
	if err != nil {
		return nil, fmt.Errorf("visbench: %w", err)
	}
	var getAs func(ctx context.Context, who, path string) (int, error)
	get := func(ctx context.Context, path string) (int, error) {
		return getAs(ctx, "bench", path)
	}
	getAs = func(ctx context.Context, who, path string) (int, error) {
		r := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1"+path, nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("X-Forwarded-User", who)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			return 0, fmt.Errorf("GET %s: %d %.200s", path, w.Code, w.Body.String())
		}
		return w.Body.Len(), nil
	}
	ids := reg.IDs()
	return []Question{{
		Name:   "console page: one agent, the month's whole days (server time; rows = bytes of HTML)",
		Target: 300 * time.Millisecond,
		Ask: func(ctx context.Context, run int) (int, error) {
			from, to := o.Span()
			return get(ctx, "/console/agent?id="+url.QueryEscape(ids[(run*97+13)%len(ids)])+
				"&from="+from.Format(time.DateOnly)+"&to="+to.AddDate(0, 0, -1).Format(time.DateOnly))
		},
	}, {
		// The console keeps a person's overview for a minute: this is
		// one person reloading it, the first run computing it.
		Name:   "console page: overview, one person reloading (server time; rows = bytes of HTML)",
		Target: 300 * time.Millisecond,
		Ask: func(ctx context.Context, _ int) (int, error) {
			return get(ctx, "/console/")
		},
	}, {
		// A new person each run: the overview computed every time.
		Name:   "console page: overview, each person's first view (server time; rows = bytes of HTML)",
		Target: 300 * time.Millisecond,
		Ask: func(ctx context.Context, run int) (int, error) {
			return getAs(ctx, fmt.Sprintf("bench-%d", run), "/console/")
		},
	}}, nil
}
