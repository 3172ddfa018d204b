package respsvc

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/syncbuf"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

const movePlaybooks = `
playbooks:
  - name: exfil
    trigger: {kinds: [behaviour]}
    final: true
    steps:
      - revoke: {adapter: kong}
      - notify: {channel: "#soc-alerts"}
  - name: zombie
    trigger: {kinds: [zombie_route]}
    final: true
    steps:
      - notify: {channel: "#soc-alerts"}
`

// instance is one in-process responder of the test's group.
type instance struct {
	cfg  config.Config
	r    *Responder
	stop context.CancelFunc
	done chan error
}

// TestIntegrationStateMovesWithPartition runs two responders in one
// consumer group on real Kafka and ClickHouse, stops one, and checks that
// its agents' incidents and outbox moved to the other with their anomaly
// partitions: the next anomaly of a revoked agent neither revokes nor
// alerts again, and the next anomaly of an alerted agent goes into the
// thread the stopped instance opened.
func TestIntegrationStateMovesWithPartition(t *testing.T) {
	k := itest.PlainKafka(t)
	chAddr := itest.ClickHouseAddr(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	sec := k.Security(t)
	suffix := itest.RandHex(4)
	topic, state, global, db := "it-move-"+suffix+".anomalies", "it-move-"+suffix+".state", "it-move-"+suffix+".global", "it_move_"+suffix
	const parts = 4
	if err := kafka.EnsureTopics(ctx, k.Brokers, sec, kafka.TopicSpec{Name: topic, Partitions: parts, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	k.DeleteTopicsAfter(t, topic, state, global)
	itest.DropDatabaseAfter(t, chAddr, db)
	slack, kong := testsrv.NewSlack(), testsrv.NewKong()
	defer slack.Close()
	defer kong.Close()
	dir := t.TempDir()
	pb := filepath.Join(dir, "playbooks.yaml")
	if err := os.WriteFile(pb, []byte(movePlaybooks), 0o600); err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{
		"kafka.brokers": strings.Join(k.Brokers, ","), "kafka.anomalies_topic": topic, "kafka.partitions": fmt.Sprint(parts),
		"kafka.responder_group": "it-move-" + suffix, "kafka.responder_state_topic": state, "kafka.responder_global_topic": global,
		"clickhouse.addr": strings.Join(chAddr, ","), "clickhouse.database": db,
		"http.addr": "", "responder.api_addr": "", "responder.playbooks": pb, "responder.group_wait": "0s",
		"responder.kong.admin_url": kong.URL(), "responder.egress_allow": kong.Addr(), "responder.slack.api_url": slack.URL(),
		"responder.slack.token_env": "SLACK_BOT_TOKEN", "responder.slack.max_messages_per_minute": "0",
		// One follow-up per anomaly (no summaries): each agent's second
		// anomaly shows which thread the survivor posts into.
		"responder.slack.digest_interval": "0s",
	}
	for key, v := range k.Settings() {
		settings[key] = v
	}
	getenv := func(key string) string {
		if key == "SLACK_BOT_TOKEN" {
			return "xoxb-move"
		}
		return ""
	}
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("responder logs:\n%s", logs.String())
		}
	})
	start := func(name string) *instance {
		s := map[string]string{"responder.state_dir": filepath.Join(dir, name)}
		for key, v := range settings {
			s[key] = v
		}
		var env []string
		for key, v := range s {
			env = append(env, config.EnvPrefix+"_"+strings.ToUpper(strings.ReplaceAll(key, ".", "_"))+"="+v)
		}
		cfg, err := config.LoadEnv("", nil, env)
		if err != nil {
			t.Fatal(err)
		}
		r, err := New(ctx, cfg, Options{Log: log.With("instance", name), Getenv: getenv, Instance: name})
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		rctx, stop := context.WithCancel(ctx)
		in := &instance{cfg: cfg, r: r, stop: stop, done: make(chan error, 1)}
		go func() { in.done <- r.Run(rctx) }()
		return in
	}
	halt := func(in *instance) {
		in.stop()
		if err := <-in.done; err != nil {
			t.Errorf("responder run: %v", err)
		}
		if err := in.r.Close(); err != nil {
			t.Errorf("responder close: %v", err)
		}
	}
	a := start("a")
	b := start("b")
	defer func() {
		halt(b)
	}()
	owned := func(in *instance) int {
		n := 0
		for p := range int32(parts) {
			if in.r.GroupConsumer.Owner.OwnsPartition(p) {
				n++
			}
		}
		return n
	}
	waitUntil(t, "both instances to own partitions", 90*time.Second, func() bool {
		na, nb := owned(a), owned(b)
		return na > 0 && nb > 0 && na+nb == parts
	})

	// One exfiltrating and one zombie agent per partition, so whichever
	// partitions the stopped instance held, agents of both kinds move.
	var exfil, zombie []string
	for i := 0; len(exfil) < parts || len(zombie) < parts; i++ {
		id := fmt.Sprintf("move-agent-%03d", i)
		p := int(kafka.PartitionFor(id, parts))
		switch {
		case countIn(exfil, p, parts) == 0:
			exfil = append(exfil, id)
			kong.Add(id, "cred-"+id, "key-"+id)
		case countIn(zombie, p, parts) == 0:
			zombie = append(zombie, id)
		}
	}
	w, err := kafka.NewWriter(kafka.WriterConfig{Brokers: k.Brokers, Security: sec, Topic: topic}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	send := func(round int) {
		t.Helper()
		var msgs []bus.Message
		now := time.Now().UnixMilli()
		for _, id := range append(append([]string(nil), exfil...), zombie...) {
			kind, sev := anomaly.ZombieRoute, "medium"
			if contains(exfil, id) {
				kind, sev = anomaly.Behaviour, "critical"
			}
			an := anomaly.Anomaly{V: anomaly.Version, ID: fmt.Sprintf("%s-%d", id, round), AgentID: id, CredentialID: "cred-" + id, Kind: kind,
				Severity: sev, Score: 20, WindowStartMs: now - 120_000, WindowEndMs: now - 60_000, DetectedMs: now, Summary: "round " + fmt.Sprint(round)}
			v, _ := json.Marshal(an)
			msgs = append(msgs, bus.Message{Key: []byte(id), Value: v})
		}
		if err := w.Write(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
	}
	send(1)
	waitUntil(t, "every agent's alert and every revocation", 60*time.Second, func() bool {
		for _, id := range append(append([]string(nil), exfil...), zombie...) {
			if roots, _ := postsOf(slack, id); len(roots) != 1 {
				return false
			}
		}
		for _, id := range exfil {
			if kong.Has("cred-" + id) {
				return false
			}
		}
		return true
	})
	var moved []string
	for _, id := range append(append([]string(nil), exfil...), zombie...) {
		if a.r.Ownership.Owns(id) {
			moved = append(moved, id)
		}
	}
	if len(moved) == 0 {
		t.Fatal("the first instance owns no test agent")
	}
	stopped := time.Now()
	halt(a)
	waitUntil(t, "the survivor to own every partition", 60*time.Second, func() bool { return owned(b) == parts })
	t.Logf("survivor owns all %d partitions %s after the other stopped; %d agents moved: %v", parts, time.Since(stopped).Round(time.Millisecond), len(moved), moved)

	send(2)
	waitUntil(t, "the zombie agents' second anomaly in their threads", 60*time.Second, func() bool {
		for _, id := range zombie {
			if _, replies := postsOf(slack, id); len(replies) < 1 {
				return false
			}
		}
		return true
	})
	quiet(slack, kong, 3*time.Second, 30*time.Second)
	for _, id := range zombie {
		roots, replies := postsOf(slack, id)
		if len(roots) != 1 {
			t.Errorf("%s: %d top-level alerts, want 1", id, len(roots))
			continue
		}
		for _, r := range replies {
			if r.ThreadTS != roots[0].TS {
				t.Errorf("%s: a reply went to thread %s, not the incident's %s", id, r.ThreadTS, roots[0].TS)
			}
		}
	}
	// What `responder incidents` and `responder outbox list` read: every
	// agent's incident, none of the steps left open.
	// An incident card's update may be scheduled for its next 10-second
	// slot after the responders went quiet: it is waited for.
	var shared SharedState
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(time.Second) {
		var err error
		if shared, err = ReadSharedState(ctx, b.cfg, nil); err != nil {
			t.Fatal(err)
		}
		open := 0
		for _, e := range shared.Outbox {
			if e.State.Open() {
				open++
			}
		}
		if open == 0 || time.Now().After(deadline) {
			break
		}
	}
	agents := map[string]bool{}
	for _, in := range shared.Incidents {
		agents[in.AgentID] = true
	}
	for _, id := range append(append([]string(nil), exfil...), zombie...) {
		if !agents[id] {
			t.Errorf("the shared state has no incident of %s", id)
		}
	}
	for _, e := range shared.Outbox {
		if e.State.Open() {
			t.Errorf("step %s is still %s after the responders went quiet", e.Key, e.State)
		}
	}
	for _, id := range exfil {
		if roots, _ := postsOf(slack, id); len(roots) != 1 {
			t.Errorf("%s: %d top-level alerts, want 1", id, len(roots))
		}
		if n := deletesOf(kong, "cred-"+id); n != 1 {
			t.Errorf("%s: Kong saw %d DELETEs, want 1", id, n)
		}
	}
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// countIn counts the ids of partition p.
func countIn(ids []string, p, parts int) int {
	n := 0
	for _, id := range ids {
		if int(kafka.PartitionFor(id, parts)) == p {
			n++
		}
	}
	return n
}

func postsOf(s *testsrv.Slack, agent string) (roots, replies []testsrv.SlackPost) {
	for _, p := range s.Posts() {
		if !strings.Contains(p.Text+p.Blocks, agent) || p.Method == "chat.update" { // a card kept current: no new message
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

func deletesOf(k *testsrv.Kong, cred string) int {
	n := 0
	for _, r := range k.Requests() {
		if r.Method == http.MethodDelete && strings.HasSuffix(r.Path, "/"+cred) {
			n++
		}
	}
	return n
}

func waitUntil(t *testing.T, what string, max time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(max)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", max, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// quiet waits until neither server has heard anything for d (at most max).
func quiet(s *testsrv.Slack, k *testsrv.Kong, d, max time.Duration) {
	deadline := time.Now().Add(max)
	last, since := len(s.Posts())+len(k.Requests()), time.Now()
	for time.Now().Before(deadline) && time.Since(since) < d {
		time.Sleep(100 * time.Millisecond)
		if n := len(s.Posts()) + len(k.Requests()); n != last {
			last, since = n, time.Now()
		}
	}
}
