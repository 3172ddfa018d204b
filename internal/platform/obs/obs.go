// Package obs serves a service's operational endpoints: Prometheus metrics on
// /metrics, liveness on /healthz and readiness on /readyz.
package obs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentwatch/agentwatch/internal/platform/weblisten"
)

// NewRegistry returns a registry with the Go and process collectors, the
// base every service's own metrics are added to.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Readiness collects named checks; the service is ready when every check
// passes. Safe for concurrent use.
type Readiness struct {
	mu     sync.Mutex
	checks map[string]func(context.Context) error
}

// Add registers (or replaces) a named readiness check.
func (r *Readiness) Add(name string, check func(context.Context) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.checks == nil {
		r.checks = make(map[string]func(context.Context) error)
	}
	r.checks[name] = check
}

// Check runs every check and joins the failures, each prefixed by its name.
func (r *Readiness) Check(ctx context.Context) error {
	r.mu.Lock()
	checks := make(map[string]func(context.Context) error, len(r.checks))
	for k, v := range r.checks {
		checks[k] = v
	}
	r.mu.Unlock()
	var errs []error
	for name, c := range checks {
		if err := c(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// Server is the operational HTTP endpoint as a pipeline stage, so that a
// listener that dies stops the service instead of leaving it unobservable.
type Server struct {
	Addr string // e.g. 127.0.0.1:9464; "" disables the server
	// WebConfigFile is an exporter-toolkit web configuration (TLS, basic
	// auth); "" serves plain HTTP. See weblisten.
	WebConfigFile string
	Registry      *prometheus.Registry
	Readiness     *Readiness
	Log           *slog.Logger

	mu   sync.Mutex
	addr net.Addr
}

// BoundAddr returns the address the server listens on once Run has bound it.
func (s *Server) BoundAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Run implements pipeline.Stage.
func (s *Server) Run(ctx context.Context) error {
	if s.Addr == "" {
		<-ctx.Done()
		return nil
	}
	mux := http.NewServeMux()
	// The readiness gauge is gathered with the service's registry, not
	// registered in it: Run may be called more than once on one registry.
	ready := prometheus.NewRegistry()
	ready.MustRegister(NewReadyCollector(s.Readiness))
	gather := prometheus.Gatherers{s.Registry, ready}
	mux.Handle("/metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{Registry: s.Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.Readiness != nil {
			cctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			defer cancel()
			if err := s.Readiness.Check(cctx); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("listen for metrics on %s: %w; set http.addr to a free port", s.Addr, err)
	}
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	s.Log.Info("serving metrics", "addr", ln.Addr().String(), "web_config_file", s.WebConfigFile)
	if err := weblisten.Serve(ctx, ln, srv, s.WebConfigFile, s.Log); err != nil {
		return fmt.Errorf("metrics server on %s: %w", s.Addr, err)
	}
	return nil
}

// readyTimeout bounds one run of the readiness checks, for /readyz and
// for the agentwatch_ready gauge alike.
const readyTimeout = 2 * time.Second

// ReadyMetric is the gauge that mirrors /readyz, so that Prometheus can
// alert on readiness without a probe of its own: 1 ready, 0 not.
const ReadyMetric = "agentwatch_ready"

// NewReadyCollector returns a collector of ReadyMetric that runs r's
// checks at each scrape (bounded by the same timeout as /readyz). A nil r
// is always ready.
func NewReadyCollector(r *Readiness) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: ReadyMetric,
		Help: "1 when every readiness check passes (what /readyz answers 200 for), else 0.",
	}, func() float64 {
		if r == nil {
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
		defer cancel()
		if r.Check(ctx) != nil {
			return 0
		}
		return 1
	})
}
