// Package respbench measures the distributed responder end to end on the
// real services: anomalies for distinct agents are written one at a time,
// at a steady rate, to a fresh anomalies topic; the responder, built in
// process by respsvc.New as `responder run` builds it (kafka.Group
// generations, the outbox and incidents in a state topic, global rules in a
// global topic; Options.Path "files" keeps the older path), revokes each agent's
// credential at a local Kong Admin API and posts an alert to a local Slack
// Web API (internal/testkit/testsrv, which answer at once). The latencies are from
// the wall-clock time just before each write to the arrival of the DELETE
// at Kong and of the alert at Slack. `agentwatch bench responder` runs it.
package respbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/respsvc"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
	"github.com/agentwatch/agentwatch/internal/tools/benchkit"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/inventory"
)

// Options say what to measure. The zero value of each field is its default.
// Brokers, ClickHouse, Partitions and Keep are deliberately the same in
// every benchmark (benchkit.Defaults defaults them), yet plain fields, so
// that an Options literal names them directly.
type Options struct {
	// Brokers are the Kafka brokers; default 127.0.0.1:9092.
	Brokers []string
	// ClickHouse are native-protocol addresses; default 127.0.0.1:9000.
	ClickHouse []string
	// Anomalies is how many anomalies to write, each for its own agent
	// and credential; default 500.
	Anomalies int
	// Rate is the anomalies written per second; default 50.
	Rate float64
	// Partitions of the anomalies topic; default 6.
	Partitions int
	// Wait bounds how long after the last write the benchmark waits for
	// the last revocation and alert; default 2m.
	Wait time.Duration
	// Keep leaves the topic, database and state directory behind.
	Keep bool
	// Instances is how many responders share the work, each with its own
	// reader in the one consumer group and its own state directory, as
	// separate machines would; default 1. They run in this process.
	Instances int
	// Path is what each instance is built on. "kafka" (the default) is
	// what `responder run` builds: respsvc.New with no Stores or Reader,
	// so the instances join the group through kafka.Group generations and
	// keep their outbox and incidents in a scratch state topic and global
	// rules in a scratch global topic. "files" is the older path, kept to
	// compare: ClickHouse stores, a plain group reader per instance and
	// the outbox and incidents in each instance's state directory.
	Path string
	// GroupWait is each instance's responder.group_wait; default 0, so
	// that every alert is posted at once and updated as the actions end.
	// A wait longer than the revocation takes posts the alert with the
	// revocation on it: no card update and no thread note follow.
	GroupWait time.Duration
	// ActionWait is each instance's responder.action_wait: how much
	// longer than GroupWait an alert may wait for its revocation, posted
	// as soon as the revocation is done, with it on the card. 0: it does
	// not wait.
	ActionWait time.Duration
}

// The values of Options.Path.
const (
	PathKafka = "kafka"
	PathFiles = "files"
)

func (o *Options) setDefaults() error {
	benchkit.Defaults(&o.Brokers, &o.ClickHouse, &o.Partitions)
	benchkit.Default(&o.Anomalies, 500)
	benchkit.Default(&o.Rate, 50)
	benchkit.Default(&o.Wait, 2*time.Minute)
	benchkit.Default(&o.Instances, 1)
	benchkit.Default(&o.Path, PathKafka)
	if o.Path != PathKafka && o.Path != PathFiles {
		return fmt.Errorf("respbench: path must be %q or %q, got %q", PathKafka, PathFiles, o.Path)
	}
	if o.Instances < 1 || o.Instances > 16 {
		return fmt.Errorf("respbench: instances must be in [1, 16], got %d", o.Instances)
	}
	if o.GroupWait < 0 || o.GroupWait > time.Minute || o.ActionWait < 0 || o.ActionWait > time.Minute {
		return fmt.Errorf("respbench: group wait and action wait must be in [0, 1m], got %s and %s", o.GroupWait, o.ActionWait)
	}
	if o.Anomalies < 0 || o.Anomalies > 999_999 || o.Rate < 0 || o.Partitions < 0 || o.Wait < 0 {
		return fmt.Errorf("respbench: anomalies must be in [1, 999999] and rate, partitions and wait positive, got %d, %g, %d, %s",
			o.Anomalies, o.Rate, o.Partitions, o.Wait)
	}
	return nil
}

// Report is the outcome of one Run. Each latency list is sorted and runs
// from the wall-clock time taken just before an anomaly's write.
type Report struct {
	Anomalies  int
	Rate       float64 // asked, per second
	Partitions int
	Instances  int
	Path       string
	GroupWait  time.Duration
	ActionWait time.Duration
	// Writing is from the first write started to the last acknowledged.
	Writing time.Duration
	// Acked: the write acknowledged by Kafka (acks=all).
	Acked []time.Duration
	// Fetched: the responder's consumer fetched the record.
	Fetched []time.Duration
	// Handled: the engine queued its actions, marked it handled and the
	// consumer committed its offset.
	Handled []time.Duration
	// Consumer is, per anomaly, from its fetch to its offset committed.
	// The consumer handles what one fetch brings together and marks and
	// commits in the background every respond.DefaultFlushEvery (500ms),
	// so this includes that wait.
	// SeenTime and CommitTime are the total time spent in the handled-set
	// (outbox.Seen) calls and in Kafka offset commits.
	Consumer             []time.Duration
	SeenTime, CommitTime time.Duration
	// SeenCalls counts the handled-set lookups and marks.
	SeenCalls int
	// Revoked: the DELETE of its credential arrived at Kong.
	Revoked []time.Duration
	// Alerted: its alert (a top-level chat.postMessage naming the agent)
	// arrived at Slack.
	Alerted []time.Duration
	// RevokeSpan and AlertSpan are from the first write to the last
	// DELETE and the last alert.
	RevokeSpan, AlertSpan time.Duration
	// SlackPosts and KongRequests count everything the servers received
	// (alerts and thread notes; GETs and DELETEs).
	SlackPosts, SlackAlerts   int
	KongRequests, KongDeletes int
	// NotAlerted describes up to 20 agents whose alert never arrived:
	// the agent and what Slack did receive that names it.
	NotAlerted []string
	// StateWrites are, per state topic, the records written and the
	// produce requests that carried them while the anomalies were
	// measured (every instance together): what the responder costs Kafka.
	StateWrites []TopicWrites
	// SharedWrites are the records and produce requests of the instances'
	// shared produce streams (kstate.Producer), every state topic
	// together: a request that carried several topics counts once here
	// and once in each topic's StateWrites. Topic is empty.
	SharedWrites TopicWrites
}

// TopicWrites counts the writes to one state topic.
type TopicWrites struct {
	Topic             string
	Records, Requests int64
}

// Target is the revocation latency the benchmark checks, the
// gateway's own time excluded: testsrv answers at once.
const Target = time.Second

// String renders the report as a Markdown table, a few lines and a
// one-line summary.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "responder benchmark: %d anomalies for %d agents at %g/s (written in %s, %.1f/s), %d partitions, %d responder instance(s) on the %s path, group_wait %s, action_wait %s; playbook: revoke (kong) then notify (#soc-alerts)\n\n",
		r.Anomalies, r.Anomalies, r.Rate, r.Writing.Round(time.Millisecond), benchkit.Rate(r.Anomalies, r.Writing), r.Partitions, max(r.Instances, 1), r.Path, r.GroupWait, r.ActionWait)
	b.WriteString("| from the anomaly's write to … | n | p50 | p90 | p99 | max |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	// One row per measure, alike in shape only (like SeriesParams.Validate).
	row := func(name string, ds []time.Duration) {
		if len(ds) == 0 && strings.HasPrefix(name, "~") {
			return // on the kafka path the group consumer is not wrapped: no fetch or commit times
		}
		name = strings.TrimPrefix(name, "~")
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s |\n", name, len(ds),
			benchkit.Ms(benchkit.Quantile(ds, .5)), benchkit.Ms(benchkit.Quantile(ds, .9)), benchkit.Ms(benchkit.Quantile(ds, .99)), benchkit.Ms(benchkit.Quantile(ds, 1)))
	}
	row("write acknowledged by Kafka", r.Acked)
	row("~fetched by the responder's consumer", r.Fetched)
	row("~handled: actions queued, offset committed", r.Handled)
	row("~(fetch → offset committed, per anomaly)", r.Consumer)
	row("**revocation: DELETE received by Kong**", r.Revoked)
	row("**alert received by Slack**", r.Alerted)
	fmt.Fprintf(&b, "\nthroughput: %.1f revocations/s (first write → last DELETE %s), %.1f alerts/s (first write → last alert %s)\n",
		benchkit.Rate(len(r.Revoked), r.RevokeSpan), r.RevokeSpan.Round(time.Millisecond), benchkit.Rate(len(r.Alerted), r.AlertSpan), r.AlertSpan.Round(time.Millisecond))
	fmt.Fprintf(&b, "consumer: handled-set lookups and marks took %s in all (%d calls), Kafka offset commits %s in all\n",
		r.SeenTime.Round(time.Millisecond), r.SeenCalls, r.CommitTime.Round(time.Millisecond))
	fmt.Fprintf(&b, "Kong received %d requests (%d DELETEs); Slack %d posts (%d alerts, the rest thread notes)\n",
		r.KongRequests, r.KongDeletes, r.SlackPosts, r.SlackAlerts)
	for _, w := range r.StateWrites {
		fmt.Fprintf(&b, "state topic %s: %d records in %d produce requests (%.2f records, %.2f requests per anomaly)\n",
			w.Topic, w.Records, w.Requests, float64(w.Records)/float64(max(r.Anomalies, 1)), float64(w.Requests)/float64(max(r.Anomalies, 1)))
	}
	if w := r.SharedWrites; w.Requests > 0 {
		fmt.Fprintf(&b, "shared produce stream: %d records in %d produce requests (%.2f requests per anomaly), every state topic together\n",
			w.Records, w.Requests, float64(w.Requests)/float64(max(r.Anomalies, 1)))
	}
	if miss := r.Anomalies - len(r.Revoked); miss > 0 {
		fmt.Fprintf(&b, "MISSING: %d revocations never reached Kong\n", miss)
	}
	if miss := r.Anomalies - len(r.Alerted); miss > 0 {
		fmt.Fprintf(&b, "MISSING: %d alerts never reached Slack\n", miss)
		for _, d := range r.NotAlerted {
			fmt.Fprintf(&b, "  %s\n", d)
		}
	}
	b.WriteString(r.Summary() + "\n")
	return b.String()
}

// Summary is one line: both latencies and whether the target held, which
// asks both p99s to be within Target (every anomaly revoked and alerted).
func (r Report) Summary() string {
	verdict := "met"
	if !r.met() {
		verdict = "NOT met"
	}
	who := "responder"
	if r.Instances > 1 {
		who = fmt.Sprintf("responder ×%d", r.Instances)
	}
	return fmt.Sprintf("%s: %d anomalies at %g/s: revocation p50 %s p99 %s (%d/%d); Slack alert p50 %s p99 %s (%d/%d); target both p99 ≤ %s %s",
		who, r.Anomalies, r.Rate, benchkit.Ms(benchkit.Quantile(r.Revoked, .5)), benchkit.Ms(benchkit.Quantile(r.Revoked, .99)), len(r.Revoked), r.Anomalies,
		benchkit.Ms(benchkit.Quantile(r.Alerted, .5)), benchkit.Ms(benchkit.Quantile(r.Alerted, .99)), len(r.Alerted), r.Anomalies, Target, verdict)
}

// playbook is the one playbook: revoke first, so that the revocation does
// not wait behind the Slack post.
const playbook = `playbooks:
  - name: bench-revoke
    description: respbench; revoke, then alert.
    trigger:
      kinds: [behaviour]
      min_severity: high
    final: true
    steps:
      - revoke: {adapter: kong}
      - notify: {channel: "#soc-alerts"}
`

// Secrets given to the responder through Deps.Getenv.
const (
	slackToken  = "xoxb-respbench"
	slackSecret = "8f2c6a1e4b9d7053e1a2c4b6d8f0a3c5e7b9d1f3"
)

func getenv(k string) string {
	switch k {
	case "SLACK_BOT_TOKEN":
		return slackToken
	case "SLACK_SIGNING_SECRET":
		return slackSecret
	}
	return ""
}

// newConfig writes the playbook file into dir and returns the responder's
// configuration: config.LoadEnv's defaults with the benchmark's keys set.
func newConfig(o Options, dir, suffix string, kong *testsrv.Kong, slack *testsrv.Slack) (config.Config, error) {
	pb := filepath.Join(dir, "playbooks.yaml")
	if err := os.WriteFile(pb, []byte(playbook), 0o600); err != nil {
		return config.Config{}, fmt.Errorf("respbench: %w", err)
	}
	set := map[string]string{
		"kafka.brokers":                strings.Join(o.Brokers, ","),
		"kafka.anomalies_topic":        "bench.anomalies.responder." + suffix,
		"kafka.responder_group":        "bench-responder-" + suffix,
		"kafka.responder_state_topic":  "bench.responder.state." + suffix,
		"kafka.responder_global_topic": "bench.responder.global." + suffix,
		// respsvc.New creates the anomalies, state and global topics as
		// `responder run` would (Run creates the anomalies topic first).
		"kafka.create_topics":       "true",
		"kafka.partitions":          strconv.Itoa(o.Partitions),
		"clickhouse.addr":           strings.Join(o.ClickHouse, ","),
		"clickhouse.database":       "bench_responder_" + suffix,
		"http.addr":                 "",
		"responder.api_addr":        "",
		"responder.playbooks":       pb,
		"responder.state_dir":       filepath.Join(dir, "state"),
		"responder.group_wait":      o.GroupWait.String(),
		"responder.action_wait":     o.ActionWait.String(),
		"responder.revoke_budget":   strconv.Itoa(o.Anomalies + 100 + warmups(o)),
		"responder.kong.admin_url":  kong.URL(),
		"responder.egress_allow":    kong.Addr(),
		"responder.slack.api_url":   slack.URL(),
		"responder.slack.token_env": "SLACK_BOT_TOKEN",
		// The bench measures every alert's latency, so every alert must be
		// posted: the per-channel cap, which would summarise a burst,
		// is off.
		"responder.slack.max_messages_per_minute": "0",
	}
	env := make([]string, 0, len(set))
	for k, v := range set {
		env = append(env, config.EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(k, ".", "_"))+"="+v)
	}
	cfg, err := config.LoadEnv("", nil, env)
	if err != nil {
		return config.Config{}, fmt.Errorf("respbench: config: %w", err)
	}
	return cfg, nil
}

// Run creates a scratch anomalies topic and ClickHouse database, runs the
// responder on them against local Kong and Slack servers, writes
// o.Anomalies anomalies at o.Rate and reports the latencies. It removes
// what it created unless o.Keep. progress receives a line per step (may be
// io.Discard).
//
// Deliberately parallel to detectbench's Run: each step's measurement and
// progress lines are this benchmark's own; what the steps share is benchkit.
func Run(ctx context.Context, o Options, log *slog.Logger, progress io.Writer) (Report, error) {
	log, suffix, err := benchkit.Begin(o.setDefaults, log)
	if err != nil {
		return Report{}, err
	}
	dir, err := os.MkdirTemp("", "respbench-")
	if err != nil {
		return Report{}, fmt.Errorf("respbench: %w", err)
	}
	if o.Keep {
		fmt.Fprintf(progress, "keeping the responder's state in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	kong, slack := testsrv.NewKong(), testsrv.NewSlack()
	defer kong.Close()
	defer slack.Close()
	cfg, err := newConfig(o, dir, suffix, kong, slack)
	if err != nil {
		return Report{}, err
	}
	topic := cfg.Kafka.AnomaliesTopic
	sec, err := kafka.SecurityOf(cfg.Kafka)
	if err != nil {
		return Report{}, fmt.Errorf("respbench: %w", err)
	}
	if err := benchkit.EnsureTopics(ctx, o.Brokers, sec, kafka.TopicSpec{Name: topic, Partitions: o.Partitions, ReplicationFactor: cfg.Kafka.ReplicationFactor}); err != nil {
		return Report{}, fmt.Errorf("respbench: %w", err)
	}
	if !o.Keep {
		// The database name is ours: bench_responder_<digits>.
		// The state and global topics exist only when respsvc.New made
		// them; removing a missing one is logged, not fatal.
		topics := []string{topic}
		if o.Path == PathKafka {
			topics = append(topics, cfg.Kafka.ResponderStateTopic, cfg.Kafka.ResponderGlobalTopic)
		}
		defer benchkit.Scratch{Brokers: o.Brokers, Security: sec, ClickHouse: o.ClickHouse, Topics: topics, Databases: []string{cfg.ClickHouse.Database}}.Remove(log, "respbench")
	} else {
		fmt.Fprintf(progress, "keeping topics %s, %s, %s and database %s\n", topic, cfg.Kafka.ResponderStateTopic, cfg.Kafka.ResponderGlobalTopic, cfg.ClickHouse.Database)
	}
	g := rig{kong: kong, slack: slack, waitGroup: func(ctx context.Context) error {
		return waitForGroup(ctx, o.Brokers, sec, cfg.Kafka.ResponderGroup, min(o.Instances, o.Partitions))
	}}
	for i := range o.Instances {
		icfg := cfg
		if o.Instances > 1 {
			icfg.Responder.StateDir = filepath.Join(dir, fmt.Sprintf("state-%d", i))
		}
		if o.Path == PathKafka {
			// respsvc.New opens everything itself, as `responder run`.
			g.instances = append(g.instances, instance{cfg: icfg})
			continue
		}
		deps, closeStores, err := respsvc.ModeStores(ctx, icfg, log)
		if err != nil {
			return Report{}, fmt.Errorf("respbench: %w", err)
		}
		defer closeStores()
		deps.Console = io.Discard
		reader, err := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Kafka.Brokers, Security: sec, GroupID: cfg.Kafka.ResponderGroup, Topics: []string{topic}}, log)
		if err != nil {
			return Report{}, fmt.Errorf("respbench: anomalies reader: %w", err)
		}
		defer reader.Close()
		g.instances = append(g.instances, instance{cfg: icfg, deps: deps, reader: reader})
	}
	// As the detector writes the anomalies topic (internal/detector/detect),
	// but with batches of at most 100 records: this writer writes one
	// anomaly at a time, and kafka-go allocates (and clears) room for a
	// whole batch per write, 5000 records by default, which cost the
	// machine the benchmark measures about 0.1 ms of CPU per anomaly.
	writer, err := kafka.NewWriter(kafka.WriterConfig{Brokers: cfg.Kafka.Brokers, Security: sec, Topic: topic, BatchSize: 100}, log)
	if err != nil {
		return Report{}, fmt.Errorf("respbench: anomalies writer: %w", err)
	}
	defer writer.Close()
	g.writer = writer
	return measure(ctx, o, g, log, progress)
}

// rig is what a measurement runs on: where anomalies are written, the
// responder's reader and stores (respsvc.Options.Stores), and the servers
// it calls.
type rig struct {
	instances []instance
	writer    bus.Writer
	kong      *testsrv.Kong
	slack     *testsrv.Slack
	// waitGroup, when set, returns once every instance is a member of
	// the responders' group holding partitions.
	waitGroup func(context.Context) error
}

// waitForGroup polls the description of the consumer group until it is
// stable with at least holders members holding partitions: the instances
// join one after the other, and each join moves every partition, which
// is not what the benchmark measures.
func waitForGroup(ctx context.Context, brokers []string, sec kafka.Security, group string, holders int) error {
	client, tr := sec.Client(brokers, 10*time.Second)
	defer tr.CloseIdleConnections()
	last := "not described yet"
	for {
		resp, err := client.DescribeGroups(ctx, &kafkago.DescribeGroupsRequest{GroupIDs: []string{group}})
		switch {
		case err != nil:
			last = err.Error()
		case len(resp.Groups) != 1:
			last = fmt.Sprintf("%d groups described", len(resp.Groups))
		case resp.Groups[0].Error != nil:
			last = resp.Groups[0].Error.Error()
		default:
			g := resp.Groups[0]
			n := 0
			for _, m := range g.Members {
				for _, t := range m.MemberAssignments.Topics {
					if len(t.Partitions) > 0 {
						n++
						break
					}
				}
			}
			if g.GroupState == "Stable" && n >= holders {
				return nil
			}
			last = fmt.Sprintf("state %s, %d members, %d holding partitions", g.GroupState, len(g.Members), n)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("consumer group %s (%s): %w", group, last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// instance is one responder of a rig: its configuration and, on the
// files path only, its stores and reader (nil reader: respsvc.New opens
// the mode's own, as `responder run`).
type instance struct {
	cfg    config.Config
	deps   respond.Deps
	reader bus.Reader
}

// Agent and credential ids: fixed width, so no id is part of another.
func agentID(i int) string      { return fmt.Sprintf("bench-agent-%06d", i) }
func credentialID(i int) string { return fmt.Sprintf("bench-cred-%06d", i) }

// Warm-up agents and credentials: outside agentRE and credentialIndex,
// so their revocations and alerts are never taken for measured ones.
func warmAgentID(i int) string      { return fmt.Sprintf("bench-warmup-%03d", i) }
func warmCredentialID(i int) string { return fmt.Sprintf("bench-warmcred-%03d", i) }

// warmups is how many warm-up anomalies a run writes: a few per partition.
func warmups(o Options) int { return 3 * max(o.Partitions, 1) }

var agentRE = regexp.MustCompile(`bench-agent-(\d{6})`)

// agentIndex returns i of the first agentID(i) in s.
func agentIndex(s string) (int, bool) {
	m := agentRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	i, err := strconv.Atoi(m[1])
	return i, err == nil
}

// credentialIndex returns i of a DELETE path ending in credentialID(i).
func credentialIndex(p string) (int, bool) {
	last, err := url.PathUnescape(path.Base(p))
	if err != nil {
		return 0, false
	}
	s, ok := strings.CutPrefix(last, "bench-cred-")
	if !ok || len(s) != 6 {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	return i, err == nil
}

// registry knows every benchmark agent and its credential, as the agent
// registry file would.
func registry(n, warm int) (*inventory.Registry, error) {
	type agent struct {
		ID           string `json:"id"`
		Role         string `json:"role"`
		Owner        string `json:"owner"`
		CredentialID string `json:"credential_id"`
	}
	agents := make([]agent, n)
	for i := range agents {
		agents[i] = agent{ID: agentID(i), Role: "bench", Owner: "soc@example.com", CredentialID: credentialID(i)}
	}
	for i := range warm {
		agents = append(agents, agent{ID: warmAgentID(i), Role: "bench", Owner: "soc@example.com", CredentialID: warmCredentialID(i)})
	}
	b, err := json.Marshal(map[string]any{"agents": agents})
	if err != nil {
		return nil, err
	}
	return inventory.ParseRegistry("respbench registry", b)
}

// benchAnomaly is the anomaly of agent i: high-severity behaviour driven by
// response bytes, as an exfiltration looks; low severity for warm-ups,
// which match no playbook.
func benchAnomaly(agent, credential string, severity string, now time.Time) anomaly.Anomaly {
	start := now.Truncate(time.Minute).Add(-time.Minute)
	return anomaly.Anomaly{
		V: anomaly.Version, ID: anomaly.ID(agent, start.UnixMilli(), anomaly.Behaviour), AgentID: agent, Role: "bench", Owner: "soc@example.com",
		CredentialID: credential, Kind: anomaly.Behaviour, WindowStartMs: start.UnixMilli(), WindowEndMs: start.Add(time.Minute).UnixMilli(),
		Score: 9.2, Severity: severity, Summary: agent + " pulled 40x its usual response bytes",
		Explanation: []anomaly.Feature{{Name: "response_bytes", Observed: 4.1e7, Expected: 1e6, Surprise: 21.2, Contribution: 0.93}},
		Routes:      []anomaly.RouteCount{{Route: "/customers/{id}", Calls: 812}},
		DetectedMs:  now.UnixMilli(),
	}
}

func message(a anomaly.Anomaly) (bus.Message, error) {
	v, err := json.Marshal(a)
	if err != nil {
		return bus.Message{}, fmt.Errorf("respbench: encode anomaly: %w", err)
	}
	return bus.Message{Key: []byte(a.AgentID), Value: v}, nil
}

// timings are when each record (by key: the agent id) was first fetched
// and first committed, by any instance's reader.
type timings struct {
	mu        sync.Mutex
	fetched   map[string]time.Time
	committed map[string]time.Time
	commits   time.Duration
}

func newTimings() *timings {
	return &timings{fetched: map[string]time.Time{}, committed: map[string]time.Time{}}
}

// timedReader notes its fetches and commits in timings. Fetch and Commit
// may run concurrently.
type timedReader struct {
	bus.Reader
	*timings
}

func (r *timedReader) Fetch(ctx context.Context) (bus.Message, error) {
	m, err := r.Reader.Fetch(ctx)
	if err == nil {
		now := time.Now()
		r.mu.Lock()
		if _, ok := r.fetched[string(m.Key)]; !ok {
			r.fetched[string(m.Key)] = now
		}
		r.mu.Unlock()
	}
	return m, err
}

func (r *timedReader) Commit(ctx context.Context, msgs ...bus.Message) error {
	start := time.Now()
	err := r.Reader.Commit(ctx, msgs...)
	if err == nil {
		now := time.Now()
		r.mu.Lock()
		r.commits += now.Sub(start)
		for _, m := range msgs {
			if _, ok := r.committed[string(m.Key)]; !ok {
				r.committed[string(m.Key)] = now
			}
		}
		r.mu.Unlock()
	}
	return err
}

// timedSeen adds up the time spent in the handled set. Safe for
// concurrent use.
type timedSeen struct {
	outbox.Seen
	mu   sync.Mutex
	took time.Duration
	// calls counts the lookups and marks (each one query or insert).
	calls int
	// add, when set, adds to another timedSeen's total instead (the
	// instances of a rig share one).
	add func(time.Duration)
}

func (s *timedSeen) timed(start time.Time) {
	d := time.Since(start)
	if s.add != nil {
		s.add(d)
		return
	}
	s.mu.Lock()
	s.took += d
	s.calls++
	s.mu.Unlock()
}

func (s *timedSeen) MarkHandled(ctx context.Context, id string) (bool, error) {
	defer s.timed(time.Now())
	return s.Seen.MarkHandled(ctx, id)
}

func (s *timedSeen) Handled(ctx context.Context, id string) (bool, error) {
	defer s.timed(time.Now())
	return s.Seen.Handled(ctx, id)
}

// timedBatchSeen is timedSeen for a Seen that also looks up and marks in
// batches (chstore.Seen), so the responder takes the same path as in
// production.
type timedBatchSeen struct {
	*timedSeen
	b respond.BatchSeen
}

func (s timedBatchSeen) HandledMany(ctx context.Context, ids []string) (map[string]bool, error) {
	defer s.timed(time.Now())
	return s.b.HandledMany(ctx, ids)
}

func (s timedBatchSeen) InsertHandled(ctx context.Context, ids []string) error {
	defer s.timed(time.Now())
	return s.b.InsertHandled(ctx, ids)
}

func (r *timings) committedAt(key string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.committed[key]
	return t, ok
}

// arrivals maps what the servers received back to the anomalies: the
// first DELETE of credentialID(i) and the first top-level alert naming
// agentID(i), for i < n.
func arrivals(n int, reqs []testsrv.KongRequest, posts []testsrv.SlackPost) (revoked, alerted []time.Time, deletes, alerts int) {
	revoked, alerted = make([]time.Time, n), make([]time.Time, n)
	for _, r := range reqs {
		if r.Method != http.MethodDelete {
			continue
		}
		deletes++
		if i, ok := credentialIndex(r.Path); ok && i < n && revoked[i].IsZero() {
			revoked[i] = r.At
		}
	}
	for _, p := range posts {
		if p.Method != "chat.postMessage" || p.ThreadTS != "" {
			continue
		}
		alerts++
		if i, ok := agentIndex(p.Text + p.Blocks); ok && i < n && alerted[i].IsZero() {
			alerted[i] = p.At
		}
	}
	return revoked, alerted, deletes, alerts
}

// notAlerted describes up to most agents without an alert: what the posts
// (warm-ups' included) say about each, so that a missing alert can be told
// from one posted in a thread or under another agent's name.
func notAlerted(alerted []time.Time, posts []testsrv.SlackPost, most int) []string {
	var out []string
	for i, t := range alerted {
		if !t.IsZero() {
			continue
		}
		if len(out) == most {
			break
		}
		id := agentID(i)
		var seen []string
		for _, p := range posts {
			if strings.Contains(p.Text+p.Blocks, id) {
				where := "top-level"
				if p.ThreadTS != "" {
					where = "in thread " + p.ThreadTS
				}
				seen = append(seen, fmt.Sprintf("%s %s: %.80q", p.Method, where, p.Text))
			}
		}
		if len(seen) == 0 {
			seen = []string{"no post names it"}
		}
		out = append(out, id+": "+strings.Join(seen, "; "))
	}
	return out
}

// withoutWarmups drops what the servers received for the warm-up agents.
func withoutWarmups(reqs []testsrv.KongRequest, posts []testsrv.SlackPost) ([]testsrv.KongRequest, []testsrv.SlackPost) {
	reqs = slices.DeleteFunc(reqs, func(r testsrv.KongRequest) bool { return strings.Contains(r.Path, "bench-warmcred-") })
	posts = slices.DeleteFunc(posts, func(p testsrv.SlackPost) bool { return strings.Contains(p.Text+p.Blocks, "bench-warmup-") })
	return reqs, posts
}

// topLevelPosts counts the alerts among posts: top-level chat.postMessage.
func topLevelPosts(posts []testsrv.SlackPost) int {
	k := 0
	for _, p := range posts {
		if p.Method == "chat.postMessage" && p.ThreadTS == "" {
			k++
		}
	}
	return k
}

// latencies returns at[i] − from[i] for every set at[i], sorted, and the
// span from the first from to the last at.
func latencies(from, at []time.Time) ([]time.Duration, time.Duration) {
	var ds []time.Duration
	var last time.Time
	for i, t := range at {
		if t.IsZero() || from[i].IsZero() {
			continue
		}
		ds = append(ds, t.Sub(from[i]))
		if t.After(last) {
			last = t
		}
	}
	slices.Sort(ds)
	var span time.Duration
	if len(from) > 0 && !last.IsZero() {
		span = last.Sub(from[0])
	}
	return ds, span
}

// measure runs the responder on rig and writes the anomalies.
func measure(ctx context.Context, o Options, g rig, log *slog.Logger, progress io.Writer) (Report, error) {
	n := o.Anomalies
	rep := Report{Anomalies: n, Rate: o.Rate, Partitions: o.Partitions, Instances: len(g.instances), Path: o.Path, GroupWait: o.GroupWait, ActionWait: o.ActionWait}
	warm := warmups(o)
	if len(g.instances) > 0 && g.instances[0].reader != nil {
		rep.Path = PathFiles // a rig with its own readers (tests)
	}
	reg, err := registry(n, warm)
	if err != nil {
		return rep, fmt.Errorf("respbench: %w", err)
	}
	for i := range n {
		g.kong.Add(agentID(i), credentialID(i), "key-"+strconv.Itoa(i))
	}
	for i := range warm {
		g.kong.Add(warmAgentID(i), warmCredentialID(i), "warm-key-"+strconv.Itoa(i))
	}
	// seen stays nil when the outbox file keeps the handled set (tests);
	// the instances share one (ClickHouse's table), timed once.
	var seen *timedSeen
	var seenMu sync.Mutex
	wrapSeen := func(s outbox.Seen) outbox.Seen {
		seenMu.Lock()
		defer seenMu.Unlock()
		if seen == nil {
			seen = &timedSeen{}
		}
		ts := &timedSeen{Seen: s}
		// Every instance adds to the one total.
		shared := seen
		ts.add = func(d time.Duration) { shared.mu.Lock(); shared.took += d; shared.calls++; shared.mu.Unlock() }
		if b, ok := s.(respond.BatchSeen); ok {
			return timedBatchSeen{timedSeen: ts, b: b}
		}
		return ts
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr := newTimings()
	// One registry for every instance's state-topic series: the writes
	// they make together.
	stateReg := prometheus.NewRegistry()
	stateMetrics := kstate.NewMetrics(stateReg)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, len(g.instances))
	for i, in := range g.instances {
		// The benchmark's registry and secrets; no API and no metrics
		// endpoint (newConfig leaves their addresses empty).
		ro := respsvc.Options{Log: log.With("instance", i), Getenv: getenv, WrapSeen: wrapSeen,
			Registry: respond.RegistryFunc(func() *inventory.Registry { return reg }), Instance: fmt.Sprintf("respbench-%d", i),
			StateMetrics: stateMetrics}
		if in.reader != nil {
			deps := in.deps
			ro.Stores, ro.Reader = &deps, &timedReader{Reader: in.reader, timings: tr}
		}
		resp, err := respsvc.New(ctx, in.cfg, ro)
		if err != nil {
			stop()
			return rep, fmt.Errorf("respbench: build responder %d: %w", i, err)
		}
		defer resp.Close()
		go func() { done <- resp.Run(runCtx) }()
	}
	stopped := func() error {
		stop()
		var errs []error
		for range g.instances {
			if err := <-done; err != nil {
				errs = append(errs, fmt.Errorf("respbench: responder: %w", err))
			}
		}
		return errors.Join(errs...)
	}

	// Warm up: a few anomalies per partition for agents of their own,
	// until each one's credential is revoked at Kong, so that every
	// instance has joined the group, restored its partitions and taken the
	// whole path once. The group join (seconds) is not what is measured;
	// the warm-ups' DELETEs and alerts are not counted (their ids do not
	// match agentRE or credentialIndex).
	fmt.Fprintf(progress, "starting the responder (group join, warm-up)...\n")
	if g.waitGroup != nil {
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := g.waitGroup(wctx)
		cancel()
		if err != nil {
			return rep, errors.Join(fmt.Errorf("respbench: waiting for every instance to join: %w", err), stopped())
		}
	}
	for i := range warm {
		m, err := message(benchAnomaly(warmAgentID(i), warmCredentialID(i), "high", time.Now()))
		if err != nil {
			return rep, err
		}
		if err := g.writer.Write(ctx, m); err != nil {
			return rep, fmt.Errorf("respbench: write warm-up anomaly: %w; is Kafka running (deploy/kafka.sh up)?", err)
		}
	}
	warmDeadline := time.Now().Add(time.Minute)
	for i := 0; i < warm; {
		if !g.kong.Has(warmCredentialID(i)) {
			i++
			continue
		}
		select {
		case err := <-done:
			return rep, fmt.Errorf("respbench: responder stopped during warm-up: %w", err)
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(warmDeadline) {
			return rep, errors.Join(fmt.Errorf("respbench: the responder revoked %d of %d warm-up credentials in a minute", i, warm), stopped())
		}
	}

	tr.mu.Lock()
	tr.commits = 0
	tr.mu.Unlock()
	writesBefore := stateWrites(stateReg, topicBatches)
	sharedBefore := stateWrites(stateReg, sharedBatches)
	if seen != nil {
		seen.mu.Lock()
		seen.took, seen.calls = 0, 0
		seen.mu.Unlock()
	}

	// Measure: one anomaly per agent at a steady rate. Each one's start
	// is the wall clock just before its write.
	fmt.Fprintf(progress, "writing %d anomalies at %g/s...\n", n, o.Rate)
	wrote, acked := make([]time.Time, n), make([]time.Duration, n)
	interval := time.Duration(float64(time.Second) / o.Rate)
	begin := time.Now()
	step := max(n/5, 1)
	// Each write starts at its own time on its own goroutine, as many
	// detector instances writing at once would: a synchronous write takes a
	// few milliseconds (acks=all), so one writer in a loop could not offer
	// more than a couple of hundred anomalies a second. At most maxWrites
	// are in flight; past that the rate asked is not what is offered, which
	// the Writing line of the report shows.
	const maxWrites = 256
	sem := make(chan struct{}, maxWrites)
	var (
		writes   sync.WaitGroup
		writeMu  sync.Mutex
		writeErr error
	)
	for i := range n {
		if d := time.Until(begin.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-ctx.Done():
				writes.Wait()
				return rep, errors.Join(ctx.Err(), stopped())
			case err := <-done:
				writes.Wait()
				return rep, fmt.Errorf("respbench: responder stopped after %d anomalies: %w", i, err)
			case <-time.After(d):
			}
		}
		// DetectedMs is set, as the detector would, but not used.
		m, err := message(benchAnomaly(agentID(i), credentialID(i), "high", time.Now()))
		if err != nil {
			writes.Wait()
			return rep, errors.Join(err, stopped())
		}
		sem <- struct{}{}
		wrote[i] = time.Now()
		writes.Add(1)
		go func() {
			defer func() { <-sem; writes.Done() }()
			if err := g.writer.Write(ctx, m); err != nil {
				writeMu.Lock()
				writeErr = errors.Join(writeErr, fmt.Errorf("respbench: write anomaly %d: %w", i, err))
				writeMu.Unlock()
				return
			}
			acked[i] = time.Since(wrote[i])
		}()
		if (i+1)%step == 0 {
			fmt.Fprintf(progress, "  %d/%d written; so far %d DELETEs at Kong, %d posts at Slack\n", i+1, n, g.kong.Count(http.MethodDelete), len(g.slack.Posts()))
		}
	}
	writes.Wait()
	rep.Writing = time.Since(begin)
	if writeErr != nil {
		return rep, errors.Join(writeErr, stopped())
	}

	// Wait for the last revocation and alert.
	deadline := time.Now().Add(o.Wait)
	for {
		// Latencies come from the servers' own arrival times, so how
		// often this looks changes none; matching every request to its
		// agent is costly, though, and would take CPU from the responder:
		// only when the counts say all arrived is it done.
		if g.kong.Count(http.MethodDelete) < n+warm || topLevelPosts(g.slack.Posts()) < n+warm {
			if time.Now().After(deadline) {
				fmt.Fprintf(progress, "  gave up after %s: %d DELETEs, %d alerts for %d anomalies\n", o.Wait, g.kong.Count(http.MethodDelete), topLevelPosts(g.slack.Posts()), n)
				break
			}
			select {
			case err := <-done:
				return rep, fmt.Errorf("respbench: responder stopped before every anomaly was revoked and alerted: %w", err)
			case <-ctx.Done():
				return rep, errors.Join(ctx.Err(), stopped())
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		revoked, alerted, _, _ := arrivals(n, g.kong.Requests(), g.slack.Posts())
		got := func(ts []time.Time) int {
			k := 0
			for _, t := range ts {
				if !t.IsZero() {
					k++
				}
			}
			return k
		}
		r, a := got(revoked), got(alerted)
		if r == n && a == n {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(progress, "  gave up after %s: %d/%d revoked, %d/%d alerted\n", o.Wait, r, n, a, n)
			break
		}
		select {
		case err := <-done:
			return rep, fmt.Errorf("respbench: responder stopped with %d/%d revoked, %d/%d alerted: %w", r, n, a, n, err)
		case <-ctx.Done():
			return rep, errors.Join(ctx.Err(), stopped())
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Let the thread notes that follow the revocations land before the
	// counts (they are not measured).
	time.Sleep(200 * time.Millisecond)
	rep.StateWrites = writesSince(writesBefore, stateWrites(stateReg, topicBatches))
	if shared := writesSince(sharedBefore, stateWrites(stateReg, sharedBatches)); len(shared) == 1 {
		rep.SharedWrites = shared[0]
	}
	if err := stopped(); err != nil {
		return rep, err
	}

	reqs, posts := withoutWarmups(g.kong.Requests(), g.slack.Posts())
	revoked, alerted, deletes, alerts := arrivals(n, reqs, posts)
	rep.Revoked, rep.RevokeSpan = latencies(wrote, revoked)
	rep.Alerted, rep.AlertSpan = latencies(wrote, alerted)
	rep.KongRequests, rep.KongDeletes, rep.SlackPosts, rep.SlackAlerts = len(reqs), deletes, len(posts), alerts
	rep.NotAlerted = notAlerted(alerted, g.slack.Posts(), 20)
	fetched, handled := make([]time.Time, n), make([]time.Time, n)
	tr.mu.Lock()
	for i := range n {
		fetched[i], handled[i] = tr.fetched[agentID(i)], tr.committed[agentID(i)]
		if !fetched[i].IsZero() && !handled[i].IsZero() {
			rep.Consumer = append(rep.Consumer, handled[i].Sub(fetched[i]))
		}
	}
	rep.CommitTime = tr.commits
	tr.mu.Unlock()
	slices.Sort(rep.Consumer)
	if seen != nil {
		seen.mu.Lock()
		rep.SeenTime, rep.SeenCalls = seen.took, seen.calls
		seen.mu.Unlock()
	}
	rep.Fetched, _ = latencies(wrote, fetched)
	rep.Handled, _ = latencies(wrote, handled)
	rep.Acked = slices.Clone(acked)
	slices.Sort(rep.Acked)
	return rep, nil
}

// Steps is the outcome of RunSteps: one Report per rate, in order.
type Steps struct {
	Reports []Report
}

// Sustained is the highest rate whose run met the target: every anomaly
// revoked and alerted, and both p99s within Target. Zero when none did.
func (s Steps) Sustained() float64 {
	best := 0.0
	for _, r := range s.Reports {
		if r.met() && r.Rate > best {
			best = r.Rate
		}
	}
	return best
}

// met says every anomaly was revoked and alerted with both p99s within
// Target.
func (r Report) met() bool {
	return len(r.Revoked) == r.Anomalies && len(r.Alerted) == r.Anomalies &&
		benchkit.Quantile(r.Revoked, .99) <= Target && benchkit.Quantile(r.Alerted, .99) <= Target
}

// String renders a table of the steps and the highest sustained rate.
func (s Steps) String() string {
	var b strings.Builder
	b.WriteString("| instances | rate asked | anomalies | offered | revocation p50 / p99 | alert p50 / p99 | revoked, alerted | revocations/s | p99 ≤ 1s |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range s.Reports {
		verdict := "no"
		if r.met() {
			verdict = "yes"
		}
		fmt.Fprintf(&b, "| %d | %g/s | %d | %.1f/s | %s / %s | %s / %s | %d, %d | %.1f | %s |\n", max(r.Instances, 1), r.Rate, r.Anomalies, benchkit.Rate(r.Anomalies, r.Writing),
			benchkit.Ms(benchkit.Quantile(r.Revoked, .5)), benchkit.Ms(benchkit.Quantile(r.Revoked, .99)),
			benchkit.Ms(benchkit.Quantile(r.Alerted, .5)), benchkit.Ms(benchkit.Quantile(r.Alerted, .99)), len(r.Revoked), len(r.Alerted), benchkit.Rate(len(r.Revoked), r.RevokeSpan), verdict)
	}
	if best := s.Sustained(); best > 0 {
		fmt.Fprintf(&b, "\nhighest rate sustained with both p99s ≤ %s: %g/s\n", Target, best)
	} else {
		fmt.Fprintf(&b, "\nno rate was sustained with both p99s ≤ %s\n", Target)
	}
	return b.String()
}

// RunSteps runs Run once per rate, each on its own scratch topic and
// database for d (o.Anomalies = rate × d), and stops after the first rate
// that misses the target: a higher one would only miss it by more.
func RunSteps(ctx context.Context, o Options, rates []float64, d time.Duration, log *slog.Logger, progress io.Writer) (Steps, error) {
	var s Steps
	for _, rate := range rates {
		ro := o
		ro.Rate, ro.Anomalies = rate, max(int(rate*d.Seconds()), 1)
		fmt.Fprintf(progress, "step: %g/s for %s (%d anomalies)\n", rate, d, ro.Anomalies)
		r, err := Run(ctx, ro, log, progress)
		if err != nil {
			return s, err
		}
		fmt.Fprintln(progress, r.Summary())
		s.Reports = append(s.Reports, r)
		if !r.met() {
			break
		}
	}
	return s, nil
}

// kstate's records-per-request histograms: per state topic (labelled by
// topic) and of the shared produce streams (no label).
const (
	topicBatches  = "agentwatch_state_write_batch_records"
	sharedBatches = "agentwatch_state_shared_write_batch_records"
)

// stateWrites reads the records and produce requests per state topic from
// kstate's batch histogram name in reg; a series without a topic label is
// under "".
func stateWrites(reg *prometheus.Registry, name string) map[string]TopicWrites {
	out := map[string]TopicWrites{}
	mfs, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var topic string
			for _, l := range m.GetLabel() {
				if l.GetName() == "topic" {
					topic = l.GetValue()
				}
			}
			h := m.GetHistogram()
			out[topic] = TopicWrites{Topic: topic, Records: int64(h.GetSampleSum()), Requests: int64(h.GetSampleCount())}
		}
	}
	return out
}

// writesSince is after minus before, per topic, sorted by topic.
func writesSince(before, after map[string]TopicWrites) []TopicWrites {
	var out []TopicWrites
	for topic, a := range after {
		b := before[topic]
		out = append(out, TopicWrites{Topic: topic, Records: a.Records - b.Records, Requests: a.Requests - b.Requests})
	}
	slices.SortFunc(out, func(x, y TopicWrites) int { return strings.Compare(x.Topic, y.Topic) })
	return out
}
