package respond

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/platform/kafka"
	"github.com/agentwatch/agentwatch/internal/platform/kstate"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/global"
	"github.com/agentwatch/agentwatch/internal/responder/respapi"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/internal/testkit/itest"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// opsSecret is the API token of the global-rules tests: silences, the
// kill switch, the deny-list.
const opsSecret = "ops-token-secret-0123456789abcdef0123456789"

// globalTopic creates a fresh global table topic on the test broker.
func globalTopic(t *testing.T) kstate.Config {
	t.Helper()
	k := itest.PlainKafka(t)
	topic := "responder-global-test-" + itest.RandHex(6)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sec := k.Security(t)
	if err := kafka.EnsureTopics(ctx, k.Brokers, sec, kstate.Spec(topic, 1)); err != nil {
		t.Fatal(err)
	}
	k.DeleteTopicsAfter(t, topic)
	return kstate.Config{Brokers: k.Brokers, Security: sec, Topic: topic}
}

// openRules opens the global rules on kc as one process does.
func openRules(t *testing.T, kc kstate.Config, budget int) *global.Rules {
	t.Helper()
	key, err := revoke.ParseLedgerKey(testLedgerKey)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rules, table, err := global.Open(ctx, kc, global.Options{Budget: budget, Interval: 10 * time.Minute, LedgerKey: key}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { table.Close() })
	return rules
}

// globalRigs starts n responders (engine, outbox worker, API) that share
// the global table kc, each with its own state directory, Slack and Kong.
func globalRigs(t *testing.T, kc kstate.Config, n, budget int) []*rig {
	t.Helper()
	var rigs []*rig
	for range n {
		rules := openRules(t, kc, budget)
		rigs = append(rigs, newRigWith(t, func(r *rig) {
			r.glob = rules
			// One follow-up per anomaly (no summaries): each anomaly's
			// notify step is audited on its own, posted or suppressed.
			r.cfg.Responder.Slack.DigestInterval = 0
			r.cfg.Responder.Tokens = []config.APIToken{{Name: "ops", SHA256: respapi.HashSecret(opsSecret),
				CanSilence: true, CanKillSwitch: true, CanReadDenylist: true}}
		}))
	}
	return rigs
}

func (r *rig) api(t *testing.T, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+opsSecret)
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	r.svc.Handler.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, w.Code, w.Body)
	}
	return w
}

// within polls cond until it holds and returns how long that took, or
// fails the test after limit.
func within(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func auditOf(t *testing.T, r *rig) []audit.Record {
	t.Helper()
	recs, err := r.svc.Audit.Query(context.Background(), audit.Filter{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestIntegrationGlobalBudgetAcrossInstances: budget 5, 50 agents spread
// over three instances sharing the global table on the real broker:
// exactly 5 revocations and 45 approval requests in all, and every
// instance serves the same deny-list of 5 and writes it to its file.
func TestIntegrationGlobalBudgetAcrossInstances(t *testing.T) {
	kc := globalTopic(t)
	rigs := globalRigs(t, kc, 3, 5)
	ctx := context.Background()
	start := time.Now().Truncate(time.Minute).UnixMilli()
	var wg sync.WaitGroup
	for i, r := range rigs {
		wg.Go(func() {
			for a := i; a < 50; a += len(rigs) {
				an := anomaly.Anomaly{V: 1, ID: fmt.Sprintf("ip-%d", a), AgentID: fmt.Sprintf("agent-%02d", a), CredentialID: fmt.Sprintf("cred-%02d", a),
					Kind: anomaly.NewSourceIP, Severity: "high", Score: 5, WindowStartMs: start, WindowEndMs: start + 60_000}
				if _, err := r.svc.Engine.Handle(ctx, an); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	var revoked, approval int
	var per []int
	for _, r := range rigs {
		r.settle()
		n := 0
		for _, rec := range auditOf(t, r) {
			switch {
			case rec.Action == "revoke" && rec.Result == audit.ResultOK:
				revoked++
				n++
			case rec.Action == "revoke" && rec.Result == audit.ResultNeedsApproval:
				approval++
			}
		}
		per = append(per, n)
	}
	t.Logf("revocations per instance: %v", per)
	if revoked != 5 || approval != 45 {
		t.Fatalf("revocations %d, approval requests %d across three instances; want 5 and 45", revoked, approval)
	}
	body, etag := rigs[0].glob.DenylistText("denylist")
	if n := len(strings.Fields(string(body))); n != 5 {
		t.Fatalf("served deny-list has %d ids, want 5:\n%s", n, body)
	}
	for i, r := range rigs {
		w := r.api(t, http.MethodGet, "/v1/denylist", "")
		if w.Body.String() != string(body) || w.Header().Get("ETag") != etag {
			t.Errorf("instance %d serves %q (ETag %s), instance 0 %q (ETag %s)", i, w.Body, w.Header().Get("ETag"), body, etag)
		}
		// The file follows the shared ledger on every instance, not only
		// on those that revoked.
		within(t, fmt.Sprintf("instance %d's deny-list file", i), 5*time.Second, func() bool {
			b, _ := os.ReadFile(filepath.Join(r.cfg.Responder.StateDir, "denylist.txt"))
			got := strings.Fields(string(b))
			slices.Sort(got)
			return slices.Equal(got, strings.Fields(string(body)))
		})
	}
}

// TestIntegrationGlobalRulesReachEveryInstance: a silence created through
// instance 1's API mutes a matching anomaly on instance 3, the kill switch
// engaged through instance 1 stops instance 3's automatic revocations, and
// a restore made by `responder restore` (a fourth process on the table)
// lifts instance 3's suppression of the incident's alerts: each within 2 s.
func TestIntegrationGlobalRulesReachEveryInstance(t *testing.T) {
	kc := globalTopic(t)
	rigs := globalRigs(t, kc, 3, 100)
	one, three := rigs[0], rigs[2]
	ctx := context.Background()
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()

	// Silence.
	one.api(t, http.MethodPost, "/v1/silences", `{"matchers":"agent_id=\"agent-s\"","duration":"1h","comment":"maintenance"}`)
	took := within(t, "silence on instance 3", 2*time.Second, func() bool {
		return len(three.svc.silences.Match(map[string]string{"agent_id": "agent-s"}, time.Now())) > 0
	})
	t.Logf("silence created on instance 1 applied on instance 3 after %s", took)
	res, err := three.svc.Engine.Handle(ctx, exfil("an-s1", "agent-s", "cred-s", start))
	if err != nil || len(res.Silenced) != 1 || res.Queued != 0 {
		t.Fatalf("matching anomaly on instance 3: %+v, %v; want silenced, nothing queued", res, err)
	}

	// Restore, from a process beside the responders (responder restore).
	three.kong.Add("agent-r", "cred-r", "key-r")
	if _, err := three.svc.Engine.Handle(ctx, exfil("an-r1", "agent-r", "cred-r", start)); err != nil {
		t.Fatal(err)
	}
	three.settle()
	if _, err := three.svc.Engine.Handle(ctx, exfil("an-r2", "agent-r", "cred-r", start+60_000)); err != nil {
		t.Fatal(err)
	}
	three.settle()
	notify := func(anomalyID string) (audit.Record, bool) {
		for _, rec := range auditOf(t, three) {
			if rec.Action == "notify" && rec.AnomalyID == anomalyID {
				return rec, true
			}
		}
		return audit.Record{}, false
	}
	if rec, ok := notify("an-r2"); !ok || rec.Result != audit.ResultSkipped || !strings.Contains(rec.Detail, "revoked") {
		t.Fatalf("notify of the revoked agent's next anomaly: %+v (found %v); want skipped as suppressed", rec, ok)
	}
	incident := IncidentID(exfil("an-r1", "agent-r", "cred-r", start))
	cli := openRules(t, kc, 100)
	guards, err := GlobalGuards(three.cfg, nil, nil, cli)
	if err != nil {
		t.Fatal(err)
	}
	rr, err := guards["kong"].Restore(ctx, revoke.Target{CredentialID: "cred-r", IncidentID: incident, Origin: revoke.Manual})
	if err != nil || rr.Status != revoke.StatusRestored {
		t.Fatalf("restore: %+v, %v", rr, err)
	}
	took = within(t, "restore on instance 3", 2*time.Second, func() bool {
		in, ok := three.svc.Engine.inc.latest("agent-r")
		return ok && len(three.svc.Engine.stillRevoked(ctx, in.ID, in.Revoked)) == 0
	})
	t.Logf("restore made beside the responders seen by instance 3 after %s", took)
	if _, err := three.svc.Engine.Handle(ctx, exfil("an-r3", "agent-r", "cred-r", start+120_000)); err != nil {
		t.Fatal(err)
	}
	three.settle()
	if rec, ok := notify("an-r3"); !ok || rec.Result != audit.ResultOK {
		t.Fatalf("notify after the restore: %+v (found %v); want posted", rec, ok)
	}

	// Kill switch, engaged through instance 1's API.
	one.api(t, http.MethodPut, "/v1/kill-switch", `{"engaged":true,"reason":"bad rollout"}`)
	took = within(t, "kill switch on instance 3", 2*time.Second, three.glob.Switch.Engaged)
	t.Logf("kill switch engaged on instance 1 applied on instance 3 after %s", took)
	three.kong.Add("agent-k", "cred-k", "key-k")
	if _, err := three.svc.Engine.Handle(ctx, exfil("an-k1", "agent-k", "cred-k", start)); err != nil {
		t.Fatal(err)
	}
	three.settle()
	var held bool
	for _, rec := range auditOf(t, three) {
		if rec.Action == "revoke" && rec.AnomalyID == "an-k1" {
			held = rec.Result == audit.ResultNeedsApproval && strings.Contains(rec.Detail, "kill switch")
			if !held {
				t.Fatalf("revoke with the kill switch engaged: %+v", rec)
			}
		}
	}
	if !held {
		t.Fatal("no revoke record for the anomaly handled with the kill switch engaged")
	}
	// Disengaged by the CLI, which writes the table directly.
	if err := cli.Switch.Set(ctx, revoke.SwitchState{Engaged: false, By: "cli:test"}); err != nil {
		t.Fatal(err)
	}
	within(t, "kill switch off on instance 3", 2*time.Second, func() bool { return !three.glob.Switch.Engaged() })
}
