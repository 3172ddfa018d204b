package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus"
	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// clusterPartitions is the anomalies topic's partition count in the
// multi-process tests: two per instance, so each holds some after every
// rebalance.
const clusterPartitions = 6

// clusterSessionTimeout is the consumer-group session timeout the
// responder runs with (kafka.Group's default): how long a SIGKILLed
// instance's partitions wait before the coordinator gives them away.
const clusterSessionTimeout = 10 * time.Second

// cluster is several `responder run` processes (the built binary) in one
// consumer group on real Kafka and ClickHouse, with the local Slack and
// Kong stand-ins of e2e. Each instance has its own state directory, as
// separate machines would.
type cluster struct {
	*e2e
	t     *testing.T
	inst  []*itest.Proc // the running process of each instance; nil when down
	env   [][]string    // each instance's extra environment
	w     *kafka.Writer
	dir   string
	creds map[string]string // agent → credential, registered at Kong
}

// newCluster prepares n instances on a fresh 6-partition anomalies topic;
// extra is every instance's extra environment. Start them with startAll.
func newCluster(t *testing.T, ctx context.Context, n int, extra ...string) *cluster {
	t.Helper()
	e := newE2EOn(t, ctx, false, itest.PlainKafka(t))
	topic := e.anomalies + "-multi"
	if err := kafka.EnsureTopics(ctx, e.brokers, e.sec, kafka.TopicSpec{Name: topic, Partitions: clusterPartitions, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
	e.kafka.DeleteTopicsAfter(t, topic)
	e.anomalies = topic
	e.settings["kafka.anomalies_topic"], e.settings["kafka.partitions"] = topic, strconv.Itoa(clusterPartitions)
	// Every test agent is to be revoked automatically; the budget's own
	// tests are elsewhere.
	e.settings["responder.revoke_budget"] = "1000"
	// The channel cap counts per instance: a rolling restart sends one
	// instance most of the alerts within a minute, and past the cap they
	// go into the minute's summary instead of a top-level post. The cap's
	// own tests are elsewhere.
	e.settings["responder.slack.max_messages_per_minute"] = "0"
	w, err := kafka.NewWriter(kafka.WriterConfig{Brokers: e.brokers, Security: e.sec, Topic: topic}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	c := &cluster{e2e: e, t: t, inst: make([]*itest.Proc, n), env: make([][]string, n), w: w, dir: t.TempDir(), creds: map[string]string{}}
	for i := range n {
		c.env[i] = append([]string{config.EnvPrefix + "_RESPONDER_STATE_DIR=" + filepath.Join(c.dir, "instance-"+strconv.Itoa(i))}, extra...)
	}
	return c
}

// start starts instance i and waits for its start line.
func (c *cluster) start(i int) {
	c.t.Helper()
	c.inst[i] = c.startResponder(c.env[i]...)
}

func (c *cluster) startAll() {
	for i := range c.inst {
		c.start(i)
	}
}

// kill SIGKILLs instance i and waits for it to be gone.
func (c *cluster) kill(i int) {
	c.t.Helper()
	p := c.inst[i]
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
	<-p.Done
	c.inst[i] = nil
}

// stop SIGTERMs instance i and waits (a minute at most) for it to end.
func (c *cluster) stop(i int) {
	c.t.Helper()
	p := c.inst[i]
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Done:
	case <-time.After(time.Minute):
		c.t.Fatalf("instance %d did not stop within a minute of SIGTERM:\n%s", i, p.Tail(20))
	}
	c.inst[i] = nil
}

// stopAll stops the running instances gracefully.
func (c *cluster) stopAll() {
	for i, p := range c.inst {
		if p != nil {
			c.stop(i)
		}
	}
}

// byPid returns the instance whose process has pid.
func (c *cluster) byPid(pid int) (int, bool) {
	for i, p := range c.inst {
		if p != nil && p.Cmd.Process.Pid == pid {
			return i, true
		}
	}
	return 0, false
}

// agent registers agent at Kong with a credential of its own.
func (c *cluster) agent(agent string) {
	cred := "cred-" + agent
	c.creds[agent] = cred
	c.kong.Add(agent, cred, "key-of-"+agent)
}

// agentsOnEveryPartition returns one new agent id (registered) per
// anomalies partition, as kafka.PartitionFor places their anomalies.
func (c *cluster) agentsOnEveryPartition(prefix string) []string {
	out := make([]string, clusterPartitions)
	found := 0
	for i := 0; found < clusterPartitions; i++ {
		// Fixed width: no id is a prefix of another, as posts are matched
		// by the id they contain.
		id := fmt.Sprintf("%s-%04d", prefix, i)
		p := kafka.PartitionFor(id, clusterPartitions)
		if out[p] == "" {
			out[p] = id
			c.agent(id)
			found++
		}
	}
	return out
}

// write writes one exfiltration anomaly of agent, n-th of its incident
// (each n gives a new anomaly id and a later window), keyed by agent as
// the detector writes them.
func (c *cluster) write(ctx context.Context, agent string, n int) string {
	c.t.Helper()
	now := time.Now()
	start := now.Add(-20 * time.Minute).Truncate(time.Minute).Add(time.Duration(n) * time.Minute)
	a := anomaly.Anomaly{V: anomaly.Version, ID: anomaly.ID(agent, start.UnixMilli(), anomaly.Behaviour), AgentID: agent, CredentialID: c.creds[agent],
		Kind: anomaly.Behaviour, Severity: "critical", Score: 40, WindowStartMs: start.UnixMilli(), WindowEndMs: start.Add(time.Minute).UnixMilli(),
		DetectedMs: now.UnixMilli(), Summary: "pulled 300 MB in a minute",
		Explanation: []anomaly.Feature{{Name: "response_bytes", Observed: 3e8, Expected: 1e6, Surprise: 40, Contribution: 0.8}}}
	b, err := json.Marshal(a)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.w.Write(ctx, bus.Message{Key: []byte(agent), Value: b}); err != nil {
		c.t.Fatal(err)
	}
	return a.ID
}

// posts returns the Slack posts about agent: top-level alerts and thread
// replies.
func (c *cluster) posts(agent string) (roots, replies []testsrv.SlackPost) {
	return splitThreads(c.slack.Posts(), func(p testsrv.SlackPost) bool {
		return p.Method == "chat.postMessage" && strings.Contains(p.Blocks+p.Text, agent)
	})
}

// deletes returns the DELETEs of agent's credential Kong received.
func (c *cluster) deletes(agent string) []testsrv.KongRequest {
	var out []testsrv.KongRequest
	for _, r := range c.kong.Requests() {
		if r.Method == http.MethodDelete && strings.HasSuffix(r.Path, "/"+c.creds[agent]) {
			out = append(out, r)
		}
	}
	return out
}

// auditOf returns agent's audit records, those of anomaly id only when
// id is not empty.
func (c *cluster) auditOf(agent, id string) []audit.Record {
	out, _ := c.cli("audit", "--agent", agent, "--json")
	var recs []audit.Record
	for line := range strings.Lines(out) {
		var page struct {
			Records []audit.Record `json:"records"`
		}
		var r audit.Record
		switch {
		case json.Unmarshal([]byte(line), &page) == nil && page.Records != nil:
			for _, r := range page.Records {
				if id == "" || r.AnomalyID == id {
					recs = append(recs, r)
				}
			}
		case json.Unmarshal([]byte(line), &r) == nil && r.Action != "":
			if id == "" || r.AnomalyID == id {
				recs = append(recs, r)
			}
		}
	}
	return recs
}

// revokeRecords counts agent's revoke records in the audit trail.
func (c *cluster) revokeRecords(agent string) int {
	out, _ := c.cli("audit", "--agent", agent, "--json")
	return strings.Count(out, `"action":"revoke"`)
}

// pollUntil polls cond every 250ms until it holds or d passed.
func pollUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(250 * time.Millisecond)
	}
	return cond()
}

// tails is the last log lines of every instance that ran, for a failure.
func (c *cluster) tails() string {
	var b strings.Builder
	for i, p := range c.procs {
		fmt.Fprintf(&b, "--- process %d (pid %d):\n%s\n", i, p.Cmd.Process.Pid, p.Tail(6))
	}
	return b.String()
}

// checkOnce checks that agent's incident was alerted once (one top-level
// post, every reply in its thread), revoked once at Kong and recorded
// once in the audit trail.
func (c *cluster) checkOnce(agent string) (root testsrv.SlackPost, ok bool) {
	c.t.Helper()
	roots, replies := c.posts(agent)
	ok = true
	if len(roots) != 1 {
		c.t.Errorf("%s: %d top-level alerts, want 1 (lost or posted twice)", agent, len(roots))
		ok = false
	}
	if len(roots) > 0 {
		root = roots[0]
		for _, r := range replies {
			if r.ThreadTS != root.TS {
				c.t.Errorf("%s: a reply in thread %s, not the incident's %s: %.80s", agent, r.ThreadTS, root.TS, r.Text)
				ok = false
			}
		}
	}
	if d := len(c.deletes(agent)); d != 1 {
		c.t.Errorf("%s: Kong saw %d DELETEs of its credential, want 1", agent, d)
		ok = false
	}
	if n := c.revokeRecords(agent); n != 1 {
		c.t.Errorf("%s: %d revoke records in the audit trail, want 1", agent, n)
		ok = false
	}
	return root, ok
}

// TestIntegrationMultiKillBeforeAction: three responders, the one acting
// on an agent SIGKILLed after it marked the revocation in flight and
// before it called Kong.
func TestIntegrationMultiKillBeforeAction(t *testing.T) {
	multiKill(t, "pause-before-revoke")
}

// TestIntegrationMultiKillAfterActionBeforeRecord: SIGKILLed after the
// revocation reached Kong and before it was recorded.
func TestIntegrationMultiKillAfterActionBeforeRecord(t *testing.T) {
	multiKill(t, "pause-after-revoke")
}

// TestIntegrationMultiKillAfterRecordBeforeCommit: SIGKILLed after the
// anomaly's actions ran and were recorded, before its offset was
// committed, so a survivor is handed the anomaly again.
func TestIntegrationMultiKillAfterRecordBeforeCommit(t *testing.T) {
	multiKill(t, "pause-before-commit")
}

// multiKill runs three instances, SIGKILLs the one that reaches point
// (respsvc.Failpoints) while acting on a victim agent, and checks that the
// survivors finish the victim's incident without losing or repeating
// anything, take over the dead instance's partitions within the session
// timeout plus 5 s (every partition's new anomaly gets its revocation by
// then), and thread a later anomaly of the incident into its alert.
func multiKill(t *testing.T, point string) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	marker := filepath.Join(t.TempDir(), "paused")
	c := newCluster(t, ctx, 3, "RESPONDER_FAILPOINT="+point+":"+marker)
	victim := "mp-victim-" + itest.RandHex(3)
	c.agent(victim)
	c.startAll()

	c.write(ctx, victim, 0)
	if !pollUntil(90*time.Second, func() bool { _, err := os.Stat(marker); return err == nil }) {
		t.Fatalf("no instance reached %s in 90s:\n%s", point, c.tails())
	}
	b, _ := os.ReadFile(marker)
	pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	dead, ok := c.byPid(pid)
	if !ok {
		t.Fatalf("the marker names pid %d, which is no instance: %q", pid, b)
	}
	switch point {
	case "pause-before-revoke":
		if d := len(c.deletes(victim)); d != 0 {
			t.Fatalf("Kong saw %d DELETEs before the revocation was sent: the failpoint is in the wrong place", d)
		}
	case "pause-after-revoke":
		if d := len(c.deletes(victim)); d != 1 {
			t.Fatalf("Kong saw %d DELETEs at the failpoint after the revocation, want 1", d)
		}
	case "pause-before-commit":
		// The actions run off the consumer's path: let them be done and
		// recorded while the commit hangs.
		if !pollUntil(60*time.Second, func() bool {
			roots, _ := c.posts(victim)
			return len(roots) > 0 && c.revokeRecords(victim) > 0
		}) {
			t.Fatalf("the victim's alert and recorded revocation did not come while the commit hung:\n%s", c.tails())
		}
	}
	c.kill(dead)
	killed := time.Now()
	t.Logf("instance %d SIGKILLed at %s", dead, point)

	// A new anomaly on every partition: those of the dead instance's
	// partitions are acted on once a survivor owns them.
	probes := c.agentsOnEveryPartition("mp-probe-" + itest.RandHex(3))
	for _, a := range probes {
		c.write(ctx, a, 0)
	}
	bound := clusterSessionTimeout + 5*time.Second
	allRevoked := func() bool {
		for _, a := range probes {
			if len(c.deletes(a)) == 0 {
				return false
			}
		}
		return true
	}
	pollUntil(bound+30*time.Second, allRevoked)
	var failover time.Duration
	for _, a := range probes {
		d := c.deletes(a)
		if len(d) == 0 {
			t.Errorf("partition %d: agent %s never revoked after the kill", kafka.PartitionFor(a, clusterPartitions), a)
			continue
		}
		failover = max(failover, d[0].At.Sub(killed))
	}
	t.Logf("every partition acted on %s after the SIGKILL (bound: session timeout %s + 5s)", failover.Round(time.Millisecond), clusterSessionTimeout)
	if failover > bound {
		t.Errorf("the survivors took %s to act on every partition after the SIGKILL, over the session timeout plus 5s (%s)", failover.Round(time.Millisecond), bound)
	}

	// The victim's incident is finished by a survivor, once.
	pollUntil(60*time.Second, func() bool {
		roots, _ := c.posts(victim)
		return len(roots) > 0 && len(c.deletes(victim)) > 0
	})
	c.quiet(5*time.Second, time.Minute)
	root, ok := c.checkOnce(victim)
	for _, a := range probes {
		c.checkOnce(a)
	}
	if !ok {
		t.Logf("instances:\n%s", c.tails())
	}

	// A later anomaly of the incident joins it on the survivor. The agent
	// is contained (its credential revoked), so by design its later
	// anomalies are recorded in the incident, with evidence, and not
	// alerted again: the survivor can only know that from the incident
	// state it restored. A survivor without it would open a new incident
	// and post a second top-level alert.
	later := c.write(ctx, victim, 1)
	var laterRecs []audit.Record
	pollUntil(60*time.Second, func() bool {
		laterRecs = c.auditOf(victim, later)
		return slices.ContainsFunc(laterRecs, func(r audit.Record) bool { return r.Action == "notify" })
	})
	c.quiet(5*time.Second, time.Minute)
	incident := ""
	for _, r := range c.auditOf(victim, "") {
		if r.Action == "revoke" && r.Result == audit.ResultOK {
			incident = r.IncidentID
		}
	}
	notified := false
	for _, r := range laterRecs {
		if r.IncidentID != "" && r.IncidentID != incident {
			t.Errorf("the later anomaly's %s record is in incident %s, not the original %s", r.Action, r.IncidentID, incident)
		}
		if r.Action == "notify" {
			notified = true
			if r.Result != audit.ResultSkipped || !strings.Contains(r.Detail, "suppressed: the agent's credential is revoked") {
				t.Errorf("the later anomaly's alert: %s %q, want it skipped as suppressed by the revocation", r.Result, r.Detail)
			}
		}
	}
	if !notified || incident == "" {
		t.Errorf("no notify record for the later anomaly %s (records %v) or no revoked incident (%q)", later, laterRecs, incident)
	}
	roots, rs := c.posts(victim)
	if len(roots) != 1 {
		t.Errorf("after a later anomaly of the incident: %d top-level alerts, want 1", len(roots))
	}
	if root.TS == "" {
		t.Errorf("the incident had no alert")
	}
	for _, r := range rs {
		if root.TS != "" && r.ThreadTS != root.TS {
			t.Errorf("a post about the incident is in thread %s, not its original %s", r.ThreadTS, root.TS)
		}
	}
	c.stopAll()
	t.Logf("%s: took %s", t.Name(), time.Since(began).Round(time.Second))
}

// TestIntegrationMultiRollingRestart restarts each of three responders in
// turn, gracefully, while anomalies for new agents keep coming: every
// agent must be alerted once and revoked once, nothing lost or repeated.
func TestIntegrationMultiRollingRestart(t *testing.T) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	c := newCluster(t, ctx, 3)
	const n = 36
	agents := make([]string, n)
	tag := itest.RandHex(3)
	for i := range agents {
		agents[i] = fmt.Sprintf("mp-roll-%s-%02d", tag, i)
		c.agent(agents[i])
	}
	c.startAll()

	wrote := make(chan error, 1)
	go func() {
		defer close(wrote)
		// About 1.2 per second, over the three restarts.
		for _, a := range agents {
			select {
			case <-ctx.Done():
				wrote <- ctx.Err()
				return
			case <-time.After(800 * time.Millisecond):
			}
			c.write(ctx, a, 0)
		}
	}()
	for i := range c.inst {
		time.Sleep(3 * time.Second)
		c.stop(i)
		c.start(i)
		t.Logf("instance %d restarted", i)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	pollUntil(60*time.Second, func() bool {
		for _, a := range agents {
			if roots, _ := c.posts(a); len(roots) == 0 || len(c.deletes(a)) == 0 {
				return false
			}
		}
		return true
	})
	c.quiet(5*time.Second, time.Minute)
	bad := 0
	for _, a := range agents {
		if _, ok := c.checkOnce(a); !ok {
			bad++
		}
	}
	if bad > 0 {
		t.Logf("%d of %d agents lost or repeated; instances:\n%s", bad, n, c.tails())
	}
	c.stopAll()
	t.Logf("%d anomalies through a rolling restart of 3 instances: took %s", n, time.Since(began).Round(time.Second))
}

// TestIntegrationMultiStalledInstanceStopsWithoutActing: the instance
// revoking an agent stands still (SIGSTOP) between marking the revocation
// in flight and calling Kong, longer than the group's session. The group
// gives its partitions to the other instance, which finishes the incident
// (the revocation recovered, the alert posted). When the stalled instance
// resumes, it must not call Kong or post again, nor write its stale state:
// it sees its own stall and stops, saying why.
func TestIntegrationMultiStalledInstanceStopsWithoutActing(t *testing.T) {
	began := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	marker := filepath.Join(t.TempDir(), "held")
	c := newCluster(t, ctx, 2, "RESPONDER_FAILPOINT=hold-before-revoke:"+marker)
	victim := "mp-stall-" + itest.RandHex(3)
	c.agent(victim)
	c.startAll()

	c.write(ctx, victim, 0)
	if !pollUntil(90*time.Second, func() bool { _, err := os.Stat(marker); return err == nil }) {
		t.Fatalf("no instance reached the revocation in 90s:\n%s", c.tails())
	}
	b, _ := os.ReadFile(marker)
	pid, _ := strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
	held, ok := c.byPid(pid)
	if !ok {
		t.Fatalf("the marker names pid %d, which is no instance: %q", pid, b)
	}
	p := c.inst[held]
	if err := p.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	t.Logf("instance %d stopped (SIGSTOP) before calling Kong", held)

	// The other instance takes the partition over and finishes the
	// incident: the revocation found in flight runs again, recovered.
	if !pollUntil(clusterSessionTimeout+60*time.Second, func() bool {
		roots, _ := c.posts(victim)
		return len(c.deletes(victim)) > 0 && len(roots) > 0
	}) {
		_ = p.Cmd.Process.Signal(syscall.SIGCONT)
		t.Fatalf("the other instance did not finish the incident while instance %d stood still:\n%s", held, c.tails())
	}
	t.Logf("the other instance revoked %s %s after instance %d stood still", victim, c.deletes(victim)[0].At.Sub(stopped).Round(time.Millisecond), held)

	// Resume it past its hold point: its revocation goes on to Kong,
	// unless it sees that it stood still.
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	if err := p.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done:
		c.inst[held] = nil
		if p.Err == nil {
			t.Errorf("instance %d exited 0 after its stall; want a failure", held)
		}
		if lines := p.Lines("did not run for"); len(lines) == 0 {
			t.Errorf("instance %d did not say it stood still:\n%s", held, p.Tail(30))
		}
	case <-time.After(30 * time.Second):
		t.Errorf("instance %d still runs 30 s after it resumed from a stall past its session", held)
		c.quiet(3*time.Second, 30*time.Second)
		c.kill(held)
	}
	c.quiet(3*time.Second, 30*time.Second)
	if d := c.deletes(victim); len(d) != 1 {
		t.Errorf("Kong saw %d DELETEs of %s, want 1 (the stalled instance called Kong after it resumed)", len(d), victim)
	}
	if _, ok := c.checkOnce(victim); !ok {
		t.Logf("instances:\n%s", c.tails())
	}
	t.Logf("a stall past the %s session: took %s", clusterSessionTimeout, time.Since(began).Round(time.Second))
}
