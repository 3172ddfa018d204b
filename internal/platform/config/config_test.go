package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "agentwatch.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsAreValidAndEmbedded(t *testing.T) {
	cfg, err := load("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Distributed() {
		t.Fatal("default config is distributed; the embedded default needs no Kafka")
	}
	if cfg.Ingest.BatchWait != 500*time.Millisecond || cfg.Kafka.EventsTopic != "agentwatch.events" ||
		cfg.Detector.FeedbackPoll != 30*time.Second || cfg.Detector.FeedbackLookback != 7*24*time.Hour {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	p := write(t, "kafka:\n  brokers: [a:1]\ningest:\n  batch_size: 10\n  batch_wait: 1s\n")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	Flags(fs)
	if err := fs.Parse([]string{"--ingest.batch_wait=2s"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := load(p, fs, []string{"AGENTWATCH_INGEST_BATCH_SIZE=20", "AGENTWATCH_KAFKA_BROKERS=b:1,c:2", "AGENTWATCH_CONFIG_FILE=ignored.yaml", "PATH=/bin"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ingest.BatchSize != 20 {
		t.Errorf("batch_size %d: env must win over file", cfg.Ingest.BatchSize)
	}
	if cfg.Ingest.BatchWait != 2*time.Second {
		t.Errorf("batch_wait %s: flag must win", cfg.Ingest.BatchWait)
	}
	if strings.Join(cfg.Kafka.Brokers, ",") != "b:1,c:2" || !cfg.Distributed() {
		t.Errorf("brokers %v from env list", cfg.Kafka.Brokers)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		env        []string
		want       []string
	}{
		{"unknown file key", "ingest:\n  batchsize: 3\n", nil, []string{"batchsize"}},
		{"unknown env", "", []string{"AGENTWATCH_INGEST_BATCHSIZE=3"}, []string{"AGENTWATCH_INGEST_BATCHSIZE"}},
		{"file-only from env", "", []string{"AGENTWATCH_INGEST_ROUTES=x"}, []string{"ingest.routes"}},
		{"bad duration", "ingest:\n  batch_wait: soon\n", nil, []string{"batch_wait"}},
		{"out of range", "ingest:\n  batch_size: 0\n", nil, []string{"ingest.batch_size"}},
		{"bad format", "ingest:\n  format: syslog\n", nil, []string{"ingest.format", "syslog"}},
		{"public listener", "http:\n  addr: 0.0.0.0:9464\n", nil, []string{"http.addr", "loopback"}},
		{"several at once", "log:\n  level: loud\nclickhouse:\n  database: 'a-b'\n", nil, []string{"log.level", "clickhouse.database"}},
		{"bad route", "ingest:\n  routes:\n    - template: customers\n", nil, []string{"ingest.routes"}},
		{"bad identity", "ingest:\n  identity:\n    - kind: telepathy\n", nil, []string{"telepathy"}},
		{"negative feedback poll", "", []string{"AGENTWATCH_DETECTOR_FEEDBACK_POLL=-1s"}, []string{"detector.feedback_poll"}},
		{"feedback lookback under the poll", "detector:\n  feedback_poll: 1h\n  feedback_lookback: 10m\n", nil, []string{"detector.feedback_lookback"}},
		{"checkpoint every zero", "responder:\n  evidence:\n    checkpoint_every: 0\n", nil, []string{"responder.evidence.checkpoint_every"}},
		{"negative checkpoint interval", "", []string{"AGENTWATCH_RESPONDER_EVIDENCE_CHECKPOINT_INTERVAL=-1m"}, []string{"responder.evidence.checkpoint_interval"}},
		{"sub-second digest interval", "responder:\n  slack:\n    digest_interval: 500us\n", nil, []string{"responder.slack.digest_interval"}},
		{"digest interval over a day", "", []string{"AGENTWATCH_RESPONDER_SLACK_DIGEST_INTERVAL=25h"}, []string{"responder.slack.digest_interval"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = write(t, tc.file)
			}
			_, err := load(path, nil, tc.env)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestStructuredKeysFromFile(t *testing.T) {
	p := write(t, `
ingest:
  topic_formats: {raw.kong: kong}
  mappings:
    envoy: {header.x-agent-id: "agent"}
  identity:
    - {kind: header, header: X-Agent-Id}
    - {kind: jwt, claim: sub}
  routes:
    - {template: "/customers/{id}/orders", tags: [sensitive]}
`)
	cfg, err := load(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Ingest.TopicFormats["raw.kong"] != "kong" || len(cfg.Ingest.Identity) != 2 || cfg.Ingest.Mappings["envoy"]["header.x-agent-id"] != "agent" {
		t.Fatalf("structured keys lost: %+v", cfg.Ingest)
	}
	n, err := cfg.RouteNormalizer()
	if err != nil || n == nil {
		t.Fatalf("route normalizer: %v", err)
	}
	if got := n.Normalize("/customers/8812/orders"); got != "/customers/{id}/orders" {
		t.Fatalf("normalize = %q", got)
	}
}

// Every problem is reported at once, sorted, one per line, each naming the
// key as users write it, the bad value and the form expected.
func TestErrorMessages(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		env        []string
		want       string
	}{
		{"bad duration", "detector:\n  window: banana\n", nil,
			`detector.window: "banana" is not a duration (use a number with a unit: 30s, 5m, 1h)`},
		{"duration without a unit", "", []string{"AGENTWATCH_INGEST_BATCH_WAIT=500"},
			`ingest.batch_wait: "500" is not a duration (use a number with a unit: 30s, 5m, 1h)`},
		{"bad int", "ingest:\n  batch_size: lots\n", nil,
			`ingest.batch_size: "lots" is not a whole number`},
		{"bad float and bool", "detector:\n  global_share: half\nkafka:\n  create_topics: maybe\n", nil,
			"detector.global_share: \"half\" is not a number\n" +
				`kafka.create_topics: "maybe" is not true or false`},
		{"map for a list", "kafka:\n  brokers: {a: 1}\n", nil,
			`kafka.brokers: {a: 1} is not a list of strings (in the file [a, b]; in a variable or flag a,b)`},
		{"decode and validation errors together", "ingest:\n  batch_size: -5\n  batch_wait: soon\n", nil,
			"ingest.batch_size: must be in [1, 1000000], got -5\n" +
				`ingest.batch_wait: "soon" is not a duration (use a number with a unit: 30s, 5m, 1h)`},
		{"baseline params name their keys", "detector:\n  warmup: -3\n  half_life: 600\n  long_half_life: 5\n", nil,
			"detector.long_half_life: must be finite and at least detector.half_life, got 5\n" +
				"detector.warmup: must be non-negative, got -3"},
		{"repeat rules", "detector:\n  drift_repeat: -1h\n  off_hours_min_ratio: -2\n", nil,
			"detector.drift_repeat: must not be negative, got -1h0m0s\n" +
				"detector.off_hours_min_ratio: must be 0 (none) or a positive multiple, got -2"},
		{"alert score above the medium severity", "", []string{"AGENTWATCH_DETECTOR_ALERT_SCORE=20"},
			"detector.alert_score: must be at most 12, the medium-severity score, got 20"},
		{"alert score out of range once", "", []string{"AGENTWATCH_DETECTOR_ALERT_SCORE=-1"},
			"detector.alert_score: must be in (0, 300], got -1"},
		{"tls mistakes", "kafka:\n  tls: {enabled: true, ca_file: /nonexistent/ca.crt, cert_file: /x.crt, min_version: \"1.0\"}\n", nil,
			"kafka.tls.ca_file: cannot read \"/nonexistent/ca.crt\": stat /nonexistent/ca.crt: no such file or directory\n" +
				"kafka.tls.cert_file: cannot read \"/x.crt\": stat /x.crt: no such file or directory\n" +
				"kafka.tls.cert_file: cert_file and key_file go together: set both or neither\n" +
				`kafka.tls.min_version: must be 1.2 or 1.3, got "1.0"`},
		{"sasl mechanism unknown", "kafka:\n  sasl: {mechanism: gssapi}\n", nil,
			`kafka.sasl.mechanism: must be none, plain, scram-sha-256 or scram-sha-512, got "gssapi"`},
		{"sasl without credentials", "kafka:\n  sasl: {mechanism: scram-sha-512}\n", nil,
			"kafka.sasl.password: must be set when mechanism is scram-sha-512 (or password_file, or AGENTWATCH_KAFKA_SASL_PASSWORD)\n" +
				"kafka.sasl.username: must be set when mechanism is scram-sha-512"},
		{"sasl password from env", "kafka:\n  sasl: {mechanism: plain, username: u}\n  tls: {enabled: true, min_version: \"0.9\"}\n", []string{"AGENTWATCH_KAFKA_SASL_PASSWORD=pw"},
			`kafka.tls.min_version: must be 1.2 or 1.3, got "0.9"`},
		{"unknown key", "ingest:\n  batchsize: 3\n", nil,
			"ingest.batchsize: unknown key; did you mean ingest.batch_size?"},
		{"key in the wrong section", "ingest:\n  window: 1m\n", nil,
			"ingest.window: unknown key; did you mean detector.window?"},
		{"unknown key, no guess", "telemetry:\n  on: true\n", nil,
			"telemetry.on: unknown key (agentwatch config reference lists the keys)"},
		{"scalar for a section", "ingest: 5\n", nil,
			"ingest: 5 is not a section of keys (such as ingest.batch_size); write it as ingest: {KEY: VALUE}"},
		{"unknown env", "", []string{"AGENTWATCH_INGEST_BATCHSIZE=3"},
			"AGENTWATCH_INGEST_BATCHSIZE: unknown environment variable; did you mean AGENTWATCH_INGEST_BATCH_SIZE?"},
		{"unknown env, no guess", "", []string{"AGENTWATCH_TELEMETRY=1"},
			"AGENTWATCH_TELEMETRY: unknown environment variable: no key is AGENTWATCH_<KEY> (agentwatch config reference lists the keys)"},
		{"file-only from env", "", []string{"AGENTWATCH_INGEST_ROUTES=x"},
			"AGENTWATCH_INGEST_ROUTES: ingest.routes can only be set in the config file"},
		{"unknown field of an entry", "ingest:\n  identity:\n    - {kind: header, heder: X-Agent-Id}\n", nil,
			"ingest.identity[0]: unknown field heder; did you mean header? (fields: kind, header, claim)"},
		{"bad field of an entry", "ingest:\n  routes:\n    - {template: /a, tags: {x: 1}}\n", nil,
			"ingest.routes[0].tags[0]: {x: 1} is not a string; ingest.routes is a list of {template, tags}"},
		{"everything at once, sorted", "log:\n  level: loud\ningest:\n  batchsize: 3\n  batch_wait: soon\n", []string{"AGENTWATCH_DETECTOR_WINDOW=banana"},
			"detector.window: \"banana\" is not a duration (use a number with a unit: 30s, 5m, 1h)\n" +
				"ingest.batch_wait: \"soon\" is not a duration (use a number with a unit: 30s, 5m, 1h)\n" +
				"ingest.batchsize: unknown key; did you mean ingest.batch_size?\n" +
				`log.level: must be debug, info, warn or error, got "loud"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = write(t, tc.file)
			}
			_, err := load(path, nil, tc.env)
			if err == nil {
				t.Fatal("accepted")
			}
			if err.Error() != tc.want {
				t.Errorf("error\n%s\nwant\n%s", err, tc.want)
			}
		})
	}
}
