package config

import (
	"bytes"
	"strings"
	"testing"
)

// TestKafkaSASLPasswordMasked: the SASL password, from the file or the
// environment, never reaches the effective configuration.
func TestKafkaSASLPasswordMasked(t *testing.T) {
	for name, tc := range map[string]struct {
		file string
		env  []string
	}{
		"file": {"kafka:\n  sasl: {mechanism: scram-sha-512, username: ingest, password: pw-in-the-file-81c2}\n", nil},
		"env":  {"kafka:\n  sasl: {mechanism: plain, username: ingest}\n", []string{"AGENTWATCH_KAFKA_SASL_PASSWORD=pw-in-the-env-81c2"}},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := load(write(t, tc.file), nil, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(cfg.Kafka.SASL.Password, "-81c2") {
				t.Fatalf("password not loaded: %q", cfg.Kafka.SASL.Password)
			}
			var buf bytes.Buffer
			if err := WriteEffective(&buf, cfg); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			if strings.Contains(out, "81c2") || !strings.Contains(out, "password: <secret>") || !strings.Contains(out, "username: ingest") {
				t.Fatalf("effective config:\n%s", out)
			}
		})
	}
}
