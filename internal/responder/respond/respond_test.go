package respond

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/global"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

const testSecret = "8f1c0d2e3b4a59687766554433221100ffeeddcc"

const testPlaybooks = `
playbooks:
  - name: exfiltration
    trigger: {kinds: [behaviour], features: [response_bytes]}
    final: true
    steps:
      - snapshot: {before: 10m, after: 1m}
      - notify: {channel: "#soc-alerts"}
      - revoke: {adapter: kong}
  - name: budgeted
    trigger: {kinds: [new_source_ip]}
    final: true
    steps:
      - revoke: {adapter: denylist}
  - name: gated
    trigger: {kinds: [zombie_route]}
    final: true
    steps:
      - notify: {channel: "#soc-alerts"}
      - approve: {channel: "#soc-alerts", timeout: 1h}
      - revoke: {adapter: denylist}
  - name: slow-down
    trigger: {kinds: [unapproved_route]}
    final: true
    steps:
      - throttle: {adapter: kong, rate_per_minute: 30}
        ttl: 1s
  - name: fleet
    trigger: {kinds: [global_event]}
    final: true
    steps:
      - notify: {channel: "#soc-fleet"}
  - name: contain
    manual_only: true
    steps:
      - notify: {channel: "#soc-alerts"}
      - revoke: {adapter: kong}
`

// rig is a responder on files, with a recording Slack and a Kong server.
type rig struct {
	t        *testing.T
	svc      *Service
	slack    *testsrv.Slack
	kong     *testsrv.Kong
	events   *evidence.MemSource
	feedback *memFeedback
	cancel   context.CancelFunc
	done     chan error
	cfg      config.Config
	// playbooks replaces testPlaybooks; now replaces the engine's clock;
	// deps, when set, changes the Deps Build gets.
	playbooks string
	now       func() time.Time
	// stateLog, when set, makes the rig a distributed instance: its outbox
	// and incidents live in stateLog, owned through owner (every
	// partition, restored at start), with seen as the shared handled set.
	stateLog partstate.Changelog
	seen     outbox.Seen
	owner    *partstate.Owner
	// glob, when set, is the distributed mode's global rules.
	glob *global.Rules
	deps func(*Deps)
}

type memFeedback struct {
	mu sync.Mutex
	vs []anomaly.Verdict
}

func (f *memFeedback) Put(_ context.Context, v anomaly.Verdict) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vs = append(f.vs, v)
	return nil
}

// testLedgerKey lets the rigs' ledgers keep Kong keys for restore.
var testLedgerKey = func() string {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		panic(err)
	}
	return id.String()
}()

func newRig(t *testing.T, mod func(*config.Config)) *rig {
	t.Helper()
	return newRigWith(t, func(r *rig) {
		if mod != nil {
			mod(&r.cfg)
		}
	})
}

// newRigWith is newRig with a hook that may change the rig (its
// playbooks, its clock) as well as its configuration before it starts.
func newRigWith(t *testing.T, mod func(*rig)) *rig {
	t.Helper()
	cfg, err := config.LoadEnv("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, slack: testsrv.NewSlack(), kong: testsrv.NewKong(), events: &evidence.MemSource{}, feedback: &memFeedback{}}
	t.Cleanup(r.slack.Close)
	t.Cleanup(r.kong.Close)
	rc := &cfg.Responder
	rc.StateDir = t.TempDir()
	rc.GroupWait = 0
	rc.Kong.AdminURL = r.kong.URL()
	rc.LedgerKey = testLedgerKey
	rc.EgressAllow = []string{r.kong.Addr()}
	rc.Slack.APIURL = r.slack.URL()
	rc.RevokeBudget = 5
	rc.RevokeInterval = time.Minute
	// The analysts are a user group: the responder resolves it.
	rc.Slack.Responders = []string{"S0SOC"}
	r.slack.SetGroup("S0SOC", "U0ANALYST", "U0OTHER")
	r.cfg = cfg
	if mod != nil {
		mod(r)
	}
	r.start()
	return r
}

func (r *rig) start() {
	t := r.t
	src := testPlaybooks
	if r.playbooks != "" {
		src = r.playbooks
	}
	set, err := playbooks.Parse("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": testSecret}
	d := Deps{Set: set, Events: r.events, Feedback: r.feedback, Getenv: func(k string) string { return env[k] }, Now: r.now, Global: r.glob}
	if r.stateLog != nil {
		r.owner = partstate.NewOwner(r.stateLog, nil)
		d.Owner, d.Seen = r.owner, r.seen
	}
	if r.deps != nil {
		r.deps(&d)
	}
	svc, err := Build(r.cfg, d, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if r.owner != nil {
		var all []int32
		for p := range int32(r.owner.Partitions()) {
			all = append(all, p)
		}
		if err := r.owner.Assign(context.Background(), all); err != nil {
			t.Fatal(err)
		}
	}
	r.svc = svc
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- svc.Run(ctx) }()
	t.Cleanup(r.stop)
}

func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil && err != context.Canceled {
		r.t.Errorf("service run: %v", err)
	}
	r.cancel = nil
	r.svc.Close()
}

// settle waits until the outbox has no open entry due within a minute.
func (r *rig) settle() {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		open, err := r.svc.Worker.Store.List(context.Background(), outbox.StatePending, outbox.StateInFlight)
		if err != nil {
			r.t.Fatal(err)
		}
		busy := false
		for _, e := range open {
			if time.Until(e.NextAttempt) < time.Minute && !laterCardUpdate(e) && !laterSnapshot(e) {
				busy = true
			}
		}
		if !busy {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	open, _ := r.svc.Worker.Store.List(context.Background(), outbox.StatePending, outbox.StateInFlight)
	for _, e := range open {
		r.t.Logf("open: %s %s %s next %s err %s", e.Key, e.Kind, e.State, e.NextAttempt, e.LastError)
	}
	r.t.Fatal("outbox did not settle in 10s")
}

// laterCardUpdate reports whether e is the update of a card scheduled for
// its next slot (refreshCard): it changes a message in place, posts
// nothing new, and is not waited for.
func laterCardUpdate(e outbox.Entry) bool {
	return e.Kind == kindCard && e.State == outbox.StatePending && time.Until(e.NextAttempt) > 0
}

// laterSnapshot reports whether e is a snapshot waiting for the end of its
// evidence window (a minute after the anomalous window): a test whose
// anomaly's window is the current minute would otherwise wait for it, or
// give up, depending on the second it ran at.
func laterSnapshot(e outbox.Entry) bool {
	return e.Kind == kindSnapshot && e.State == outbox.StatePending && time.Until(e.NextAttempt) > 0
}

func exfil(id, agent, cred string, start int64) anomaly.Anomaly {
	return anomaly.Anomaly{V: 1, ID: id, AgentID: agent, CredentialID: cred, Kind: anomaly.Behaviour, Severity: "critical", Score: 12,
		WindowStartMs: start, WindowEndMs: start + 60_000, Summary: "pulled 40x its usual bytes", DetectedMs: time.Now().UnixMilli(),
		Explanation: []anomaly.Feature{{Name: "response_bytes", Observed: 4e7, Expected: 1e6, Surprise: 30, Contribution: 0.9}}}
}

func TestExfiltrationGivesOneThreadOneRevocationOneVerifiedBundle(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	r.kong.Add("agent-1", "cred-1", "secret-key")
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()
	for i := 0; i < 20; i++ {
		r.events.Add(event.Event{EventID: fmt.Sprintf("e%d", i), EventTimeMs: start + int64(i)*1000, AgentID: "agent-1", CredentialID: "cred-1",
			Method: "GET", Route: "/customers/{id}", Path: "/customers/" + strconv.Itoa(i), Status: 200})
	}
	a1, a2 := exfil("an-1", "agent-1", "cred-1", start), exfil("an-2", "agent-1", "cred-1", start+60_000)
	for _, a := range []anomaly.Anomaly{a1, a2} {
		if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	r.settle()
	posts := r.slack.Posts()
	var roots, replies []testsrv.SlackPost
	for _, p := range posts {
		if p.Method == "chat.update" {
			continue // the card kept current, not a new message
		}
		if p.ThreadTS == "" {
			roots = append(roots, p)
		} else {
			replies = append(replies, p)
		}
	}
	if len(roots) != 1 {
		t.Fatalf("want 1 top-level alert, got %d: %+v", len(roots), posts)
	}
	for _, p := range replies {
		if p.ThreadTS != roots[0].TS {
			t.Errorf("reply %q is not in the incident's thread %s", p.Text, roots[0].TS)
		}
	}
	// The card, as Slack shows it last, counts both anomalies and the
	// revocation: the second anomaly is on the card (and in the thread
	// when it came after the alert was posted).
	var card testsrv.SlackPost
	for _, p := range posts {
		if p.TS == roots[0].TS {
			card = p
		}
	}
	if !strings.Contains(card.Text, "2 anomalies") || !strings.Contains(card.Blocks, "revoke done") {
		t.Errorf("the card Slack shows does not count both anomalies and the revocation: %q", card.Text)
	}
	if n := r.kong.Count(http.MethodDelete); n != 1 {
		t.Errorf("Kong DELETEs = %d, want 1 (one revocation per incident): %+v", n, r.kong.Requests())
	}
	if r.kong.Has("cred-1") {
		t.Error("credential still present at Kong")
	}
	in, ok := r.svc.Engine.Incident(IncidentID(a1))
	if !ok || len(in.Snapshots) != 1 {
		t.Fatalf("incident %+v: want 1 evidence bundle (a playbook acts once per incident)", in)
	}
	if !strings.Contains(roots[0].Blocks, in.Snapshots[0]) {
		t.Errorf("the alert does not show the snapshot id %s", in.Snapshots[0])
	}
	for _, id := range in.Snapshots {
		if err := evidence.Verify(ctx, r.svc.Chain, r.svc.Evidence, id); err != nil {
			t.Errorf("bundle %s does not verify: %v", id, err)
		}
	}
	if err := evidence.VerifyChain(ctx, r.svc.Chain, r.svc.Evidence); err != nil {
		t.Errorf("chain: %v", err)
	}
	recs, err := r.svc.Audit.Query(ctx, audit.Filter{AgentID: "agent-1"})
	if err != nil {
		t.Fatal(err)
	}
	var revokes int
	for _, rec := range recs {
		if rec.Action == "revoke" && rec.Result == audit.ResultOK {
			revokes++
		}
	}
	if revokes != 1 {
		t.Errorf("audit has %d ok revoke records, want 1: %+v", revokes, recs)
	}

	// Replaying the anomalies (a redelivery after a rebalance) changes nothing.
	nPosts, nKong := r.messages(), len(r.kong.Requests())
	for _, a := range []anomaly.Anomaly{a1, a2} {
		res, err := r.svc.Engine.Handle(ctx, a)
		if err != nil || !res.Duplicate {
			t.Fatalf("replay of %s: %+v, %v; want duplicate", a.ID, res, err)
		}
	}
	r.settle()
	if r.messages() != nPosts || len(r.kong.Requests()) != nKong {
		t.Errorf("replay posted or called Kong again: posts %d→%d, kong %d→%d", nPosts, r.messages(), nKong, len(r.kong.Requests()))
	}

	// The same after a restart on the same state directory.
	r.stop()
	r.start()
	for _, a := range []anomaly.Anomaly{a1, a2} {
		if res, err := r.svc.Engine.Handle(ctx, a); err != nil || !res.Duplicate {
			t.Fatalf("replay after restart of %s: %+v, %v", a.ID, res, err)
		}
	}
	r.settle()
	if r.messages() != nPosts || len(r.kong.Requests()) != nKong {
		t.Errorf("replay after restart acted again")
	}

	// A third anomaly of the revoked agent is not alerted: suppressed.
	a3 := exfil("an-3", "agent-1", "cred-1", start+120_000)
	nAll := len(r.slack.Posts())
	if _, err := r.svc.Engine.Handle(ctx, a3); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if later := r.slack.Posts()[nAll:]; !onlyNotes(later) {
		t.Errorf("an anomaly of a revoked agent was alerted: %+v", later)
	}

	// responder restore puts the credential back.
	keys, err := r.svc.Engine.Restore(ctx, IncidentID(a1), audit.Actor{Kind: audit.ActorCLI, Name: "tester"}, "false alarm")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.svc.Engine.Wait(wctx, keys...); err != nil {
		t.Fatal(err)
	}
	if !r.kong.Has("cred-1") {
		t.Error("restore did not re-create the credential")
	}
}

// onlyNotes reports whether ps are notes, or updates of a card.
func onlyNotes(ps []testsrv.SlackPost) bool {
	for _, p := range ps {
		if p.Method == "chat.update" {
			continue
		}
		if !strings.Contains(p.Blocks, "aw_note") {
			return false
		}
	}
	return true
}

func TestBudgetTurnsRevocationsPastNIntoApprovalRequests(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	start := time.Now().Truncate(time.Minute).UnixMilli()
	for i := 0; i < 50; i++ {
		a := anomaly.Anomaly{V: 1, ID: fmt.Sprintf("ip-%d", i), AgentID: fmt.Sprintf("agent-%02d", i), CredentialID: fmt.Sprintf("cred-%02d", i),
			Kind: anomaly.NewSourceIP, Severity: "high", Score: 5, WindowStartMs: start, WindowEndMs: start + 60_000}
		if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	r.settle()
	recs, err := r.svc.Audit.Query(ctx, audit.Filter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	var ok, approval int
	for _, rec := range recs {
		if rec.Action == "revoke" && rec.Result == audit.ResultOK {
			ok++
		}
		if rec.Action == "revoke" && rec.Result == audit.ResultNeedsApproval {
			approval++
		}
	}
	if ok != 5 || approval != 45 {
		t.Errorf("revocations %d, approval requests %d; want 5 and 45", ok, approval)
	}
	b, err := os.ReadFile(filepath.Join(r.cfg.Responder.StateDir, "denylist.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(string(b))); n != 5 {
		t.Errorf("deny-list has %d lines, want 5:\n%s", n, b)
	}
	// The 45 requests have one cause (kind, playbook, step, channel):
	// one message, and its answer answers them all.
	var asks []testsrv.SlackPost
	for _, p := range r.slack.Posts() {
		if strings.Contains(p.Blocks, "aw_approve") {
			asks = append(asks, p)
		}
	}
	if len(asks) != 1 {
		t.Fatalf("%d approval requests posted to Slack, want 1 for the 45 of one cause", len(asks))
	}
	if !strings.Contains(asks[0].Blocks, "join this one") {
		t.Errorf("the grouped request does not say that later ones join it: %s", asks[0].Blocks)
	}
	open, err := r.svc.Engine.OpenApprovals(ctx)
	if err != nil || len(open) != 1 {
		t.Fatalf("open approval requests %v, %v; want 1", open, err)
	}
	var leader audit.Record
	for _, rec := range recs {
		if rec.Action == "approve" && strings.Contains(rec.Detail, "grouped into approval request") && !strings.Contains(rec.Detail, open[0]) {
			t.Errorf("a request joined another than the open one: %s", rec.Detail)
		}
		if rec.StepID == open[0] {
			leader = rec
		}
	}
	codec, _ := slackui.NewActionCodec(testSecret)
	v, err := codec.Encode(slackui.ActionRef{Kind: slackui.Approve, IncidentID: leader.IncidentID, AnomalyID: open[0]})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	r.svc.Handler.ServeHTTP(w, signed(t, "aw_approve", v, "trig-group", time.Now()))
	if w.Code != http.StatusOK {
		t.Fatalf("approve click: %d %s", w.Code, w.Body)
	}
	r.settle()
	b, err = os.ReadFile(filepath.Join(r.cfg.Responder.StateDir, "denylist.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(string(b))); n != 50 {
		t.Errorf("deny-list has %d lines after approving the group, want 50 (5 in budget + 45 approved)", n)
	}
}

// signed builds Slack's interactivity request for a button value, clicked
// by U0ANALYST (alice, in the analysts' user group).
func signed(t *testing.T, actionID, value, trigger string, at time.Time) *http.Request {
	t.Helper()
	return signedAs(t, "U0ANALYST", actionID, value, trigger, at)
}

// signedAs is signed for a click by user.
func signedAs(t *testing.T, user, actionID, value, trigger string, at time.Time) *http.Request {
	t.Helper()
	p := map[string]any{
		"type": "block_actions", "user": map[string]any{"id": user, "username": strings.ToLower(user), "name": strings.ToLower(user), "team_id": "T1"},
		"trigger_id": trigger, "team": map[string]any{"id": "T1"}, "channel": map[string]any{"id": "C0SOC"},
		"container": map[string]any{"type": "message", "message_ts": "1.1", "channel_id": "C0SOC"},
		"actions":   []any{map[string]any{"action_id": actionID, "block_id": "aw_actions", "value": value, "type": "button", "action_ts": "1700000000.1"}},
	}
	js, _ := json.Marshal(p)
	body := url.Values{"payload": {string(js)}}.Encode()
	req := httptest.NewRequest(http.MethodPost, "/slack/interactions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	stamp := strconv.FormatInt(at.Unix(), 10)
	m := hmac.New(sha256.New, []byte(testSecret))
	m.Write([]byte("v0:" + stamp + ":" + body))
	req.Header.Set("X-Slack-Request-Timestamp", stamp)
	req.Header.Set("X-Slack-Signature", "v0="+hex.EncodeToString(m.Sum(nil)))
	return req
}

func TestApprovalButtonRunsTheGatedStepOnceAndForgeriesRunNothing(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	a := anomaly.Anomaly{V: 1, ID: "z-1", AgentID: "agent-z", CredentialID: "cred-z", Kind: anomaly.ZombieRoute, Severity: "medium", Score: 3,
		WindowStartMs: 1, WindowEndMs: 60_001}
	if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
		t.Fatal(err)
	}
	r.settle()
	codec, _ := slackui.NewActionCodec(testSecret)
	req := IncidentID(a) + "-gated-1" // the approve step, keyed by incident
	v, err := codec.Encode(slackui.ActionRef{Kind: slackui.Approve, IncidentID: IncidentID(a), AnomalyID: req})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(q *http.Request) int {
		w := httptest.NewRecorder()
		r.svc.Handler.ServeHTTP(w, q)
		return w.Code
	}
	// Forged (wrong secret) and expired requests are refused and run nothing.
	forged := signed(t, "aw_approve", v, "trig-1", time.Now())
	forged.Header.Set("X-Slack-Signature", "v0="+strings.Repeat("0", 64))
	if c := serve(forged); c != http.StatusUnauthorized {
		t.Errorf("forged: %d, want 401", c)
	}
	if c := serve(signed(t, "aw_approve", v, "trig-1", time.Now().Add(-6*time.Minute))); c != http.StatusUnauthorized {
		t.Errorf("expired: %d, want 401", c)
	}
	r.settle()
	if has, _ := os.ReadFile(filepath.Join(r.cfg.Responder.StateDir, "denylist.txt")); bytes.Contains(has, []byte("cred-z")) {
		t.Fatal("a refused callback revoked")
	}
	// A valid click, then Slack's retry of it: one revocation.
	for i := 0; i < 3; i++ {
		q := signed(t, "aw_approve", v, "trig-1", time.Now())
		q.Header.Set("X-Slack-Retry-Num", strconv.Itoa(i))
		if c := serve(q); c != http.StatusOK {
			t.Errorf("click %d: %d", i, c)
		}
	}
	r.settle()
	has, _ := os.ReadFile(filepath.Join(r.cfg.Responder.StateDir, "denylist.txt"))
	if !bytes.Contains(has, []byte("cred-z")) {
		t.Fatalf("approved revocation did not run; deny-list:\n%s", has)
	}
	recs, _ := r.svc.Audit.Query(ctx, audit.Filter{AgentID: "agent-z"})
	var approvals, revokes int
	for _, rec := range recs {
		if rec.Action == "approve" && rec.Result == audit.ResultOK {
			approvals++
		}
		if rec.Action == "revoke" && rec.Result == audit.ResultOK {
			revokes++
		}
	}
	if approvals != 1 || revokes != 1 {
		t.Errorf("approve answers %d, revocations %d; want 1 and 1: %+v", approvals, revokes, recs)
	}
}

func TestRateLimitedAlertIsPostedOnceAfterRetryAfter(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	r.slack.RateLimit(2, 1) // two 429s with Retry-After: 1
	r.kong.Add("agent-rl", "cred-rl", "k")
	a := exfil("rl-1", "agent-rl", "cred-rl", time.Now().Truncate(time.Minute).UnixMilli())
	if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if roots, _ := postsAbout(r.slack.Posts(), "agent-rl"); len(roots) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.settle()
	roots, _ := postsAbout(r.slack.Posts(), "agent-rl")
	if len(roots) != 1 {
		t.Fatalf("%d alerts after two 429s, want exactly 1", len(roots))
	}
	if r.kong.Count(http.MethodDelete) != 1 {
		t.Errorf("the rate limit held back the revocation: %d DELETEs", r.kong.Count(http.MethodDelete))
	}
}

// postsAbout returns the messages posted about agent: top-level ones and
// thread replies. Updates of a card (chat.update) are not new messages.
func postsAbout(ps []testsrv.SlackPost, agent string) (roots, replies []testsrv.SlackPost) {
	for _, p := range ps {
		if !strings.Contains(p.Text+p.Blocks, agent) || p.Method == "chat.update" {
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

func TestDryRunMakesNoOutboundCall(t *testing.T) {
	r := newRig(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.kong.Add("agent-dry", "cred-dry", "k")
	res, err := r.svc.Engine.Run(ctx, respapi.Request{Manual: playbooks.Manual{Playbook: "contain", AgentID: "agent-dry",
		Agent: playbooks.AgentInfo{CredentialID: "cred-dry"}, Key: "t1", DryRun: true}, Actor: audit.Actor{Kind: audit.ActorCLI, Name: "t"}})
	if err != nil {
		t.Fatal(err)
	}
	r.settle()
	if n := len(r.slack.Posts()) + len(r.kong.Requests()); n != 0 {
		t.Errorf("a dry run made %d outbound calls", n)
	}
	for i, s := range res.Steps {
		if s.Status != audit.ResultDryRun {
			t.Errorf("step %d: %s, want dry_run", i, s.Status)
		}
	}
	recs, _ := r.svc.Audit.Query(ctx, audit.Filter{AgentID: "agent-dry"})
	if len(recs) != 2 {
		t.Errorf("%d audit records for a 2-step dry run: %+v", len(recs), recs)
	}
	// The same request again runs nothing; a real run then acts once.
	res, err = r.svc.Engine.Run(ctx, respapi.Request{Manual: playbooks.Manual{Playbook: "contain", AgentID: "agent-dry",
		Agent: playbooks.AgentInfo{CredentialID: "cred-dry"}, Key: "t1", DryRun: true}, Actor: audit.Actor{Kind: audit.ActorCLI}})
	if err != nil || !res.Duplicate {
		t.Errorf("retried request: duplicate=%v err=%v", res.Duplicate, err)
	}
	if _, err := r.svc.Engine.Run(ctx, respapi.Request{Manual: playbooks.Manual{Playbook: "contain", AgentID: "agent-dry",
		Agent: playbooks.AgentInfo{CredentialID: "cred-dry"}, Key: "t2"}, Actor: audit.Actor{Kind: audit.ActorCLI}}); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if r.kong.Count(http.MethodDelete) != 1 || len(r.slack.Posts()) == 0 {
		t.Errorf("real run: %d DELETEs, %d posts", r.kong.Count(http.MethodDelete), len(r.slack.Posts()))
	}
}

func TestFalsePositiveSilencesThePatternAndTellsTheDetector(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	a := anomaly.Anomaly{V: 1, ID: "zz-1", AgentID: "agent-fp", CredentialID: "cred-fp", Kind: anomaly.ZombieRoute, Severity: "medium",
		Score: 3, WindowStartMs: 60_000, WindowEndMs: 120_000}
	if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
		t.Fatal(err)
	}
	r.settle()
	codec, _ := slackui.NewActionCodec(testSecret)
	v, err := codec.Encode(slackui.ActionRef{Kind: slackui.FalsePositive, IncidentID: IncidentID(a), AnomalyID: a.ID})
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	r.svc.Handler.ServeHTTP(w, signed(t, "aw_false_positive", v, "trig-fp", time.Now()))
	if w.Code != http.StatusOK {
		t.Fatalf("false-positive click: %d %s", w.Code, w.Body)
	}
	r.feedback.mu.Lock()
	got := append([]anomaly.Verdict(nil), r.feedback.vs...)
	r.feedback.mu.Unlock()
	if len(got) != 1 || got[0].AnomalyID != a.ID || got[0].Verdict != anomaly.VerdictFalsePositive || got[0].Author == "" {
		t.Fatalf("verdicts sent to the detector: %+v", got)
	}
	// The same pattern for the same agent is now silenced; another agent's is not.
	b := a
	b.ID, b.WindowStartMs, b.WindowEndMs = "zz-2", 180_000, 240_000
	res, err := r.svc.Engine.Handle(ctx, b)
	if err != nil || len(res.Silenced) != 1 {
		t.Errorf("second anomaly of the pattern: silenced by %v, err %v", res.Silenced, err)
	}
	c := a
	c.ID, c.AgentID = "zz-3", "agent-other"
	if res, err := r.svc.Engine.Handle(ctx, c); err != nil || len(res.Silenced) != 0 {
		t.Errorf("another agent's anomaly was silenced: %v %v", res.Silenced, err)
	}
	recs, _ := r.svc.Audit.Query(ctx, audit.Filter{AgentID: "agent-fp"})
	var fp, skipped int
	for _, rec := range recs {
		if rec.Action == "false_positive" && rec.Actor.Kind == audit.ActorSlack {
			fp++
		}
		if rec.Result == audit.ResultSkipped && strings.Contains(rec.Detail, "silenced") {
			skipped++
		}
	}
	if fp != 1 || skipped != 1 {
		t.Errorf("audit: %d false-positive verdicts, %d silenced anomalies; want 1 and 1", fp, skipped)
	}
}

// memBatchSeen is a BatchSeen in memory that counts its round trips.
type memBatchSeen struct {
	mu      sync.Mutex
	ids     map[string]bool
	lookups int
	looked  []string // the ids looked up
	inserts int
}

func (s *memBatchSeen) Handled(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[id], nil
}

func (s *memBatchSeen) MarkHandled(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first := !s.ids[id]
	s.ids[id] = true
	return first, nil
}

func (s *memBatchSeen) HandledMany(_ context.Context, ids []string) (map[string]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookups++
	s.looked = append(s.looked, ids...)
	out := map[string]bool{}
	for _, id := range ids {
		if s.ids[id] {
			out[id] = true
		}
	}
	return out, nil
}

func (s *memBatchSeen) InsertHandled(_ context.Context, ids []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inserts++
	for _, id := range ids {
		s.ids[id] = true
	}
	return nil
}

func TestHandleBatchLooksUpOnceAndHandlesEachIDOnce(t *testing.T) {
	r := newRig(t, func(c *config.Config) { c.Responder.RevokeBudget = 50 })
	seen := &memBatchSeen{ids: map[string]bool{}}
	r.svc.Engine.o.Seen = seen
	ctx := context.Background()
	start := time.Now().Truncate(time.Minute).UnixMilli()
	var as []anomaly.Anomaly
	for i := 0; i < 10; i++ {
		r.kong.Add(fmt.Sprintf("agent-b%d", i), fmt.Sprintf("cred-b%d", i), "k")
		as = append(as, exfil(fmt.Sprintf("b-%d", i), fmt.Sprintf("agent-b%d", i), fmt.Sprintf("cred-b%d", i), start))
	}
	as = append(as, as[3]) // a redelivered copy inside the batch
	res, err := r.svc.Engine.HandleBatch(ctx, as)
	if err != nil {
		t.Fatal(err)
	}
	if seen.lookups != 1 || seen.inserts != 1 || len(seen.ids) != 10 {
		t.Errorf("lookups %d, inserts %d, ids %d; want 1, 1, 10", seen.lookups, seen.inserts, len(seen.ids))
	}
	if !res[10].Duplicate {
		t.Error("the copy inside the batch was handled twice")
	}
	r.settle()
	if n := r.kong.Count(http.MethodDelete); n != 10 {
		t.Errorf("%d DELETEs, want 10", n)
	}
	res, err = r.svc.Engine.HandleBatch(ctx, as[:5])
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range res {
		if !x.Duplicate {
			t.Errorf("replayed anomaly %d handled again", i)
		}
	}
}

func TestThrottleRateLimitsAtKongAndLiftsAtItsTTL(t *testing.T) {
	r := newRig(t, nil)
	ctx := context.Background()
	r.kong.Add("agent-t", "cred-t", "k")
	a := anomaly.Anomaly{V: 1, ID: "ur-1", AgentID: "agent-t", CredentialID: "cred-t", Kind: anomaly.UnapprovedRoute, Severity: "medium",
		Score: 3, WindowStartMs: 60_000, WindowEndMs: 120_000}
	if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
		t.Fatal(err)
	}
	var seen bool
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !seen; time.Sleep(5 * time.Millisecond) {
		ps := r.kong.Plugins("agent-t")
		seen = len(ps) == 1 && ps[0].Name == "rate-limiting" && ps[0].Config["minute"] != nil
	}
	if !seen {
		t.Fatalf("no rate-limiting plugin on the consumer after the throttle: %+v", r.kong.Requests())
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && len(r.kong.Plugins("agent-t")) > 0 {
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(r.kong.Plugins("agent-t")); n != 0 {
		t.Fatalf("the throttle was not lifted at its TTL: %d plugins", n)
	}
	// The lift's audit record is written after Kong answered it.
	var recs []audit.Record
	var th, lifted int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		recs, _ = r.svc.Audit.Query(ctx, audit.Filter{AgentID: "agent-t"})
		th, lifted = 0, 0
		for _, rec := range recs {
			if rec.Action == "throttle" && rec.Result == audit.ResultOK {
				th++
			}
			if rec.Action == "restore" && rec.Result == audit.ResultOK {
				lifted++
			}
		}
		if lifted > 0 || time.Now().After(deadline) {
			break
		}
	}
	if th != 1 || lifted != 1 {
		t.Errorf("audit: %d throttles, %d lifts; want 1 and 1: %+v", th, lifted, recs)
	}
}

// TestHandleBatchKeepsEachAgentsOrder hands one batch with several
// anomalies of each of several agents, interleaved: agents are processed
// side by side, but each agent's anomalies join its incident in batch
// order.
func TestHandleBatchKeepsEachAgentsOrder(t *testing.T) {
	r := newRig(t, func(c *config.Config) { c.Responder.RevokeBudget = 50 })
	ctx := context.Background()
	start := time.Now().Truncate(time.Minute).UnixMilli()
	var as []anomaly.Anomaly
	for k := range 4 {
		for i := range 6 {
			agent := fmt.Sprintf("agent-o%d", i)
			if k == 0 {
				r.kong.Add(agent, "cred-"+agent, "k")
			}
			as = append(as, exfil(fmt.Sprintf("o-%d-%d", i, k), agent, "cred-"+agent, start+int64(k)*60_000))
		}
	}
	res, err := r.svc.Engine.HandleBatch(ctx, as)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		agent := fmt.Sprintf("agent-o%d", i)
		in, ok := r.svc.Engine.inc.latest(agent)
		if !ok {
			t.Fatalf("%s has no incident", agent)
		}
		var got []string
		for _, a := range in.Anomalies {
			got = append(got, a.ID)
		}
		want := []string{fmt.Sprintf("o-%d-0", i), fmt.Sprintf("o-%d-1", i), fmt.Sprintf("o-%d-2", i), fmt.Sprintf("o-%d-3", i)}
		if !slices.Equal(got, want) {
			t.Errorf("%s's incident holds %v, want %v in that order", agent, got, want)
		}
	}
	for i, x := range res {
		if x.Duplicate || x.Incident == "" {
			t.Errorf("anomaly %d: %+v, want it processed into an incident", i, x)
		}
	}
	r.settle()
	if n := r.kong.Count(http.MethodDelete); n != 6 {
		t.Errorf("%d DELETEs, want one per agent (6)", n)
	}
}
