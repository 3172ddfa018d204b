package revoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// KongOptions configure NewKong.
type KongOptions struct {
	// AdminURL is the Kong Admin API base URL, with the workspace as its
	// path if there is one: "http://127.0.0.1:8001" or
	// "https://kong-admin:8444/team-a". Its host:port must be on the
	// Egress allow-list.
	AdminURL string
	// Token, if set, is sent as the Kong-Admin-Token header (RBAC).
	Token string
	// Egress sends every request; required.
	Egress *Egress
	// Retry bounds retries of 5xx, 429 and network errors.
	Retry Retry
	// Name is the adapter name; default "kong".
	Name    string
	Metrics *Metrics
	Log     *slog.Logger
}

// Kong revokes key-auth credentials through the Kong Admin API. Revoke
// reads the credential (GET), hands it to keep, then deletes it (DELETE
// /consumers/{consumer}/key-auth/{id}, or /key-auths/{id} when the target
// names no consumer). Restore puts it back with the same id, key and tags
// (PUT, an upsert, so a repeated restore is harmless). A 404 on read or
// delete means already revoked. Safe for concurrent use.
type Kong struct {
	name  string
	base  string
	token string
	call  caller
}

var _ Gateway = (*Kong)(nil)

// NewKong checks o and returns the adapter.
func NewKong(o KongOptions) (*Kong, error) {
	var errs []error
	u, err := url.Parse(o.AdminURL)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("admin_url: %w", err))
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		errs = append(errs, fmt.Errorf("admin_url: %q is not an absolute http(s) URL; want e.g. http://127.0.0.1:8001", o.AdminURL))
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		errs = append(errs, fmt.Errorf("admin_url: %q: no query, fragment or user info; put the token in token", redact(u)))
	}
	if o.Egress == nil {
		errs = append(errs, errors.New("egress: nil; build one with NewEgress"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("kong adapter: %w", err)
	}
	name := o.Name
	if name == "" {
		name = "kong"
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Kong{
		name:  name,
		base:  strings.TrimRight(u.String(), "/"),
		token: o.Token,
		call:  caller{adapter: name, egress: o.Egress, retry: o.Retry.withDefaults(), metrics: o.Metrics, log: log},
	}, nil
}

// Name implements Gateway.
func (k *Kong) Name() string { return k.name }

// Check implements Gateway.
func (k *Kong) Check(Target) error { return nil }

// kongCredential is what Kong returns for a key-auth credential, and what
// Revoke keeps for Restore. Key is a secret: it is never logged.
type kongCredential struct {
	ID       string        `json:"id"`
	Key      string        `json:"key"`
	Tags     []string      `json:"tags,omitempty"`
	TTL      *int64        `json:"ttl,omitempty"`
	Consumer *kongConsumer `json:"consumer,omitempty"`
}

type kongConsumer struct {
	ID string `json:"id"`
}

// path is the credential's Admin API URL; each segment is escaped, so a
// "/" in an id stays inside its segment.
func (k *Kong) path(consumer, id string) string {
	if consumer == "" {
		return k.base + "/key-auths/" + url.PathEscape(id)
	}
	return k.base + "/consumers/" + url.PathEscape(consumer) + "/key-auth/" + url.PathEscape(id)
}

func (k *Kong) request(method, rawURL string, body []byte) func(ctx context.Context) (*http.Request, error) {
	return func(ctx context.Context) (*http.Request, error) {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
		if err != nil {
			return nil, fmt.Errorf("build %s request: %w", method, err)
		}
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if k.token != "" {
			req.Header.Set("Kong-Admin-Token", k.token)
		}
		return req, nil
	}
}

// get reads the credential; found is false on a 404.
func (k *Kong) get(ctx context.Context, rawURL string) (cred kongCredential, raw []byte, found bool, err error) {
	resp, _, err := k.call.do(ctx, k.request(http.MethodGet, rawURL, nil))
	if err != nil {
		return cred, nil, false, fmt.Errorf("read kong credential: %w", err)
	}
	switch resp.code {
	case http.StatusOK:
	case http.StatusNotFound:
		return cred, nil, false, nil
	default:
		u, _ := url.Parse(rawURL)
		return cred, nil, false, fmt.Errorf("read kong credential: %w", statusError(http.MethodGet, u, resp))
	}
	if err := json.Unmarshal(resp.body, &cred); err != nil || cred.Key == "" {
		return cred, nil, false, fmt.Errorf("read kong credential: answer is not a key-auth credential (%v); is admin_url the Admin API?", err)
	}
	raw, err = json.Marshal(cred)
	if err != nil {
		return cred, nil, false, fmt.Errorf("encode kong credential: %w", err)
	}
	return cred, raw, true, nil
}

// Revoke implements Gateway.
func (k *Kong) Revoke(ctx context.Context, t Target, keep func(saved []byte) error) (Result, error) {
	rawURL := k.path(t.Consumer, t.CredentialID)
	_, saved, found, err := k.get(ctx, rawURL)
	if err != nil {
		return Result{}, err
	}
	if !found {
		if t.Consumer != "" {
			// A wrong consumer must not pass for "already revoked" while
			// the credential lives on under another one.
			if _, _, elsewhere, err := k.get(ctx, k.path("", t.CredentialID)); err != nil {
				return Result{}, err
			} else if elsewhere {
				return Result{}, permanent(fmt.Errorf("kong credential %s exists but not under consumer %q; check the target's consumer", t.CredentialID, t.Consumer))
			}
		}
		return Result{Status: StatusAlreadyRevoked, Detail: "kong has no such credential (404)"}, nil
	}
	if err := keep(saved); err != nil {
		return Result{}, fmt.Errorf("keep kong credential for restore: %w", err)
	}
	resp, attempts, err := k.call.do(ctx, k.request(http.MethodDelete, rawURL, nil))
	if err != nil {
		return Result{Attempts: attempts}, fmt.Errorf("delete kong credential: %w", err)
	}
	switch resp.code {
	case http.StatusNoContent, http.StatusOK:
		return Result{Status: StatusRevoked, Detail: "kong credential deleted", Attempts: attempts}, nil
	case http.StatusNotFound:
		return Result{Status: StatusAlreadyRevoked, Detail: "kong credential was gone before the delete", Attempts: attempts}, nil
	}
	u, _ := url.Parse(rawURL)
	return Result{Attempts: attempts}, fmt.Errorf("delete kong credential: %w", statusError(http.MethodDelete, u, resp))
}

// Restore implements Gateway.
func (k *Kong) Restore(ctx context.Context, t Target, saved []byte) (Result, error) {
	_, _, found, err := k.get(ctx, k.path(t.Consumer, t.CredentialID))
	if err != nil {
		return Result{}, err
	}
	if found {
		return Result{Status: StatusAlreadyRestored, Detail: "kong credential exists"}, nil
	}
	if saved == nil {
		return Result{}, permanent(errors.New("restore kong credential: nothing was kept of it when it was revoked (without responder.ledger_key the ledger keeps no key); issue a new key by hand"))
	}
	var cred kongCredential
	if err := json.Unmarshal(saved, &cred); err != nil || cred.Key == "" {
		return Result{}, permanent(fmt.Errorf("restore kong credential: kept copy does not decode (%v); issue a new key by hand", err))
	}
	id := cred.ID
	if id == "" {
		id = t.CredentialID
	}
	body := map[string]any{"key": cred.Key}
	if cred.Tags != nil {
		body["tags"] = cred.Tags
	}
	if cred.TTL != nil && *cred.TTL > 0 {
		body["ttl"] = *cred.TTL
	}
	rawURL := k.path(t.Consumer, id)
	if t.Consumer == "" {
		if cred.Consumer == nil || cred.Consumer.ID == "" {
			return Result{}, permanent(errors.New("restore kong credential: the kept copy names no consumer and neither does the target; set the target's consumer"))
		}
		body["consumer"] = map[string]string{"id": cred.Consumer.ID}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return Result{}, fmt.Errorf("encode kong credential: %w", err)
	}
	resp, attempts, err := k.call.do(ctx, k.request(http.MethodPut, rawURL, b))
	if err != nil {
		return Result{Attempts: attempts}, fmt.Errorf("re-create kong credential: %w", err)
	}
	if resp.code == http.StatusOK || resp.code == http.StatusCreated {
		return Result{Status: StatusRestored, Detail: "kong credential re-created with its key", Attempts: attempts}, nil
	}
	u, _ := url.Parse(rawURL)
	return Result{Attempts: attempts}, fmt.Errorf("re-create kong credential: %w", statusError(http.MethodPut, u, resp))
}
