// Package respctl holds the bodies of the responder's operator commands
// (run-playbook, restore, audit, verify, incidents, silence, outbox,
// false-positive). Each takes the loaded configuration, typed options and
// an io.Writer for its human output, so cmd/responder only parses
// arguments. A command that changes what a running responder owns works on
// responder.state_dir when no responder holds it, and otherwise goes
// through that responder's HTTP API with the token in
// $RESPONDER_API_TOKEN.
package respctl

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
	"os/user"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/weblisten"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
)

// UsageError is a mistake in the operator's input that only a command's
// body finds, such as matchers the local silence store cannot parse. The
// command should exit as for a bad flag (cli.ExitUsage).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the mistake.
func (e *UsageError) Unwrap() error { return e.Err }

// Operator is the audit actor of a command run by hand: the OS user.
func Operator() audit.Actor {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return audit.Actor{Kind: audit.ActorCLI, Name: name}
}

// localResponder builds the responder on cfg's state directory inside this
// command, without its API (so its tokens' secrets need not be set), with
// alerts on console when no Slack token is set. When a running responder
// holds the state directory it returns inUse true and nothing else: the
// caller goes through that responder's API instead.
func localResponder(ctx context.Context, cfg config.Config, log *slog.Logger, console io.Writer) (svc *respond.Service, closeFn func(), inUse bool, err error) {
	deps, closeStores, err := respsvc.Stores(ctx, cfg, log)
	if err != nil {
		return nil, nil, false, err
	}
	deps.Console = console
	local := cfg
	local.Responder.Tokens, local.Responder.APIAddr = nil, ""
	svc, err = respond.Build(local, deps, log, prometheus.NewRegistry())
	if err != nil {
		closeStores()
		return nil, nil, errors.Is(err, outbox.ErrInUse), err
	}
	return svc, func() { svc.Close(); closeStores() }, false, nil
}

// apiClient calls the running responder's HTTP API with the token in
// RESPONDER_API_TOKEN, or in the file RESPONDER_API_TOKEN_FILE names.
type apiClient struct {
	base, token string
}

// newAPIClient is the client for base (default http(s)://responder.api_addr);
// need says what the token must be allowed, for the error without one.
func newAPIClient(cfg config.Config, base, need string) (*apiClient, error) {
	token := os.Getenv("RESPONDER_API_TOKEN")
	if file := os.Getenv("RESPONDER_API_TOKEN_FILE"); file != "" {
		if token != "" {
			return nil, errors.New("both RESPONDER_API_TOKEN and RESPONDER_API_TOKEN_FILE are set; set only one")
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("RESPONDER_API_TOKEN_FILE: %w", err)
		}
		token = strings.TrimRight(string(b), "\r\n")
	}
	if token == "" {
		where := "a responder holds the state directory"
		if cfg.Distributed() {
			where = "the responders keep this state themselves (kafka.brokers is set)"
		}
		return nil, fmt.Errorf("%s; to go through a running responder's API set RESPONDER_API_TOKEN (or RESPONDER_API_TOKEN_FILE) to a token with %s", where, need)
	}
	if base == "" {
		// With TLS on the API, the certificate is verified against the
		// system roots; SSL_CERT_FILE adds a private CA's bundle.
		scheme := "http://"
		if sec, err := weblisten.Inspect(cfg.Responder.APIWebConfigFile); err == nil && sec.TLS {
			scheme = "https://"
		}
		base = scheme + cfg.Responder.APIAddr
	}
	return &apiClient{base: strings.TrimSuffix(base, "/"), token: token}, nil
}

// call sends body (nil for none) as JSON and returns the answer of a 2xx;
// any other status is an error quoting the answer.
func (c *apiClient) call(ctx context.Context, method, path string, body any) ([]byte, error) {
	a, err := c.callStatus(ctx, method, path, body)
	return a.body, err
}

// apiAnswer is a 2xx answer: its status and body.
type apiAnswer struct {
	status int
	body   []byte
}

// callStatus is call, with the 2xx status too (a 202 says the request was
// queued).
func (c *apiClient) callStatus(ctx context.Context, method, path string, body any) (apiAnswer, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return apiAnswer{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return apiAnswer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return apiAnswer{}, fmt.Errorf("responder API: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 != 2 {
		return apiAnswer{}, fmt.Errorf("responder API answered %s: %s", resp.Status, audit.TerminalSafe(string(b), 500))
	}
	return apiAnswer{status: resp.StatusCode, body: b}, nil
}
