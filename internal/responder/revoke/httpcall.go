package revoke

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/retry"
)

// Retry bounds how a gateway call is retried. The zero value gives the
// defaults.
type Retry struct {
	// Attempts is the most times one call is sent; default 4.
	Attempts int
	// Base is the first backoff; each retry doubles it, up to Max, and a
	// random half of it is jitter. Defaults 200ms and 5s.
	Base, Max time.Duration
	// AttemptTimeout bounds each try, from dial to the end of the body;
	// default 10s. A try that times out is retried.
	AttemptTimeout time.Duration
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 4
	}
	if r.Base <= 0 {
		r.Base = 200 * time.Millisecond
	}
	if r.Max <= 0 {
		r.Max = 5 * time.Second
	}
	if r.Max < r.Base {
		r.Max = r.Base
	}
	if r.AttemptTimeout <= 0 {
		r.AttemptTimeout = 10 * time.Second
	}
	return r
}

// StatusError is a gateway answer the adapter cannot take as success:
// a 4xx (not retried) or a 5xx after the last attempt.
type StatusError struct {
	Method string
	// URL is the request URL without its query, which may hold secrets.
	URL  string
	Code int
	// Body is the start of the answer, for the operator.
	Body string
}

// Error implements error.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s %s: status %d", e.Method, e.URL, e.Code)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	switch {
	case e.Code == http.StatusUnauthorized || e.Code == http.StatusForbidden:
		msg += "; check the adapter's admin token and its permissions"
	case e.Code >= 500:
		msg += "; the gateway failed, retry later"
	}
	return msg
}

// Temporary reports whether the status is one worth retrying.
func (e *StatusError) Temporary() bool { return retryableStatus(e.Code) }

func retryableStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests
}

// maxBody bounds what is read of an answer.
const maxBody = 1 << 20

// response is a finished exchange.
type response struct {
	code int
	body []byte
}

// caller sends requests with retries through the egress guard.
type caller struct {
	adapter string
	egress  *Egress
	retry   Retry
	metrics *Metrics
	log     *slog.Logger
}

// do sends the request build makes (afresh for each try) and returns the
// answer of the first try that is not retryable. A 5xx or 429, a timeout
// or a network error is retried with backoff; an egress refusal or the
// end of ctx is not. After the last try a retryable status is returned as
// a *StatusError. attempts counts the tries sent.
func (c *caller) do(ctx context.Context, build func(ctx context.Context) (*http.Request, error)) (resp response, attempts int, err error) {
	p := retry.Policy{
		Backoff:  retry.Backoff{Base: c.retry.Base, Max: c.retry.Max},
		Attempts: c.retry.Attempts,
		Retryable: func(err error) bool {
			var se *StatusError
			switch {
			case errors.Is(err, ErrEgressRefused):
				return false
			case errors.As(err, &se):
				return se.Temporary()
			}
			return true // network errors and per-try timeouts
		},
		OnRetry: func(attempt int, wait time.Duration, err error) {
			c.metrics.retry(c.adapter)
			c.log.Warn("retrying gateway call", "adapter", c.adapter, "attempt", attempt, "wait", wait, "err", err)
		},
	}
	attempts, err = p.Do(ctx, func(ctx context.Context) error {
		resp, err = c.once(ctx, build)
		return err
	})
	return resp, attempts, err
}

func (c *caller) once(ctx context.Context, build func(ctx context.Context) (*http.Request, error)) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.retry.AttemptTimeout)
	defer cancel()
	req, err := build(ctx)
	if err != nil {
		return response{}, err
	}
	resp, err := c.egress.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return response{}, fmt.Errorf("read answer to %s %s: %w", req.Method, redact(req.URL), err)
	}
	r := response{code: resp.StatusCode, body: body}
	if retryableStatus(resp.StatusCode) {
		return r, &StatusError{Method: req.Method, URL: redact(req.URL), Code: resp.StatusCode, Body: snippet(body)}
	}
	return r, nil
}

// statusError describes an answer the adapter does not accept.
func statusError(method string, u *url.URL, r response) error {
	return &StatusError{Method: method, URL: redact(u), Code: r.code, Body: snippet(r.body)}
}

// redact drops the query and user info, which may carry secrets.
func redact(u *url.URL) string {
	v := *u
	v.User, v.RawQuery, v.ForceQuery, v.Fragment, v.RawFragment = nil, "", false, "", ""
	return v.String()
}

// snippet is the start of a body, quoted so it cannot forge log lines.
func snippet(b []byte) string {
	const n = 200
	if len(b) == 0 {
		return ""
	}
	if len(b) > n {
		return fmt.Sprintf("%q…", b[:n])
	}
	return fmt.Sprintf("%q", b)
}
