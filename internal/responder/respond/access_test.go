package respond

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// denyPlaybooks revoke through the deny-list only, so that the buttons use
// it too (no Kong configured).
const denyPlaybooks = `
playbooks:
  - name: watch
    trigger: {kinds: [behaviour]}
    final: true
    steps:
      - notify: {channel: "#soc-alerts"}
  - name: shadow
    trigger: {kinds: [shadow_agent]}
    final: true
    steps:
      - notify: {channel: "#soc-flood"}
`

func denylistRig(t *testing.T, mod func(*rig)) *rig {
	return newRigWith(t, func(r *rig) {
		r.playbooks = denyPlaybooks
		r.cfg.Responder.Kong.AdminURL = ""
		r.cfg.Responder.EgressAllow = nil
		if mod != nil {
			mod(r)
		}
	})
}

func denylist(t *testing.T, r *rig) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.cfg.Responder.StateDir, "denylist.txt"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// A Revoke click by a Slack user who is neither an approver of the
// incident's playbooks nor a configured responder is refused: the user
// is told (ephemeral), the attempt is audited, nothing is revoked. A user
// in the responders' user group may.
func TestRevokeClickByOutsiderIsRefusedAuditedAndDoesNothing(t *testing.T) {
	r := denylistRig(t, nil)
	ctx := context.Background()
	a := exfil("out-1", "agent-o", "cred-o", time.Now().Truncate(time.Minute).UnixMilli())
	if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
		t.Fatal(err)
	}
	r.settle()
	before := denylist(t, r)
	codec, _ := slackui.NewActionCodec(testSecret)
	v, err := codec.Encode(slackui.ActionRef{Kind: slackui.Revoke, IncidentID: IncidentID(a), AnomalyID: a.ID})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, user, action, value string
	}{
		{"revoke", "U0INTRUDER", "aw_revoke", v},
	} {
		w := httptest.NewRecorder()
		r.svc.Handler.ServeHTTP(w, signedAs(t, tc.user, tc.action, tc.value, "trig-"+tc.name, time.Now()))
		if w.Code != http.StatusOK {
			t.Fatalf("%s: refused click answered %d; want 200 (handled: refused)", tc.name, w.Code)
		}
	}
	r.settle()
	if got := denylist(t, r); got != before || strings.Contains(got, "cred-o") {
		t.Fatalf("an outsider's click changed the deny-list:\n%s", got)
	}
	recs, err := r.svc.Audit.Query(ctx, audit.Filter{AgentID: "agent-o"})
	if err != nil {
		t.Fatal(err)
	}
	var refused int
	for _, rec := range recs {
		if rec.Action == "revoke" && rec.Result == audit.ResultRefused && rec.Actor.UserID == "U0INTRUDER" &&
			strings.Contains(rec.Detail, "nothing was done") {
			refused++
		}
		if rec.Action == "revoke" && rec.Result == audit.ResultOK {
			t.Errorf("revocation recorded: %+v", rec)
		}
	}
	if refused != 1 {
		t.Errorf("%d refused revoke records for U0INTRUDER; want 1: %+v", refused, recs)
	}
	var eph []testsrv.SlackPost
	for _, p := range r.slack.Posts() {
		if p.Method == "chat.postEphemeral" {
			eph = append(eph, p)
		}
	}
	if len(eph) != 1 || eph[0].User != "U0INTRUDER" || !strings.Contains(eph[0].Text, "may not") {
		t.Fatalf("ephemeral refusals %+v; want one, to U0INTRUDER", eph)
	}

	// U0OTHER is in the responders' user group S0SOC: allowed.
	w := httptest.NewRecorder()
	r.svc.Handler.ServeHTTP(w, signedAs(t, "U0OTHER", "aw_revoke", v, "trig-member", time.Now()))
	if w.Code != http.StatusOK {
		t.Fatalf("group member's click: %d %s", w.Code, w.Body)
	}
	r.settle()
	if got := denylist(t, r); !strings.Contains(got, "cred-o") {
		t.Fatalf("a responder group member's revoke did not run; deny-list:\n%s", got)
	}
	if n := r.slack.GroupCalls(); n != 1 {
		t.Errorf("usergroups.users.list called %d times; want 1 (the member list is cached)", n)
	}
}

// An approver named in the playbook may act without being a responder;
// with no responders and no approvers nobody may; and Approve/Deny on
// an approval request are checked the same way.
func TestWhoMayActTable(t *testing.T) {
	const gated = `
playbooks:
  - name: gated
    trigger: {kinds: [zombie_route]}
    final: true
    steps:
      - notify: {channel: "#soc-alerts"}
      - approve: {channel: "#soc-alerts", timeout: 1h, approvers: [U0APPROVER, S0LEADS]}
      - revoke: {adapter: denylist}
`
	for _, tc := range []struct {
		name       string
		responders []string
		user       string
		button     slackui.ActionKind
		allowed    bool
	}{
		{"approver revokes", nil, "U0APPROVER", slackui.Revoke, true},
		{"approver group member revokes", nil, "U0LEAD", slackui.Revoke, true},
		{"responder answers", []string{"U0RESP"}, "U0RESP", slackui.Approve, true},
		{"approver answers", nil, "U0APPROVER", slackui.Deny, true},
		{"outsider answers", []string{"U0RESP"}, "U0NOBODY", slackui.Approve, false},
		{"outsider quarantines", []string{"S0SOC"}, "U0NOBODY", slackui.Quarantine, false},
		{"unknown group", []string{"S0GONE"}, "U0NOBODY", slackui.Revoke, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRigWith(t, func(r *rig) {
				r.playbooks = gated
				r.cfg.Responder.Kong.AdminURL = ""
				r.cfg.Responder.Slack.Responders = tc.responders
				r.slack.SetGroup("S0LEADS", "U0LEAD")
			})
			ctx := context.Background()
			a := anomaly.Anomaly{V: 1, ID: "z-" + strings.ReplaceAll(tc.name, " ", "-"), AgentID: "agent-w", CredentialID: "cred-w",
				Kind: anomaly.ZombieRoute, Severity: "medium", Score: 3, WindowStartMs: 1, WindowEndMs: 60_001}
			if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
				t.Fatal(err)
			}
			r.settle()
			codec, _ := slackui.NewActionCodec(testSecret)
			ref := slackui.ActionRef{Kind: tc.button, IncidentID: IncidentID(a), AnomalyID: a.ID}
			if tc.button == slackui.Approve || tc.button == slackui.Deny {
				ref.AnomalyID = IncidentID(a) + "-gated-1"
			}
			v, err := codec.Encode(ref)
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			r.svc.Handler.ServeHTTP(w, signedAs(t, tc.user, "aw_"+string(tc.button), v, "trig", time.Now()))
			if w.Code != http.StatusOK {
				t.Fatalf("click: %d %s", w.Code, w.Body)
			}
			r.settle()
			recs, _ := r.svc.Audit.Query(ctx, audit.Filter{AgentID: "agent-w"})
			var refused bool
			for _, rec := range recs {
				if rec.Result == audit.ResultRefused && rec.Actor.UserID == tc.user && rec.Action == string(tc.button) {
					refused = true
				}
			}
			if refused == tc.allowed {
				t.Errorf("%s clicking %s: refused=%v, want allowed=%v: %+v", tc.user, tc.button, refused, tc.allowed, recs)
			}
			revoked := strings.Contains(denylist(t, r), "cred-w")
			if wantRevoked := tc.allowed && (tc.button == slackui.Revoke || tc.button == slackui.Approve || tc.button == slackui.Quarantine); revoked != wantRevoked {
				t.Errorf("deny-list has cred-w: %v, want %v", revoked, wantRevoked)
			}
		})
	}
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// A flood of anomalies of many agents to one channel — 100 unregistered
// agents a minute (50 on each of two partitions) for 5 minutes — gives at
// most the configured number of messages in each minute, plus one summary
// of the rest at the end of that minute; nothing is lost (each held-back
// alert is audited and its incident kept). The clock is the engine's,
// moved by hand: nothing sleeps.
func TestFloodToOneChannelIsCappedAndSummarised(t *testing.T) {
	const max, perMinute, minutes = 5, 100, 5
	clock := &fakeClock{t: time.Now().Truncate(time.Minute).Add(10 * time.Second)}
	r := denylistRig(t, func(r *rig) {
		r.now = clock.now
		r.cfg.Responder.Slack.MaxMessagesPerMinute = max
	})
	ctx := context.Background()
	flooded := func() []testsrv.SlackPost {
		var out []testsrv.SlackPost
		for _, p := range r.slack.Posts() {
			if p.Channel == "#soc-flood" && p.Method != "chat.update" {
				out = append(out, p)
			}
		}
		return out
	}
	seen := 0
	for m := 0; m < minutes; m++ {
		minute := clock.now().Truncate(time.Minute)
		for i := 0; i < perMinute; i++ {
			a := anomaly.Anomaly{V: 1, ID: fmt.Sprintf("sh-%d-%d", m, i), AgentID: fmt.Sprintf("shadow-p%d-%d-%03d", i%2, m, i), Kind: anomaly.ShadowAgent,
				Severity: "medium", Score: 2, WindowStartMs: minute.UnixMilli(), WindowEndMs: minute.UnixMilli() + 60_000}
			if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		r.settle()
		posts := flooded()[seen:]
		if len(posts) != max {
			t.Fatalf("minute %d: %d messages; want the cap, %d", m, len(posts), max)
		}
		// The minute ends (by the engine's clock): one summary, posted
		// once however often the caps are flushed.
		clock.add(time.Minute)
		r.svc.Engine.flushCaps(ctx)
		r.svc.Engine.flushCaps(ctx)
		r.settle()
		posts = flooded()[seen:]
		if len(posts) != max+1 {
			t.Fatalf("minute %d: %d messages after it ended; want %d and one summary", m, len(posts), max+1)
		}
		sum := posts[max].Text
		if want := fmt.Sprintf("%d more messages", perMinute-max); !strings.Contains(sum, want) || !strings.Contains(sum, "shadow_agent") ||
			!strings.Contains(sum, "responder incidents") {
			t.Errorf("summary %q; want %q, the kind, and where to look", sum, want)
		}
		seen += len(posts)
	}
	// Nothing is lost: every anomaly has its incident and its notify
	// record, posted or not.
	flood := perMinute * minutes
	if n := len(r.svc.Engine.Incidents()); n != flood {
		t.Errorf("%d incidents; want %d", n, flood)
	}
	recs, err := r.svc.Audit.Query(ctx, audit.Filter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	var posted, held int
	for _, rec := range recs {
		if rec.Action != "notify" {
			continue
		}
		switch {
		case rec.Result == audit.ResultOK:
			posted++
		case rec.Result == audit.ResultSkipped && strings.Contains(rec.Detail, "over its cap"):
			held++
		}
	}
	if posted != max*minutes || held != flood-max*minutes {
		t.Errorf("notify records: %d posted, %d held back; want %d and %d", posted, held, max*minutes, flood-max*minutes)
	}
	if got := testutil.ToFloat64(r.svc.Engine.o.Metrics.SlackSuppressed.WithLabelValues(capAlert)); int(got) != held {
		t.Errorf("slack_suppressed_total{what=alert} = %v; want %d", got, held)
	}
}

// The responder as built (Build, Run) limits its API and samples the
// refusals into its audit trail: 3,000 requests without a token write a
// handful of rows, the last one at shutdown.
func TestServiceSamplesUnauthenticatedFloodIntoTheAudit(t *testing.T) {
	clock := &fakeClock{t: time.Now().Truncate(time.Minute)}
	const secret = "ci-secret-0123456789abcdef0123456789abcdef"
	r := denylistRig(t, func(r *rig) {
		r.now = clock.now
		r.cfg.Responder.Tokens = []config.APIToken{{Name: "ci", SHA256: respapi.HashSecret(secret), AllowedPlaybooks: []string{"*"}, CanReadAudit: true}}
	})
	codes := map[int]int{}
	const n = 3000
	for i := 0; i < n; i++ {
		req := httptest.NewRequest(http.MethodGet, "/v1/audit", nil)
		req.RemoteAddr = "127.0.0.1:40000"
		w := httptest.NewRecorder()
		r.svc.Handler.ServeHTTP(w, req)
		codes[w.Code]++
		clock.add(8 * time.Millisecond) // 3,000 in 24 s
	}
	if codes[http.StatusUnauthorized] > 20+5*24+1 || codes[http.StatusTooManyRequests] < n-(20+5*24+1) {
		t.Errorf("answers %v; want at most the burst and 5/s through, the rest 429", codes)
	}
	// The token is a client of its own.
	req := httptest.NewRequest(http.MethodGet, "/v1/audit?limit=10", nil)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Header.Set("Authorization", "Bearer "+secret)
	w := httptest.NewRecorder()
	r.svc.Handler.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("token during the flood: %d %s", w.Code, w.Body)
	}
	r.stop() // flushes the interval in progress
	r.start()
	recs, err := r.svc.Audit.Query(context.Background(), audit.Filter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	var rows int
	for _, rec := range recs {
		if rec.Action == "requests_refused" {
			rows++
			if !strings.Contains(rec.Detail, fmt.Sprintf("%d api requests refused from ip:127.0.0.1", n)) {
				t.Errorf("row %q; want all %d refusals in it", rec.Detail, n)
			}
		}
	}
	if rows != 1 || len(recs) > 3 {
		t.Errorf("%d sampled rows, %d records in all; want 1 row (24 s is one interval) beside the token's query", rows, len(recs))
	}
}
