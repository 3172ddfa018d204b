package revoke

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Throttler rate-limits an agent's credential at a gateway, and undoes it.
// Implementations are safe for concurrent use. Throttle returns
// StatusThrottled or StatusAlreadyThrottled, Unthrottle StatusUnthrottled
// or StatusAlreadyUnthrottled; decide on a retry with Retryable. Both
// count in Metrics.Actions and Duration under the adapter's name.
type Throttler interface {
	Name() string
	// Throttle limits the consumer owning t.CredentialID to perMinute requests per minute.
	// Idempotent per (credential, incident): it tags what it creates with the incident and,
	// called again (a retry, a crash recovery), finds and returns the existing one instead of creating another.
	// saved is what Unthrottle needs (e.g. the plugin id).
	Throttle(ctx context.Context, t Target, perMinute int) (res Result, saved []byte, err error)
	// Unthrottle removes what Throttle created; already gone (404) counts as done (StatusAlreadyUnthrottled).
	Unthrottle(ctx context.Context, t Target, saved []byte) (Result, error)
}

// Statuses of a Throttler.
const (
	// StatusThrottled: this call put the rate limit in place.
	StatusThrottled Status = "throttled"
	// StatusAlreadyThrottled: nothing to do; this incident's rate limit
	// was in place already (a retry or a resumed step).
	StatusAlreadyThrottled Status = "already_throttled"
	// StatusUnthrottled: this call removed the incident's rate limit.
	StatusUnthrottled Status = "unthrottled"
	// StatusAlreadyUnthrottled: nothing to do; the rate limit was gone
	// already (removed by hand, or by an earlier Unthrottle).
	StatusAlreadyUnthrottled Status = "already_unthrottled"
)

var _ Throttler = (*Kong)(nil)

// kongRateLimiting is the name of Kong's bundled rate-limiting plugin.
const kongRateLimiting = "rate-limiting"

// throttleTag is what every plugin agentwatch creates is tagged with.
const throttleTag = "agentwatch"

// kongPlugin is the part of a Kong plugin entity the adapter reads.
type kongPlugin struct {
	ID     string         `json:"id"`
	Name   string         `json:"name"`
	Tags   []string       `json:"tags"`
	Config map[string]any `json:"config"`
}

// kongThrottle is what Throttle saves for Unthrottle.
type kongThrottle struct {
	PluginID string `json:"plugin_id"`
	Consumer string `json:"consumer"`
}

// incidentTag is the Kong tag naming the incident: Kong tags may not hold
// "," or "/" (they are the filter operators) nor non-printable ASCII, so
// every byte outside [A-Za-z0-9._~:-] becomes "_". A changed or long id
// gets a hash of the original appended, so two incidents never share a
// tag.
func incidentTag(incident string) string {
	const prefix, maxLen = "agentwatch-incident-", 64
	var b strings.Builder
	changed := false
	for i := 0; i < len(incident); i++ {
		c := incident[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '~', c == ':', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
			changed = true
		}
	}
	s := b.String()
	if len(s) > maxLen {
		s, changed = s[:maxLen], true
	}
	if changed {
		sum := sha256.Sum256([]byte(incident))
		s += "-" + hex.EncodeToString(sum[:6])
	}
	return prefix + s
}

func (p kongPlugin) tagged(tag string) bool { return slices.Contains(p.Tags, tag) }

// minute is the plugin's configured per-minute limit, 0 if none.
func (p kongPlugin) minute() int {
	if f, ok := p.Config["minute"].(float64); ok {
		return int(f)
	}
	return 0
}

// throttleConsumer resolves the consumer whose plugins the throttle goes
// on: t.Consumer once the credential is seen under it, else the
// credential's own consumer.
func (k *Kong) throttleConsumer(ctx context.Context, t Target) (string, error) {
	cred, _, found, err := k.get(ctx, k.path(t.Consumer, t.CredentialID))
	if err != nil {
		return "", err
	}
	if !found {
		if t.Consumer != "" {
			return "", permanent(fmt.Errorf("kong has no credential %s under consumer %q; check the target's consumer, or whether the credential was revoked", t.CredentialID, t.Consumer))
		}
		return "", permanent(fmt.Errorf("kong has no credential %s to throttle; it may be revoked already", t.CredentialID))
	}
	if t.Consumer != "" {
		return t.Consumer, nil
	}
	if cred.Consumer == nil || cred.Consumer.ID == "" {
		return "", permanent(fmt.Errorf("kong credential %s names no consumer; set the target's consumer", t.CredentialID))
	}
	return cred.Consumer.ID, nil
}

func (k *Kong) pluginsURL(consumer string) string {
	return k.base + "/consumers/" + url.PathEscape(consumer) + "/plugins"
}

func (k *Kong) pluginURL(id string) string { return k.base + "/plugins/" + url.PathEscape(id) }

// ratePlugins lists the consumer's rate-limiting plugins, those tagged
// tag only if tag is set (Kong filters; the adapter checks again).
func (k *Kong) ratePlugins(ctx context.Context, consumer, tag string) ([]kongPlugin, error) {
	rawURL := k.pluginsURL(consumer)
	if tag != "" {
		rawURL += "?tags=" + url.QueryEscape(tag)
	}
	resp, _, err := k.call.do(ctx, k.request(http.MethodGet, rawURL, nil))
	if err != nil {
		return nil, fmt.Errorf("list kong plugins of consumer %q: %w", consumer, err)
	}
	if resp.code != http.StatusOK {
		u, _ := url.Parse(rawURL)
		err := statusError(http.MethodGet, u, resp)
		if resp.code == http.StatusNotFound {
			err = permanent(fmt.Errorf("%w; kong has no consumer %q", err, consumer))
		}
		return nil, fmt.Errorf("list kong plugins of consumer %q: %w", consumer, err)
	}
	var page struct {
		Data []kongPlugin `json:"data"`
	}
	if err := json.Unmarshal(resp.body, &page); err != nil {
		return nil, fmt.Errorf("list kong plugins of consumer %q: answer does not decode (%v); is admin_url the Admin API?", consumer, err)
	}
	var out []kongPlugin
	for _, p := range page.Data {
		if p.Name == kongRateLimiting && (tag == "" || p.tagged(tag)) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (k *Kong) record(status Status, err error, start time.Time) {
	s := string(status)
	if err != nil {
		s = "error"
	}
	k.call.metrics.action(k.name, s)
	k.call.metrics.observe(k.name, time.Since(start).Seconds())
}

// Throttle implements Throttler with Kong's rate-limiting plugin on the
// credential's consumer (config minute perMinute, policy local), tagged
// "agentwatch" and the incident's tag. It reads the credential (to find
// or check the consumer), looks for the incident's plugin, and creates one
// only if there is none. A rate-limiting plugin on the consumer that is
// not the incident's makes Kong answer 409; that is a permanent error
// naming the plugin. An existing plugin of the incident is returned as it
// is, even if its limit differs from perMinute (the Detail says so).
func (k *Kong) Throttle(ctx context.Context, t Target, perMinute int) (res Result, saved []byte, err error) {
	start := time.Now()
	defer func() { k.record(res.Status, err, start) }()
	if err := t.validate(); err != nil {
		return Result{}, nil, err
	}
	if perMinute <= 0 {
		return Result{}, nil, fmt.Errorf("%w: rate_per_minute: must be positive, got %d", ErrInvalidTarget, perMinute)
	}
	consumer, err := k.throttleConsumer(ctx, t)
	if err != nil {
		return Result{}, nil, fmt.Errorf("throttle: %w", err)
	}
	tag := incidentTag(t.IncidentID)
	if res, saved, ok, err := k.existingThrottle(ctx, consumer, tag, perMinute, 0); err != nil || ok {
		return res, saved, err
	}

	body, err := json.Marshal(map[string]any{
		"name":   kongRateLimiting,
		"config": map[string]any{"minute": perMinute, "policy": "local"},
		"tags":   []string{throttleTag, tag},
	})
	if err != nil {
		return Result{}, nil, fmt.Errorf("encode kong plugin: %w", err)
	}
	rawURL := k.pluginsURL(consumer)
	resp, attempts, err := k.call.do(ctx, k.request(http.MethodPost, rawURL, body))
	if err != nil {
		return Result{Attempts: attempts}, nil, fmt.Errorf("create kong rate-limiting plugin: %w", err)
	}
	switch resp.code {
	case http.StatusCreated, http.StatusOK:
		var p kongPlugin
		if err := json.Unmarshal(resp.body, &p); err != nil || p.ID == "" {
			return Result{Attempts: attempts}, nil, fmt.Errorf("create kong rate-limiting plugin: answer names no plugin id (%v); is admin_url the Admin API?", err)
		}
		saved, err := json.Marshal(kongThrottle{PluginID: p.ID, Consumer: consumer})
		if err != nil {
			return Result{Attempts: attempts}, nil, fmt.Errorf("encode kong throttle: %w", err)
		}
		return Result{Status: StatusThrottled, Detail: fmt.Sprintf("kong rate-limiting plugin %s set to %d/min", p.ID, perMinute), Attempts: attempts}, saved, nil
	case http.StatusConflict:
		// Ours if an earlier try was made but its answer lost; someone
		// else's otherwise.
		if res, saved, ok, err := k.existingThrottle(ctx, consumer, tag, perMinute, attempts); err != nil || ok {
			return res, saved, err
		}
		return Result{Attempts: attempts}, nil, permanent(fmt.Errorf("throttle: consumer %q already has a rate-limiting plugin%s that this incident did not create (kong answered 409); "+
			"tighten or remove that plugin by hand, or revoke instead", consumer, k.describeForeign(ctx, consumer)))
	}
	u, _ := url.Parse(rawURL)
	return Result{Attempts: attempts}, nil, fmt.Errorf("create kong rate-limiting plugin: %w", statusError(http.MethodPost, u, resp))
}

// existingThrottle returns the incident's plugin on the consumer, if any.
func (k *Kong) existingThrottle(ctx context.Context, consumer, tag string, perMinute, attempts int) (Result, []byte, bool, error) {
	ps, err := k.ratePlugins(ctx, consumer, tag)
	if err != nil {
		return Result{Attempts: attempts}, nil, false, fmt.Errorf("throttle: %w", err)
	}
	if len(ps) == 0 {
		return Result{}, nil, false, nil
	}
	p := ps[0]
	saved, err := json.Marshal(kongThrottle{PluginID: p.ID, Consumer: consumer})
	if err != nil {
		return Result{Attempts: attempts}, nil, false, fmt.Errorf("encode kong throttle: %w", err)
	}
	detail := fmt.Sprintf("kong rate-limiting plugin %s of this incident in place", p.ID)
	if m := p.minute(); m != perMinute {
		detail += fmt.Sprintf(", at %d/min, not the %d/min asked; left as it is", m, perMinute)
	}
	status := StatusAlreadyThrottled
	if attempts > 0 {
		status = StatusThrottled // the create went through; its answer was lost
	}
	return Result{Status: status, Detail: detail, Attempts: attempts}, saved, true, nil
}

// describeForeign names the rate-limiting plugin in the way, for the
// operator; empty if it cannot be read.
func (k *Kong) describeForeign(ctx context.Context, consumer string) string {
	ps, err := k.ratePlugins(ctx, consumer, "")
	if err != nil || len(ps) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%s, tags %q)", ps[0].ID, ps[0].Tags)
}

// Unthrottle implements Throttler. It reads the saved plugin first: gone
// (404) is StatusAlreadyUnthrottled; present but not tagged with the
// incident is a permanent error, so a stale or mixed-up saved value never
// removes someone else's plugin. Then it deletes it.
func (k *Kong) Unthrottle(ctx context.Context, t Target, saved []byte) (res Result, err error) {
	start := time.Now()
	defer func() { k.record(res.Status, err, start) }()
	if err := t.validate(); err != nil {
		return Result{}, err
	}
	var s kongThrottle
	if err := json.Unmarshal(saved, &s); err != nil || s.PluginID == "" {
		return Result{}, permanent(fmt.Errorf("unthrottle: saved value names no kong plugin (%v); remove the rate-limiting plugin tagged %s by hand", err, incidentTag(t.IncidentID)))
	}
	if s.PluginID == "." || s.PluginID == ".." {
		return Result{}, permanent(fmt.Errorf("unthrottle: saved plugin id %q is not usable", s.PluginID))
	}
	rawURL := k.pluginURL(s.PluginID)
	u, _ := url.Parse(rawURL)
	resp, _, err := k.call.do(ctx, k.request(http.MethodGet, rawURL, nil))
	if err != nil {
		return Result{}, fmt.Errorf("read kong plugin %s: %w", s.PluginID, err)
	}
	switch resp.code {
	case http.StatusOK:
	case http.StatusNotFound:
		return Result{Status: StatusAlreadyUnthrottled, Detail: "kong rate-limiting plugin was gone (404)"}, nil
	default:
		return Result{}, fmt.Errorf("read kong plugin %s: %w", s.PluginID, statusError(http.MethodGet, u, resp))
	}
	var p kongPlugin
	if err := json.Unmarshal(resp.body, &p); err != nil {
		return Result{}, fmt.Errorf("read kong plugin %s: answer does not decode (%v); is admin_url the Admin API?", s.PluginID, err)
	}
	if tag := incidentTag(t.IncidentID); !p.tagged(tag) {
		return Result{}, permanent(fmt.Errorf("unthrottle: kong plugin %s is not tagged %s, so not this incident's; left in place, check it by hand", s.PluginID, tag))
	}
	resp, attempts, err := k.call.do(ctx, k.request(http.MethodDelete, rawURL, nil))
	if err != nil {
		return Result{Attempts: attempts}, fmt.Errorf("delete kong plugin %s: %w", s.PluginID, err)
	}
	switch resp.code {
	case http.StatusNoContent, http.StatusOK:
		return Result{Status: StatusUnthrottled, Detail: fmt.Sprintf("kong rate-limiting plugin %s deleted", s.PluginID), Attempts: attempts}, nil
	case http.StatusNotFound:
		return Result{Status: StatusAlreadyUnthrottled, Detail: "kong rate-limiting plugin was gone before the delete", Attempts: attempts}, nil
	}
	return Result{Attempts: attempts}, fmt.Errorf("delete kong plugin %s: %w", s.PluginID, statusError(http.MethodDelete, u, resp))
}
