package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
	"github.com/agentwatch/agentwatch/internal/tools/sim"
)

const (
	e2eSecret     = "0b5c3f1e9a7d4c2b8e6f0a1d3c5b7e9f2a4c6e8b"
	e2eSlackToken = "xoxb-e2e-4f8a1c9d7b3e"
	// e2eAPIToken is the secret of an HTTP API token the secured run
	// configures, so that its logs can be searched for it.
	e2eAPIToken = "e2e-api-token-3b9f0c2a7e61d4c85a90f1e2d3b4a5968778695a4b3c2d1e"
)

// e2ePlaybooks revokes on either exfiltration class: the crash tests feed
// anomalies explained by their bytes alone, which pkg/attack names a slow
// exfiltration (no burst of calls), and the end-to-end run a bulk one.
const e2ePlaybooks = `
playbooks:
  - name: exfiltration
    trigger:
      classes: [exfiltration, slow_exfiltration]
      min_severity: high
    final: true
    steps:
      - snapshot: {before: 30m, after: 5m}
      - notify: {channel: "#soc-alerts"}
      - revoke: {adapter: kong}
`

func envOfSettings(m map[string]string) []string {
	var env []string
	for k, v := range m {
		env = append(env, config.EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))+"="+v)
	}
	return env
}

// e2e is the distributed pipeline on real Kafka and ClickHouse with a
// recording Slack and a Kong admin API.
type e2e struct {
	t          *testing.T
	brokers    []string
	kafka      itest.Kafka
	sec        kafka.Security
	procs      []*itest.Proc // every service process started, for their logs
	cliOut     []string      // every subcommand's output
	settings   map[string]string
	respEnv    []string
	bins       map[string]string
	slack      *testsrv.Slack
	kong       *testsrv.Kong
	anomalies  string
	agent      string
	credential string
}

func newE2E(t *testing.T, ctx context.Context, withPipeline bool) *e2e {
	t.Helper()
	return newE2EOn(t, ctx, withPipeline, itest.PlainKafka(t))
}

// newE2EOn is newE2E on the Kafka listener k: the services and the test's
// own clients all reach the broker with k's security.
func newE2EOn(t *testing.T, ctx context.Context, withPipeline bool, k itest.Kafka) *e2e {
	t.Helper()
	brokers, chAddr := k.Brokers, itest.ClickHouseAddr(t)
	e := &e2e{t: t, brokers: brokers, kafka: k, sec: k.Security(t), bins: map[string]string{}, slack: testsrv.NewSlack(), kong: testsrv.NewKong()}
	t.Cleanup(e.slack.Close)
	t.Cleanup(e.kong.Close)
	names := []string{"responder"}
	if withPipeline {
		names = append(names, "ingest", "detector")
	}
	for _, n := range names {
		e.bins[n] = itest.BuildBinary(t, n)
	}
	suffix := itest.RandHex(4)
	raw, events, dlq := "it-e2e-"+suffix+".raw", "it-e2e-"+suffix+".events", "it-e2e-"+suffix+".dlq"
	e.anomalies = "it-e2e-" + suffix + ".anomalies"
	db := "it_e2e_" + suffix
	if err := kafka.EnsureTopics(ctx, brokers, e.sec,
		kafka.TopicSpec{Name: raw, Partitions: 2, ReplicationFactor: 1}, kafka.TopicSpec{Name: events, Partitions: 2, ReplicationFactor: 1},
		kafka.TopicSpec{Name: dlq, Partitions: 1, ReplicationFactor: 1}, kafka.TopicSpec{Name: e.anomalies, Partitions: 2, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	// The responder creates its state topics (kafka.create_topics).
	state, global := "it-e2e-"+suffix+".state", "it-e2e-"+suffix+".responder-global"
	k.DeleteTopicsAfter(t, raw, events, dlq, e.anomalies, state, global)
	itest.DropDatabaseAfter(t, chAddr, db)
	dir := t.TempDir()
	pb := filepath.Join(dir, "playbooks.yaml")
	if err := os.WriteFile(pb, []byte(e2ePlaybooks), 0o644); err != nil {
		t.Fatal(err)
	}
	e.settings = map[string]string{
		"kafka.brokers": strings.Join(brokers, ","), "kafka.raw_topics": raw, "kafka.events_topic": events, "kafka.dead_letter_topic": dlq,
		"kafka.anomalies_topic": e.anomalies, "kafka.partitions": "2", "kafka.responder_state_topic": state, "kafka.responder_global_topic": global,
		"kafka.ingest_group": "it-e2e-ingest-" + suffix, "kafka.detector_group": "it-e2e-det-" + suffix, "kafka.responder_group": "it-e2e-resp-" + suffix,
		"clickhouse.addr": strings.Join(chAddr, ","), "clickhouse.database": db,
		"detector.snapshot_every": "2s", "detector.idle_flush": "5s", "detector.session_timeout": "6s",
		"log.level": "info", "log.format": "text", "http.addr": "127.0.0.1:0",
		"responder.playbooks": pb, "responder.state_dir": filepath.Join(dir, "responder"), "responder.group_wait": "1s",
		"responder.kong.admin_url": e.kong.URL(), "responder.egress_allow": e.kong.Addr(), "responder.slack.api_url": e.slack.URL(),
		"responder.api_addr": "127.0.0.1:0",
	}
	maps.Copy(e.settings, k.Settings())
	e.respEnv = []string{"SLACK_BOT_TOKEN=" + e2eSlackToken, "SLACK_SIGNING_SECRET=" + e2eSecret}
	return e
}

func (e *e2e) env(extra ...string) []string { return append(envOfSettings(e.settings), extra...) }

func (e *e2e) startResponder(extra ...string) *itest.Proc {
	p := itest.Start(e.t, e.bins["responder"], e.env(append(e.respEnv, extra...)...))
	e.procs = append(e.procs, p)
	if _, ok := p.WaitLine(60*time.Second, 0, "responder started"); !ok {
		e.t.Fatalf("responder did not start:\n%s", p.Tail(30))
	}
	return p
}

// cli runs a responder subcommand to completion.
func (e *e2e) cli(args ...string) (string, error) {
	cmd := exec.Command(e.bins["responder"], args...)
	cmd.Env = append(os.Environ(), e.env(e.respEnv...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	e.cliOut = append(e.cliOut, out.String(), errOut.String())
	if err != nil {
		return out.String() + errOut.String(), err
	}
	return out.String(), nil
}

// credPosts and credDeletes count what reached the fake services about
// the misbehaving agent.
func (e *e2e) agentPosts() (roots, replies []testsrv.SlackPost) {
	return splitThreads(e.slack.Posts(), func(p testsrv.SlackPost) bool { return strings.Contains(p.Blocks+p.Text, e.agent) })
}

// splitThreads returns the posts keep accepts, top-level ones apart from
// thread replies.
func splitThreads(posts []testsrv.SlackPost, keep func(testsrv.SlackPost) bool) (roots, replies []testsrv.SlackPost) {
	for _, p := range posts {
		if !keep(p) || p.Method == "chat.update" { // an incident card kept current: no new message
			continue
		}
		if p.ThreadTS == "" {
			roots = append(roots, p)
		} else {
			replies = append(replies, p)
		}
	}
	return roots, replies
}

// messages counts the messages posted to Slack; an update of an incident's
// card (chat.update) is none.
func messages(s *testsrv.Slack) int {
	n := 0
	for _, p := range s.Posts() {
		if p.Method != "chat.update" {
			n++
		}
	}
	return n
}

func (e *e2e) credDeletes() int {
	n := 0
	for _, r := range e.kong.Requests() {
		if r.Method == http.MethodDelete && strings.HasSuffix(r.Path, "/"+e.credential) {
			n++
		}
	}
	return n
}

// quiet waits until neither fake service has heard anything for d.
func (e *e2e) quiet(d, max time.Duration) {
	deadline := time.Now().Add(max)
	last := len(e.slack.Posts()) + len(e.kong.Requests())
	since := time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		n := len(e.slack.Posts()) + len(e.kong.Requests())
		if n != last {
			last, since = n, time.Now()
		}
		if time.Since(since) >= d {
			return
		}
	}
}

// replayAnomalies reads every record of the anomalies topic and publishes
// it again, as a redelivery after a rebalance or an operator's replay would.
func (e *e2e) replayAnomalies(ctx context.Context) int {
	e.t.Helper()
	r, err := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Security: e.sec, GroupID: "it-e2e-replay-" + itest.RandHex(4), Topics: []string{e.anomalies}}, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer r.Close()
	var msgs []bus.Message
	for {
		fctx, cancel := context.WithTimeout(ctx, 8*time.Second)
		m, err := r.Fetch(fctx)
		cancel()
		if err != nil {
			break
		}
		msgs = append(msgs, bus.Message{Key: m.Key, Value: m.Value})
	}
	w, err := kafka.NewWriter(kafka.WriterConfig{Brokers: e.brokers, Security: e.sec, Topic: e.anomalies}, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer w.Close()
	if err := w.Write(ctx, msgs...); err != nil {
		e.t.Fatal(err)
	}
	return len(msgs)
}

// TestIntegrationEndToEndExfiltration runs ingest, detector and responder
// as processes on real Kafka and ClickHouse. An exfiltration burst injected
// into a day of simulated raw gateway logs must give one Slack thread, one
// revocation at Kong and one evidence bundle whose hashes verify; replaying
// every anomaly (before and after a responder restart) must change nothing.
func TestIntegrationEndToEndExfiltration(t *testing.T) {
	endToEndExfiltration(t, itest.PlainKafka(t), nil)
}

// TestIntegrationEndToEndExfiltrationSASLSSL is the same run over the
// broker's SASL_SSL listener (TLS and SCRAM-SHA-512) for every service and
// every client of the test, with an HTTP API token configured besides the
// Slack secrets; no line any process writes may hold any of the secrets.
func TestIntegrationEndToEndExfiltrationSASLSSL(t *testing.T) {
	k := itest.SecureKafka(t, "scram-sha-512")
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "agentwatch.yaml")
	if err := os.WriteFile(cfgFile, []byte("responder:\n  tokens:\n    - {name: e2e-ops, secret_env: E2E_API_TOKEN, can_read_audit: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := endToEndExfiltration(t, k, []string{config.EnvConfigFile + "=" + cfgFile, "E2E_API_TOKEN=" + e2eAPIToken})
	secrets := map[string]string{"kafka.sasl.password": k.SASL.Password, "Slack bot token": e2eSlackToken,
		"Slack signing secret": e2eSecret, "API token": e2eAPIToken}
	if pw := e.settings["clickhouse.password"]; pw != "" {
		secrets["clickhouse.password"] = pw
	}
	lines := 0
	for i, p := range e.procs {
		// Every service proved its connection over SASL_SSL at start; that
		// line in each capture also shows the capture works.
		if len(p.Lines("kafka reachable", "security.protocol=SASL_SSL", "security.sasl=SCRAM-SHA-512")) == 0 {
			t.Errorf("process %d (%s) did not log its SASL_SSL check:\n%s", i, filepath.Base(p.Cmd.Path), p.Tail(10))
		}
		for _, l := range p.Output() {
			lines++
			for what, v := range secrets {
				if strings.Contains(l, v) {
					t.Errorf("process %d (%s) logged the %s: %s", i, filepath.Base(p.Cmd.Path), what, l)
				}
			}
		}
	}
	for _, out := range e.cliOut {
		for what, v := range secrets {
			if strings.Contains(out, v) {
				t.Errorf("a responder subcommand printed the %s:\n%s", what, out)
			}
		}
	}
	if lines < 20 {
		t.Fatalf("only %d log lines from %d processes: the capture is broken, so the search proves nothing", lines, len(e.procs))
	}
	t.Logf("searched %d log lines of %d processes and %d subcommand outputs for %d secrets", lines, len(e.procs), len(e.cliOut), len(secrets))
}

// endToEndExfiltration is the run of TestIntegrationEndToEndExfiltration on
// listener k, with extra environment for every process.
func endToEndExfiltration(t *testing.T, k itest.Kafka, extraEnv []string) *e2e {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	e := newE2EOn(t, ctx, true, k)
	e.respEnv = append(e.respEnv, extraEnv...)

	start := time.Now().UTC().Add(-26 * time.Hour).Truncate(time.Minute)
	s, err := sim.New(sim.Config{Seed: 11, Agents: 12, Start: start, Duration: 26*time.Hour - 2*time.Minute,
		Incidents: []sim.IncidentSpec{{Kind: sim.Exfiltration, Offset: 25 * time.Hour, Duration: 10 * time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	inc := s.Incidents()[0]
	a, ok := s.Registry().Lookup(inc.Agent)
	if !ok {
		t.Fatalf("incident agent %s not registered", inc.Agent)
	}
	e.agent, e.credential = inc.Agent, a.CredentialID
	e.kong.Add(inc.Agent, a.CredentialID, "the-agents-api-key")
	dir := t.TempDir()
	var rb, ib bytes.Buffer
	if err := sim.WriteRegistryYAML(&rb, s.Registry()); err != nil {
		t.Fatal(err)
	}
	if err := sim.WriteRoutesYAML(&ib, s.Routes()); err != nil {
		t.Fatal(err)
	}
	regFile, routesFile := filepath.Join(dir, "agents.yaml"), filepath.Join(dir, "routes.yaml")
	if err := os.WriteFile(regFile, rb.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(routesFile, ib.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	e.settings["detector.registry_file"], e.settings["detector.routes_file"] = regFile, routesFile
	keyFile := filepath.Join(dir, "checkpoint.key")
	if _, err := evidence.GenerateKey(keyFile, keyFile+".pub"); err != nil {
		t.Fatal(err)
	}
	e.settings["responder.evidence.checkpoint_key_file"] = keyFile

	ing := itest.Start(t, e.bins["ingest"], e.env(extraEnv...))
	det := itest.Start(t, e.bins["detector"], e.env(extraEnv...))
	e.procs = append(e.procs, ing, det)
	resp := e.startResponder()

	w, err := kafka.NewWriter(kafka.WriterConfig{Brokers: e.brokers, Security: e.sec, Topic: e.settings["kafka.raw_topics"]}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var batch []bus.Message
	n := 0
	for line := range s.All() {
		batch = append(batch, bus.Message{Value: line.Raw})
		if len(batch) == 5000 {
			if err := w.Write(ctx, batch...); err != nil {
				t.Fatal(err)
			}
			n += len(batch)
			batch = batch[:0]
		}
	}
	if err := w.Write(ctx, batch...); err != nil {
		t.Fatal(err)
	}
	n += len(batch)
	t.Logf("published %d raw lines; exfiltration by %s (credential %s) from %s", n, e.agent, e.credential, inc.Start.Format(time.RFC3339))

	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) && (e.credDeletes() == 0 || !func() bool { r, _ := e.agentPosts(); return len(r) > 0 }()) {
		time.Sleep(500 * time.Millisecond)
	}
	if e.credDeletes() == 0 {
		t.Fatalf("no revocation reached Kong in 5 minutes\nresponder:\n%s\ndetector:\n%s", resp.Tail(40), det.Tail(20))
	}
	e.quiet(15*time.Second, 2*time.Minute)

	roots, replies := e.agentPosts()
	if len(roots) != 1 {
		t.Errorf("%d top-level Slack alerts about %s, want 1 (one thread per incident)", len(roots), e.agent)
	}
	for _, p := range replies {
		if len(roots) > 0 && p.ThreadTS != roots[0].TS {
			t.Errorf("a post about %s is in thread %s, not the incident's %s", e.agent, p.ThreadTS, roots[0].TS)
		}
	}
	if d := e.credDeletes(); d != 1 {
		t.Errorf("%d DELETEs of credential %s at Kong, want 1", d, e.credential)
	}
	if e.kong.Has(e.credential) {
		t.Error("the credential is still at Kong")
	}
	out, err := e.cli("verify", "--public-key", keyFile+".pub")
	if err != nil || !strings.Contains(out, "verifies") || !strings.Contains(out, "audit trail: 1 bundle hashes") ||
		!strings.Contains(out, "signed by key") || !strings.Contains(out, "the latest anchors seq 1") {
		t.Errorf("responder verify: %v\n%s", err, out)
	}
	var bundles int
	if _, err := fmt.Sscanf(out, "evidence chain verifies: %d records", &bundles); err != nil || bundles != 1 {
		t.Errorf("evidence chain holds %d bundles (%v), want 1: %s", bundles, err, out)
	}
	audit, err := e.cli("audit", "--agent", e.agent)
	if err != nil || !strings.Contains(audit, "revoke") || !strings.Contains(audit, "snapshot") {
		t.Errorf("responder audit --agent %s: %v\n%s", e.agent, err, audit)
	}
	t.Logf("Slack: %d posts about %s (1 alert, %d in its thread); Kong: %d requests", len(roots)+len(replies), e.agent, len(replies), len(e.kong.Requests()))

	// Replays change nothing, also after a restart.
	posts, reqs := messages(e.slack), len(e.kong.Requests())
	replayed := e.replayAnomalies(ctx)
	e.quiet(10*time.Second, time.Minute)
	if messages(e.slack) != posts || len(e.kong.Requests()) != reqs {
		t.Errorf("replaying %d anomalies posted %d and called Kong %d more times", replayed, messages(e.slack)-posts, len(e.kong.Requests())-reqs)
	}
	_ = resp.Cmd.Process.Signal(syscall.SIGTERM)
	<-resp.Done
	resp = e.startResponder()
	e.replayAnomalies(ctx)
	e.quiet(10*time.Second, time.Minute)
	if messages(e.slack) != posts || len(e.kong.Requests()) != reqs {
		t.Errorf("after a restart, replaying posted %d and called Kong %d more times", messages(e.slack)-posts, len(e.kong.Requests())-reqs)
	}
	t.Logf("replayed %d anomalies twice (before and after a restart): no new post, no new Kong call", replayed)
	// Stopped gracefully, so that their shutdown lines are logged too.
	for _, p := range []*itest.Proc{resp, ing, det} {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range []*itest.Proc{resp, ing, det} {
		select {
		case <-p.Done:
		case <-time.After(time.Minute):
			t.Errorf("%s did not stop within a minute of SIGTERM", filepath.Base(p.Cmd.Path))
		}
	}
	return e
}
