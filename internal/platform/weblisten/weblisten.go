// Package weblisten serves the product's HTTP listeners (the operational
// endpoints and the responder's API) through the Prometheus
// exporter-toolkit web configuration file: TLS, client certificates and
// bcrypt basic_auth_users, in the format every Prometheus exporter reads.
//
// It also answers the question config validation and the start-up warning
// both ask: is this listener reachable from other hosts, and does its web
// configuration protect it.
package weblisten

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v2"
)

// Security says what a web configuration file turns on.
type Security struct {
	TLS       bool // tls_server_config names a certificate: the listener speaks HTTPS only
	BasicAuth bool // basic_auth_users is not empty: every request needs a user and password
}

// Protected reports whether the listener has TLS or basic auth.
func (s Security) Protected() bool { return s.TLS || s.BasicAuth }

// Inspect reads the exporter-toolkit web configuration file at path and
// reports what it turns on. It fails, as the listener itself would at
// start, on a file that does not parse strictly, on certificate and key
// files that do not load, and on passwords that are not bcrypt hashes.
// An empty path is no file: no TLS, no authentication.
func Inspect(path string) (Security, error) {
	if path == "" {
		return Security{}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Security{}, fmt.Errorf("read web config: %w", err)
	}
	var c web.Config
	// UnmarshalStrict, as the toolkit reads it: a misspelt key such as
	// basic_auth_user must not silently leave a listener open.
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return Security{}, fmt.Errorf("parse web config %s: %w", path, err)
	}
	if err := web.Validate(path); err != nil {
		return Security{}, fmt.Errorf("web config %s: %w", path, err)
	}
	return Security{TLS: c.TLSConfig.IsEnabled(), BasicAuth: len(c.Users) > 0}, nil
}

// Loopback reports whether the host of addr (host:port) is a loopback
// address or localhost. An empty host (":9464") listens on every
// interface, so it is not loopback.
func Loopback(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("%q is not host:port", addr)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// Serve serves srv on ln until ctx ends (then it shuts srv down and returns
// nil) or serving fails (then it returns why), applying the web
// configuration file webConfig ("" serves plain HTTP). The file is re-read
// by the toolkit on every connection and request, so rotated certificates
// and changed users apply without a restart.
//
// A listener reachable from other hosts without TLS or authentication is
// allowed only when the configuration acknowledged it; Serve logs a
// warning for it at start, so the exposure shows in every log.
func Serve(ctx context.Context, ln net.Listener, srv *http.Server, webConfig string, log *slog.Logger) error {
	sec, err := Inspect(webConfig)
	if err != nil {
		return err
	}
	if lb, err := Loopback(ln.Addr().String()); err == nil && !lb && !sec.Protected() {
		log.Warn("listening on a non-loopback address without tls or authentication", "addr", ln.Addr().String(), "web_config_file", webConfig)
	}
	cfg := webConfig
	errc := make(chan error, 1)
	go func() {
		errc <- web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &cfg}, log.With("component", "exporter-toolkit"))
	}()
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
