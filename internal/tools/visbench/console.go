package visbench

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"time"

	"github.com/agentwatch/agentwatch/internal/console"
	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/visibility"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// consoleQuestions time the web console's pages as its handler serves
// them (server time: the request handled in-process by an httptest
// recorder, no network and no browser), signed in through the
// authenticating-proxy header from a trusted address. The console runs
// as it does in production, keeping its overview computed in the
// background (its Run), until stop is called.
func consoleQuestions(ctx context.Context, st *chstore.Store, svc *visibility.Service, src visibility.Source, reg *inventory.Registry, o Options) (_ []Question, stop func(), _ error) {
	now := o.now()
	// The console's own audit records (a view of a kept overview) go to
	// the audit table, as in production.
	rec := audit.NewLogger(chstore.NewAudit(st), slog.New(slog.DiscardHandler), nil)
	newHandler := func() (*console.Handler, error) {
		h, err := console.New(console.Options{
			Visibility: svc, Records: src, Scores: st, Audit: rec,
			Proxy:    console.Proxy{Header: "X-Forwarded-User", Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, DefaultScope: "read"},
			ReadOnly: true, Prefix: "/console", Now: func() time.Time { return now },
		})
		if err != nil {
			return nil, fmt.Errorf("visbench: %w", err)
		}
		return h, nil
	}
	h, err := newHandler()
	if err != nil {
		return nil, nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(rctx) }()
	stop = func() { cancel(); <-done }
	get := func(ctx context.Context, path string) (int, error) {
		return getFrom(ctx, h, "bench", path)
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
		// The console keeps the overview computed: one person reloading
		// it (the first run may wait for the computation Run began at
		// the start).
		Name:   "console page: overview, one person reloading (server time; rows = bytes of HTML)",
		Target: 300 * time.Millisecond,
		Ask: func(ctx context.Context, _ int) (int, error) {
			return get(ctx, "/console/")
		},
	}, {
		// Another person each run: the kept copy, and the view written to
		// the audit trail under their name.
		Name:   "console page: overview, another person (server time; rows = bytes of HTML)",
		Target: 300 * time.Millisecond,
		Ask: func(ctx context.Context, run int) (int, error) {
			return getFrom(ctx, h, fmt.Sprintf("bench-%d", run), "/console/")
		},
	}, {
		// A new console each run, without its Run: the overview computed
		// every time. This is the work Run does in the background; no
		// view waits for it but those before its first computation after
		// a start, so it has no page target.
		Name: "overview computed (the console's background work; rows = bytes of HTML)",
		Ask: func(ctx context.Context, _ int) (int, error) {
			fresh, err := newHandler()
			if err != nil {
				return 0, err
			}
			return getFrom(ctx, fresh, "bench", "/console/")
		},
	}}, stop, nil
}

// getFrom GETs path from h as who, signed in by the proxy header; it
// returns the bytes of the page.
func getFrom(ctx context.Context, h http.Handler, who, path string) (int, error) {
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
