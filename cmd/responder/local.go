package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/chstore"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
)

// localResponder builds the responder on cfg's state directory inside this
// command, without its API (so its tokens' secrets need not be set). When a
// running responder holds the state directory it returns inUse true and
// nothing else: the caller goes through that responder's API instead.
func localResponder(ctx context.Context, cfg config.Config, log *slog.Logger) (svc *respond.Service, closeFn func(), inUse bool, err error) {
	deps, closeStores, err := stores(ctx, cfg, log)
	if err != nil {
		return nil, nil, false, err
	}
	local := cfg
	local.Responder.Tokens, local.Responder.APIAddr = nil, ""
	svc, err = respond.Build(local, deps, log, prometheus.NewRegistry())
	if err != nil {
		closeStores()
		return nil, nil, errors.Is(err, outbox.ErrInUse), err
	}
	return svc, func() { svc.Close(); closeStores() }, false, nil
}

// openAudit opens the audit trail: ClickHouse's table in the distributed
// mode, the state directory's file otherwise.
func openAudit(ctx context.Context, cfg config.Config, log *slog.Logger) (*audit.Logger, func(), error) {
	if cfg.Distributed() {
		st, err := chstore.OpenMigrated(ctx, cfg.ClickHouse, log)
		if err != nil {
			return nil, nil, err
		}
		return audit.NewLogger(chstore.NewAudit(st), log, time.Now), func() { st.Close() }, nil
	}
	if err := os.MkdirAll(cfg.Responder.StateDir, 0o700); err != nil {
		return nil, nil, err
	}
	fs, err := audit.OpenFileStore(filepath.Join(cfg.Responder.StateDir, respond.AuditFile))
	if err != nil {
		return nil, nil, err
	}
	return audit.NewLogger(fs, log, time.Now), func() {}, nil
}

// apiClient calls the running responder's HTTP API with the token in
// RESPONDER_API_TOKEN.
type apiClient struct {
	base, token string
}

// newAPIClient is the client for base (default http://responder.api_addr);
// need says what the token must be allowed, for the error without one.
func newAPIClient(cfg config.Config, base, need string) (*apiClient, error) {
	token := os.Getenv("RESPONDER_API_TOKEN")
	if token == "" {
		return nil, fmt.Errorf("a responder holds the state directory; to go through its API set RESPONDER_API_TOKEN to a token with %s", need)
	}
	if base == "" {
		base = "http://" + cfg.Responder.APIAddr
	}
	return &apiClient{base: strings.TrimSuffix(base, "/"), token: token}, nil
}

// call sends body (nil for none) as JSON and returns the answer of a 2xx;
// any other status is an error quoting the answer.
func (c *apiClient) call(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("responder API: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("responder API answered %s: %s", resp.Status, audit.TerminalSafe(string(b), 500))
	}
	return b, nil
}
