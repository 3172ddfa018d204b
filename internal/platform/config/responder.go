package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// slackIDRE is a Slack user (U…, W…) or user group (S…) id.
var slackIDRE = regexp.MustCompile(`^[UWS][A-Z0-9]{2,20}$`)

// Responder configures cmd/responder (and the responder inside the demo):
// playbooks, Slack, gateways, the blast-radius budget and the HTTP API.
// docs/configuration.md describes each key. Its field list looks like
// Detector's on purpose: one field per key, documented by its doc tag.
type Responder struct {
	// Playbooks empty means the built-in set (playbookcfg.LoadOrBuiltin).
	Playbooks []string `mapstructure:"playbooks" doc:"Playbook files or directories, read and validated at start (docs/playbooks.md); empty means the built-in set embedded in the binary."`
	// StateDir holds the revocation ledger, whose restore material is
	// encrypted with LedgerKey (or not kept without one).
	StateDir    string `mapstructure:"state_dir" doc:"Directory of the responder's local durable state: the outbox, the revocation ledger (mode 0600), silences and open incidents; must be set."`
	EvidenceDir string `mapstructure:"evidence_dir" doc:"Where evidence bundles are written; empty means state_dir/evidence."`
	// SessionTimeout is the distributed responders' consumer-group
	// session: how long a dead instance's agents wait for another.
	SessionTimeout time.Duration `mapstructure:"session_timeout" doc:"Kafka consumer-group session timeout of the distributed responders: how long a dead instance's partitions (its agents) wait before another instance takes them; at least 6s (the broker's group.min.session.timeout.ms)."`
	// GroupWait is Alertmanager's group_wait.
	GroupWait             time.Duration `mapstructure:"group_wait" doc:"Delay of an incident's first alert, so that the anomalies arriving meanwhile follow it into its thread at once; 0 to 24h."`
	ActionWait            time.Duration `mapstructure:"action_wait" doc:"How much longer than group_wait an incident's first alert may wait for a revoke, quarantine or throttle step before it in its playbook: it is posted as soon as that step's first run ends, showing the action if it was done (one message, not a post, an update and a thread note), and at group_wait + action_wait at the latest; a playbook run by hand does not wait; 0 to 1m, 0 does not wait."`
	IncidentWindow        time.Duration `mapstructure:"incident_window" doc:"An anomaly of an agent within this long of the agent's last one joins its open incident (and Slack thread); positive, up to 90 days."`
	RepeatInterval        time.Duration `mapstructure:"repeat_interval" doc:"A follow-up this long after the incident's last channel-level post is also sent to the channel, not only the thread; 0 to 24h."`
	FalsePositiveSuppress time.Duration `mapstructure:"false_positive_suppress" doc:"How long mark false positive silences the same pattern (agent, kind, top feature); positive, up to 90 days."`
	Snooze                time.Duration `mapstructure:"snooze" doc:"How long the snooze button silences the agent; positive, up to 90 days."`
	RevokeBudget          int           `mapstructure:"revoke_budget" doc:"Automatic revocations and quarantines per responder.revoke_interval; past it a step becomes an approval request. 0 means every one needs approval."`
	RevokeInterval        time.Duration `mapstructure:"revoke_interval" doc:"Sliding window of responder.revoke_budget; positive, up to 90 days."`
	KillSwitchFile        string        `mapstructure:"kill_switch_file" doc:"While this file exists no revocation runs; empty: no kill switch."`
	APIAddr               string        `mapstructure:"api_addr" doc:"host:port of the HTTP API (/v1/...) and Slack's interactivity endpoint (/slack/interactions); empty disables both. A non-loopback address needs TLS in responder.api_web_config_file, or responder.api_insecure_listen_ack."`
	// APIWebConfigFile is separate from http.web_config_file: the API
	// authenticates each request itself (bearer tokens, Slack signatures),
	// so basic auth there would only collide with the Authorization header.
	APIWebConfigFile     string     `mapstructure:"api_web_config_file" doc:"Prometheus exporter-toolkit web configuration file applied to responder.api_addr, for TLS (tls_server_config; docs/operations.md); basic_auth_users is refused there, since API tokens and Slack signatures authenticate every request. Empty serves plain HTTP."`
	APIInsecureListenAck bool       `mapstructure:"api_insecure_listen_ack" doc:"Allow responder.api_addr on a non-loopback address without TLS (a warning is logged at start): API tokens then cross the network in clear; for a network where something else encrypts, such as a TLS-terminating proxy on the same host."`
	Tokens               []APIToken `mapstructure:"tokens" doc:"Bearer tokens of the HTTP API, each with a name, one of sha256, secret_env and secret_file, and its grants (see internal/responder/respapi's Token)."`
	RateLimit            RateLimit  `mapstructure:"rate_limit"`
	EgressAllow          []string   `mapstructure:"egress_allow" doc:"host:port (IP, CIDR or DNS name) outbound calls may reach: Kong's admin API, webhook targets."`
	Slack                Slack      `mapstructure:"slack"`
	Evidence             Evidence   `mapstructure:"evidence"`
	Kong                 Kong       `mapstructure:"kong"`
	Denylist             Denylist   `mapstructure:"denylist"`
	// Webhooks' headers typically carry credentials, hence secret.
	Webhooks          map[string]WebhookTarget `mapstructure:"webhooks" doc:"Named HTTP request templates of webhook steps and of the webhook revocation adapter (targets revoke and revoke_restore); see internal/responder/revoke's WebhookRequest. header_file maps a header to a file holding its value (a credential), read at start."`
	SnapshotMaxEvents int                      `mapstructure:"snapshot_max_events" doc:"Most events in one evidence bundle; positive."`
	// LedgerKey encrypts what the revocation ledger keeps for restore (a
	// Kong credential's key) with age; without it that is not kept.
	LedgerKey string `mapstructure:"ledger_key" secret:"true" doc:"age X25519 identity (AGE-SECRET-KEY-1..., from responder ledger-keygen or age-keygen) that encrypts what the revocation ledger keeps to restore a credential (a Kong key). Empty: that material is not kept, revocations still work, and restoring a Kong credential needs a new key issued by hand."`
}

// Slack configures alerts. With no token, alerts go to the console. The
// token and the signing secret come from a secret key (itself from a file,
// AGENTWATCH_* or the configuration file) or from the variable a *_env
// key names; both at once is an error (respond.Build).
type Slack struct {
	Token            string `mapstructure:"token" secret:"true" doc:"Slack bot token (xoxb-...); or leave it empty and use responder.slack.token_env. Without a token, alerts go to the console."`
	TokenEnv         string `mapstructure:"token_env" doc:"Name of the environment variable holding the Slack bot token, not an AGENTWATCH_* name; used when responder.slack.token is empty, and both set is an error."`
	SigningSecret    string `mapstructure:"signing_secret" secret:"true" doc:"Slack app's signing secret, which verifies interactivity requests and signs buttons; or leave it empty and use responder.slack.signing_secret_env."`
	SigningSecretEnv string `mapstructure:"signing_secret_env" doc:"Name of the environment variable holding the Slack app's signing secret; used when responder.slack.signing_secret is empty, and both set is an error."`
	APIURL           string `mapstructure:"api_url" doc:"http(s) URL overriding https://slack.com/api/ (tests use a local server); empty: Slack itself."`
	ApprovalChannel  string `mapstructure:"approval_channel" doc:"Channel of the approval requests of incidents without an alert thread (a revocation past the budget)."`
	// Responders widen who may act beyond each playbook's approvers.
	Responders           []string      `mapstructure:"responders" doc:"Slack user ids (U..., W...) and user groups (S..., resolved with usergroups:read) who may revoke, quarantine and answer approval requests from Slack, besides the approvers of the incident's playbooks; nobody else may."`
	GroupCacheTTL        time.Duration `mapstructure:"group_cache_ttl" doc:"How long a user group's members are cached; positive, up to 24h."`
	MaxMessagesPerMinute int           `mapstructure:"max_messages_per_minute" doc:"Most messages posted to one channel per minute; past it alerts, follow-ups and notes are not posted but counted in one summary at the end of the minute (approval requests wait for the next minute). 0: no cap."`
	ApprovalGroupWindow  time.Duration `mapstructure:"approval_group_window" doc:"Approval requests of one cause (anomaly kind, playbook, gated steps, channel) within this long of the first join its message, and one answer answers them all; 0 to 24h, 0: no grouping."`
	DigestInterval       time.Duration `mapstructure:"digest_interval" doc:"At most one summary follow-up per incident thread in this long: the later anomalies of an incident are gathered into it. A new attack class, an approval request and an action's result still post at once; 0 posts one follow-up per anomaly; else 1s to 24h."`
}

// RateLimit limits each client of the HTTP API and of Slack's
// interactivity endpoint, and samples the refusals into the audit.
type RateLimit struct {
	Rate           float64       `mapstructure:"rate" doc:"Sustained requests per second per client (an API token, a Slack user, else a remote address) on each endpoint; past it 429 with Retry-After. Positive."`
	Burst          int           `mapstructure:"burst" doc:"Requests a client may send at once before the rate applies; positive."`
	SampleInterval time.Duration `mapstructure:"sample_interval" doc:"Refused requests (429, and 401 for a missing or bad token or signature) are written to the audit as one row per client per interval with the counts; 1s to 1h."`
}

// Evidence configures the signed checkpoints that anchor the evidence
// chain outside the bundle directory (docs/responder.md, "Checkpoints").
type Evidence struct {
	CheckpointKeyFile  string        `mapstructure:"checkpoint_key_file" doc:"Ed25519 private key (PEM, mode 0600) that signs checkpoints of the evidence chain's head into the audit trail; make one with responder keygen --out FILE. Empty: no checkpoints, and verify checks the chain against the audit trail's bundle hashes only."`
	CheckpointEvery    int           `mapstructure:"checkpoint_every" doc:"Sign a checkpoint after this many new evidence bundles; 1 anchors every bundle before its alert is posted. Positive."`
	CheckpointInterval time.Duration `mapstructure:"checkpoint_interval" doc:"Also sign the chain's head this often if it moved (and at start and shutdown); 0 disables the timer. 0 to 24h."`
}

// Kong configures the Kong Admin API adapter; AdminURL "" disables it.
type Kong struct {
	AdminURL string `mapstructure:"admin_url" doc:"http(s) URL of the Kong Admin API; empty disables the kong adapter."`
	Token    string `mapstructure:"token" secret:"true" doc:"Kong-Admin-Token, if Kong's RBAC is on; or leave it empty and use responder.kong.token_env."`
	TokenEnv string `mapstructure:"token_env" doc:"Name of the environment variable holding Kong-Admin-Token; used when responder.kong.token is empty, and both set is an error."`
}

// Denylist configures the deny-list file adapter; Path "" means
// StateDir/denylist.txt.
type Denylist struct {
	Path   string `mapstructure:"path" doc:"Deny-list file of the denylist adapter; empty means state_dir/denylist.txt."`
	Format string `mapstructure:"format" doc:"Format of the deny-list file: lines or json."`
}

// WebhookTarget is one templated HTTP request (see internal/responder/revoke's
// WebhookRequest for the template fields).
type WebhookTarget struct {
	Method string            `mapstructure:"method"`
	URL    string            `mapstructure:"url"`
	Header map[string]string `mapstructure:"header" secret:"true"`
	// HeaderFile maps header names to files holding their values (a
	// mounted secret), used as they are, not as templates.
	HeaderFile    map[string]string `mapstructure:"header_file"`
	Body          string            `mapstructure:"body"`
	BodyFormat    string            `mapstructure:"body_format"`
	AlreadyStatus []int             `mapstructure:"already_status"`
}

// APIToken is one HTTP API token; see internal/responder/respapi's Token.
type APIToken struct {
	Name             string   `mapstructure:"name"`
	SHA256           string   `mapstructure:"sha256" secret:"true"`
	SecretEnv        string   `mapstructure:"secret_env"`
	SecretFile       string   `mapstructure:"secret_file"`
	AllowedPlaybooks []string `mapstructure:"allowed_playbooks"`
	CanReadAudit     bool     `mapstructure:"can_read_audit"`
	CanSilence       bool     `mapstructure:"can_silence"`
	CanReadDenylist  bool     `mapstructure:"can_read_denylist"`
	CanKillSwitch    bool     `mapstructure:"can_kill_switch"`
	CanRepairOutbox  bool     `mapstructure:"can_repair_outbox"`
	CanReadInventory bool     `mapstructure:"can_read_inventory"`
}

func responderDefaults() map[string]any {
	return map[string]any{
		"responder.playbooks":                     []string{},
		"responder.state_dir":                     ".data/responder",
		"responder.evidence_dir":                  "",
		"responder.group_wait":                    "10s",
		"responder.action_wait":                   "1s",
		"responder.session_timeout":               "10s",
		"responder.incident_window":               "1h",
		"responder.repeat_interval":               "4h",
		"responder.false_positive_suppress":       "24h",
		"responder.snooze":                        "4h",
		"responder.revoke_budget":                 5,
		"responder.revoke_interval":               "10m",
		"responder.kill_switch_file":              "",
		"responder.api_addr":                      "127.0.0.1:9465",
		"responder.api_web_config_file":           "",
		"responder.api_insecure_listen_ack":       false,
		"responder.tokens":                        []APIToken{},
		"responder.egress_allow":                  []string{},
		"responder.slack.token":                   "",
		"responder.slack.token_env":               "SLACK_BOT_TOKEN",
		"responder.slack.signing_secret":          "",
		"responder.slack.signing_secret_env":      "SLACK_SIGNING_SECRET",
		"responder.slack.api_url":                 "",
		"responder.slack.approval_channel":        "#soc-alerts",
		"responder.slack.responders":              []string{},
		"responder.slack.group_cache_ttl":         "5m",
		"responder.slack.max_messages_per_minute": 20,
		"responder.slack.approval_group_window":   "10m",
		"responder.slack.digest_interval":         "5m",
		"responder.rate_limit.rate":               5.0,
		"responder.rate_limit.burst":              20,
		"responder.rate_limit.sample_interval":    "1m",
		"responder.kong.admin_url":                "",
		"responder.kong.token":                    "",
		"responder.kong.token_env":                "",
		"responder.denylist.path":                 "",
		"responder.denylist.format":               "lines",
		"responder.webhooks":                      map[string]WebhookTarget{},
		"responder.snapshot_max_events":           100_000,
		"responder.ledger_key":                    "",

		"responder.evidence.checkpoint_key_file": "",
		"responder.evidence.checkpoint_every":    1,
		"responder.evidence.checkpoint_interval": "1m",
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
	if r.ActionWait < 0 || r.ActionWait > time.Minute {
		bad("responder.action_wait", "must be in [0, 1m], got %s", r.ActionWait)
	}
	for key, v := range map[string]time.Duration{"responder.incident_window": r.IncidentWindow, "responder.false_positive_suppress": r.FalsePositiveSuppress,
		"responder.snooze": r.Snooze, "responder.revoke_interval": r.RevokeInterval} {
		if v <= 0 || v > 90*24*time.Hour {
			bad(key, "must be a positive duration up to 90 days, got %s", v)
		}
	}
	if r.SessionTimeout < 6*time.Second {
		bad("responder.session_timeout", "must be at least 6s (the broker's group.min.session.timeout.ms), got %s", r.SessionTimeout)
	}
	if r.RevokeBudget < 0 {
		bad("responder.revoke_budget", "must be 0 (every automatic revocation needs approval) or positive, got %d", r.RevokeBudget)
	}
	listenerProblems(bad, listener{
		addrKey: "responder.api_addr", addr: r.APIAddr,
		webKey: "responder.api_web_config_file", webConfig: r.APIWebConfigFile,
		ackKey: "responder.api_insecure_listen_ack", ack: r.APIInsecureListenAck,
		basicAuthRefuse: "basic_auth_users cannot guard the responder API: basic auth takes the Authorization header its bearer tokens use, and Slack cannot send it; remove basic_auth_users (tokens and Slack signatures authenticate every request) and keep tls_server_config",
	})
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
	for i, id := range r.Slack.Responders {
		if !slackIDRE.MatchString(id) {
			bad(fmt.Sprintf("responder.slack.responders[%d]", i), "%q is not a Slack user (U..., W...) or user group (S...) id", id)
		}
	}
	if r.Slack.GroupCacheTTL <= 0 || r.Slack.GroupCacheTTL > 24*time.Hour {
		bad("responder.slack.group_cache_ttl", "must be in (0, 24h], got %s", r.Slack.GroupCacheTTL)
	}
	if r.Slack.MaxMessagesPerMinute < 0 {
		bad("responder.slack.max_messages_per_minute", "must be 0 (no cap) or positive, got %d", r.Slack.MaxMessagesPerMinute)
	}
	if d := r.Slack.DigestInterval; d != 0 && (d < time.Second || d > 24*time.Hour) {
		bad("responder.slack.digest_interval", "must be 0 (one follow-up per anomaly) or in [1s, 24h], got %s", d)
	}
	if r.Slack.ApprovalGroupWindow < 0 || r.Slack.ApprovalGroupWindow > 24*time.Hour {
		bad("responder.slack.approval_group_window", "must be in [0, 24h], got %s", r.Slack.ApprovalGroupWindow)
	}
	if !(r.RateLimit.Rate > 0) {
		bad("responder.rate_limit.rate", "must be positive, got %g", r.RateLimit.Rate)
	}
	if r.RateLimit.Burst < 1 {
		bad("responder.rate_limit.burst", "must be positive, got %d", r.RateLimit.Burst)
	}
	if r.RateLimit.SampleInterval < time.Second || r.RateLimit.SampleInterval > time.Hour {
		bad("responder.rate_limit.sample_interval", "must be in [1s, 1h], got %s", r.RateLimit.SampleInterval)
	}
	if r.Evidence.CheckpointEvery < 1 {
		bad("responder.evidence.checkpoint_every", "must be positive, got %d", r.Evidence.CheckpointEvery)
	}
	if v := r.Evidence.CheckpointInterval; v < 0 || v > 24*time.Hour {
		bad("responder.evidence.checkpoint_interval", "must be in [0, 24h], got %s", v)
	}
	if r.LedgerKey != "" && !ageIdentity(r.LedgerKey) {
		// The value itself is never shown: it is a secret.
		bad("responder.ledger_key", "is not an age X25519 identity (AGE-SECRET-KEY-1...); make one with responder ledger-keygen --out FILE")
	}
	if r.SnapshotMaxEvents < 1 {
		bad("responder.snapshot_max_events", "must be positive, got %d", r.SnapshotMaxEvents)
	}
}

// ageIdentity reports whether s looks like an age identity file: comment
// lines (as age-keygen writes) and one AGE-SECRET-KEY-1 line. The
// responder parses it fully at start.
func ageIdentity(s string) bool {
	n := 0
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "AGE-SECRET-KEY-1"):
			n++
		default:
			return false
		}
	}
	return n == 1
}

// EvidenceRoot is where evidence bundles go.
func (r Responder) EvidenceRoot() string {
	if r.EvidenceDir != "" {
		return r.EvidenceDir
	}
	return r.StateDir + "/evidence"
}
