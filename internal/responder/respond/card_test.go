package respond

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

const watchPlaybook = `
playbooks:
  - name: watch
    trigger: {kinds: [behaviour]}
    final: true
    steps:
      - notify: {channel: "#soc-watch", mention: here}
`

// settleBy waits until no open entry can run by the clock (the Worker's,
// moved by the test): entries scheduled later are left, and so are those
// queued behind one of them under the same order key (the Worker runs an
// order key's entries one at a time in Seq order). A card update waiting
// 100 ms for its channel's alert holds the incident's other cards until
// the test moves the clock.
func (r *rig) settleBy(clock *fakeClock) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		open, err := r.svc.Worker.Store.List(context.Background(), outbox.StatePending, outbox.StateInFlight)
		if err != nil {
			r.t.Fatal(err)
		}
		slices.SortFunc(open, func(a, b outbox.Entry) int { return cmp.Compare(a.Seq, b.Seq) })
		busy := false
		waiting := map[string]bool{} // order keys with an entry ahead that is not due
		for _, e := range open {
			due := !e.NextAttempt.After(clock.now())
			switch {
			case e.OrderKey != "" && waiting[e.OrderKey]:
			case due:
				busy = true
			case e.OrderKey != "":
				waiting[e.OrderKey] = true
			}
		}
		if !busy {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Say what was still due, so that a failure on a loaded machine
	// tells why.
	open, _ := r.svc.Worker.Store.List(context.Background(), outbox.StatePending, outbox.StateInFlight)
	var due []string
	for _, e := range open {
		if !e.NextAttempt.After(clock.now()) {
			due = append(due, fmt.Sprintf("%s %s %s order=%q attempts=%d next=%s err=%q", e.Key, e.Kind, e.State, e.OrderKey, e.Attempts, e.NextAttempt.Format(time.RFC3339Nano), e.LastError))
		}
	}
	r.t.Fatalf("outbox did not settle in 20s; due at %s:\n%s", clock.now().Format(time.RFC3339Nano), strings.Join(due, "\n"))
}

// escalating is minute i of an agent pulling more and more: MEDIUM for
// 20 minutes, HIGH for 20, CRITICAL for the last 20, calling a route new
// to the incident every 10 minutes.
func escalating(i int, start time.Time) anomaly.Anomaly {
	sev, score := "medium", 4.0
	switch {
	case i >= 40:
		sev, score = "critical", 14
	case i >= 20:
		sev, score = "high", 8
	}
	w := start.Add(time.Duration(i) * time.Minute).UnixMilli()
	return anomaly.Anomaly{V: 1, ID: fmt.Sprintf("esc-%02d", i), AgentID: "agent-esc", CredentialID: "cred-esc", Kind: anomaly.Behaviour,
		Severity: sev, Score: score, WindowStartMs: w, WindowEndMs: w + 60_000, Summary: "pulls more than usual",
		Explanation: []anomaly.Feature{{Name: "response_bytes", Observed: float64(1e6 * (i + 2)), Expected: 1e6, Contribution: 0.8}},
		Routes:      []anomaly.RouteCount{{Route: "/customers/{id}", Calls: 10 + i}, {Route: fmt.Sprintf("/export/v%d", i/10), Calls: 3}}}
}

// An incident that opens MEDIUM and turns CRITICAL over an hour of
// anomalies, one a minute, is one card at the top of the channel, updated
// in place up to CRITICAL, one top-level mention for each severity step,
// and a thread of at most one summary every five minutes: 12 in the hour.
// A redelivery of the anomaly that made it CRITICAL announces nothing
// again. The clock is the engine's and the outbox Worker's, moved by
// hand: nothing sleeps for minutes.
func TestEscalatingIncidentIsOneCardOneMentionPerStepAndAFewSummaries(t *testing.T) {
	clock := &fakeClock{t: time.Now().Truncate(time.Minute).Add(time.Minute)}
	r := newRigWith(t, func(r *rig) {
		r.now = clock.now
		r.playbooks = watchPlaybook
	})
	if got := r.cfg.Responder.Slack.DigestInterval; got != 5*time.Minute {
		t.Fatalf("default digest interval %s, want 5m", got)
	}
	ctx := context.Background()
	start := clock.now().Add(-2 * time.Minute)
	const minutes = 60
	for i := range minutes {
		if i > 0 {
			clock.add(time.Minute)
		}
		if _, err := r.svc.Engine.Handle(ctx, escalating(i, start)); err != nil {
			t.Fatal(err)
		}
		r.settleBy(clock)
	}
	clock.add(6 * time.Minute) // past the last summary's slot
	r.settleBy(clock)

	var cards, escalations, replies, updates []testsrv.SlackPost
	// Posts name the channel as the playbook does; chat.update takes its
	// ID, as in Slack.
	watchID := r.slack.ChannelID("#soc-watch")
	for _, p := range r.slack.Posts() {
		if p.Channel != "#soc-watch" && p.Channel != watchID {
			continue
		}
		switch {
		case p.Method == "chat.update":
			updates = append(updates, p)
		case p.ThreadTS != "":
			replies = append(replies, p)
		case strings.Contains(p.Blocks, `"aw_card"`):
			cards = append(cards, p)
		case strings.Contains(p.Blocks, `"aw_escalation"`):
			escalations = append(escalations, p)
		default:
			t.Errorf("unexpected top-level message: %s", p.Text)
		}
	}
	t.Logf("%d cards, %d updates, %d escalations, %d thread messages", len(cards), len(updates), len(escalations), len(replies))
	if len(cards) != 1 {
		t.Fatalf("%d top-level cards, want 1", len(cards))
	}
	card := cards[0]
	if !strings.Contains(card.Text, "<!here>") || !strings.Contains(card.Text, "MEDIUM") {
		t.Errorf("the card was not first posted MEDIUM with its mention: %q", card.Text)
	}
	if len(updates) == 0 {
		t.Fatal("the card was never updated")
	}
	for _, u := range updates {
		if u.TS != card.TS {
			t.Errorf("an update changed message %s, not the card %s", u.TS, card.TS)
		}
	}
	last := updates[len(updates)-1]
	for _, want := range []string{"CRITICAL", fmt.Sprintf("%d anomalies", minutes), `"aw_card"`} {
		if !strings.Contains(last.Text+last.Blocks, want) {
			t.Errorf("the card's last update lacks %q: %s", want, last.Text)
		}
	}
	if len(escalations) != 2 {
		t.Fatalf("%d escalations, want 2 (MEDIUM→HIGH, HIGH→CRITICAL): %+v", len(escalations), escalations)
	}
	for i, want := range []string{"HIGH", "CRITICAL"} {
		e := escalations[i]
		if !strings.HasPrefix(e.Text, "<!here>") || !strings.Contains(e.Text, "Escalated to "+want) {
			t.Errorf("escalation %d = %q; want the mention and the step to %s", i, e.Text, want)
		}
	}
	if len(replies) == 0 || len(replies) > 12 {
		t.Errorf("%d thread messages in the hour, want 1 to 12", len(replies))
	}
	for _, p := range replies {
		if p.ThreadTS != card.TS {
			t.Errorf("thread message %q is not under the card", p.Text)
		}
		if strings.Contains(p.Text+p.Blocks, "<!") || strings.Contains(p.Blocks, `\u003c!`) {
			t.Errorf("thread message carries a mention: %q", p.Text)
		}
		if !strings.Contains(p.Blocks, `"aw_digest"`) {
			t.Errorf("thread message is not a summary: %q", p.Text)
		}
	}
	in, ok := r.svc.Engine.Incident(IncidentID(escalating(0, start)))
	if !ok {
		t.Fatal("no incident")
	}
	if in.Count != minutes || in.Severity != "critical" {
		t.Errorf("incident: %d anomalies, severity %q; want %d, critical", in.Count, in.Severity, minutes)
	}
	if got := in.Digested["#soc-watch"].Count; got != minutes {
		t.Errorf("the summaries covered %d anomalies, want all %d", got, minutes)
	}
	if !strings.Contains(strings.Join(textsOf(replies), "\n"), "/export/v5") {
		t.Errorf("no summary names the route new in the last ten minutes")
	}

	// The anomaly that made it CRITICAL, redelivered before it was marked
	// handled (a crash, a partition moving): nothing is announced again.
	n := len(r.slack.Posts())
	if _, _, err := r.svc.Engine.ProcessBatch(ctx, []anomaly.Anomaly{escalating(40, start)}, []bool{true}); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Minute)
	r.settleBy(clock)
	for _, p := range r.slack.Posts()[n:] {
		if p.Method != "chat.update" {
			t.Errorf("the redelivery posted %q", p.Text)
		}
	}
}

func textsOf(ps []testsrv.SlackPost) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Text+" "+p.Blocks)
	}
	return out
}

// In the distributed mode the card, its escalations and the thread's
// pending summary live in the agent's partition: an instance that takes
// the partition over posts the summary the first one scheduled, into the
// same thread, once, and announces a later severity step once.
func TestSummaryScheduledBeforeAPartitionMoveIsPostedByTheNextOwner(t *testing.T) {
	ctx := context.Background()
	clock := &fakeClock{t: time.Now().Truncate(time.Minute).Add(time.Minute)}
	cl := partstate.NewMemChangelog(4)
	seen := &memBatchSeen{ids: map[string]bool{}}
	a := newRigWith(t, func(r *rig) {
		r.stateLog, r.seen, r.now, r.playbooks = cl, seen, clock.now, watchPlaybook
	})
	start := clock.now().Add(-2 * time.Minute)
	for i := range 3 {
		if i > 0 {
			clock.add(time.Minute)
		}
		if _, err := a.svc.Engine.Handle(ctx, escalating(i, start)); err != nil {
			t.Fatal(err)
		}
		a.settleBy(clock)
	}
	id := IncidentID(escalating(0, start))
	var digest outbox.Entry
	open, err := a.svc.Worker.Store.List(ctx, outbox.StatePending)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range open {
		if e.Kind == kindDigest {
			digest = e
		}
	}
	if digest.Key == "" {
		t.Fatalf("no summary scheduled after 3 anomalies: %+v", open)
	}
	if err := a.owner.Revoke(ctx, []int32{a.owner.Partition("agent-esc")}); err != nil {
		t.Fatal(err)
	}
	a.stop()

	b := newRigWith(t, func(r *rig) {
		r.stateLog, r.seen, r.now, r.playbooks = cl, seen, clock.now, watchPlaybook
		r.slack = a.slack
		r.cfg.Responder.Slack.APIURL = a.slack.URL()
	})
	if e, ok, _ := b.svc.Worker.Store.Get(ctx, digest.Key); !ok || e.State != outbox.StatePending {
		t.Fatalf("the summary after the move: %+v, %v; want it pending", e, ok)
	}
	clock.add(time.Minute)
	if _, err := b.svc.Engine.Handle(ctx, escalating(25, start)); err != nil { // HIGH
		t.Fatal(err)
	}
	clock.add(5 * time.Minute)
	b.settleBy(clock)

	var card testsrv.SlackPost
	var tops, escalations, summaries int
	for _, p := range b.slack.Posts() {
		switch {
		case p.Method == "chat.update":
		case p.ThreadTS == "":
			tops++
			if strings.Contains(p.Blocks, `"aw_card"`) {
				card = p
			}
			if strings.Contains(p.Blocks, `"aw_escalation"`) {
				escalations++
			}
		case strings.Contains(p.Blocks, `"aw_digest"`):
			summaries++
			if p.ThreadTS != card.TS {
				t.Errorf("the summary is in thread %s, not the card's %s", p.ThreadTS, card.TS)
			}
		}
	}
	if tops != 2 || escalations != 1 || summaries != 1 {
		t.Errorf("%d top-level messages (%d escalations) and %d summaries; want the card, one escalation to HIGH and one summary", tops, escalations, summaries)
	}
	in, ok := b.svc.Engine.Incident(id)
	if !ok || in.Digested["#soc-watch"].Count != 4 || in.Announced["#soc-watch"] != "high" {
		t.Errorf("incident on the new owner: %+v; want 4 anomalies summarised and HIGH announced", in)
	}
}

func TestIncidentStatusFollowsItsActions(t *testing.T) {
	for _, tc := range []struct {
		acts    []string
		revoked bool
		want    string
	}{
		{nil, false, "open"},
		{[]string{actSnapshot, actApprovalAsked}, false, "open"},
		{[]string{actAcknowledge}, false, "acknowledged"},
		{[]string{actAcknowledge, actSnooze}, false, "silenced"},
		{[]string{actRevoke}, true, "contained"},
		{[]string{actQuarantine}, false, "contained"},
		{[]string{actQuarantine, actRestore}, false, "restored"},
		{[]string{actRevoke, actRestore, actThrottle}, false, "contained"},
		{[]string{actRevoke, actRestore}, true, "contained"}, // another credential still revoked
		{[]string{actRevoke, actFalsePositive}, true, "false positive"},
	} {
		in := Incident{}
		for i, k := range tc.acts {
			in.Actions = append(in.Actions, IncidentAction{Key: fmt.Sprint(i), Kind: k})
		}
		if tc.revoked {
			in.Revoked = []string{"kong/cred-1"}
		}
		if got := in.status(); got != tc.want {
			t.Errorf("actions %v, revoked %v: status %q, want %q", tc.acts, tc.revoked, got, tc.want)
		}
	}
}

// A summary tells what is new since the last one: the count, the kinds,
// the features most often anomalous, the routes called most and the
// routes new to the incident.
func TestDigestIsWhatIsNewSinceTheLastOne(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	in := Incident{ID: "inc-1", AgentID: "agent-esc"}
	add := func(as ...anomaly.Anomaly) {
		for _, a := range as {
			in.Count++
			in.observe(a)
		}
	}
	add(escalating(0, start), escalating(1, start))
	mark := in.mark(1)
	if d := in.digest(mark); d.New != 0 || len(d.Kinds) != 0 || len(d.Routes) != 0 {
		t.Errorf("nothing new, yet the digest says %+v", d)
	}
	b := escalating(12, start)
	b.Kind = anomaly.UnapprovedRoute
	b.Explanation = append(b.Explanation, anomaly.Feature{Name: "distinct_routes", Observed: 9, Expected: 2})
	add(escalating(11, start), b)
	d := in.digest(mark)
	if d.New != 2 || d.Severity != "medium" {
		t.Errorf("digest %+v: want 2 new, severity medium", d)
	}
	if fmt.Sprint(d.Kinds) != "[{behaviour 1} {unapproved_route 1}]" {
		t.Errorf("kinds %v", d.Kinds)
	}
	if len(d.Features) != 2 || d.Features[0].Name != "response_bytes" || d.Features[0].Observed != 14e6 {
		t.Errorf("features %+v: want response_bytes first (in both), at its highest", d.Features)
	}
	if len(d.Routes) != 2 || d.Routes[0] != (anomaly.RouteCount{Route: "/customers/{id}", Calls: 21 + 22}) {
		t.Errorf("routes %+v: want the calls since the mark", d.Routes)
	}
	if fmt.Sprint(d.NewRoutes) != "[/export/v1]" {
		t.Errorf("new routes %v, want /export/v1", d.NewRoutes)
	}
	if !in.introduced("esc-00") || in.introduced("esc-11") {
		t.Errorf("classes %+v: the first anomaly brought the class, the twelfth did not", in.Classes)
	}
}

// Steps queued while the card waits (here for Slack's rate limit) are not
// announced again: the card, posted once Slack lets it, already shows the
// highest severity, with its mention. So the channel is mentioned once.
func TestEscalationsQueuedBehindTheCardAreToldByTheCard(t *testing.T) {
	r := newRigWith(t, func(r *rig) { r.playbooks = watchPlaybook })
	r.slack.RateLimit(2, 1) // two 429s with Retry-After: 1
	ctx := context.Background()
	start := time.Now().Add(-time.Hour)
	for _, i := range []int{0, 20, 40} { // MEDIUM, HIGH, CRITICAL
		if _, err := r.svc.Engine.Handle(ctx, escalating(i, start)); err != nil {
			t.Fatal(err)
		}
	}
	r.settle()
	var cards, esc []string
	for _, p := range r.slack.Posts() {
		if p.Method != "chat.postMessage" || p.ThreadTS != "" {
			continue
		}
		switch {
		case strings.Contains(p.Blocks, `"aw_escalation"`):
			esc = append(esc, p.Text)
		case strings.Contains(p.Blocks, `"aw_card"`):
			cards = append(cards, p.Text)
		}
	}
	if len(cards) != 1 || !strings.Contains(cards[0], "CRITICAL") || !strings.Contains(cards[0], "<!here>") {
		t.Fatalf("cards %q; want one, posted at CRITICAL with its mention", cards)
	}
	if len(esc) != 0 {
		t.Errorf("escalations %q; want none: the card told CRITICAL", esc)
	}
	recs, err := r.svc.Audit.Query(ctx, audit.Filter{AgentID: "agent-esc"})
	if err != nil {
		t.Fatal(err)
	}
	superseded := 0
	for _, rec := range recs {
		if rec.Result == audit.ResultSkipped && strings.Contains(rec.Detail, "escalation to") && strings.Contains(rec.Detail, "not posted") {
			superseded++
		}
	}
	if superseded != 2 {
		t.Errorf("%d escalations audited as not posted, want 2 (HIGH and CRITICAL)", superseded)
	}
}

// postedThenLost posts through the notifier it wraps, but answers the
// first summary's post with a connection error, as if the process had
// died between Slack's answer and the record of it.
type postedThenLost struct {
	Notifier
	lost atomic.Bool
}

func (p *postedThenLost) PostThreadReply(ctx context.Context, channel, threadTS string, m slackui.Message) (string, error) {
	ts, err := p.Notifier.PostThreadReply(ctx, channel, threadTS, m)
	if err == nil && isDigest(m) && p.lost.CompareAndSwap(false, true) {
		return "", &slackui.PostError{Op: "chat.postMessage", Channel: channel, Retry: true, Err: errors.New("connection reset after the post")}
	}
	return ts, err
}

func (p *postedThenLost) FindPosted(ctx context.Context, channel, threadTS, marker string, since time.Time) (string, bool, error) {
	return p.Notifier.(PostFinder).FindPosted(ctx, channel, threadTS, marker, since)
}

func isDigest(m slackui.Message) bool {
	for _, b := range m.Blocks {
		if s, ok := b.(*slack.SectionBlock); ok && s.BlockID == "aw_digest" {
			return true
		}
	}
	return false
}

// A summary posted by a run that then lost Slack's answer is found by the
// next run, which marks what that summary covered: the anomalies that
// joined in between are in the next summary, not lost between the two.
func TestSummaryFoundAfterALostAnswerLeavesLaterAnomaliesForTheNext(t *testing.T) {
	clock := &fakeClock{t: time.Now().Truncate(time.Minute).Add(time.Minute)}
	var wrap *postedThenLost
	r := newRigWith(t, func(r *rig) {
		r.now = clock.now
		r.playbooks = watchPlaybook
		r.deps = func(d *Deps) {
			d.WrapNotifier = func(n Notifier) Notifier { wrap = &postedThenLost{Notifier: n}; return wrap }
		}
	})
	ctx := context.Background()
	start := clock.now().Add(-2 * time.Minute)
	handle := func(i int) {
		t.Helper()
		if _, err := r.svc.Engine.Handle(ctx, escalating(i, start)); err != nil {
			t.Fatal(err)
		}
	}
	handle(0) // the card
	r.settleBy(clock)
	clock.add(time.Minute)
	handle(1) // into the first summary
	clock.add(5 * time.Minute)
	r.settleBy(clock) // the summary is posted; its answer is lost
	if !wrap.lost.Load() {
		t.Fatal("the first summary was not posted")
	}
	handle(2) // join while the summary waits for its retry
	handle(3)
	for range 3 {
		clock.add(5 * time.Minute)
		r.settleBy(clock)
	}
	var summaries []testsrv.SlackPost
	for _, p := range r.slack.Posts() {
		if p.ThreadTS != "" && strings.Contains(p.Blocks, `"aw_digest"`) {
			summaries = append(summaries, p)
		}
	}
	if len(summaries) != 2 {
		t.Fatalf("%d summaries, want 2 (the one found again, then the later anomalies')", len(summaries))
	}
	if !strings.Contains(summaries[1].Text+summaries[1].Blocks, "2 more anomalies") {
		t.Errorf("the second summary does not cover the 2 anomalies that joined meanwhile: %s", summaries[1].Text)
	}
	in, _ := r.svc.Engine.Incident(IncidentID(escalating(0, start)))
	if got := in.Digested["#soc-watch"].Count; got != 4 {
		t.Errorf("summaries covered %d anomalies, want 4", got)
	}
}

// TestCardUpdateNotSentWhenTheCardShowsIt: a revocation done while its
// incident's alert is queued queues no card update and no thread note: the
// card, rendered when posted, shows it. A later change of the
// incident is (in the next card slot, up to cardEvery later: real time, as
// the Worker's retries and the card slots do not share a fake clock).
func TestCardUpdateNotSentWhenTheCardShowsIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRigWith(t, func(r *rig) {
		r.playbooks = revokeThenNotify
		r.cfg.Responder.GroupWait = 0
	})
	r.kong.Add("agent-1", "cred-1", "secret-key")
	// The alert's first post is refused (rate limited, retry after 1 s):
	// the revocation is done meanwhile, and queues its card update, which
	// waits for the alert.
	r.slack.FailNext("chat.postMessage", "ratelimited")
	updates := func() (n int, last string) {
		for _, p := range r.slack.Posts() {
			if p.Method == "chat.update" {
				n, last = n+1, p.Text
			}
		}
		return n, last
	}
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()
	a := exfil("an-1", "agent-1", "cred-1", start)
	a.Severity = "high"
	if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r.settle()
		open, err := r.svc.Worker.Store.List(ctx, outbox.StatePending, outbox.StateInFlight)
		if err != nil {
			t.Fatal(err)
		}
		if len(open) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	in, _ := r.svc.Engine.Incident(IncidentID(a))
	if len(in.Revoked) != 1 || len(in.Actions) != 1 {
		t.Fatalf("incident after the first anomaly: revoked %v, actions %v", in.Revoked, in.Actions)
	}
	var card string
	for _, p := range r.slack.Posts() {
		if p.Method != "chat.update" && p.ThreadTS == "" && strings.Contains(p.Blocks, `"aw_card"`) {
			card = p.Blocks
		}
	}
	if !strings.Contains(card, "cred-1") {
		t.Fatalf("the posted card does not show the revocation: %s", card)
	}
	if n, _ := updates(); n != 0 {
		t.Errorf("%d card updates sent for a card that already showed the revocation, want 0", n)
	}
	// Nor was one queued, or a note in the thread: the alert, still
	// queued when the revocation ended, shows it.
	all, err := r.svc.Worker.Store.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range all {
		if en.Kind == kindCard || en.Kind == kindNote {
			t.Errorf("%s %s queued for a change made before the alert was posted", en.Kind, en.Key)
		}
	}
	for _, p := range r.slack.Posts() {
		if p.ThreadTS != "" {
			t.Errorf("a message in the thread, which the card already says: %q", p.Text)
		}
	}

	// A second anomaly of the incident: the card changes (its count), and
	// the update is sent.
	b := exfil("an-2", "agent-1", "cred-1", start+60_000)
	b.Severity = "high"
	if _, err := r.svc.Engine.Handle(ctx, b); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(cardEvery + 10*time.Second)
	for n, _ := updates(); n == 0 && time.Now().Before(deadline); n, _ = updates() {
		time.Sleep(50 * time.Millisecond)
	}
	r.settle()
	if n, last := updates(); n != 1 || !strings.Contains(last, "2 anomalies") {
		t.Errorf("after the incident changed: %d card updates, last %q; want one showing 2 anomalies", n, last)
	}
}

// TestChangeWhileTheAlertPostsUpdatesTheCard: a change made while the
// incident's alert is being posted, after it rendered the card, queues no
// update of its own; the alert, once posted, queues it, and the card ends
// up showing the change.
func TestChangeWhileTheAlertPostsUpdatesTheCard(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newRigWith(t, func(r *rig) {
		r.playbooks = revokeThenNotify
		r.cfg.Responder.GroupWait = 0
	})
	r.kong.Add("agent-1", "cred-1", "secret-key")
	posting := make(chan struct{})
	var once sync.Once
	revoked := func() bool {
		done, err := r.svc.Worker.Store.List(ctx, outbox.StateDone)
		if err != nil {
			t.Error(err)
			return true
		}
		return slices.ContainsFunc(done, func(en outbox.Entry) bool { return en.Kind == kindRevoke })
	}
	// Slack holds the alert's post until the revocation has ended; the
	// revocation reaches Kong once the alert is being posted.
	r.slack.Before(func(method string) {
		if method != "chat.postMessage" {
			return
		}
		once.Do(func() {
			close(posting)
			for deadline := time.Now().Add(10 * time.Second); !revoked() && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
		})
	})
	r.kong.Before(func(*http.Request) {
		select {
		case <-posting:
		case <-time.After(10 * time.Second):
		}
	})
	start := time.Now().Add(-5 * time.Minute).Truncate(time.Minute).UnixMilli()
	a := exfil("an-1", "agent-1", "cred-1", start)
	if _, err := r.svc.Engine.Handle(ctx, a); err != nil {
		t.Fatal(err)
	}
	var updates []testsrv.SlackPost
	for deadline := time.Now().Add(cardEvery + 10*time.Second); len(updates) == 0 && time.Now().Before(deadline); {
		r.settle()
		for _, p := range r.slack.Posts() {
			if p.Method == "chat.update" {
				updates = append(updates, p)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	var alert testsrv.SlackPost
	for _, p := range r.slack.Posts() {
		if p.Method == "chat.postMessage" && p.ThreadTS == "" {
			alert = p
		}
	}
	if strings.Contains(alert.Blocks, "revoke done") {
		t.Fatal("the alert was rendered after the revocation: the test did not hold it")
	}
	if len(updates) != 1 || !strings.Contains(updates[0].Blocks, "revoke done") || updates[0].TS != alert.TS {
		t.Errorf("card updates %+v; want one of the alert %s showing the revocation", updates, alert.TS)
	}
}
