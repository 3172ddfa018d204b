package revoke

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"text/template"
)

// Body formats of a WebhookRequest.
const (
	BodyJSON = "json"
	BodyForm = "form"
)

// WebhookRequest describes one templated HTTP request. URL, header values
// and Body are text/template templates over the Target's CredentialID,
// AgentID, Consumer and IncidentID, e.g.
// "https://gw:9443/creds/{{.CredentialID}}/revoke". Each value is escaped
// for where it lands: in the URL and in headers every byte but
// A-Z a-z 0-9 - . _ ~ is percent-encoded; in a JSON body it is escaped as
// the inside of a JSON string (so write "{{.CredentialID}}" between
// quotes); in a form body it is query-escaped. The template's own text is
// sent as written.
type WebhookRequest struct {
	// Method is the HTTP method, not a template; default POST.
	Method string
	// URL is the request URL template. Its scheme and host must not
	// depend on the target, and its host:port must be on the Egress
	// allow-list.
	URL string
	// Header maps header names to value templates.
	Header map[string]string
	// Body is the body template; empty sends no body.
	Body string
	// BodyFormat is json (the default) or form. A JSON body must render
	// valid JSON with every value inside a string.
	BodyFormat string
	// AlreadyStatus lists answers that mean "already done" (e.g. 404 or
	// 410 for a revoke). 2xx means done; any other answer is an error,
	// retried only if 5xx or 429.
	AlreadyStatus []int
}

// WebhookOptions configure NewWebhook.
type WebhookOptions struct {
	// Name is the adapter name; default "webhook".
	Name string
	// Revoke is the request that revokes; required.
	Revoke WebhookRequest
	// Restore is the request that restores; without it Restore fails.
	Restore *WebhookRequest
	// Egress sends every request; required.
	Egress *Egress
	// Retry bounds retries. Every request carries an Idempotency-Key
	// header (the same on each try of one action) so the receiver can
	// drop a retried duplicate.
	Retry   Retry
	Metrics *Metrics
	Log     *slog.Logger
}

// Webhook revokes through a generic templated HTTP call. Safe for
// concurrent use.
type Webhook struct {
	name    string
	revoke  *webhookReq
	restore *webhookReq
	call    caller
}

var _ Gateway = (*Webhook)(nil)

type webhookReq struct {
	method  string
	url     *template.Template
	body    *template.Template
	headers []headerTmpl
	format  string
	already []int
}

type headerTmpl struct {
	name string
	val  *template.Template
}

// tmplData is what templates see: the Target's fields, already escaped.
type tmplData struct {
	CredentialID, AgentID, Consumer, IncidentID string
}

func escapeData(t Target, esc func(string) string) tmplData {
	return tmplData{CredentialID: esc(t.CredentialID), AgentID: esc(t.AgentID), Consumer: esc(t.Consumer), IncidentID: esc(t.IncidentID)}
}

// escapeComponent percent-encodes every byte but RFC 3986's unreserved
// characters, which is safe in a path segment, a query and a header.
func escapeComponent(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// escapeJSONString escapes s as the inside of a JSON string literal.
func escapeJSONString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals; invalid UTF-8 becomes U+FFFD
	return string(b[1 : len(b)-1])
}

// NewWebhook parses and checks the templates by rendering them for
// sample targets.
func NewWebhook(o WebhookOptions) (*Webhook, error) {
	var errs []error
	if o.Egress == nil {
		errs = append(errs, errors.New("egress: nil; build one with NewEgress"))
	}
	rv, err := compileRequest(o.Revoke)
	if err != nil {
		errs = append(errs, fmt.Errorf("revoke: %w", err))
	}
	var rs *webhookReq
	if o.Restore != nil {
		if rs, err = compileRequest(*o.Restore); err != nil {
			errs = append(errs, fmt.Errorf("restore: %w", err))
		}
	}
	name := o.Name
	if name == "" {
		name = "webhook"
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("webhook adapter %s: %w", name, err)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Webhook{
		name: name, revoke: rv, restore: rs,
		call: caller{adapter: name, egress: o.Egress, retry: o.Retry.withDefaults(), metrics: o.Metrics, log: log},
	}, nil
}

var webhookMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func compileRequest(r WebhookRequest) (*webhookReq, error) {
	var errs []error
	w := &webhookReq{method: strings.ToUpper(r.Method), format: r.BodyFormat, already: slices.Clone(r.AlreadyStatus)}
	if w.method == "" {
		w.method = http.MethodPost
	}
	if !slices.Contains(webhookMethods, w.method) {
		errs = append(errs, fmt.Errorf("method: %q; want one of %s", r.Method, strings.Join(webhookMethods, ", ")))
	}
	if w.format == "" {
		w.format = BodyJSON
	}
	if w.format != BodyJSON && w.format != BodyForm {
		errs = append(errs, fmt.Errorf("body_format: %q; want json or form", r.BodyFormat))
	}
	parse := func(field, text string) *template.Template {
		t, err := template.New(field).Option("missingkey=error").Parse(text)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", field, err))
			return nil
		}
		return t
	}
	if r.URL == "" {
		errs = append(errs, errors.New("url: empty"))
	}
	w.url = parse("url", r.URL)
	if r.Body != "" {
		w.body = parse("body", r.Body)
	}
	names := make([]string, 0, len(r.Header))
	for n := range r.Header {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if !validHeaderName(n) {
			errs = append(errs, fmt.Errorf("header %q: not a valid header name", n))
			continue
		}
		w.headers = append(w.headers, headerTmpl{name: n, val: parse("header "+n, r.Header[n])})
	}
	for _, c := range w.already {
		if c < 100 || c > 599 || c/100 == 2 {
			errs = append(errs, fmt.Errorf("already_status: %d is not a non-2xx HTTP status", c))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Render for two unlike targets: templates must execute, the URL must
	// be absolute with a fixed scheme and host, and a JSON body must hold
	// every value inside a string ("zz probe" is not JSON anywhere else).
	a := Target{CredentialID: "zz probe", AgentID: "zz probe", Consumer: "zz probe", IncidentID: "zz probe"}
	b := Target{CredentialID: `x"/\n`, AgentID: "y", Consumer: "z", IncidentID: "w"}
	ra, err := w.render(a, "k")
	if err != nil {
		return nil, err
	}
	rb, err := w.render(b, "k")
	if err != nil {
		return nil, err
	}
	if ra.URL.Scheme != "http" && ra.URL.Scheme != "https" || ra.URL.Host == "" {
		return nil, fmt.Errorf("url: %q does not render an absolute http(s) URL", r.URL)
	}
	if ra.URL.Scheme != rb.URL.Scheme || ra.URL.Host != rb.URL.Host || ra.URL.User != nil {
		return nil, fmt.Errorf("url: %q: scheme and host must not depend on the target, and user info is not allowed", r.URL)
	}
	return w, nil
}

func validHeaderName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func execute(t *template.Template, d tmplData) (string, error) {
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}

// rendered is a request ready to send.
type rendered struct {
	Method string
	URL    *url.URL
	Header http.Header
	Body   []byte
}

func (w *webhookReq) render(t Target, idemKey string) (rendered, error) {
	r := rendered{Method: w.method, Header: make(http.Header)}
	raw, err := execute(w.url, escapeData(t, escapeComponent))
	if err != nil {
		return r, fmt.Errorf("render url: %w", err)
	}
	if r.URL, err = url.Parse(raw); err != nil {
		return r, fmt.Errorf("render url: %w", err)
	}
	for _, h := range w.headers {
		v, err := execute(h.val, escapeData(t, escapeComponent))
		if err != nil {
			return r, fmt.Errorf("render header %s: %w", h.name, err)
		}
		r.Header.Set(h.name, v)
	}
	if w.body != nil {
		esc, ctype := escapeJSONString, "application/json"
		if w.format == BodyForm {
			esc, ctype = url.QueryEscape, "application/x-www-form-urlencoded"
		}
		body, err := execute(w.body, escapeData(t, esc))
		if err != nil {
			return r, fmt.Errorf("render body: %w", err)
		}
		if w.format == BodyJSON && !json.Valid([]byte(body)) {
			return r, errors.New("render body: not valid JSON; put each {{.Field}} inside a JSON string, e.g. \"{{.CredentialID}}\"")
		}
		r.Body = []byte(body)
		if r.Header.Get("Content-Type") == "" {
			r.Header.Set("Content-Type", ctype)
		}
	}
	if r.Header.Get("Idempotency-Key") == "" {
		r.Header.Set("Idempotency-Key", idemKey)
	}
	return r, nil
}

// Name implements Gateway.
func (w *Webhook) Name() string { return w.name }

// Check implements Gateway: the target's requests must render.
func (w *Webhook) Check(t Target) error {
	if _, err := w.revoke.render(t, ""); err != nil {
		return fmt.Errorf("webhook %s revoke: %w", w.name, err)
	}
	if w.restore != nil {
		if _, err := w.restore.render(t, ""); err != nil {
			return fmt.Errorf("webhook %s restore: %w", w.name, err)
		}
	}
	return nil
}

func (w *Webhook) idempotencyKey(action string, t Target) string {
	h := sha256.New()
	for _, s := range []string{w.name, action, t.CredentialID, t.IncidentID} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func (w *Webhook) send(ctx context.Context, action string, req *webhookReq, t Target) (done bool, attempts int, err error) {
	r, err := req.render(t, w.idempotencyKey(action, t))
	if err != nil {
		return false, 0, permanent(err)
	}
	resp, attempts, err := w.call.do(ctx, func(ctx context.Context) (*http.Request, error) {
		var body io.Reader
		if r.Body != nil {
			body = bytes.NewReader(r.Body)
		}
		hr, err := http.NewRequestWithContext(ctx, r.Method, r.URL.String(), body)
		if err != nil {
			return nil, fmt.Errorf("build request: %w", err)
		}
		hr.Header = r.Header.Clone()
		return hr, nil
	})
	if err != nil {
		return false, attempts, err
	}
	switch {
	case resp.code >= 200 && resp.code < 300:
		return true, attempts, nil
	case slices.Contains(req.already, resp.code):
		return false, attempts, nil
	}
	return false, attempts, statusError(r.Method, r.URL, resp)
}

// Revoke implements Gateway. The webhook keeps nothing for Restore but
// the mark that the request may have been sent.
func (w *Webhook) Revoke(ctx context.Context, t Target, keep func([]byte) error) (Result, error) {
	if err := keep(changeMarker); err != nil {
		return Result{}, fmt.Errorf("webhook %s revoke: %w", w.name, err)
	}
	done, attempts, err := w.send(ctx, "revoke", w.revoke, t)
	if err != nil {
		return Result{Attempts: attempts}, fmt.Errorf("webhook %s revoke: %w", w.name, err)
	}
	if !done {
		return Result{Status: StatusAlreadyRevoked, Detail: "webhook answered already revoked", Attempts: attempts}, nil
	}
	return Result{Status: StatusRevoked, Detail: "webhook accepted the revocation", Attempts: attempts}, nil
}

// Restore implements Gateway.
func (w *Webhook) Restore(ctx context.Context, t Target, _ []byte) (Result, error) {
	if w.restore == nil {
		return Result{}, permanent(fmt.Errorf("webhook %s has no restore request; configure one or restore the credential by hand", w.name))
	}
	done, attempts, err := w.send(ctx, "restore", w.restore, t)
	if err != nil {
		return Result{Attempts: attempts}, fmt.Errorf("webhook %s restore: %w", w.name, err)
	}
	if !done {
		return Result{Status: StatusAlreadyRestored, Detail: "webhook answered already restored", Attempts: attempts}, nil
	}
	return Result{Status: StatusRestored, Detail: "webhook accepted the restore", Attempts: attempts}, nil
}
