package respbench

import (
	"context"
	"fmt"
	"github.com/agentwatch/agentwatch/internal/platform/bus"
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
	agent(warmAgentID(1), 0, false)
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
	cred("/key-auths/"+warmCredentialID(3), 0, false)
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
// and the file-backed stores: the same responder and servers, no services;
// with one instance and with two sharing the consumer group.
func TestMeasureInProcess(t *testing.T) {
	for _, instances := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d instances", instances), func(t *testing.T) { measureInProcess(t, instances) })
	}
}

func measureInProcess(t *testing.T, instances int) {
	o := Options{Anomalies: 30, Rate: 200, Partitions: 3, Wait: 10 * time.Second, Instances: instances}
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
	g := rig{writer: b.Writer(cfg.Kafka.AnomaliesTopic), kong: kong, slack: slack}
	for range instances {
		r, err := b.Reader(cfg.Kafka.ResponderGroup, cfg.Kafka.AnomaliesTopic)
		if err != nil {
			t.Fatal(err)
		}
		icfg := cfg
		icfg.Responder.StateDir = t.TempDir()
		// membus gives every reader every partition; a consumer group
		// would split them, so each instance keeps its share.
		share := &partitionShare{Reader: r, of: instances, mine: len(g.instances)}
		g.instances = append(g.instances, instance{cfg: icfg, deps: respond.Deps{Console: io.Discard}, reader: share})
	}
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
	who := "responder:"
	if instances > 1 {
		who = fmt.Sprintf("responder ×%d:", instances)
	}
	out := rep.String()
	for _, want := range []string{"| **revocation: DELETE received by Kong** | 30 |", "| **alert received by Slack** |", who + " 30 anomalies at 200/s: revocation p50",
		"consumer: handled-set lookups and marks took", fmt.Sprintf("%d responder instance(s)", instances)} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	t.Log("\n" + out)
}

// partitionShare is a reader of the partitions p with p % of == mine,
// as a consumer group of `of` members would assign them.
type partitionShare struct {
	bus.Reader
	of, mine int
}

func (r *partitionShare) Fetch(ctx context.Context) (bus.Message, error) {
	for {
		m, err := r.Reader.Fetch(ctx)
		if err != nil || int(m.Partition)%r.of == r.mine {
			return m, err
		}
	}
}

func TestReportMissing(t *testing.T) {
	r := Report{Anomalies: 3, Rate: 50, Revoked: []time.Duration{time.Millisecond}, Alerted: []time.Duration{1, 2, 3}}
	out := r.String()
	if !strings.Contains(out, "MISSING: 2 revocations") || strings.Contains(out, "alerts never") || !strings.Contains(out, "NOT met") {
		t.Errorf("report of a run with missing revocations:\n%s", out)
	}
}

func TestStepsSustained(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []Report
		want  float64
	}{
		{"none", nil, 0},
		{"all met", []Report{{Anomalies: 2, Rate: 100, Revoked: ms(10, 20), Alerted: ms(10, 20)}, {Anomalies: 2, Rate: 200, Revoked: ms(10, 900), Alerted: ms(5, 6)}}, 200},
		{"second too slow", []Report{{Anomalies: 2, Rate: 100, Revoked: ms(10, 20), Alerted: ms(10, 20)}, {Anomalies: 2, Rate: 200, Revoked: ms(10, 1200), Alerted: ms(5, 6)}}, 100},
		{"alert too slow", []Report{{Anomalies: 2, Rate: 100, Revoked: ms(10, 20), Alerted: ms(10, 1001)}}, 0},
		{"one missing", []Report{{Anomalies: 3, Rate: 100, Revoked: ms(10, 20), Alerted: ms(10, 20, 30)}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Steps{Reports: tc.steps}
			if got := s.Sustained(); got != tc.want {
				t.Errorf("Sustained() = %g, want %g", got, tc.want)
			}
			out := s.String()
			if tc.want > 0 && !strings.Contains(out, fmt.Sprintf("highest rate sustained with both p99s ≤ 1s: %g/s", tc.want)) {
				t.Errorf("table lacks the sustained rate:\n%s", out)
			}
			if tc.want == 0 && !strings.Contains(out, "no rate was sustained") {
				t.Errorf("table claims a sustained rate:\n%s", out)
			}
		})
	}
}

func TestReportStateWrites(t *testing.T) {
	r := Report{Anomalies: 10, Rate: 50, StateWrites: []TopicWrites{{Topic: "global", Records: 12, Requests: 19}, {Topic: "state", Records: 80, Requests: 46}},
		SharedWrites: TopicWrites{Records: 92, Requests: 50}}
	out := r.String()
	for _, want := range []string{
		"state topic global: 12 records in 19 produce requests (1.20 records, 1.90 requests per anomaly)",
		"state topic state: 80 records in 46 produce requests (8.00 records, 4.60 requests per anomaly)",
		"shared produce stream: 92 records in 50 produce requests (5.00 requests per anomaly), every state topic together",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	r.SharedWrites = TopicWrites{}
	if out := r.String(); strings.Contains(out, "shared produce stream") {
		t.Errorf("a run without a shared stream reports one:\n%s", out)
	}
}

// TestSummaryVerdictAsksBothP99s: a run whose revocations met the target
// but whose alerts did not is not met (the one-line summary used to judge
// by the revocations alone).
func TestSummaryVerdictAsksBothP99s(t *testing.T) {
	for _, tc := range []struct {
		name             string
		revoked, alerted []time.Duration
		want             string
	}{
		{"both within", ms(100, 200), ms(300, 900), "target both p99 ≤ 1s met"},
		{"alerts late", ms(100, 200), ms(300, 1025), "target both p99 ≤ 1s NOT met"},
		{"revocations late", ms(100, 1500), ms(300, 400), "target both p99 ≤ 1s NOT met"},
		{"an alert missing", ms(100, 200), ms(300), "target both p99 ≤ 1s NOT met"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Report{Anomalies: 2, Rate: 500, Instances: 3, Revoked: tc.revoked, Alerted: tc.alerted}
			if got := r.Summary(); !strings.HasSuffix(got, tc.want) {
				t.Errorf("Summary() = %q; want it to end %q", got, tc.want)
			}
		})
	}
}

// ms returns the durations of vs milliseconds.
func ms(vs ...int) []time.Duration {
	out := make([]time.Duration, len(vs))
	for i, v := range vs {
		out[i] = time.Duration(v) * time.Millisecond
	}
	return out
}
