package respbench

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/bus/membus"
	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
	"github.com/agentwatch/agentwatch/internal/tools/benchkit"
)

func TestIndexes(t *testing.T) {
	agent := func(s string, want int, wantOK bool) {
		t.Helper()
		if got, ok := agentIndex(s); got != want || ok != wantOK {
			t.Fatalf("agentIndex(%q) = %d, %v; want %d, %v", s, got, ok, want, wantOK)
		}
	}
	agent(agentID(42), 42, true)
	agent(`[{"type":"section","text":"*`+agentID(7)+`* pulled"}]`, 7, true)
	agent("bench-agent-12", 0, false)
	agent("bench-warmup-001", 0, false)
	cred := func(p string, want int, wantOK bool) {
		t.Helper()
		if got, ok := credentialIndex(p); got != want || ok != wantOK {
			t.Fatalf("credentialIndex(%q) = %d, %v; want %d, %v", p, got, ok, want, wantOK)
		}
	}
	cred("/key-auths/"+credentialID(3), 3, true)
	cred("/consumers/c/key-auth/"+credentialID(999999), 999999, true)
	cred("/key-auths/bench-cred-1", 0, false)
	cred("/key-auths/other", 0, false)
}

func TestArrivalsAndLatencies(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	reqs := []testsrv.KongRequest{
		{Method: http.MethodGet, Path: "/key-auths/" + credentialID(1), At: at(5)},
		{Method: http.MethodDelete, Path: "/key-auths/" + credentialID(1), At: at(30)},
		{Method: http.MethodDelete, Path: "/key-auths/" + credentialID(0), At: at(40)},
		{Method: http.MethodDelete, Path: "/key-auths/" + credentialID(0), At: at(90)}, // a second DELETE: the first counts
		{Method: http.MethodDelete, Path: "/key-auths/" + credentialID(7), At: at(50)}, // not an anomaly of this run
	}
	posts := []testsrv.SlackPost{
		{Method: "chat.postMessage", Text: "alert " + agentID(0), At: at(60)},
		{Method: "chat.postMessage", ThreadTS: "1.1", Text: "revoke done " + agentID(1), At: at(61)}, // a thread note
		{Method: "chat.update", Text: agentID(1), At: at(62)},
		{Method: "chat.postMessage", Blocks: `[{"text":"` + agentID(1) + `"}]`, At: at(70)},
	}
	revoked, alerted, deletes, alerts := arrivals(2, reqs, posts)
	if deletes != 4 || alerts != 2 {
		t.Fatalf("deletes, alerts = %d, %d; want 4, 2", deletes, alerts)
	}
	if !revoked[0].Equal(at(40)) || !revoked[1].Equal(at(30)) || !alerted[0].Equal(at(60)) || !alerted[1].Equal(at(70)) {
		t.Fatalf("revoked %v, alerted %v", revoked, alerted)
	}
	wrote := []time.Time{at(0), at(20)}
	ds, span := latencies(wrote, revoked)
	if len(ds) != 2 || ds[0] != 10*time.Millisecond || ds[1] != 40*time.Millisecond || span != 40*time.Millisecond {
		t.Fatalf("latencies = %v, span %s", ds, span)
	}
	ds, span = latencies(wrote, []time.Time{{}, at(25)})
	if len(ds) != 1 || ds[0] != 5*time.Millisecond || span != 25*time.Millisecond {
		t.Fatalf("latencies with a missing arrival = %v, span %s", ds, span)
	}
}

// TestMeasureInProcess runs the whole measurement on the in-process bus
// and the file-backed stores: the same responder and servers, no services.
func TestMeasureInProcess(t *testing.T) {
	o := Options{Anomalies: 30, Rate: 200, Partitions: 3, Wait: 10 * time.Second}
	if err := o.setDefaults(); err != nil {
		t.Fatal(err)
	}
	kong, slack := testsrv.NewKong(), testsrv.NewSlack()
	defer kong.Close()
	defer slack.Close()
	cfg, err := newConfig(o, t.TempDir(), "test", kong, slack)
	if err != nil {
		t.Fatal(err)
	}
	b := membus.New(0)
	defer b.Close()
	b.CreateTopic(cfg.Kafka.AnomaliesTopic, o.Partitions)
	r, err := b.Reader(cfg.Kafka.ResponderGroup, cfg.Kafka.AnomaliesTopic)
	if err != nil {
		t.Fatal(err)
	}
	g := rig{cfg: cfg, deps: respond.Deps{Console: io.Discard}, writer: b.Writer(cfg.Kafka.AnomaliesTopic), reader: r, kong: kong, slack: slack}
	rep, err := measure(t.Context(), o, g, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for name, ds := range map[string][]time.Duration{"acked": rep.Acked, "fetched": rep.Fetched, "handled": rep.Handled, "revoked": rep.Revoked, "consumer": rep.Consumer} {
		if len(ds) != o.Anomalies {
			t.Errorf("%s: %d latencies, want %d", name, len(ds), o.Anomalies)
		}
	}
	if rep.KongDeletes != o.Anomalies {
		t.Errorf("Kong got %d DELETEs, want %d", rep.KongDeletes, o.Anomalies)
	}
	// Every alert must come: a revocation's thread note queued before the
	// alert once held it back for good (fixed: notes and approvals wait
	// for their thread's alert outside its queue).
	if len(rep.Alerted) != o.Anomalies || rep.SlackAlerts != len(rep.Alerted) {
		t.Errorf("Slack got %d alerts, %d of them for this run's agents; want %d", rep.SlackAlerts, len(rep.Alerted), o.Anomalies)
	}
	for i := range o.Anomalies {
		if kong.Has(credentialID(i)) {
			t.Errorf("credential %s not revoked", credentialID(i))
		}
	}
	// The outbox worker may revoke before the consumer commits, so only
	// the order write → fetch → DELETE is certain.
	if len(rep.Revoked) > 0 && (rep.Fetched[0] <= 0 || benchkit.Quantile(rep.Fetched, 0) > benchkit.Quantile(rep.Revoked, 0)) {
		t.Errorf("implausible latencies: fetched %v, revoked %v", rep.Fetched, rep.Revoked)
	}
	out := rep.String()
	for _, want := range []string{"| **revocation: DELETE received by Kong** | 30 |", "| **alert received by Slack** |", "responder: 30 anomalies at 200/s: revocation p50", "consumer: handled-set lookups and marks took"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	t.Log("\n" + out)
}

func TestReportMissing(t *testing.T) {
	r := Report{Anomalies: 3, Rate: 50, Revoked: []time.Duration{time.Millisecond}, Alerted: []time.Duration{1, 2, 3}}
	out := r.String()
	if !strings.Contains(out, "MISSING: 2 revocations") || strings.Contains(out, "alerts never") || !strings.Contains(out, "NOT met") {
		t.Errorf("report of a run with missing revocations:\n%s", out)
	}
}
