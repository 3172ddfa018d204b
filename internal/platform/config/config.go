// Package config loads agentwatch's configuration: one YAML file shared by
// every command, AGENTWATCH_* environment variables and command-line flags,
// in increasing order of precedence. It is the only package that imports
// viper; everything else takes the typed structs.
//
// Unknown keys (in the file, in AGENTWATCH_* variables or in flags) and bad
// values are errors that name the key, reported all at once at start.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

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
type Config struct {
	Log        Log        `mapstructure:"log"`
	HTTP       HTTP       `mapstructure:"http"`
	Kafka      Kafka      `mapstructure:"kafka"`
	ClickHouse ClickHouse `mapstructure:"clickhouse"`
	Ingest     Ingest     `mapstructure:"ingest"`
	Detector   Detector   `mapstructure:"detector"`
	Embedded   Embedded   `mapstructure:"embedded"`
	Responder  Responder  `mapstructure:"responder"`
}

// Log configures log/slog output.
type Log struct {
	Level  string `mapstructure:"level"`  // debug, info, warn, error
	Format string `mapstructure:"format"` // json or text
}

// HTTP configures the /metrics, /healthz and /readyz endpoint.
type HTTP struct {
	Addr string `mapstructure:"addr"` // "" disables it
}

// Kafka configures the distributed mode's transport.
type Kafka struct {
	Brokers         []string `mapstructure:"brokers"`
	RawTopics       []string `mapstructure:"raw_topics"`
	EventsTopic     string   `mapstructure:"events_topic"`
	DeadLetterTopic string   `mapstructure:"dead_letter_topic"`
	IngestGroup     string   `mapstructure:"ingest_group"`
	AnomaliesTopic  string   `mapstructure:"anomalies_topic"`
	DetectorGroup   string   `mapstructure:"detector_group"`
	ResponderGroup  string   `mapstructure:"responder_group"`
	// Partitions and ReplicationFactor are used when ingest creates missing topics.
	Partitions        int  `mapstructure:"partitions"`
	ReplicationFactor int  `mapstructure:"replication_factor"`
	CreateTopics      bool `mapstructure:"create_topics"`
	// MaxMessageBytes is the topics' max.message.bytes: raw lines up to
	// ingest.max_line_bytes must fit, or the shipper cannot deliver them to
	// be dead-lettered.
	MaxMessageBytes int `mapstructure:"max_message_bytes"`
}

// ClickHouse configures the event store of the distributed mode.
type ClickHouse struct {
	Addr          []string      `mapstructure:"addr"`
	Database      string        `mapstructure:"database"`
	Username      string        `mapstructure:"username"`
	Password      string        `mapstructure:"password"`
	DialTimeout   time.Duration `mapstructure:"dial_timeout"`
	RetentionDays int           `mapstructure:"retention_days"`
}

// Ingest configures parsing and batching.
type Ingest struct {
	BatchSize     int           `mapstructure:"batch_size"`
	BatchBytes    int           `mapstructure:"batch_bytes"`
	BatchWait     time.Duration `mapstructure:"batch_wait"`
	RetryInitial  time.Duration `mapstructure:"retry_initial"`
	RetryMax      time.Duration `mapstructure:"retry_max"`
	ShutdownGrace time.Duration `mapstructure:"shutdown_grace"`
	// Format is the default input format: auto or one of gateway.Formats().
	Format string `mapstructure:"format"`
	// TopicFormats overrides Format per raw topic (file only).
	TopicFormats map[string]string `mapstructure:"topic_formats"`
	// Mappings override JSON field paths per format (file only).
	Mappings map[string]map[string]string `mapstructure:"mappings"`
	// Identity rules in order (file only); empty means the defaults.
	Identity     []IdentityRule `mapstructure:"identity"`
	MaxLineBytes int            `mapstructure:"max_line_bytes"`
	MaxDepth     int            `mapstructure:"max_depth"`
	MaxAge       time.Duration  `mapstructure:"max_age"`
	MaxFuture    time.Duration  `mapstructure:"max_future"`
	// OpenAPI is an OpenAPI 3 document whose paths are the route templates.
	OpenAPI string `mapstructure:"openapi"`
	// Routes lists route templates besides (or instead of) OpenAPI (file only).
	Routes []RouteSpec `mapstructure:"routes"`
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
// see the README's detector section for what each does.
type Detector struct {
	Window   time.Duration `mapstructure:"window"`
	Lateness time.Duration `mapstructure:"lateness"`
	// Warmup is the agent's own active windows before it is scored against
	// its own baseline rather than its peer group's.
	Warmup          int     `mapstructure:"warmup"`
	HalfLife        float64 `mapstructure:"half_life"`
	LongHalfLife    float64 `mapstructure:"long_half_life"`
	AlertScore      float64 `mapstructure:"alert_score"`
	AnomalousWeight float64 `mapstructure:"anomalous_weight"`
	// RegistryFile, RoutesFile and OpenAPIFile are the agent registry and
	// route inventory (docs/registry.md), reloaded every ReloadEvery.
	RegistryFile string        `mapstructure:"registry_file"`
	RoutesFile   string        `mapstructure:"routes_file"`
	OpenAPIFile  string        `mapstructure:"openapi_file"`
	ReloadEvery  time.Duration `mapstructure:"reload_every"`
	// RuleRepeat is the least event time between two rule anomalies of one
	// kind for one agent, unless a never-called route is involved.
	RuleRepeat    time.Duration `mapstructure:"rule_repeat"`
	NoveltyMature time.Duration `mapstructure:"novelty_mature"`
	// NewAgentsPerWindow raises agent_flood past this many new agent ids
	// per partition and window (0: off).
	NewAgentsPerWindow int `mapstructure:"new_agents_per_window"`
	// GlobalMinAgents, GlobalShare and GlobalGap group many agents
	// anomalous in one window into one global_event (0 agents: off).
	GlobalMinAgents int `mapstructure:"global_min_agents"`
	// NewIPMaxKnown: new_source_ip for agents with at most this many
	// known source addresses (0: off).
	NewIPMaxKnown  int           `mapstructure:"new_ip_max_known"`
	GlobalShare    float64       `mapstructure:"global_share"`
	GlobalGap      time.Duration `mapstructure:"global_gap"`
	MaxAgents      int           `mapstructure:"max_agents"`
	SnapshotEvery  time.Duration `mapstructure:"snapshot_every"`
	IdleFlush      time.Duration `mapstructure:"idle_flush"`
	SessionTimeout time.Duration `mapstructure:"session_timeout"`
	// FeedbackPoll is how often the distributed detector reads the
	// analysts' false-positive verdicts of the last FeedbackLookback and
	// folds them into the baselines (docs/feedback.md); 0 turns it off.
	FeedbackPoll     time.Duration `mapstructure:"feedback_poll"`
	FeedbackLookback time.Duration `mapstructure:"feedback_lookback"`
	// FleetGauge follows each partition's calls and 5xx answers per window
	// with baseline.Series (the code the NAB evaluation scores) and raises
	// fleet_gauge when one rises.
	FleetGauge bool `mapstructure:"fleet_gauge"`
}

// Embedded configures the one-process default.
type Embedded struct {
	DataDir string `mapstructure:"data_dir"`
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
		"kafka.brokers":                  []string{},
		"kafka.raw_topics":               []string{"agentwatch.raw"},
		"kafka.events_topic":             "agentwatch.events",
		"kafka.dead_letter_topic":        "agentwatch.deadletter",
		"kafka.ingest_group":             "agentwatch-ingest",
		"kafka.anomalies_topic":          "agentwatch.anomalies",
		"kafka.detector_group":           "agentwatch-detector",
		"kafka.responder_group":          "agentwatch-responder",
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
		"detector.registry_file":         "",
		"detector.routes_file":           "",
		"detector.openapi_file":          "",
		"detector.reload_every":          "5s",
		"detector.rule_repeat":           "1h",
		"detector.novelty_mature":        "2h",
		"detector.new_agents_per_window": 200,
		"detector.global_min_agents":     5,
		"detector.new_ip_max_known":      4,
		"detector.global_share":          0.1,
		"detector.global_gap":            "1h",
		"detector.max_agents":            1_000_000,
		"detector.snapshot_every":        "10s",
		"detector.idle_flush":            "30s",
		"detector.session_timeout":       "10s",
		"detector.feedback_poll":         "30s",
		"detector.feedback_lookback":     "168h",
		"detector.fleet_gauge":           true,
		"embedded.data_dir":              ".data/embedded",
	}
	for k, v := range responderDefaults() {
		d[k] = v
	}
	return d
}

// fileOnly keys are structured; they are set in the YAML file only.
var fileOnly = map[string]bool{
	"ingest.topic_formats": true, "ingest.mappings": true, "ingest.identity": true, "ingest.routes": true,
	"responder.tokens": true, "responder.webhooks": true,
}

// Keys returns every configuration key, sorted.
func Keys() []string {
	var ks []string
	for k := range defaults() {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Flags adds a --KEY flag for every scalar and list key to fs; Load applies
// the ones that were set. List values are comma-separated.
func Flags(fs *pflag.FlagSet) {
	for _, k := range Keys() {
		if fileOnly[k] {
			continue
		}
		fs.String(k, "", fmt.Sprintf("set %s (default %v)", k, defaults()[k]))
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

func load(path string, fs *pflag.FlagSet, environ []string) (Config, error) {
	// Map keys under ingest.topic_formats and ingest.mappings hold dots
	// (topic names, header.x-agent-id), so viper must not split on ".".
	v := viper.NewWithOptions(viper.KeyDelimiter(keyDelim))
	vk := func(k string) string { return strings.ReplaceAll(k, ".", keyDelim) }
	defs := defaults()
	for k, d := range defs {
		v.SetDefault(vk(k), d)
	}
	var errs []error
	// An AGENTWATCH_ variable that maps to no key is a typo the operator
	// must hear about, not a silently ignored setting.
	envKeys := map[string]string{}
	for k := range defs {
		envKeys[EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))] = k
	}
	// Env is applied with Set (above the file) before flags (which Set again, so they win).
	var envSets [][2]string
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix+"_") || name == EnvConfigFile {
			continue
		}
		k, ok := envKeys[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: unknown environment variable (known: %s_<KEY> for keys %s)", name, EnvPrefix, strings.Join(Keys(), ", ")))
		case fileOnly[k]:
			errs = append(errs, fmt.Errorf("%s: %s can only be set in the config file", name, k))
		default:
			envSets = append(envSets, [2]string{k, val})
		}
	}
	if path != "" {
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return Config{}, fmt.Errorf("read config %s: %w", path, err)
		}
	}
	for _, kv := range envSets {
		v.Set(vk(kv[0]), kv[1])
	}
	if fs != nil {
		fs.Visit(func(f *pflag.Flag) {
			if _, ok := defs[f.Name]; ok {
				v.Set(vk(f.Name), f.Value.String())
			}
		})
	}
	var cfg Config
	err := v.UnmarshalExact(&cfg, func(dc *mapstructure.DecoderConfig) {
		dc.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			commaList,
		)
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("decode config: %w", err))
		return Config{}, errors.Join(errs...)
	}
	if err := cfg.Validate(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return Config{}, errors.Join(errs...)
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

// Validate reports every problem at once, each prefixed with its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		bad("log.format", "must be json or text, got %q", c.Log.Format)
	}
	if c.HTTP.Addr != "" {
		if err := loopbackAddr(c.HTTP.Addr); err != nil {
			bad("http.addr", "%v", err)
		}
	}
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
		"kafka.responder_group": c.Kafka.ResponderGroup, "kafka.anomalies_topic": c.Kafka.AnomaliesTopic} {
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
		bad("ingest", "%v", err)
	}
	if _, err := c.RouteNormalizer(); err != nil {
		bad("ingest.routes", "%v", err)
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
	for key, v := range map[string]time.Duration{"detector.rule_repeat": d.RuleRepeat, "detector.novelty_mature": d.NoveltyMature, "detector.idle_flush": d.IdleFlush} {
		if v < 0 {
			bad(key, "must not be negative, got %s", v)
		}
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
	if err := c.BaselineParams().Validate(); err != nil {
		bad("detector", "%v", err)
	}
	if c.Embedded.DataDir == "" {
		bad("embedded.data_dir", "must be set")
	}
	c.Responder.validate(bad)
	return errors.Join(errs...)
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

// loopbackAddr insists on a loopback listener: agentwatch's endpoints carry
// no authentication, so exposing them is a deployment decision made with a
// proxy in front, not by a config default.
func loopbackAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q must be a loopback address (127.0.0.1:PORT); put a proxy in front to expose it", addr)
	}
	return nil
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
