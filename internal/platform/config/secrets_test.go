package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func secretFile(t *testing.T, body string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// Every secret key has a _file form, reached through the file, the
// environment and a flag alike.
func TestSecretFromFileEveryChannel(t *testing.T) {
	pw := secretFile(t, "s3cret-from-file\n", 0o600)
	for _, tc := range []struct {
		name string
		file string
		env  []string
		flag string
	}{
		{name: "config file", file: "clickhouse:\n  password_file: " + pw + "\n"},
		{name: "environment", env: []string{"AGENTWATCH_CLICKHOUSE_PASSWORD_FILE=" + pw}},
		{name: "flag", flag: "--clickhouse.password_file=" + pw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = write(t, tc.file)
			}
			fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
			Flags(fs)
			var args []string
			if tc.flag != "" {
				args = append(args, tc.flag)
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			cfg, err := load(path, fs, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ClickHouse.Password != "s3cret-from-file" {
				t.Fatalf("password %q, want the file's contents without the newline", cfg.ClickHouse.Password)
			}
		})
	}
}

func TestSecretFileProblems(t *testing.T) {
	pw := secretFile(t, "hunter2-in-a-file\r\n", 0o600)
	empty := secretFile(t, "\n", 0o600)
	missing := filepath.Join(t.TempDir(), "nope")
	for _, tc := range []struct {
		name string
		file string
		env  []string
		want []string
	}{
		{"both in the file", "clickhouse:\n  password: x\n  password_file: " + pw + "\n", nil,
			[]string{"clickhouse.password: both clickhouse.password and clickhouse.password_file are set"}},
		{"key in env, file in the file", "clickhouse:\n  password_file: " + pw + "\n", []string{"AGENTWATCH_CLICKHOUSE_PASSWORD=x"},
			[]string{"both clickhouse.password and clickhouse.password_file"}},
		{"both in env", "", []string{"AGENTWATCH_RESPONDER_SLACK_TOKEN=x", "AGENTWATCH_RESPONDER_SLACK_TOKEN_FILE=" + pw},
			[]string{"both responder.slack.token and responder.slack.token_file"}},
		{"unreadable file", "", []string{"AGENTWATCH_CLICKHOUSE_PASSWORD_FILE=" + missing},
			[]string{"clickhouse.password_file: cannot read the file holding clickhouse.password", missing}},
		{"empty file", "", []string{"AGENTWATCH_RESPONDER_KONG_TOKEN_FILE=" + empty},
			[]string{"responder.kong.token_file: the file " + empty + " holding responder.kong.token is empty"}},
		{"no _file for a key that is not secret", "clickhouse:\n  username_file: " + pw + "\n", nil,
			[]string{"clickhouse.username_file: unknown key"}},
		{"no _file variable for a key that is not secret", "", []string{"AGENTWATCH_CLICKHOUSE_USERNAME_FILE=" + pw},
			[]string{"AGENTWATCH_CLICKHOUSE_USERNAME_FILE: unknown environment variable"}},
		{"bad ledger key from a file", "", []string{"AGENTWATCH_RESPONDER_LEDGER_KEY_FILE=" + pw},
			[]string{"responder.ledger_key: is not an age X25519 identity"}},
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
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

// config show masks secrets however they came: a file, a variable or the
// configuration file itself.
func TestWriteEffectiveMasksSecretsFromEveryChannel(t *testing.T) {
	secrets := map[string]string{
		"clickhouse.password":            "ch-pass-from-file",
		"responder.slack.token":          "xoxb-from-env",
		"responder.slack.signing_secret": "signing-from-yaml",
		"responder.kong.token":           "kong-from-flag",
		"responder.ledger_key":           "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
	}
	p := write(t, "clickhouse:\n  password_file: "+secretFile(t, secrets["clickhouse.password"]+"\n", 0o600)+
		"\nresponder:\n  slack:\n    signing_secret: "+secrets["responder.slack.signing_secret"]+"\n")
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	Flags(fs)
	if err := fs.Parse([]string{"--responder.kong.token=" + secrets["responder.kong.token"]}); err != nil {
		t.Fatal(err)
	}
	cfg, err := load(p, fs, []string{"AGENTWATCH_RESPONDER_SLACK_TOKEN=" + secrets["responder.slack.token"],
		"AGENTWATCH_RESPONDER_LEDGER_KEY_FILE=" + secretFile(t, secrets["responder.ledger_key"], 0o600)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClickHouse.Password != secrets["clickhouse.password"] || cfg.Responder.Slack.Token != secrets["responder.slack.token"] ||
		cfg.Responder.Slack.SigningSecret != secrets["responder.slack.signing_secret"] || cfg.Responder.Kong.Token != secrets["responder.kong.token"] ||
		cfg.Responder.LedgerKey != secrets["responder.ledger_key"] {
		t.Fatalf("secrets not loaded: %+v", cfg)
	}
	var buf bytes.Buffer
	if err := WriteEffective(&buf, cfg); err != nil {
		t.Fatal(err)
	}
	for key, s := range secrets {
		if strings.Contains(buf.String(), s) {
			t.Errorf("config show prints %s:\n%s", key, buf.String())
		}
	}
	if n := strings.Count(buf.String(), SecretMask); n != len(secrets) {
		t.Errorf("%d masked values, want %d:\n%s", n, len(secrets), buf.String())
	}
}

func TestSecretKeysDocumentTheirFile(t *testing.T) {
	var md, text bytes.Buffer
	if err := WriteReference(&md, true); err != nil {
		t.Fatal(err)
	}
	if err := WriteReference(&text, false); err != nil {
		t.Fatal(err)
	}
	for _, d := range Reference() {
		if !d.Secret || d.FileOnly {
			if d.FileKey != "" {
				t.Errorf("%s: file key %q on a key that is not a secret scalar", d.Key, d.FileKey)
			}
			continue
		}
		if d.FileKey != d.Key+"_file" {
			t.Errorf("%s: file key %q", d.Key, d.FileKey)
		}
		if !strings.Contains(md.String(), "Also `"+d.FileKey+"` (`"+envName(d.FileKey)+"`)") {
			t.Errorf("docs/configuration.md does not name %s", d.FileKey)
		}
		if !strings.Contains(text.String(), "also "+d.FileKey) {
			t.Errorf("config reference does not name %s", d.FileKey)
		}
	}
}
