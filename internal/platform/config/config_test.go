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
