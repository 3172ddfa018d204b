package config

import (
	"net/netip"
	"time"
)

// Console configures the web console the responder serves at /console/
// on its API listener (docs/console.md), under the listener's rules.
type Console struct {
	Enabled    bool          `mapstructure:"enabled" doc:"Serve the web console at /console/ on responder.api_addr (which must be set); people sign in with responder.tokens or through console.proxy_auth."`
	ReportsDir string        `mapstructure:"reports_dir" doc:"Directory of the generated reports (.html, .pdf) the console's reports page lists; empty lists none."`
	SessionTTL time.Duration `mapstructure:"session_ttl" doc:"How long a console session lasts after sign-in; 1m to 7 days."`
	Lookback   time.Duration `mapstructure:"lookback" doc:"How far back the console's incidents page looks; 1h to 366 days."`
	ProxyAuth  ConsoleProxy  `mapstructure:"proxy_auth"`
}

// ConsoleProxy is single sign-on through an authenticating proxy
// (oauth2-proxy, Grafana's auth proxy convention).
type ConsoleProxy struct {
	Header       string            `mapstructure:"header" doc:"Request header that names the signed-in user, set by an authenticating proxy (oauth2-proxy: X-Forwarded-User; Grafana convention: X-WEBAUTH-USER); empty disables proxy sign-in."`
	EmailHeader  string            `mapstructure:"email_header" doc:"Header with the user's email (oauth2-proxy: X-Forwarded-Email); when present it names the person in the audit."`
	GroupsHeader string            `mapstructure:"groups_header" doc:"Header with the user's groups, comma-separated (oauth2-proxy: X-Forwarded-Groups)."`
	TrustedCIDRs []string          `mapstructure:"trusted_cidrs" doc:"Addresses of the proxy (CIDRs or addresses); the headers are ignored on requests from anywhere else. Required with console.proxy_auth.header."`
	Users        map[string]string `mapstructure:"users" doc:"User name or email to scope (read, act or admin); a user's own entry is the floor their groups widen."`
	Groups       map[string]string `mapstructure:"groups" doc:"Group to scope (read, act or admin); the widest of a user's matches wins."`
	DefaultScope string            `mapstructure:"default_scope" doc:"Scope of a proxy user matched by no entry: read, act, admin, or empty to refuse them."`
}

func consoleDefaults() map[string]any {
	return map[string]any{
		"console.enabled":                  false,
		"console.reports_dir":              "",
		"console.session_ttl":              8 * time.Hour,
		"console.lookback":                 30 * 24 * time.Hour,
		"console.proxy_auth.header":        "",
		"console.proxy_auth.email_header":  "",
		"console.proxy_auth.groups_header": "",
		"console.proxy_auth.trusted_cidrs": []string{},
		"console.proxy_auth.users":         map[string]string{},
		"console.proxy_auth.groups":        map[string]string{},
		"console.proxy_auth.default_scope": "",
	}
}

// Prefixes parses TrustedCIDRs (an address alone is its /32 or /128).
func (p ConsoleProxy) Prefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range p.TrustedCIDRs {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, pr.Masked())
	}
	return out, nil
}

func validScope(s string) bool { return s == "read" || s == "act" || s == "admin" }

func (c Console) validate(bad func(key, format string, args ...any), apiAddr string) {
	if c.Enabled && apiAddr == "" {
		bad("console.enabled", "the console is served on responder.api_addr; set it, or turn the console off")
	}
	if c.SessionTTL < time.Minute || c.SessionTTL > 7*24*time.Hour {
		bad("console.session_ttl", "must be 1m to 168h, got %s", c.SessionTTL)
	}
	if c.Lookback < time.Hour || c.Lookback > 366*24*time.Hour {
		bad("console.lookback", "must be 1h to 8784h, got %s", c.Lookback)
	}
	p := c.ProxyAuth
	if _, err := p.Prefixes(); err != nil {
		bad("console.proxy_auth.trusted_cidrs", "%v", err)
	}
	if p.Header != "" && len(p.TrustedCIDRs) == 0 {
		bad("console.proxy_auth.trusted_cidrs", "required with console.proxy_auth.header, or anyone could send the header")
	}
	for k, v := range p.Users {
		if !validScope(v) {
			bad("console.proxy_auth.users", "%q: scope %q: want read, act or admin", k, v)
		}
	}
	for k, v := range p.Groups {
		if !validScope(v) {
			bad("console.proxy_auth.groups", "%q: scope %q: want read, act or admin", k, v)
		}
	}
	if p.DefaultScope != "" && !validScope(p.DefaultScope) {
		bad("console.proxy_auth.default_scope", "want read, act, admin or empty, got %q", p.DefaultScope)
	}
}
