package config

import (
	"bytes"
	"flag"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md from WriteReference")

const configurationDoc = "../../../docs/configuration.md"

// A field without a doc fails here, so the reference never lists a key it
// does not explain; defaults and fields must name the same keys.
func TestEveryKeyDocumented(t *testing.T) {
	defs := defaults()
	var keys []string
	for _, d := range Reference() {
		keys = append(keys, d.Key)
		if strings.TrimSpace(d.Doc) == "" {
			t.Errorf("%s: no doc tag; say what it means and the values it takes", d.Key)
		} else if !strings.HasSuffix(d.Doc, ".") {
			t.Errorf("%s: doc %q is not a sentence", d.Key, d.Doc)
		}
		if _, ok := defs[d.Key]; !ok {
			t.Errorf("%s: no default in defaults(); viper maps variables and flags only to keys with one", d.Key)
		}
		if d.Default == "" {
			t.Errorf("%s: empty default rendering", d.Key)
		}
		if d.FileOnly != (d.Env == "") {
			t.Errorf("%s: file only %v but env %q", d.Key, d.FileOnly, d.Env)
		}
	}
	for k := range defs {
		if !slices.Contains(keys, k) {
			t.Errorf("default %s is no field of Config", k)
		}
	}
	if !slices.IsSorted(keys) || !slices.Equal(keys, Keys()) {
		t.Errorf("Reference is not sorted, or differs from Keys: %v", keys)
	}
}

func TestReferenceEntries(t *testing.T) {
	byKey := map[string]KeyDoc{}
	for _, d := range Reference() {
		byKey[d.Key] = d
	}
	for _, want := range []KeyDoc{
		{Key: "ingest.batch_size", Env: "AGENTWATCH_INGEST_BATCH_SIZE", Type: "int", Default: "20000"},
		{Key: "ingest.batch_wait", Env: "AGENTWATCH_INGEST_BATCH_WAIT", Type: "duration", Default: "500ms"},
		{Key: "ingest.max_age", Env: "AGENTWATCH_INGEST_MAX_AGE", Type: "duration", Default: "168h"},
		{Key: "detector.alert_score", Env: "AGENTWATCH_DETECTOR_ALERT_SCORE", Type: "float", Default: "7"},
		{Key: "detector.fleet_gauge", Env: "AGENTWATCH_DETECTOR_FLEET_GAUGE", Type: "bool", Default: "true"},
		{Key: "kafka.raw_topics", Env: "AGENTWATCH_KAFKA_RAW_TOPICS", Type: "list of strings", Default: "[agentwatch.raw]"},
		{Key: "responder.playbooks", Env: "AGENTWATCH_RESPONDER_PLAYBOOKS", Type: "list of strings", Default: "[]"},
		{Key: "responder.slack.approval_channel", Env: "AGENTWATCH_RESPONDER_SLACK_APPROVAL_CHANNEL", Type: "string", Default: `"#soc-alerts"`},
		{Key: "clickhouse.password", Env: "AGENTWATCH_CLICKHOUSE_PASSWORD", Type: "string", Default: `""`, Secret: true, FileKey: "clickhouse.password_file"},
		{Key: "ingest.topic_formats", Type: "map of strings", Default: "{}", FileOnly: true},
		{Key: "ingest.mappings", Type: "map of maps of strings", Default: "{}", FileOnly: true},
		{Key: "ingest.routes", Type: "list of {template, tags}", Default: "[]", FileOnly: true},
		{Key: "responder.tokens", Type: "list of {name, sha256, secret_env, secret_file, allowed_playbooks, can_read_audit, can_silence, can_read_denylist, can_kill_switch, can_repair_outbox, can_read_inventory}", Default: "[]", FileOnly: true, Secret: true},
		{Key: "responder.webhooks", Type: "map of {method, url, header, header_file, body, body_format, already_status}", Default: "{}", FileOnly: true, Secret: true},
	} {
		got := byKey[want.Key]
		got.Doc = ""
		if got != want {
			t.Errorf("Reference %s:\n got %+v\nwant %+v", want.Key, got, want)
		}
	}
}

// docs/configuration.md is WriteReference's Markdown, byte for byte.
// Regenerate it with: go test ./internal/platform/config -run TestConfigurationDoc -update
func TestConfigurationDoc(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteReference(&buf, true); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(configurationDoc, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, buf.Bytes()) {
		t.Fatalf("%s is stale; regenerate it with: go test ./internal/platform/config -run TestConfigurationDoc -update", configurationDoc)
	}
	for _, d := range Reference() {
		if !bytes.Contains(got, []byte("`"+d.Key+"`")) {
			t.Errorf("%s missing from the page", d.Key)
		}
	}
}

func TestWriteReferenceText(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteReference(&buf, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ingest.batch_size (int, default 20000, env AGENTWATCH_INGEST_BATCH_SIZE)\n    Most events in one ClickHouse insert",
		"ingest.routes (list of {template, tags}, default [], file only)\n",
		"clickhouse.password (string, default \"\", env AGENTWATCH_CLICKHOUSE_PASSWORD, secret, also clickhouse.password_file)\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text reference lacks %q", want)
		}
	}
}

// The effective configuration is a file Load reads back to the same
// Config, secrets aside.
func TestWriteEffectiveRoundTrip(t *testing.T) {
	p := write(t, `
kafka:
  brokers: [a:9092, b:9092]
ingest:
  batch_wait: 1h30m
  topic_formats: {raw.kong: kong}
  mappings:
    envoy: {header.x-agent-id: agent}
  identity:
    - {kind: header, header: X-Agent-Id}
  routes:
    - {template: "/customers/{id}", tags: [sensitive]}
detector:
  alert_score: 7.5
  global_share: 0.25
responder:
  slack: {approval_channel: "#soc"}
  egress_allow: ["gw:9443"]
  tokens:
    - {name: ci, secret_env: CI_TOKEN, allowed_playbooks: [exfiltration], can_silence: true}
  webhooks:
    revoke: {url: "https://gw:9443/creds/{{.CredentialID}}", already_status: [404, 410]}
`)
	want, err := load(p, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteEffective(&buf, want); err != nil {
		t.Fatal(err)
	}
	got, err := load(write(t, buf.String()), nil, nil)
	if err != nil {
		t.Fatalf("effective config does not load: %v\n%s", err, buf.String())
	}
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for _, l := range leaves() {
		if g, w := gv.FieldByIndex(l.index).Interface(), wv.FieldByIndex(l.index).Interface(); !reflect.DeepEqual(g, w) {
			t.Errorf("%s: round trip gives %#v, want %#v", l.key, g, w)
		}
	}
	for _, line := range []string{"  batch_wait: 1h30m\n", "  brokers: ['a:9092', 'b:9092']\n", "  approval_channel: \"#soc\"\n", "  alert_score: 7.5\n", "  password: \"\"\n"} {
		if !strings.Contains(buf.String(), line) {
			t.Errorf("effective config lacks %q:\n%s", line, buf.String())
		}
	}
}

func TestWriteEffectiveMasksSecrets(t *testing.T) {
	p := write(t, `
responder:
  tokens:
    - {name: ci, sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}
  webhooks:
    revoke: {url: "https://gw:9443/revoke", header: {Authorization: "Bearer hunter2"}}
`)
	cfg, err := load(p, nil, []string{"AGENTWATCH_CLICKHOUSE_PASSWORD=s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteEffective(&buf, cfg); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, secret := range []string{"s3cret", "hunter2", "9f86d081"} {
		if strings.Contains(out, secret) {
			t.Errorf("effective config shows secret %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"password: <secret>", "sha256: <secret>", "authorization: <secret>", "name: ci", "url: https://gw:9443/revoke"} {
		if !strings.Contains(out, want) {
			t.Errorf("effective config lacks %q:\n%s", want, out)
		}
	}
}

func TestSuggestKey(t *testing.T) {
	for in, want := range map[string]string{
		"ingest.batchsize":     "ingest.batch_size",
		"--ingest.batch-size":  "ingest.batch_size",
		"Detector.Windw":       "detector.window",
		"ingest.window":        "detector.window", // right name, wrong section
		"ingest.route":         "",                // ingest.routes is file only: no flag
		"kafka.format":         "",                // ingest.format, denylist.format: ambiguous
		"completely.different": "",
	} {
		if got := SuggestKey(in); got != want {
			t.Errorf("SuggestKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFlagsOnePerSettableKey(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	Flags(fs)
	for _, d := range Reference() {
		f := fs.Lookup(d.Key)
		switch {
		case d.FileOnly && f != nil:
			t.Errorf("--%s: file-only key has a flag", d.Key)
		case !d.FileOnly && f == nil:
			t.Errorf("--%s: missing", d.Key)
		case f != nil && !strings.HasPrefix(f.Usage, d.Doc):
			t.Errorf("--%s usage %q is not the key's doc", d.Key, f.Usage)
		}
	}
}
