package respond

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/weblisten"
	"github.com/agentwatch/agentwatch/pkg/inventory"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// RegistryFunc adapts the current agent registry (the inventory watcher's)
// to Registry.
type RegistryFunc func() *inventory.Registry

// Agent implements Registry.
func (f RegistryFunc) Agent(id string) (playbooks.AgentInfo, bool) {
	r := f()
	if r == nil {
		return playbooks.AgentInfo{}, false
	}
	a, ok := r.Lookup(id)
	if !ok {
		return playbooks.AgentInfo{}, false
	}
	return playbooks.AgentInfo{Role: a.Role, Owner: a.Owner, CredentialID: a.CredentialID, Labels: a.Labels}, true
}

// HTTPServer serves the responder's API and Slack interactivity endpoint
// until its context ends. Addr "" disables it.
type HTTPServer struct {
	Addr string
	// WebConfigFile is an exporter-toolkit web configuration (TLS); ""
	// serves plain HTTP. See weblisten.
	WebConfigFile string
	Handler       http.Handler
	Log           *slog.Logger
	// Bound receives the listening address once (tests bind port 0).
	Bound chan<- string
}

// Run implements the stage.
func (s *HTTPServer) Run(ctx context.Context) error {
	if s.Addr == "" {
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("responder api: listen %s: %w", s.Addr, err)
	}
	if s.Bound != nil {
		s.Bound <- ln.Addr().String()
	}
	srv := &http.Server{Handler: s.Handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 2 * time.Minute}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.Info("responder api listening", "addr", ln.Addr().String(), "web_config_file", s.WebConfigFile)
	if err := weblisten.Serve(ctx, ln, srv, s.WebConfigFile, log); err != nil {
		return fmt.Errorf("responder api: %w", err)
	}
	return nil
}
