package helm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/agentwatch/agentwatch/internal/platform/config"
)

// TestChartConfig loads the `config` of the chart's values.yaml, with the
// keys the chart sets by default (the listeners on 0.0.0.0 with their
// acknowledgements, the responder's state directory), through the
// services' own loader: an unknown or misspelt key, or a bad value, would
// stop every pod at start with exit code 2, which lint and strict
// decoding of the Kubernetes objects cannot see. chartcheck checks that
// the chart renders these keys.
func TestChartConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("agentwatch", "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Config  map[string]any `yaml:"config"`
		Secrets struct {
			Files map[string]string `yaml:"files"`
		} `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	if len(values.Config) == 0 {
		t.Fatal("values.yaml has no config")
	}
	out, err := yaml.Marshal(values.Config)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "agentwatch.yaml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"AGENTWATCH_HTTP_ADDR=0.0.0.0:9464",
		"AGENTWATCH_HTTP_INSECURE_LISTEN_ACK=true",
		"AGENTWATCH_RESPONDER_API_ADDR=0.0.0.0:9465",
		"AGENTWATCH_RESPONDER_API_INSECURE_LISTEN_ACK=true",
		"AGENTWATCH_RESPONDER_STATE_DIR=/var/lib/agentwatch/responder",
	}
	// secrets.files, as the chart names them: AGENTWATCH_<KEY>_FILE
	// pointing at the mounted Secret key.
	secrets := t.TempDir()
	for key, secretKey := range values.Secrets.Files {
		if secretKey == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(secrets, secretKey), []byte("from-the-secret\n"), 0o400); err != nil {
			t.Fatal(err)
		}
		env = append(env, "AGENTWATCH_"+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))+"_FILE="+filepath.Join(secrets, secretKey))
	}
	cfg, err := config.LoadEnv(file, nil, env)
	if err != nil {
		t.Fatalf("the chart's default config:\n%s\n%v", out, err)
	}
	// responder.sharedEvidence adds responder.evidence_dir, outside the
	// per-replica state_dir.
	shared, err := config.LoadEnv(file, nil, append(env, "AGENTWATCH_RESPONDER_EVIDENCE_DIR=/var/lib/agentwatch/evidence"))
	if err != nil {
		t.Fatalf("the chart's config with a shared evidence volume: %v", err)
	}
	if got := shared.Responder.EvidenceRoot(); got != "/var/lib/agentwatch/evidence" {
		t.Errorf("evidence directory %q with the shared volume; want /var/lib/agentwatch/evidence", got)
	}
	if cfg.ClickHouse.Password != "from-the-secret" {
		t.Errorf("clickhouse.password not read from the mounted secret file")
	}
	if !cfg.Distributed() || cfg.Kafka.ReplicationFactor != 3 {
		t.Fatalf("decoded %+v; want the chart's brokers and replication factor 3", cfg.Kafka)
	}
}
