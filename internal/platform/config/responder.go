package config

import (
	"fmt"
	"net"
	"net/url"
	"time"
)

// Responder configures cmd/responder (and the responder inside the demo):
// playbooks, Slack, gateways, the blast-radius budget and the HTTP API.
// docs/responder.md describes each key.
type Responder struct {
	// Playbooks are the playbook files and directories, read and
	// validated at start; empty means the built-in set embedded in the
	// binary (deploy/playbooks), which works wherever the binary runs.
	Playbooks []string `mapstructure:"playbooks"`
	// StateDir holds the responder's local durable state: the outbox, the
	// revocation ledger (it holds credentials kept for restore: mode
	// 0600), silences and open incidents.
	StateDir string `mapstructure:"state_dir"`
	// EvidenceDir is where evidence bundles are written; "" means
	// StateDir/evidence.
	EvidenceDir string `mapstructure:"evidence_dir"`
	// GroupWait delays an incident's first alert (Alertmanager's
	// group_wait), so the anomalies arriving meanwhile follow it into its
	// thread at once instead of one alert each.
	GroupWait time.Duration `mapstructure:"group_wait"`
	// IncidentWindow: an anomaly of an agent within this long of the
	// agent's last one joins its open incident (and Slack thread).
	IncidentWindow time.Duration `mapstructure:"incident_window"`
	// RepeatInterval: a follow-up this long after the incident's last
	// channel-level post is also sent to the channel, not only the thread.
	RepeatInterval time.Duration `mapstructure:"repeat_interval"`
	// FalsePositiveSuppress is how long "mark false positive" silences the
	// same pattern (agent, kind, top feature).
	FalsePositiveSuppress time.Duration `mapstructure:"false_positive_suppress"`
	// Snooze is how long the snooze button silences the agent.
	Snooze time.Duration `mapstructure:"snooze"`
	// RevokeBudget automatic revocations (and quarantines) per
	// RevokeInterval; past it a step becomes an approval request.
	RevokeBudget   int           `mapstructure:"revoke_budget"`
	RevokeInterval time.Duration `mapstructure:"revoke_interval"`
	// KillSwitchFile: while this file exists no revocation runs.
	KillSwitchFile string `mapstructure:"kill_switch_file"`
	// APIAddr serves the HTTP API (/v1/...) and Slack's interactivity
	// endpoint (/slack/interactions); "" disables both.
	APIAddr string `mapstructure:"api_addr"`
	// Tokens are the HTTP API's bearer tokens (file only).
	Tokens []APIToken `mapstructure:"tokens"`
	// EgressAllow lists the host:port (IP, CIDR or DNS name) outbound
	// calls may reach: Kong's admin API, webhook targets.
	EgressAllow []string `mapstructure:"egress_allow"`
	Slack       Slack    `mapstructure:"slack"`
	Kong        Kong     `mapstructure:"kong"`
	Denylist    Denylist `mapstructure:"denylist"`
	// Webhooks are the named targets of webhook steps and the webhook
	// revocation adapter (file only).
	Webhooks map[string]WebhookTarget `mapstructure:"webhooks"`
	// SnapshotMaxEvents caps the events of one evidence bundle.
	SnapshotMaxEvents int `mapstructure:"snapshot_max_events"`
}

// Slack configures alerts. With no token, alerts go to the console.
type Slack struct {
	// TokenEnv names the variable holding the bot token (xoxb-…). Not an
	// AGENTWATCH_* name: those are configuration keys.
	TokenEnv string `mapstructure:"token_env"`
	// SigningSecretEnv names the variable holding the app's signing
	// secret, which verifies interactivity requests and signs buttons.
	SigningSecretEnv string `mapstructure:"signing_secret_env"`
	// APIURL overrides https://slack.com/api/ (tests use a local server).
	APIURL string `mapstructure:"api_url"`
	// ApprovalChannel gets approval requests of incidents without an
	// alert thread (a revocation past the budget).
	ApprovalChannel string `mapstructure:"approval_channel"`
}

// Kong configures the Kong Admin API adapter; AdminURL "" disables it.
type Kong struct {
	AdminURL string `mapstructure:"admin_url"`
	// TokenEnv names the variable holding Kong-Admin-Token, if RBAC is on.
	TokenEnv string `mapstructure:"token_env"`
}

// Denylist configures the deny-list file adapter; Path "" means
// StateDir/denylist.txt.
type Denylist struct {
	Path   string `mapstructure:"path"`
	Format string `mapstructure:"format"` // lines or json
}

// WebhookTarget is one templated HTTP request (see internal/responder/revoke's
// WebhookRequest for the template fields).
type WebhookTarget struct {
	Method        string            `mapstructure:"method"`
	URL           string            `mapstructure:"url"`
	Header        map[string]string `mapstructure:"header"`
	Body          string            `mapstructure:"body"`
	BodyFormat    string            `mapstructure:"body_format"`
	AlreadyStatus []int             `mapstructure:"already_status"`
}

// APIToken is one HTTP API token; see internal/responder/respapi's Token.
type APIToken struct {
	Name             string   `mapstructure:"name"`
	SHA256           string   `mapstructure:"sha256"`
	SecretEnv        string   `mapstructure:"secret_env"`
	AllowedPlaybooks []string `mapstructure:"allowed_playbooks"`
	CanReadAudit     bool     `mapstructure:"can_read_audit"`
	CanSilence       bool     `mapstructure:"can_silence"`
}

func responderDefaults() map[string]any {
	return map[string]any{
		"responder.playbooks":                []string{},
		"responder.state_dir":                ".data/responder",
		"responder.evidence_dir":             "",
		"responder.group_wait":               "10s",
		"responder.incident_window":          "1h",
		"responder.repeat_interval":          "4h",
		"responder.false_positive_suppress":  "24h",
		"responder.snooze":                   "4h",
		"responder.revoke_budget":            5,
		"responder.revoke_interval":          "10m",
		"responder.kill_switch_file":         "",
		"responder.api_addr":                 "127.0.0.1:9465",
		"responder.tokens":                   []APIToken{},
		"responder.egress_allow":             []string{},
		"responder.slack.token_env":          "SLACK_BOT_TOKEN",
		"responder.slack.signing_secret_env": "SLACK_SIGNING_SECRET",
		"responder.slack.api_url":            "",
		"responder.slack.approval_channel":   "#soc-alerts",
		"responder.kong.admin_url":           "",
		"responder.kong.token_env":           "",
		"responder.denylist.path":            "",
		"responder.denylist.format":          "lines",
		"responder.webhooks":                 map[string]WebhookTarget{},
		"responder.snapshot_max_events":      100_000,
	}
}

func (r Responder) validate(bad func(key, format string, a ...any)) {
	if r.StateDir == "" {
		bad("responder.state_dir", "must be set")
	}
	for key, v := range map[string]time.Duration{"responder.group_wait": r.GroupWait, "responder.repeat_interval": r.RepeatInterval} {
		if v < 0 || v > 24*time.Hour {
			bad(key, "must be in [0, 24h], got %s", v)
		}
	}
	for key, v := range map[string]time.Duration{"responder.incident_window": r.IncidentWindow, "responder.false_positive_suppress": r.FalsePositiveSuppress,
		"responder.snooze": r.Snooze, "responder.revoke_interval": r.RevokeInterval} {
		if v <= 0 || v > 90*24*time.Hour {
			bad(key, "must be a positive duration up to 90 days, got %s", v)
		}
	}
	if r.RevokeBudget < 0 {
		bad("responder.revoke_budget", "must be 0 (every automatic revocation needs approval) or positive, got %d", r.RevokeBudget)
	}
	if r.APIAddr != "" {
		if err := loopbackAddr(r.APIAddr); err != nil {
			bad("responder.api_addr", "%v", err)
		}
	}
	for _, a := range r.EgressAllow {
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("responder.egress_allow", "%q is not host:port", a)
		}
	}
	if r.Slack.APIURL != "" {
		if u, err := url.Parse(r.Slack.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("responder.slack.api_url", "%q is not an http(s) URL", r.Slack.APIURL)
		}
	}
	if r.Kong.AdminURL != "" {
		if u, err := url.Parse(r.Kong.AdminURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("responder.kong.admin_url", "%q is not an http(s) URL", r.Kong.AdminURL)
		}
	}
	if r.Denylist.Format != "lines" && r.Denylist.Format != "json" {
		bad("responder.denylist.format", "must be lines or json, got %q", r.Denylist.Format)
	}
	for name, w := range r.Webhooks {
		if w.URL == "" {
			bad("responder.webhooks."+name+".url", "must be set")
		}
	}
	for i, t := range r.Tokens {
		if t.Name == "" {
			bad(fmt.Sprintf("responder.tokens[%d].name", i), "must be set")
		}
	}
	if r.SnapshotMaxEvents < 1 {
		bad("responder.snapshot_max_events", "must be positive, got %d", r.SnapshotMaxEvents)
	}
}

// EvidenceRoot is where evidence bundles go.
func (r Responder) EvidenceRoot() string {
	if r.EvidenceDir != "" {
		return r.EvidenceDir
	}
	return r.StateDir + "/evidence"
}
