package preview

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/config"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

func testConfig(t *testing.T) config.Config {
	t.Helper()
	cfg, err := config.LoadEnv("", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// exfiltration is a critical behaviour anomaly driven by the bytes the
// agent pulled: the default playbooks snapshot, alert and ask to revoke.
func exfiltration(id string, minute int64) anomaly.Anomaly {
	start := int64(1796219640000) + minute*60000
	return anomaly.Anomaly{V: 1, ID: id, AgentID: "cs-agent-006", Role: "customer_service", Owner: "cx@example.com",
		CredentialID: "key-1", Kind: anomaly.Behaviour, WindowStartMs: start, WindowEndMs: start + 60000, Score: 89.4, Severity: "critical",
		Summary: "Agent \"cs-agent-006\" pulled 720 MB",
		Explanation: []anomaly.Feature{{Name: "response_bytes", Observed: 7.2e8, Expected: 7.7e4, Surprise: 300, Contribution: 0.6},
			{Name: "sensitive_calls", Observed: 20, Expected: 0.04, Surprise: 200, Contribution: 0.4}},
		Routes: []anomaly.RouteCount{{Route: "/customers/{id}/export", Calls: 20}}, DetectedMs: start + 70000}
}

func TestRunPostsWhatTheEngineWould(t *testing.T) {
	hostileAgent := "evil<!channel><script>x</script>"
	route := anomaly.Anomaly{V: 1, ID: "r1", AgentID: hostileAgent, Kind: anomaly.UnapprovedRoute, Severity: "medium", Score: 6,
		WindowStartMs: 1796219640000, WindowEndMs: 1796219700000, Summary: "<!here> called /admin", Count: 3,
		Routes: []anomaly.RouteCount{{Route: "/admin/<b>", Calls: 3}}}
	as := []anomaly.Anomaly{exfiltration("x1", 0), route, exfiltration("x2", 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	incidents, err := Run(ctx, as, Options{Config: testConfig(t), Wait: 45 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(incidents) != 2 || incidents[0].ID != respond.IncidentID(as[0]) || incidents[1].ID != respond.IncidentID(route) {
		t.Fatalf("incidents %+v, want the exfiltration's then the route's", incidents)
	}
	f, err := JSON(incidents)
	if err != nil {
		t.Fatal(err)
	}
	exf := asJSON(t, f.Incidents[0])
	for _, want := range []string{"cs-agent-006", "CRITICAL", `"type":"header"`, `"type":"actions"`, "Acknowledge", "Approval needed", "<!here>"} {
		if !bytes.Contains(exf, []byte(want)) {
			t.Errorf("the exfiltration's messages lack %q:\n%s", want, exf)
		}
	}
	if top, _ := incidents[0].Messages(); top < 1 {
		t.Errorf("the exfiltration posted %d top-level messages", top)
	}
	rt := asJSON(t, f.Incidents[1])
	if bytes.Contains(rt, []byte("<!channel>")) || bytes.Contains(rt, []byte("<!here>")) || bytes.Contains(rt, []byte("<script>")) {
		t.Errorf("the route alert holds a mention or markup from its input:\n%s", rt)
	}
	if !bytes.Contains(rt, []byte("evil&lt;!channel&gt;&lt;script&gt;")) {
		t.Errorf("the route alert lacks its escaped agent id:\n%s", rt)
	}
	var page bytes.Buffer
	if err := WriteHTML(&page, "t", incidents); err != nil {
		t.Fatal(err)
	}
	checkSafe(t, page.String())
}

func TestRunRefusesBadPlaybooks(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("playbooks:\n  - name: x\n    steps: [{frobnicate: {}}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Run(context.Background(), []anomaly.Anomaly{exfiltration("x1", 0)}, Options{Config: testConfig(t), Playbooks: []string{bad}})
	if err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Fatalf("error %v, want one naming the playbook file", err)
	}
}

// TestRunCallsNoGateway: a playbook that revokes through Kong, quarantines
// and calls a webhook at once previews without calling anything, though
// the configuration names a Slack token, Kong and the webhook (the steps
// run dry against stand-ins, and the messages go to the Capture).
func TestRunCallsNoGateway(t *testing.T) {
	pb := filepath.Join(t.TempDir(), "pb.yaml")
	if err := os.WriteFile(pb, []byte(`playbooks:
  - name: all-in
    trigger: {kinds: [behaviour]}
    steps:
      - notify: {channel: "#soc"}
      - revoke: {adapter: kong}
      - quarantine: {adapter: denylist}
        ttl: 1h
      - webhook: {target: siem}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		t.Errorf("the preview called %s %s", r.Method, r.URL)
	}))
	defer srv.Close()
	cfg := testConfig(t)
	cfg.Responder.RevokeBudget = 10
	cfg.Responder.Slack.Token, cfg.Responder.Slack.APIURL = "xoxb-not-used", srv.URL
	cfg.Responder.Kong.AdminURL = srv.URL
	cfg.Responder.EgressAllow = []string{srv.Listener.Addr().String()}
	cfg.Responder.Webhooks = map[string]config.WebhookTarget{"siem": {URL: srv.URL + "/siem"}}
	cfg.Responder.StateDir = filepath.Join(t.TempDir(), "operator-state")
	incidents, err := Run(context.Background(), []anomaly.Anomaly{exfiltration("x1", 0)}, Options{Config: cfg, Playbooks: []string{pb}})
	if err != nil {
		t.Fatal(err)
	}
	if s := Count(incidents); s.Incidents != 1 || s.Top != 1 {
		t.Fatalf("stats %+v, want the one alert", s)
	}
	if calls.Load() != 0 {
		t.Fatalf("%d outbound calls", calls.Load())
	}
	if _, err := os.Stat(cfg.Responder.StateDir); !os.IsNotExist(err) {
		t.Fatalf("the operator's state directory was touched: %v", err)
	}
}

// asJSON is v's JSON as messages.json has it, "<" as "<".
func asJSON(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
