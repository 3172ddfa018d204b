// Package config loads agentwatch's configuration: one YAML file shared by
// every command, AGENTWATCH_* environment variables and command-line flags,
// in increasing order of precedence. It is the only package that imports
// viper; everything else takes the typed structs.
//
// The Config structs document themselves: each key's meaning sits in its
// field's doc tag, and Reference, WriteReference (docs/configuration.md)
// and the flags' usage are generated from the tags and the defaults.
//
// Unknown keys (in the file, in AGENTWATCH_* variables or in flags) and bad
// values are errors that name the key as users write it, the bad value and
// the form expected, with a "did you mean" where one is near. Decoding is
// per key, so every problem, of decoding and of validation, is reported at
// once at start, sorted by key, one per line.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/agentwatch/agentwatch/internal/platform/weblisten"
	"github.com/agentwatch/agentwatch/pkg/baseline"
	"github.com/agentwatch/agentwatch/pkg/gateway"
	"github.com/agentwatch/agentwatch/pkg/identity"
	"github.com/agentwatch/agentwatch/pkg/routes"
)

// EnvPrefix prefixes every environment variable: kafka.brokers is AGENTWATCH_KAFKA_BROKERS.
const EnvPrefix = "AGENTWATCH"

const keyDelim = "::"

// EnvConfigFile names the config file when --config is not given; it is
// not itself a config key.
const EnvConfigFile = EnvPrefix + "_CONFIG_FILE"

// Config is the whole configuration. Kafka.Brokers empty means the embedded
// default: one process, in-process transport, file store.
//
// Every leaf field carries a doc tag: Reference, the generated
// docs/configuration.md and the flags' usage come from it, and a unit test
// fails for a field without one. A secret:"true" tag masks a value in
// WriteEffective; on a field inside a file-only structure it marks the
// whole key secret.
type Config struct {
	Log        Log        `mapstructure:"log"`
	HTTP       HTTP       `mapstructure:"http"`
	Kafka      Kafka      `mapstructure:"kafka"`
	ClickHouse ClickHouse `mapstructure:"clickhouse"`
	Ingest     Ingest     `mapstructure:"ingest"`
	Detector   Detector   `mapstructure:"detector"`
	Embedded   Embedded   `mapstructure:"embedded"`
	Responder  Responder  `mapstructure:"responder"`
	Report     Report     `mapstructure:"report"`
	Console    Console    `mapstructure:"console"`
}

// Log configures log/slog output.
type Log struct {
	Level  string `mapstructure:"level" doc:"Least severe level logged: debug, info, warn or error."`
	Format string `mapstructure:"format" doc:"Format of the log lines on stderr: json or text."`
}

// HTTP configures the /metrics, /healthz and /readyz endpoint. Reaching it
// from other hosts is a decision the configuration must show: TLS and/or
// basic auth in WebConfigFile, or InsecureListenAck (docs/operations.md).
type HTTP struct {
	Addr              string `mapstructure:"addr" doc:"host:port serving /metrics, /healthz and /readyz; empty disables it. A non-loopback address needs http.web_config_file with TLS and/or basic auth, or http.insecure_listen_ack."`
	WebConfigFile     string `mapstructure:"web_config_file" doc:"Prometheus exporter-toolkit web configuration file (tls_server_config, basic_auth_users with bcrypt hashes; docs/operations.md) applied to http.addr; empty serves plain HTTP without authentication."`
	InsecureListenAck bool   `mapstructure:"insecure_listen_ack" doc:"Allow http.addr on a non-loopback address with neither TLS nor basic auth (a warning is logged at start); for a network where something else protects the port."`
}

// Kafka configures the distributed mode's transport. Its fields look like
// those of the other sections (Detector, Responder) on purpose: one
// field per key, each with its doc tag, is what Reference reads.
type Kafka struct {
	Brokers         []string `mapstructure:"brokers" doc:"Kafka brokers as host:port. Empty runs the embedded one-process mode (no Kafka, no ClickHouse); set, the services run distributed."`
	RawTopics       []string `mapstructure:"raw_topics" doc:"Input topics of raw gateway access-log lines; at least one."`
	EventsTopic     string   `mapstructure:"events_topic" doc:"Topic of the canonical events, keyed by agent id; must differ from the raw and dead-letter topics."`
	DeadLetterTopic string   `mapstructure:"dead_letter_topic" doc:"Topic of the rejected lines, with the reason in headers; must differ from the raw and events topics."`
	IngestGroup     string   `mapstructure:"ingest_group" doc:"Consumer group of the ingest service."`
	AnomaliesTopic  string   `mapstructure:"anomalies_topic" doc:"Topic the detector writes anomalies to and the responder reads."`
	DetectorGroup   string   `mapstructure:"detector_group" doc:"Consumer group of the detector."`
	ResponderGroup  string   `mapstructure:"responder_group" doc:"Consumer group of the responder."`
	// The responder's shared state: see kstate and docs/responder.md.
	ResponderStateTopic  string `mapstructure:"responder_state_topic" doc:"Compacted changelog of the responder's per-agent state (incidents, queued actions), one partition per anomalies partition; the instance that owns an anomalies partition writes it and the next owner restores it."`
	ResponderGlobalTopic string `mapstructure:"responder_global_topic" doc:"Compacted one-partition topic every responder instance reads in full: silences, the kill switch, revocations and restores, budget claims, and requests addressed to another instance's agents."`
	// Partitions and ReplicationFactor are used when ingest creates missing topics.
	Partitions        int  `mapstructure:"partitions" doc:"Partitions of the topics ingest creates; 1 to 10000."`
	ReplicationFactor int  `mapstructure:"replication_factor" doc:"Replication factor of the topics ingest creates; at least 1."`
	CreateTopics      bool `mapstructure:"create_topics" doc:"Create missing topics at start."`
	// MaxMessageBytes is the topics' max.message.bytes: raw lines up to
	// ingest.max_line_bytes must fit, or the shipper cannot deliver them to
	// be dead-lettered.
	MaxMessageBytes int  `mapstructure:"max_message_bytes" doc:"max.message.bytes of the raw and dead-letter topics, in bytes; at least ingest.max_line_bytes plus 64 KiB, so that over-long lines still reach ingest and are dead-lettered."`
	TLS             TLS  `mapstructure:"tls"`
	SASL            SASL `mapstructure:"sasl"`
}

// ClickHouse configures the event store of the distributed mode.
type ClickHouse struct {
	Addr          []string      `mapstructure:"addr" doc:"ClickHouse native-protocol addresses (host:port, not the HTTP port): the plain port (9000 by default), or with clickhouse.tls.enabled the secure one (tcp_port_secure, 9440 by default); at least one when kafka.brokers is set."`
	Database      string        `mapstructure:"database" doc:"Database name, matching [A-Za-z_][A-Za-z0-9_]*."`
	Username      string        `mapstructure:"username" doc:"User name."`
	Password      string        `mapstructure:"password" secret:"true" doc:"Password; prefer clickhouse.password_file or AGENTWATCH_CLICKHOUSE_PASSWORD to writing it in the file."`
	DialTimeout   time.Duration `mapstructure:"dial_timeout" doc:"Timeout of one connection attempt; positive."`
	RetentionDays int           `mapstructure:"retention_days" doc:"Days of events kept: ingest drops older day partitions every ingest.retention_interval, and ingest retention does by hand. At least 1."`
	TLS           TLS           `mapstructure:"tls"`
}

// Ingest configures parsing and batching.
type Ingest struct {
	BatchSize     int           `mapstructure:"batch_size" doc:"Most events in one ClickHouse insert, 1 to 1000000. A batch closes at whichever of batch_size, batch_bytes and batch_wait comes first."`
	BatchBytes    int           `mapstructure:"batch_bytes" doc:"Most raw bytes in one batch, from ingest.max_line_bytes to 1 GiB."`
	BatchWait     time.Duration `mapstructure:"batch_wait" doc:"Longest time a batch stays open; positive."`
	RetryInitial  time.Duration `mapstructure:"retry_initial" doc:"First backoff of a retried write; positive."`
	RetryMax      time.Duration `mapstructure:"retry_max" doc:"Longest backoff of a retried write; at least ingest.retry_initial."`
	ShutdownGrace time.Duration `mapstructure:"shutdown_grace" doc:"Time to flush the open batch on SIGTERM; positive."`
	// RetentionInterval schedules inside ingest what `ingest retention`
	// does by hand; a lease in ClickHouse lets one replica at a time run it.
	RetentionInterval time.Duration `mapstructure:"retention_interval" doc:"How often ingest drops the event day partitions older than clickhouse.retention_days, as ingest retention does; one replica at a time (a lease in ClickHouse), at start and then every interval. 0 turns it off; else at least 1s."`
	Format            string        `mapstructure:"format" doc:"Input format of the raw topics: auto (detected per line) or one of canonical, kong, aws_apigw, envoy, nginx_json, nginx_combined (docs/formats.md)."`
	// TopicFormats, Mappings, Identity and Routes are structured: file only.
	TopicFormats map[string]string            `mapstructure:"topic_formats" doc:"Input format per raw topic, overriding ingest.format: {topic: format}."`
	Mappings     map[string]map[string]string `mapstructure:"mappings" doc:"JSON field paths per format, overriding the built-in ones: {format: {field: path}} (docs/formats.md)."`
	Identity     []IdentityRule               `mapstructure:"identity" doc:"Agent-identity rules, tried in order; kind is header, consumer, jwt or mtls (docs/formats.md). Empty means the built-in rules: header X-Agent-Id, consumer, jwt sub, jwt client_id, mtls."`
	MaxLineBytes int                          `mapstructure:"max_line_bytes" doc:"Longest raw line parsed, in bytes, 1024 to 64 MiB; longer lines are dead-lettered."`
	MaxDepth     int                          `mapstructure:"max_depth" doc:"Deepest JSON nesting parsed, 2 to 1000."`
	MaxAge       time.Duration                `mapstructure:"max_age" doc:"Oldest event time accepted, before now; positive."`
	MaxFuture    time.Duration                `mapstructure:"max_future" doc:"Furthest event time accepted after now (clock skew); positive."`
	OpenAPI      string                       `mapstructure:"openapi" doc:"OpenAPI 3 document whose paths are the route templates; empty: none."`
	Routes       []RouteSpec                  `mapstructure:"routes" doc:"Route templates besides (or instead of) ingest.openapi, with tags such as sensitive or deprecated."`
}

// IdentityRule is one agent-identity rule; see docs/formats.md.
type IdentityRule struct {
	Kind   string `mapstructure:"kind"`
	Header string `mapstructure:"header"`
	Claim  string `mapstructure:"claim"`
}

// RouteSpec is one route template with its tags (sensitive, deprecated, …).
type RouteSpec struct {
	Template string   `mapstructure:"template"`
	Tags     []string `mapstructure:"tags"`
}

// Detector configures windows, baselines, rules, state and the agent cap;
// docs/detection.md says what each does. Deliberately parallel to the other
// sections: one field per key, documented by its doc tag (see Kafka).
type Detector struct {
	Window          time.Duration `mapstructure:"window" doc:"Event-time window the features are counted in; must divide a day evenly, 1s to 24h."`
	Lateness        time.Duration `mapstructure:"lateness" doc:"How late an event may arrive and still count in its window, 0 to 24h."`
	Warmup          int           `mapstructure:"warmup" doc:"Active windows of an agent before it is scored against its own baseline instead of its peer group's; 0 or more."`
	HalfLife        float64       `mapstructure:"half_life" doc:"Active windows for the short-term level to halve its memory; at least 1."`
	LongHalfLife    float64       `mapstructure:"long_half_life" doc:"Active windows for the long-horizon reference to halve its memory; at least detector.half_life."`
	AlertScore      float64       `mapstructure:"alert_score" doc:"Window score (-log10 p) at or above which a behaviour anomaly is raised; above 0 and at most 12, the medium-severity score."`
	AnomalousWeight float64       `mapstructure:"anomalous_weight" doc:"Training weight of windows scored anomalous, 0 to 1; 0 keeps them out of the baseline (the poisoning guard)."`
	// ExcessThreshold and the keys after it tune the sequential tests
	// that raise sustained_excess (docs/detection.md, "Accumulating
	// evidence").
	ExcessThreshold     float64 `mapstructure:"excess_threshold" doc:"Evidence (natural-log likelihood ratio) at which a sustained excess of calls or bytes per call at detector.excess_ratio times the usual is raised; 0 turns the sequential tests off."`
	ExcessRatio         float64 `mapstructure:"excess_ratio" doc:"Excess over the usual rate (of calls, and of bytes per call) the hour-horizon tests look for; above 1."`
	SlowExcessRatio     float64 `mapstructure:"slow_excess_ratio" doc:"Excess over the usual rate of calls the day-horizon test looks for; above 1."`
	SlowExcessThreshold float64 `mapstructure:"slow_excess_threshold" doc:"Evidence at which the day-horizon test raises a sustained excess; above 0."`
	ExcessGuardWeight   float64 `mapstructure:"excess_guard_weight" doc:"Training weight of windows while a sequential test is open and has not alarmed, 0 to 1 (the poisoning guard for slow excesses)."`
	// ScoreSigmas, ScoreHalfLife and ScoreWarmup judge each window's
	// score against the agent's own past scores (docs/detection.md, "The
	// score against the agent's own scores").
	ScoreSigmas   float64 `mapstructure:"score_sigmas" doc:"A window over detector.alert_score raises behaviour or drift only if log(1+score) is at least this many standard deviations above the agent's own usual; 0 turns this calibration off."`
	ScoreHalfLife float64 `mapstructure:"score_half_life" doc:"Active windows for the summary of an agent's own scores to halve its memory; at least 1."`
	ScoreWarmup   float64 `mapstructure:"score_warmup" doc:"Active windows the summary of an agent's own scores needs before it is consulted; until then detector.alert_score alone decides; 0 or more."`
	// RegistryFile, RoutesFile and OpenAPIFile are the agent registry and
	// route inventory (docs/registry.md), reloaded every ReloadEvery.
	RegistryFile string        `mapstructure:"registry_file" doc:"Agent registry file (docs/registry.md); empty: none."`
	RoutesFile   string        `mapstructure:"routes_file" doc:"Route inventory file (docs/registry.md); empty: none."`
	OpenAPIFile  string        `mapstructure:"openapi_file" doc:"OpenAPI 3 document of the route inventory (docs/registry.md); empty: none."`
	ReloadEvery  time.Duration `mapstructure:"reload_every" doc:"How often the registry and route files are checked for changes; positive."`
	// RuleRepeat is the least event time between two rule anomalies of one
	// kind for one agent, unless a never-called route is involved.
	RuleRepeat time.Duration `mapstructure:"rule_repeat" doc:"Least event time between two rule anomalies of one kind for one agent, unless a never-called route is involved; 0 or more."`
	// DriftRepeat, OffHoursRepeat and OffHoursMinRatio tune how often
	// drift and off_hours speak (docs/detection.md, "Rules").
	DriftRepeat        time.Duration `mapstructure:"drift_repeat" doc:"Least event time between two drift anomalies of one agent; 0 or more, detector.rule_repeat when shorter."`
	OffHoursRepeat     time.Duration `mapstructure:"off_hours_repeat" doc:"Least event time between two off_hours anomalies of one agent; 0 or more, detector.rule_repeat when shorter."`
	OffHoursMinRatio   float64       `mapstructure:"off_hours_min_ratio" doc:"Least multiple of the hour's expected calls an off_hours anomaly needs, however improbable the count; 0 (none) or more."`
	NoveltyMature      time.Duration `mapstructure:"novelty_mature" doc:"Age of an agent's seen-set before its first sensitive call alerts, for agents without approved routes; 0 or more."`
	NewAgentsPerWindow int           `mapstructure:"new_agents_per_window" doc:"New agent ids per partition and window past which agent_flood is raised; 0 turns it off."`
	// GlobalMinAgents, GlobalShare and GlobalGap group many agents
	// anomalous in one window into one global_event (0 agents: off).
	GlobalMinAgents int           `mapstructure:"global_min_agents" doc:"Agents anomalous for the same top feature in one window that make one global_event instead of an alert each; 0 turns it off."`
	NewIPMaxKnown   int           `mapstructure:"new_ip_max_known" doc:"An agent with at most this many known source addresses raises new_source_ip for a new one; 0 to 16, 0 turns it off."`
	GlobalShare     float64       `mapstructure:"global_share" doc:"Share of a partition's active agents that must also be anomalous for a global_event, 0 to 1."`
	GlobalGap       time.Duration `mapstructure:"global_gap" doc:"How long a global_event lasts: anomalies of the same feature within it join it; 0 or more."`
	MaxAgents       int           `mapstructure:"max_agents" doc:"Agents kept in memory, at restart too; the least recently active are evicted to ClickHouse and restored when seen again. Past it, new agents the registry does not know get no state (counted in agent_flood). 0 means no cap."`
	// UnregisteredTTL bounds how long fake ids of a flood stay in
	// detector_state (docs/detection.md).
	UnregisteredTTL time.Duration `mapstructure:"unregistered_ttl" doc:"An agent the registry does not know that has not called for this long is removed from memory and from the detector state; 0 keeps them for ever."`
	SnapshotEvery   time.Duration `mapstructure:"snapshot_every" doc:"How often the detector's state is saved and its offsets committed; positive."`
	IdleFlush       time.Duration `mapstructure:"idle_flush" doc:"A partition quiet this long has the open windows closed that ended detector.lateness before the wall clock; 0 or more."`
	// TakeOverGroup names the consumer group whose detector state this
	// group continues from (after kafka.detector_group was renamed); any
	// other group's state in the same store makes the detector refuse to
	// start (detect.CheckGroup).
	TakeOverGroup  string        `mapstructure:"take_over_group" doc:"Consumer group whose detector state this group takes over at start, after kafka.detector_group was renamed and that group's detectors stopped; empty: none. Another group's newer state in the same database makes the detector refuse to start."`
	SessionTimeout time.Duration `mapstructure:"session_timeout" doc:"Kafka consumer-group session timeout, how long a dead detector's partitions wait for it; at least 6s (the broker's group.min.session.timeout.ms)."`
	// FeedbackPoll is how often the distributed detector reads the
	// analysts' false-positive verdicts of the last FeedbackLookback and
	// folds them into the baselines (docs/feedback.md); 0 turns it off.
	FeedbackPoll     time.Duration `mapstructure:"feedback_poll" doc:"How often the distributed detector reads the analysts' false-positive verdicts and folds them into the baselines (docs/feedback.md); 0 turns it off."`
	FeedbackLookback time.Duration `mapstructure:"feedback_lookback" doc:"How far back those verdicts are read; at least detector.feedback_poll."`
	// FleetGauge follows each partition's calls and 5xx answers per window
	// with baseline.Series (the code the NAB evaluation scores) and raises
	// fleet_gauge when one rises.
	FleetGauge bool `mapstructure:"fleet_gauge" doc:"Follow each partition's calls and 5xx answers per window (baseline.Series, the code the NAB evaluation scores) and raise fleet_gauge when one rises."`
	// Risk is the per-agent risk score (docs/detection.md#risk).
	Risk Risk `mapstructure:"risk"`
}

// Risk configures the per-agent risk: each anomaly of an agent adds the
// weight of its severity, the sum halves every HalfLife of event time, and
// reaching Level raises elevated_risk (docs/detection.md#risk).
type Risk struct {
	HalfLife       time.Duration `mapstructure:"half_life" doc:"Event time in which an agent's risk halves (docs/detection.md#risk); 0 turns the risk off (no risk on anomalies, no elevated_risk), else 1m to 720h."`
	Level          float64       `mapstructure:"level" doc:"Risk at or above which elevated_risk is raised (once per episode) and anomalies say since and until when the risk stays there; positive. Above detector.risk.weight_medium, so that one medium anomaly is not enough."`
	WeightLow      float64       `mapstructure:"weight_low" doc:"What a low-severity anomaly adds to its agent's risk; 0 or more, at most detector.risk.weight_medium."`
	WeightMedium   float64       `mapstructure:"weight_medium" doc:"What a medium-severity anomaly adds to its agent's risk; at most detector.risk.weight_high."`
	WeightHigh     float64       `mapstructure:"weight_high" doc:"What a high-severity anomaly adds to its agent's risk; at most detector.risk.weight_critical."`
	WeightCritical float64       `mapstructure:"weight_critical" doc:"What a critical anomaly adds to its agent's risk; at most 1000."`
}

// Embedded configures the one-process default.
type Embedded struct {
	DataDir string `mapstructure:"data_dir" doc:"Directory of the embedded one-process mode's data (the demo); must be set."`
}

// Distributed reports whether Kafka is configured (else the embedded default runs).
func (c Config) Distributed() bool { return len(c.Kafka.Brokers) > 0 }

// defaults lists every key: viper only maps env vars and flags to keys it
// knows (spf13/viper#761), so even empty values are declared here.
func defaults() map[string]any {
	d := map[string]any{
		"log.level":                      "info",
		"log.format":                     "json",
		"http.addr":                      "127.0.0.1:9464",
		"http.web_config_file":           "",
		"http.insecure_listen_ack":       false,
		"kafka.brokers":                  []string{},
		"kafka.raw_topics":               []string{"agentwatch.raw"},
		"kafka.events_topic":             "agentwatch.events",
		"kafka.dead_letter_topic":        "agentwatch.deadletter",
		"kafka.ingest_group":             "agentwatch-ingest",
		"kafka.anomalies_topic":          "agentwatch.anomalies",
		"kafka.detector_group":           "agentwatch-detector",
		"kafka.responder_group":          "agentwatch-responder",
		"kafka.responder_state_topic":    "agentwatch.responder-state",
		"kafka.responder_global_topic":   "agentwatch.responder-global",
		"kafka.partitions":               6,
		"kafka.replication_factor":       1,
		"kafka.create_topics":            true,
		"kafka.max_message_bytes":        4 << 20,
		"clickhouse.addr":                []string{"127.0.0.1:9000"},
		"clickhouse.database":            "agentwatch",
		"clickhouse.username":            "default",
		"clickhouse.password":            "",
		"clickhouse.dial_timeout":        "5s",
		"clickhouse.retention_days":      30,
		"ingest.batch_size":              20000,
		"ingest.batch_bytes":             32 << 20,
		"ingest.batch_wait":              "500ms",
		"ingest.retry_initial":           "100ms",
		"ingest.retry_max":               "10s",
		"ingest.shutdown_grace":          "30s",
		"ingest.retention_interval":      "1h",
		"ingest.format":                  "auto",
		"ingest.topic_formats":           map[string]string{},
		"ingest.mappings":                map[string]map[string]string{},
		"ingest.identity":                []IdentityRule{},
		"ingest.max_line_bytes":          gateway.DefaultMaxLineBytes,
		"ingest.max_depth":               32,
		"ingest.max_age":                 "168h",
		"ingest.max_future":              "10m",
		"ingest.openapi":                 "",
		"ingest.routes":                  []RouteSpec{},
		"detector.window":                "1m",
		"detector.lateness":              "30s",
		"detector.warmup":                baseline.DefaultParams().Warmup,
		"detector.half_life":             baseline.DefaultParams().HalfLife,
		"detector.long_half_life":        baseline.DefaultParams().LongHalfLife,
		"detector.alert_score":           baseline.DefaultParams().AlertScore,
		"detector.anomalous_weight":      baseline.DefaultParams().AnomalousWeight,
		"detector.excess_threshold":      baseline.DefaultParams().ExcessThreshold,
		"detector.excess_ratio":          baseline.DefaultParams().ExcessRatio,
		"detector.slow_excess_ratio":     baseline.DefaultParams().SlowExcessRatio,
		"detector.slow_excess_threshold": baseline.DefaultParams().SlowExcessThreshold,
		"detector.excess_guard_weight":   baseline.DefaultParams().ExcessGuardWeight,
		"detector.score_sigmas":          baseline.DefaultParams().ScoreSigmas,
		"detector.score_half_life":       baseline.DefaultParams().ScoreHalfLife,
		"detector.score_warmup":          baseline.DefaultParams().ScoreWarmup,
		"detector.registry_file":         "",
		"detector.routes_file":           "",
		"detector.openapi_file":          "",
		"detector.reload_every":          "5s",
		"detector.rule_repeat":           "1h",
		"detector.drift_repeat":          "168h",
		"detector.off_hours_repeat":      "12h",
		"detector.off_hours_min_ratio":   3.0,
		"detector.novelty_mature":        "2h",
		"detector.new_agents_per_window": 200,
		"detector.global_min_agents":     5,
		"detector.new_ip_max_known":      4,
		"detector.global_share":          0.1,
		"detector.global_gap":            "1h",
		"detector.max_agents":            1_000_000,
		"detector.unregistered_ttl":      "168h",
		"detector.snapshot_every":        "10s",
		"detector.idle_flush":            "30s",
		"detector.session_timeout":       "10s",
		"detector.take_over_group":       "",
		"detector.feedback_poll":         "30s",
		"detector.feedback_lookback":     "168h",
		"detector.fleet_gauge":           true,
		"detector.risk.half_life":        "6h",
		"detector.risk.level":            8.0,
		"detector.risk.weight_low":       1.0,
		"detector.risk.weight_medium":    3.0,
		"detector.risk.weight_high":      6.0,
		"detector.risk.weight_critical":  10.0,
		"embedded.data_dir":              ".data/embedded",
	}
	for _, m := range []map[string]any{tlsDefaults("kafka.tls"), saslDefaults("kafka.sasl"), tlsDefaults("clickhouse.tls"), responderDefaults(), reportDefaults(), consoleDefaults()} {
		for k, v := range m {
			d[k] = v
		}
	}
	return d
}

// Flags adds a --KEY flag for every key but the file-only ones to fs; Load
// applies the ones that were set. List values are comma-separated.
func Flags(fs *pflag.FlagSet) {
	for _, d := range Reference() {
		if d.FileOnly {
			continue
		}
		fs.String(d.Key, "", fmt.Sprintf("%s (default %s)", d.Doc, d.Default))
		if d.FileKey != "" {
			fs.String(d.FileKey, "", fmt.Sprintf("File holding %s (its contents without the trailing newline); set one of the two.", d.Key))
		}
	}
}

// Load reads path (optional), the AGENTWATCH_* environment and the flags of
// fs that were set (fs may be nil), decodes strictly and validates.
func Load(path string, fs *pflag.FlagSet) (Config, error) {
	return load(path, fs, os.Environ())
}

// LoadEnv is Load with the environment given as KEY=VALUE strings.
func LoadEnv(path string, fs *pflag.FlagSet, environ []string) (Config, error) {
	return load(path, fs, environ)
}

// vk is key in viper's terms.
func vk(key string) string { return strings.ReplaceAll(key, ".", keyDelim) }

// load reports every problem at once: unknown variables and keys, values
// that do not decode, and the validation of the keys that did decode
// (a key that did not keeps its default meanwhile, so that the keys
// checked against it are not blamed for it).
func load(path string, fs *pflag.FlagSet, environ []string) (Config, error) {
	// Map keys under ingest.topic_formats and ingest.mappings hold dots
	// (topic names, header.x-agent-id), so viper must not split on ".".
	v := viper.NewWithOptions(viper.KeyDelimiter(keyDelim))
	defs := defaults()
	for k, d := range defs {
		v.SetDefault(vk(k), d)
	}
	for _, fk := range fileKeys() {
		v.SetDefault(vk(fk), "")
	}
	var ps problems
	envSets := envSettings(&ps, environ)
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return Config{}, errors.Join(fmt.Errorf("read config %s: %w", path, err), ps.err())
		}
		unknownFileKeys(&ps, v)
	}
	// Env is applied with Set (above the file) before flags (which Set
	// again, so they win).
	for _, kv := range envSets {
		v.Set(vk(kv[0]), kv[1])
	}
	if fs != nil {
		fs.Visit(func(f *pflag.Flag) {
			if _, ok := defs[f.Name]; ok || slices.Contains(fileKeys(), f.Name) {
				v.Set(vk(f.Name), f.Value.String())
			}
		})
	}
	secretFiles(&ps, v)
	var cfg Config
	rv := reflect.ValueOf(&cfg).Elem()
	failed := map[string]bool{}
	for _, l := range leaves() {
		raw := v.Get(vk(l.key))
		if raw == nil { // under a section the file wrote as a scalar: reported above
			raw = defs[l.key]
		}
		val, err := decodeValue(l.typ, raw)
		if err != nil {
			decodeProblems(&ps, l, raw, err)
			failed[l.key] = true
			if val, err = decodeValue(l.typ, defs[l.key]); err != nil {
				return Config{}, fmt.Errorf("default of %s: %w", l.key, err) // a bug: TestDefaultsAreValidAndEmbedded
			}
		}
		rv.FieldByIndex(l.index).Set(val)
	}
	// A key that did not decode was checked with its default; its own
	// validation problems would only repeat the decode problem.
	var vps problems
	cfg.validate(&vps)
	blamed := func(key string) bool {
		for k := range failed {
			if key == k || strings.HasPrefix(key, k+".") || strings.HasPrefix(key, k+"[") {
				return true
			}
		}
		return false
	}
	for _, p := range vps {
		if !blamed(p.key) {
			ps = append(ps, p)
		}
	}
	if err := ps.err(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// envSettings returns the (key, value) pairs of the AGENTWATCH_* variables
// of environ. A variable that maps to no key is a typo the operator must
// hear about, not a silently ignored setting.
func envSettings(ps *problems, environ []string) [][2]string {
	byEnv := map[string]leaf{}
	var names []string
	for _, l := range leaves() {
		byEnv[envName(l.key)] = l
		if !l.fileOnly {
			names = append(names, envName(l.key))
		}
		if fk := l.fileKey(); fk != "" {
			// A pseudo-leaf: only its key is used, to Set the path.
			byEnv[envName(fk)] = leaf{key: fk}
			names = append(names, envName(fk))
		}
	}
	var sets [][2]string
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix+"_") || name == EnvConfigFile {
			continue
		}
		l, ok := byEnv[name]
		switch {
		case !ok:
			if s := nearest(name, names, ""); s != "" {
				ps.add(name, "unknown environment variable; did you mean %s?", s)
			} else {
				ps.add(name, "unknown environment variable: no key is %s_<KEY> (agentwatch config reference lists the keys)", EnvPrefix)
			}
		case l.fileOnly:
			ps.add(name, "%s can only be set in the config file", l.key)
		default:
			sets = append(sets, [2]string{l.key, val})
		}
	}
	return sets
}

// unknownFileKeys reports the keys of the file that are no configuration
// key, with the key most likely meant.
func unknownFileKeys(ps *problems, v *viper.Viper) {
	var keys []string
	for _, l := range leaves() {
		keys = append(keys, l.key)
	}
	keys = append(keys, fileKeys()...)
	for _, k := range v.AllKeys() {
		key := strings.ReplaceAll(k, keyDelim, ".")
		known := slices.Contains(fileKeys(), key)
		for _, l := range leaves() {
			// Below a leaf are a structured key's entries (topic names),
			// or a map where a scalar belongs, which decoding reports.
			if key == l.key || strings.HasPrefix(key, l.key+".") {
				known = true
				break
			}
		}
		switch {
		case known:
		case slices.ContainsFunc(keys, func(l string) bool { return strings.HasPrefix(l, key+".") }):
			ps.add(key, "%s is not a section of keys (such as %s); write it as %s: {KEY: VALUE}", show(v.Get(k)), firstUnder(keys, key), key[strings.LastIndex(key, ".")+1:])
		default:
			if s := nearest(key, keys, "."); s != "" {
				ps.add(key, "unknown key; did you mean %s?", s)
			} else {
				ps.add(key, "unknown key (agentwatch config reference lists the keys)")
			}
		}
	}
}

// fileKeys lists the _file keys of the secret keys, in leaves' order.
func fileKeys() []string {
	var out []string
	for _, l := range leaves() {
		if fk := l.fileKey(); fk != "" {
			out = append(out, fk)
		}
	}
	return out
}

// secretFiles replaces each secret whose _file key is set (in the file,
// the environment or a flag) by the contents of that file, without the
// trailing newline that `echo` and editors leave. Problems name the keys
// and the path, never the contents.
func secretFiles(ps *problems, v *viper.Viper) {
	for _, l := range leaves() {
		fk := l.fileKey()
		if fk == "" {
			continue
		}
		path := strings.TrimSpace(fmt.Sprint(v.Get(vk(fk))))
		if path == "" || v.Get(vk(fk)) == nil {
			continue
		}
		if cur := v.Get(vk(l.key)); cur != nil && fmt.Sprint(cur) != "" {
			ps.add(l.key, "both %s and %s are set (in the file, an %s_* variable or a flag); set only one", l.key, fk, EnvPrefix)
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			ps.add(fk, "cannot read the file holding %s: %v", l.key, err)
			continue
		}
		val := strings.TrimRight(string(b), "\r\n")
		if val == "" {
			ps.add(fk, "the file %s holding %s is empty", path, l.key)
			continue
		}
		v.Set(vk(l.key), val)
	}
}

// firstUnder returns the first key of section.
func firstUnder(keys []string, section string) string {
	for _, k := range keys {
		if strings.HasPrefix(k, section+".") {
			return k
		}
	}
	return ""
}

// defaultConfig is the configuration with no file, variable or flag.
func defaultConfig() (Config, error) {
	defs := defaults()
	var cfg Config
	rv := reflect.ValueOf(&cfg).Elem()
	for _, l := range leaves() {
		val, err := decodeValue(l.typ, defs[l.key])
		if err != nil {
			return Config{}, fmt.Errorf("default of %s: %w", l.key, err)
		}
		rv.FieldByIndex(l.index).Set(val)
	}
	return cfg, nil
}

// commaList splits "a,b" into a list for list keys given by env or flag,
// dropping empty items so "" means an empty list.
func commaList(f reflect.Type, t reflect.Type, data any) (any, error) {
	if f.Kind() != reflect.String || t.Kind() != reflect.Slice || t.Elem().Kind() != reflect.String {
		return data, nil
	}
	var out []string
	for _, s := range strings.Split(data.(string), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// Validate reports every problem at once, one per line, each prefixed
// with its key, sorted by key.
func (c Config) Validate() error {
	var ps problems
	c.validate(&ps)
	return ps.err()
}

func (c Config) validate(ps *problems) {
	bad := ps.add
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		bad("log.format", "must be json or text, got %q", c.Log.Format)
	}
	listenerProblems(bad, listener{
		addrKey: "http.addr", addr: c.HTTP.Addr,
		webKey: "http.web_config_file", webConfig: c.HTTP.WebConfigFile,
		ackKey: "http.insecure_listen_ack", ack: c.HTTP.InsecureListenAck,
		basicAuthOK: true,
	})
	for _, b := range c.Kafka.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			bad("kafka.brokers", "%q is not host:port", b)
		}
	}
	if len(c.Kafka.RawTopics) == 0 {
		bad("kafka.raw_topics", "need at least one topic")
	}
	if c.Kafka.EventsTopic == "" {
		bad("kafka.events_topic", "must be set")
	}
	if c.Kafka.DeadLetterTopic == "" {
		bad("kafka.dead_letter_topic", "must be set")
	}
	if slices.Contains(c.Kafka.RawTopics, c.Kafka.EventsTopic) || slices.Contains(c.Kafka.RawTopics, c.Kafka.DeadLetterTopic) || c.Kafka.EventsTopic == c.Kafka.DeadLetterTopic {
		bad("kafka.events_topic", "raw, events and dead-letter topics must differ")
	}
	for key, v := range map[string]string{"kafka.ingest_group": c.Kafka.IngestGroup, "kafka.detector_group": c.Kafka.DetectorGroup,
		"kafka.responder_group": c.Kafka.ResponderGroup, "kafka.anomalies_topic": c.Kafka.AnomaliesTopic,
		"kafka.responder_state_topic": c.Kafka.ResponderStateTopic, "kafka.responder_global_topic": c.Kafka.ResponderGlobalTopic} {
		if v == "" {
			bad(key, "must be set")
		}
	}
	if c.Kafka.Partitions < 1 || c.Kafka.Partitions > 10000 {
		bad("kafka.partitions", "must be in [1, 10000], got %d", c.Kafka.Partitions)
	}
	if c.Kafka.ReplicationFactor < 1 {
		bad("kafka.replication_factor", "must be at least 1, got %d", c.Kafka.ReplicationFactor)
	}
	if c.Kafka.MaxMessageBytes < c.Ingest.MaxLineBytes+64<<10 {
		bad("kafka.max_message_bytes", "must exceed ingest.max_line_bytes by 64 KiB so over-long lines can still be delivered and dead-lettered, got %d", c.Kafka.MaxMessageBytes)
	}
	if c.Distributed() {
		if len(c.ClickHouse.Addr) == 0 {
			bad("clickhouse.addr", "need at least one host:port when kafka.brokers is set")
		}
		for _, a := range c.ClickHouse.Addr {
			if _, _, err := net.SplitHostPort(a); err != nil {
				bad("clickhouse.addr", "%q is not host:port", a)
			}
		}
	}
	if !identifier(c.ClickHouse.Database) {
		bad("clickhouse.database", "must match [A-Za-z_][A-Za-z0-9_]*, got %q", c.ClickHouse.Database)
	}
	if c.ClickHouse.DialTimeout <= 0 {
		bad("clickhouse.dial_timeout", "must be positive")
	}
	c.Kafka.TLS.validate(ps, "kafka.tls")
	c.Kafka.SASL.validate(ps, "kafka.sasl")
	c.ClickHouse.TLS.validate(ps, "clickhouse.tls")
	if c.ClickHouse.RetentionDays < 1 {
		bad("clickhouse.retention_days", "must be at least 1, got %d", c.ClickHouse.RetentionDays)
	}
	in := c.Ingest
	if in.BatchSize < 1 || in.BatchSize > 1_000_000 {
		bad("ingest.batch_size", "must be in [1, 1000000], got %d", in.BatchSize)
	}
	if in.BatchBytes < in.MaxLineBytes || in.BatchBytes > 1<<30 {
		bad("ingest.batch_bytes", "must be in [ingest.max_line_bytes, 1 GiB], got %d", in.BatchBytes)
	}
	for key, d := range map[string]time.Duration{
		"ingest.batch_wait": in.BatchWait, "ingest.retry_initial": in.RetryInitial, "ingest.retry_max": in.RetryMax,
		"ingest.shutdown_grace": in.ShutdownGrace, "ingest.max_age": in.MaxAge, "ingest.max_future": in.MaxFuture,
	} {
		if d <= 0 {
			bad(key, "must be a positive duration like 500ms or 10s, got %s", d)
		}
	}
	if in.RetentionInterval < 0 || (in.RetentionInterval > 0 && in.RetentionInterval < time.Second) {
		bad("ingest.retention_interval", "must be 0 (off) or at least 1s, got %s", in.RetentionInterval)
	}
	if in.RetryMax < in.RetryInitial {
		bad("ingest.retry_max", "must not be below ingest.retry_initial")
	}
	formats := append([]string{"auto"}, gateway.Formats()...)
	if !slices.Contains(formats, in.Format) {
		bad("ingest.format", "must be one of %s, got %q", strings.Join(formats, ", "), in.Format)
	}
	for topic, f := range in.TopicFormats {
		if !slices.Contains(formats, f) {
			bad("ingest.topic_formats."+topic, "must be one of %s, got %q", strings.Join(formats, ", "), f)
		}
	}
	if in.MaxLineBytes < 1024 || in.MaxLineBytes > 64<<20 {
		bad("ingest.max_line_bytes", "must be in [1024, 64 MiB], got %d", in.MaxLineBytes)
	}
	if in.MaxDepth < 2 || in.MaxDepth > 1000 {
		bad("ingest.max_depth", "must be in [2, 1000], got %d", in.MaxDepth)
	}
	if _, err := gateway.NewParser(c.ParserOptions(nil)); err != nil {
		ps.addErr("ingest", err)
	}
	if _, err := c.RouteNormalizer(); err != nil {
		ps.addErr("ingest.routes", err)
	}
	d := c.Detector
	if d.Window < time.Second || d.Window > 24*time.Hour || (24*time.Hour)%d.Window != 0 {
		bad("detector.window", "must divide a day evenly and be in [1s, 24h], got %s", d.Window)
	}
	if d.Lateness < 0 || d.Lateness > 24*time.Hour {
		bad("detector.lateness", "must be in [0, 24h], got %s", d.Lateness)
	}
	for key, v := range map[string]time.Duration{"detector.reload_every": d.ReloadEvery, "detector.snapshot_every": d.SnapshotEvery,
		"detector.session_timeout": d.SessionTimeout} {
		if v <= 0 {
			bad(key, "must be a positive duration, got %s", v)
		}
	}
	if d.SessionTimeout > 0 && d.SessionTimeout < 6*time.Second {
		bad("detector.session_timeout", "must be at least 6s (the broker's group.min.session.timeout.ms), got %s", d.SessionTimeout)
	}
	for key, v := range map[string]time.Duration{"detector.rule_repeat": d.RuleRepeat, "detector.drift_repeat": d.DriftRepeat, "detector.off_hours_repeat": d.OffHoursRepeat,
		"detector.novelty_mature": d.NoveltyMature, "detector.idle_flush": d.IdleFlush, "detector.unregistered_ttl": d.UnregisteredTTL} {
		if v < 0 {
			bad(key, "must not be negative, got %s", v)
		}
	}
	if d.TakeOverGroup != "" && d.TakeOverGroup == c.Kafka.DetectorGroup {
		bad("detector.take_over_group", "names this detector's own group %q; name the group it was renamed from, or leave it empty", d.TakeOverGroup)
	}
	if !(d.OffHoursMinRatio >= 0) || math.IsInf(d.OffHoursMinRatio, 1) {
		bad("detector.off_hours_min_ratio", "must be 0 (none) or a positive multiple, got %g", d.OffHoursMinRatio)
	}
	if d.NewAgentsPerWindow < 0 {
		bad("detector.new_agents_per_window", "must be 0 (off) or positive, got %d", d.NewAgentsPerWindow)
	}
	if d.NewIPMaxKnown < 0 || d.NewIPMaxKnown > 16 {
		bad("detector.new_ip_max_known", "must be in [0, 16] (0: off; the seen-set keeps 16 addresses), got %d", d.NewIPMaxKnown)
	}
	if d.GlobalMinAgents < 0 {
		bad("detector.global_min_agents", "must be 0 (off) or positive, got %d", d.GlobalMinAgents)
	}
	if !(d.GlobalShare >= 0 && d.GlobalShare <= 1) {
		bad("detector.global_share", "must be in [0, 1], got %g", d.GlobalShare)
	}
	if d.GlobalGap < 0 {
		bad("detector.global_gap", "must not be negative, got %s", d.GlobalGap)
	}
	if d.MaxAgents < 0 {
		bad("detector.max_agents", "must be 0 (no cap) or positive, got %d", d.MaxAgents)
	}
	if d.FeedbackPoll < 0 {
		bad("detector.feedback_poll", "must be 0 (off) or a positive duration, got %s", d.FeedbackPoll)
	}
	if d.FeedbackPoll > 0 && d.FeedbackLookback < d.FeedbackPoll {
		bad("detector.feedback_lookback", "must be at least detector.feedback_poll (%s), got %s; verdicts older than it are never read", d.FeedbackPoll, d.FeedbackLookback)
	}
	d.Risk.validate(bad)
	baselineProblems(ps, c.BaselineParams())
	if c.Embedded.DataDir == "" {
		bad("embedded.data_dir", "must be set")
	}
	c.Responder.validate(bad)
	c.validateReport(bad)
	c.Console.validate(bad, c.Responder.APIAddr)
}

// BaselineParams returns the baseline parameters: the package defaults
// with the detector.* keys applied.
func (c Config) BaselineParams() baseline.Params {
	p := baseline.DefaultParams()
	p.Warmup = c.Detector.Warmup
	p.HalfLife = c.Detector.HalfLife
	p.LongHalfLife = c.Detector.LongHalfLife
	p.AlertScore = c.Detector.AlertScore
	p.AnomalousWeight = c.Detector.AnomalousWeight
	p.ExcessThreshold = c.Detector.ExcessThreshold
	p.ExcessRatio = c.Detector.ExcessRatio
	p.SlowExcessRatio = c.Detector.SlowExcessRatio
	p.SlowExcessThreshold = c.Detector.SlowExcessThreshold
	p.ExcessGuardWeight = c.Detector.ExcessGuardWeight
	p.ScoreSigmas = c.Detector.ScoreSigmas
	p.ScoreHalfLife = c.Detector.ScoreHalfLife
	p.ScoreWarmup = c.Detector.ScoreWarmup
	return p
}

// ParserOptions builds the gateway parser options; routes may be nil.
func (c Config) ParserOptions(rt *routes.Normalizer) gateway.Options {
	o := gateway.Options{
		Format:       c.Ingest.Format,
		MaxLineBytes: c.Ingest.MaxLineBytes,
		MaxDepth:     c.Ingest.MaxDepth,
		MaxAge:       c.Ingest.MaxAge,
		MaxFuture:    c.Ingest.MaxFuture,
		Routes:       rt,
	}
	if o.Format == "auto" {
		o.Format = ""
	}
	if len(c.Ingest.Mappings) > 0 {
		o.Mappings = make(map[string]gateway.FieldMap, len(c.Ingest.Mappings))
		for f, m := range c.Ingest.Mappings {
			o.Mappings[f] = gateway.FieldMap(m)
		}
	}
	for _, r := range c.Ingest.Identity {
		o.Identity = append(o.Identity, identity.Rule{Kind: r.Kind, Header: r.Header, Claim: r.Claim})
	}
	return o
}

func identifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9') {
			continue
		}
		return false
	}
	return true
}

// listener is one HTTP listener's keys, for listenerProblems.
type listener struct {
	addrKey, addr   string
	webKey          string
	webConfig       string
	ackKey          string
	ack             bool
	basicAuthOK     bool // false: basic_auth_users in the web config is a mistake
	basicAuthRefuse string
}

// listenerProblems checks a listener's address and web configuration: a
// listener other hosts can reach must have TLS or basic auth, or an
// explicit acknowledgement that something else protects it. Loopback is
// the default, so exposure is always a decision written in the config.
func listenerProblems(bad func(key, format string, a ...any), l listener) {
	sec, err := weblisten.Inspect(l.webConfig)
	if err != nil {
		bad(l.webKey, "%v; the file is a Prometheus exporter-toolkit web configuration (docs/operations.md)", err)
	}
	if sec.BasicAuth && !l.basicAuthOK {
		bad(l.webKey, "%s", l.basicAuthRefuse)
	}
	if l.addr == "" {
		return
	}
	loopback, lerr := weblisten.Loopback(l.addr)
	switch {
	case lerr != nil:
		bad(l.addrKey, "%v", lerr)
	case loopback || l.ack || (err == nil && sec.Protected()):
	case err != nil:
		// The file's own problem is reported; whether it would protect
		// the listener is unknown until it is fixed.
	case l.webConfig == "":
		bad(l.addrKey, "%q is not a loopback address and nothing protects it; set %s to a web configuration with TLS and/or basic auth, or set %s: true if something else protects the port", l.addr, l.webKey, l.ackKey)
	default:
		bad(l.addrKey, "%q is not a loopback address and %s enables neither TLS nor basic auth; add tls_server_config or basic_auth_users to it, or set %s: true if something else protects the port", l.addr, l.webConfig, l.ackKey)
	}
}

// RouteNormalizer builds the route templates from ingest.openapi and
// ingest.routes; with neither, it returns nil (heuristics only).
func (c Config) RouteNormalizer() (*routes.Normalizer, error) {
	var rs []routes.Route
	if c.Ingest.OpenAPI != "" {
		doc, err := os.ReadFile(c.Ingest.OpenAPI)
		if err != nil {
			return nil, fmt.Errorf("ingest.openapi: %w", err)
		}
		fromDoc, err := routes.ParseOpenAPI(doc)
		if err != nil {
			return nil, fmt.Errorf("ingest.openapi %s: %w", c.Ingest.OpenAPI, err)
		}
		rs = append(rs, fromDoc...)
	}
	for _, r := range c.Ingest.Routes {
		rs = append(rs, routes.Route{Template: r.Template, Tags: r.Tags})
	}
	if len(rs) == 0 {
		return nil, nil
	}
	return routes.New(rs)
}
