package respond

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// waitForPredecessor is how long an alert waits for its snapshot, or a
// reply for its thread's alert, before going on without.
const waitForPredecessor = 2 * time.Minute

// Kinds returns the outbox kinds the engine's Worker runs.
func (e *Engine) Kinds() map[string]outbox.Kind {
	h := func(f func(context.Context, outbox.Entry, job) ([]byte, error)) outbox.Handler {
		return func(ctx context.Context, en outbox.Entry) ([]byte, error) {
			if e.o.Fence != nil {
				if err := e.o.Fence(); err != nil {
					return nil, err
				}
			}
			var j job
			if err := json.Unmarshal(en.Payload, &j); err != nil {
				return nil, outbox.Permanent(fmt.Errorf("decode %s entry %s: %w", en.Kind, en.Key, err))
			}
			return f(ctx, en, j)
		}
	}
	// Each action waits for its audit record (a ClickHouse insert the
	// audit batcher shares among those waiting, started at most every
	// 500ms under load in the distributed mode), so an action takes about
	// one insert's time plus up to that gap whatever the gateway does:
	// with 8 at a time the responder topped out near 60 revocations a
	// second, with 128 at a time and a 250ms gap near 450; 512 at a time
	// over about 550ms each is over 900 a second per kind, past what the
	// CPU allows. Most of them wait for the insert, not the gateway: the
	// gateways' limits are kept by their clients (clientlimit) and Slack's
	// by the per-channel cap and Retry-After, not by this number.
	gw := outbox.Kind{Concurrency: 512, Timeout: 2 * time.Minute, IndependentRetryAfter: true}
	slackKind := outbox.Kind{Concurrency: 512, Timeout: 30 * time.Second}
	with := func(k outbox.Kind, f func(context.Context, outbox.Entry, job) ([]byte, error)) outbox.Kind {
		k.Handler = h(f)
		return k
	}
	// An alert waiting for a containment step is brought forward once the
	// step's run ends, whatever its outcome (a failure, an approval asked,
	// a retry to come): the alert waits for the first run only. A success
	// brings it forward sooner, as soon as the action is on the incident.
	contains := func(f func(context.Context, outbox.Entry, job) ([]byte, error)) func(context.Context, outbox.Entry, job) ([]byte, error) {
		return func(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
			defer func() {
				// Marked before the alerts are looked for: an alert
				// naming itself root meanwhile reads the mark
				// (stepEnded), as the step's outcome is not written
				// yet. Not on ctx, which ends at the kind's timeout.
				e.ended.set(en.Key, struct{}{})
				e.hastenAlerts(context.WithoutCancel(ctx), j.Incident)
			}()
			return f(ctx, en, j)
		}
	}
	// Each entry of these kinds posts one message that carries the entry's
	// key, so a run after an interrupted one looks for it first.
	posts := func(k outbox.Kind, f func(context.Context, outbox.Entry, job) ([]byte, error)) outbox.Kind {
		k = with(k, f)
		k.Handler = checkPosts(k.Handler)
		return k
	}
	return map[string]outbox.Kind{
		kindSnapshot: with(outbox.Kind{Concurrency: 2, Timeout: 5 * time.Minute}, e.runSnapshot),
		kindAlert:    posts(slackKind, e.runAlert),
		kindReply:    posts(slackKind, e.runReply),
		kindNote:     posts(slackKind, e.runNote),
		kindApprove:  posts(slackKind, e.runApprove),
		kindRevoke:   with(gw, contains(e.runRevoke)),
		kindQuar:     with(gw, contains(e.runRevoke)),
		kindRestore:  with(gw, e.runRestore),
		kindWebhook:  with(gw, e.runWebhook),
		kindThrottle: with(gw, contains(e.runThrottle)),
		kindAnswer:   with(outbox.Kind{Concurrency: 1}, e.runAnswer),
		kindTimeout:  with(outbox.Kind{Concurrency: 1}, e.runTimeout),
		kindEphemeral: with(slackKind, func(ctx context.Context, _ outbox.Entry, j job) ([]byte, error) {
			return e.runEphemeral(ctx, j)
		}),
		kindSummary:  posts(slackKind, e.runSummary),
		kindDigest:   posts(slackKind, e.runDigest),
		kindEscalate: posts(slackKind, e.runEscalate),
		// Updates have a kind of their own, so that a Retry-After on
		// chat.update holds back only updates, never an alert. Each holds
		// its place for two durable writes (its claim and its outcome) as
		// well as the call: at 4 at a time the distributed responder fell
		// behind at the 170 a second each of three instances handled at
		// 500 anomalies a second, and every pass of the Worker then walked
		// the growing backlog. Slack's limit is kept by its
		// Retry-After, which pauses the kind, not by this number.
		kindCard: with(outbox.Kind{Concurrency: 64, Timeout: 30 * time.Second}, e.runCard),
	}
}

// record writes the step's audit record.
func (e *Engine) record(ctx context.Context, j job, action string, res audit.Result, detail string) error {
	r := audit.Record{
		Actor: j.Actor, Action: action, Playbook: j.Decision.Playbook, DecisionID: j.Decision.ID, StepID: j.Step.ID,
		IncidentID: j.Incident, AnomalyID: j.Anomaly.ID, AgentID: j.Decision.Target.AgentID,
		CredentialID: j.Decision.Target.CredentialID, DryRun: j.Step.DryRun, Why: j.Why, Result: res, Detail: detail,
	}
	if r.AgentID == "" {
		r.AgentID = j.Anomaly.AgentID
	}
	if r.Actor.Kind == "" {
		r.Actor.Kind = audit.ActorAutomatic
	}
	if err := e.o.Audit.Append(ctx, r); err != nil {
		return fmt.Errorf("audit %s %s: %w", action, j.Step.ID, err)
	}
	e.o.Metrics.action(action, string(res))
	return nil
}

// skipOrDry handles the steps that must not act: a skipped step, a dry run.
// It returns true when the step is finished.
func (e *Engine) skipOrDry(ctx context.Context, j job, action, would string) (bool, error) {
	if j.Step.Skip != "" {
		return true, e.record(ctx, j, action, audit.ResultSkipped, j.Step.Skip)
	}
	if j.Step.DryRun {
		return true, e.record(ctx, j, action, audit.ResultDryRun, "would "+would)
	}
	return false, nil
}

func (e *Engine) runSnapshot(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	if done, err := e.skipOrDry(ctx, j, string(playbooks.KindSnapshot), "write an evidence bundle of the agent's timeline"); done {
		return nil, err
	}
	if e.o.Events == nil || e.o.Chain == nil || e.o.Evidence == "" {
		return nil, e.permanent(ctx, j, string(playbooks.KindSnapshot), errors.New("no event source, evidence chain or evidence directory configured"))
	}
	id := evidence.BundleID(j.Step.ID)
	req := evidence.Request{ID: id, IncidentID: j.Incident, Anomaly: j.Anomaly, MaxEvents: e.o.Settings.SnapshotMaxEvents}
	if s := j.Step.Snapshot; s != nil {
		req.Before, req.After = s.Before, s.After
	}
	if req.Before == 0 && req.After == 0 {
		req.Before, req.After = evidence.DefaultBefore, evidence.DefaultAfter
	}
	if e.o.Scores != nil && j.Anomaly.WindowEndMs > 0 {
		from := j.Anomaly.WindowStartMs - req.Before.Milliseconds() - 24*time.Hour.Milliseconds()
		scores, err := e.o.Scores.Scores(ctx, j.Anomaly.AgentID, from, j.Anomaly.WindowEndMs+req.After.Milliseconds())
		if err != nil {
			e.log.Warn("snapshot without baseline scores", "step", j.Step.ID, "err", err)
		}
		req.Scores = scores
	}
	var b evidence.Bundle
	var err error
	if en.Recovered || en.Attempts > 1 {
		b, err = evidence.Resume(ctx, e.o.Chain, e.o.Evidence, id)
	}
	if b.Path == "" {
		b, err = evidence.Snapshot(ctx, req, e.o.Events, e.o.Chain, e.o.Evidence, e.now())
		if errors.Is(err, evidence.ErrExists) || errors.Is(err, evidence.ErrUnrecorded) {
			b, err = evidence.Resume(ctx, e.o.Chain, e.o.Evidence, id)
		}
	}
	if err != nil {
		_ = e.record(ctx, j, string(playbooks.KindSnapshot), audit.ResultFailed, err.Error())
		return nil, fmt.Errorf("snapshot %s: %w", id, err)
	}
	result, detail := id, evidence.SnapshotDetail(b)
	ref := ""
	if e.o.Checkpoints != nil {
		// The checkpoint is signed before the alert is posted, so that the
		// alert carries an anchor of this bundle outside this host. A
		// failure does not fail the snapshot: the timer signs it later.
		cp, ok, err := e.o.Checkpoints.AfterAppend(ctx)
		if err != nil {
			e.log.Warn("evidence checkpoint failed; the next tick retries", "step", j.Step.ID, "err", err)
		}
		if ok && cp.Seq >= b.Manifest.Seq {
			ref = cp.Ref()
			result, detail = id+" · "+ref, detail+"; "+ref
		}
	}
	if _, err := e.inc.update(j.Incident, e.now(), func(in *Incident) {
		if !slices.Contains(in.Snapshots, id) {
			in.Snapshots = append(in.Snapshots, id)
		}
		if ref != "" {
			in.Checkpoint = ref
		}
	}); err != nil && !errors.Is(err, errNoIncident) {
		return nil, err
	}
	if err := e.record(ctx, j, string(playbooks.KindSnapshot), audit.ResultOK, detail); err != nil {
		return nil, err
	}
	e.acted(ctx, j.Incident, en.Key, actSnapshot, "evidence snapshot "+result)
	return []byte(result), nil
}

// alertContext is what the alert shows beyond the anomaly.
func (e *Engine) alertContext(ctx context.Context, j job) (slackui.AlertContext, error) {
	ac := slackui.AlertContext{IncidentID: j.Incident, Codec: e.o.Codec, HideActions: e.o.Codec == nil}
	if j.SnapshotKey != "" {
		sn, ok, err := e.o.Outbox.Get(ctx, j.SnapshotKey)
		if err != nil {
			return ac, err
		}
		if ok {
			switch sn.State {
			case outbox.StateDone:
				ac.SnapshotID = string(sn.Result)
			case outbox.StatePending, outbox.StateInFlight:
				if sn.NextAttempt.After(e.now().Add(time.Second)) {
					// Scheduled for the end of its "after" window: the
					// alert does not wait for it.
					ac.SnapshotID = "scheduled for " + sn.NextAttempt.UTC().Format("15:04:05") + " UTC"
				} else if time.Since(sn.Created) < waitForPredecessor {
					return ac, outbox.Wait(100*time.Millisecond, "waiting for the evidence snapshot")
				}
			}
		}
	}
	if slackui.Grouped(j.Anomaly.Kind) {
		ac.Agents = []string{}
	}
	return ac, nil
}

func (e *Engine) runAlert(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	if done, err := e.skipOrDry(ctx, j, string(playbooks.KindNotify), "post an alert to "+j.Channel); done {
		return nil, err
	}
	if e.o.Notifier == nil {
		return nil, e.permanent(ctx, j, string(playbooks.KindNotify), errors.New("no Slack token and no console configured"))
	}
	ac, err := e.alertContext(ctx, j)
	if err != nil {
		return nil, err
	}
	if n := j.Step.Notify; n != nil {
		ac.Mention, ac.MentionIDs = n.Mention, n.MentionIDs
	}
	// Registered before the incident is read: a change from then on
	// queues no card update (the alert may show it), so the alert queues
	// one once posted if anything changed meanwhile.
	posted := false
	end := e.posting.begin(en.Key)
	defer func() {
		if changed := end(); posted && changed {
			e.refreshCard(ctx, j.Incident)
		}
	}()
	var m slackui.Message
	carded := ""
	if in, ok := e.inc.get(j.Incident); ok {
		// The incident's top-level message is its card, as it stands now
		// (a group wait may have gathered more than this anomaly).
		m, err = e.cardMessage(in, ac, j.Anomaly)
		carded = in.Severity
	} else {
		m, err = slackui.Render(j.Anomaly, ac)
	}
	if err != nil {
		return nil, e.permanent(ctx, j, string(playbooks.KindNotify), err)
	}
	m.Marker = en.Key
	prev, err := e.earlier(ctx, en, j.Channel, "")
	if err != nil {
		return nil, err
	}
	if prev.Found {
		if err := e.record(ctx, j, string(playbooks.KindNotify), audit.ResultOK, "posted to "+j.Channel+" ts "+prev.TS+" (by an interrupted run, found in the channel)"); err != nil {
			return nil, err
		}
		// That run rendered the card before the changes made since,
		// whose notes and updates were left to this alert: the update
		// catches up.
		posted = true
		e.posting.changed(en.Key)
		return []byte(j.Channel + " " + prev.TS), nil
	}
	if !e.caps.admit(j.Channel, capAlert, j.Anomaly.Kind, e.now()) {
		// No ts in the result: the incident has no thread, and its next
		// post stands alone (and is capped in its turn).
		return []byte(j.Channel), e.suppressed(ctx, j, capAlert, j.Channel)
	}
	ts, err := e.o.Notifier.PostAlert(ctx, j.Channel, m)
	if err != nil {
		return nil, e.postFailed(ctx, j, err)
	}
	posted = true
	if e.o.AfterAction != nil {
		e.o.AfterAction(string(playbooks.KindNotify), en.Key)
	}
	e.shown.remember(en.Key, m)
	if carded != "" {
		// Remembered so that an escalation queued while the card waited
		// does not mention the channel a second time for the same step.
		// Lost in a crash right here, that escalation is posted: a second
		// mention, never a missing one.
		if _, err := e.inc.update(j.Incident, e.now(), func(in *Incident) {
			if severityRank(carded) > severityRank(in.Carded[j.Channel]) {
				if in.Carded == nil {
					in.Carded = map[string]string{}
				}
				in.Carded[j.Channel] = carded
			}
		}); err != nil {
			e.log.Warn("card posted; its severity not remembered", "incident", j.Incident, "err", err)
		}
	}
	e.o.Metrics.alertLatency(j.Anomaly, e.now())
	if err := e.record(ctx, j, string(playbooks.KindNotify), audit.ResultOK, "posted to "+j.Channel+" ts "+ts+prev.note()); err != nil {
		return nil, err
	}
	return []byte(j.Channel + " " + ts), nil
}

// rootTS returns the channel and ts of the thread's alert, or a retry while
// it is not posted yet. ok false means there is no thread to reply in.
func (e *Engine) rootTS(ctx context.Context, root string) (channel, ts string, ok bool, err error) {
	if root == "" {
		return "", "", false, nil
	}
	r, found, err := e.o.Outbox.Get(ctx, root)
	if err != nil || !found {
		return "", "", false, err
	}
	switch r.State {
	case outbox.StateDone:
		var c, t string
		if _, err := fmt.Sscanf(string(r.Result), "%s %s", &c, &t); err != nil || t == "" {
			return "", "", false, nil // suppressed or dry run: no thread
		}
		return c, t, true, nil
	case outbox.StatePending, outbox.StateInFlight:
		wait := time.Until(r.NextAttempt)
		if wait < 100*time.Millisecond {
			wait = 100 * time.Millisecond
		}
		return "", "", false, outbox.Wait(wait, "waiting for the thread's alert")
	}
	return "", "", false, nil
}

func (e *Engine) runReply(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	if done, err := e.skipOrDry(ctx, j, string(playbooks.KindNotify), "post a follow-up in the incident's thread in "+j.Channel); done {
		return nil, err
	}
	if e.o.Notifier == nil {
		return nil, e.permanent(ctx, j, string(playbooks.KindNotify), errors.New("no Slack token and no console configured"))
	}
	channel, ts, ok, err := e.rootTS(ctx, j.Root)
	if err != nil {
		return nil, err
	}
	ac, err := e.alertContext(ctx, j)
	if err != nil {
		return nil, err
	}
	var m slackui.Message
	if ok {
		m, err = slackui.RenderFollowUp(j.Anomaly, ac)
	} else {
		m, err = slackui.Render(j.Anomaly, ac) // the thread's alert was not posted: this one stands alone
	}
	if err != nil {
		return nil, e.permanent(ctx, j, string(playbooks.KindNotify), err)
	}
	m.Marker = en.Key
	what := capReply
	if !ok {
		channel, ts, what = j.Channel, "", capAlert
	}
	prev, err := e.earlier(ctx, en, channel, ts)
	if err != nil {
		return nil, err
	}
	if prev.Found {
		if err := e.record(ctx, j, string(playbooks.KindNotify), audit.ResultOK, "posted in thread "+ts+" of "+channel+" ts "+prev.TS+" (by an interrupted run, found in Slack)"); err != nil {
			return nil, err
		}
		return []byte(channel + " " + prev.TS), nil
	}
	if !e.caps.admit(channel, what, j.Anomaly.Kind, e.now()) {
		return []byte(channel), e.suppressed(ctx, j, what, channel)
	}
	var got string
	if ok {
		got, err = e.o.Notifier.PostThreadReply(ctx, channel, ts, m)
	} else {
		channel = j.Channel
		got, err = e.o.Notifier.PostAlert(ctx, channel, m)
	}
	if err != nil {
		return nil, e.postFailed(ctx, j, err)
	}
	e.o.Metrics.alertLatency(j.Anomaly, e.now())
	if err := e.record(ctx, j, string(playbooks.KindNotify), audit.ResultOK, "posted in thread "+ts+" of "+channel+" ts "+got+prev.note()); err != nil {
		return nil, err
	}
	return []byte(channel + " " + got), nil
}

func (e *Engine) runNote(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	if e.o.Notifier == nil {
		return nil, nil
	}
	channel, ts, ok, err := e.rootTS(ctx, j.Root)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, nil // no thread to note it in (no alert, or it was suppressed)
	}
	if prev, err := e.earlier(ctx, en, channel, ts); err != nil || prev.Found {
		return nil, err
	}
	if !e.caps.admit(channel, capNote, "", e.now()) {
		return nil, e.suppressed(ctx, j, capNote, channel)
	}
	m := slackui.RenderNote(j.Text)
	m.Marker = en.Key
	_, err = e.o.Notifier.PostThreadReply(ctx, channel, ts, m)
	if err != nil {
		var pe *slackui.PostError
		if errors.As(err, &pe) && !pe.Retry {
			return nil, outbox.Permanent(err)
		}
		return nil, err
	}
	return nil, nil
}

// postFailed sorts a Slack error: a rate limit waits its Retry-After, a
// permanent error (a channel the bot is not in) fails the entry and is
// audited, anything else is retried.
func (e *Engine) postFailed(ctx context.Context, j job, err error) error {
	var pe *slackui.PostError
	if errors.As(err, &pe) {
		if pe.RetryAfter > 0 {
			return outbox.RetryAfter(pe.RetryAfter, err)
		}
		if !pe.Retry {
			return e.permanent(ctx, j, string(playbooks.KindNotify), err)
		}
	}
	return err
}

// permanent audits a failure no retry can fix and fails the entry.
func (e *Engine) permanent(ctx context.Context, j job, action string, err error) error {
	if aerr := e.record(ctx, j, action, audit.ResultFailed, err.Error()); aerr != nil {
		return aerr
	}
	return outbox.Permanent(err)
}

// note queues a short message in the incident's thread and records the
// action (of kind act) on its card.
func (e *Engine) note(ctx context.Context, j job, key, act, text string) {
	e.acted(ctx, j.Incident, key, act, text)
	e.queueNote(ctx, j, key, text)
}

// queueNote is note for an action already recorded on the incident: it
// queues the message in each of the incident's threads whose alert has
// started. An alert still queued renders the card, action included, when
// it runs: a note in its thread would only repeat the card.
func (e *Engine) queueNote(ctx context.Context, j job, key, text string) {
	in, ok := e.inc.get(j.Incident)
	// The agent routes the note to its partition, which takes it even
	// while being handed over (a revocation finishing then notes it);
	// with no agent it would need a partition owned now, and there is
	// none during a hand-over.
	nj := job{Incident: j.Incident, Decision: j.Decision, Text: text,
		Anomaly: anomaly.Anomaly{AgentID: j.Anomaly.AgentID, CredentialID: j.Anomaly.CredentialID, Kind: j.Anomaly.Kind}}
	if ok {
		if nj.Anomaly.AgentID == "" {
			nj.Anomaly.AgentID = in.AgentID
		}
		for c, r := range in.Roots {
			if e.alertPending(ctx, r) {
				continue
			}
			nj.Channel, nj.Root = c, r
			if _, err := e.enqueue(ctx, key+"@"+c, kindNote, nj); err != nil {
				e.log.Warn("queue note", "key", key, "err", err)
			}
		}
	}
}

// gateTarget is the adapter and target of a revoke, quarantine or
// throttle step, and of its undo. Each kind acts under its own incident key,
// so one incident may revoke, quarantine and throttle one credential. An
// unregistered agent has no credential: a quarantine blocks its id, which
// only the deny-list can hold (Kong would answer 404, which reads as
// "already revoked" and blocks nothing).
func (e *Engine) gateTarget(j job) (adapter string, t revoke.Target) {
	t = e.target(j)
	switch st := j.Step; st.Kind() {
	case playbooks.KindRevoke:
		adapter = st.Revoke.Adapter
	case playbooks.KindQuarantine:
		adapter = st.Quarantine.Adapter
		t.IncidentID += "/quarantine"
		if t.CredentialID == "" {
			t.CredentialID = "agent:" + t.AgentID
		}
	case playbooks.KindThrottle:
		adapter = st.Throttle.Adapter
		t.IncidentID += "/throttle"
	}
	return adapter, t
}

func (e *Engine) target(j job) revoke.Target {
	// A human's request (a button, a manual run, an approval) passes an
	// engaged kill switch: the switch stops the automation, not the people
	// overseeing it.
	t := revoke.Target{CredentialID: j.Decision.Target.CredentialID, AgentID: j.Decision.Target.AgentID, IncidentID: j.Incident, Origin: j.Origin,
		Force: j.Origin == revoke.Manual || j.Origin == revoke.Approved}
	if t.AgentID == "" {
		t.AgentID = j.Anomaly.AgentID
	}
	if t.CredentialID == "" {
		t.CredentialID = j.Anomaly.CredentialID
	}
	return t
}

// runRevoke revokes the credential (revoke) or blocks the agent (quarantine:
// the same deny through the adapter, under its own incident key, undone at
// its TTL). Past the budget or with the kill switch engaged it becomes an
// approval request.
func (e *Engine) runRevoke(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	kind := j.Step.Kind()
	adapter, t := e.gateTarget(j)
	if strings.HasPrefix(t.CredentialID, "agent:") && adapter != "denylist" {
		return nil, e.permanent(ctx, j, string(kind), fmt.Errorf("agent %s has no known credential; adapter %s cannot block an agent id (use the denylist adapter)", t.AgentID, adapter))
	}
	what := fmt.Sprintf("%s credential %s of agent %s through %s", kind, t.CredentialID, t.AgentID, adapter)
	if done, err := e.skipOrDry(ctx, j, string(kind), what); done {
		return nil, err
	}
	g, ok := e.o.Guards[adapter]
	if !ok {
		return nil, e.permanent(ctx, j, string(kind), fmt.Errorf("adapter %q is not configured", adapter))
	}
	if t.CredentialID == "" {
		return nil, e.permanent(ctx, j, string(kind), errors.New("the agent has no known credential"))
	}
	if e.o.BeforeAction != nil {
		e.o.BeforeAction(string(kind), en.Key)
	}
	if e.o.Fence != nil {
		if err := e.o.Fence(); err != nil {
			return nil, err
		}
	}
	res, err := g.Revoke(ctx, t)
	if err != nil {
		var ae *revoke.ApprovalError
		if errors.As(err, &ae) {
			return e.askApproval(ctx, j, what, ae.Detail)
		}
		if revoke.Retryable(err) {
			return nil, err
		}
		return nil, e.permanent(ctx, j, string(kind), err)
	}
	if e.o.AfterAction != nil {
		e.o.AfterAction(string(kind), en.Key)
	}
	e.o.Metrics.revokeLatency(j.Anomaly, j.Origin, e.now())
	done := fmt.Sprintf("%s done: %s %s (%s)", kind, what, res.Status, j.Actor)
	now := e.now()
	if _, err := e.inc.update(j.Incident, now, func(in *Incident) {
		k := adapter + "/" + t.CredentialID
		if kind == playbooks.KindRevoke && !slices.Contains(in.Revoked, k) {
			in.Revoked = append(in.Revoked, k)
		}
		// The action goes on the card in the same write as the
		// revocation (one changelog record, not two), before the audit
		// record rather than after: the gateway has answered, so the
		// action happened whatever follows. A run cut short after this
		// write runs again (the entry is not done), finds the revocation
		// at the gateway, keeps the action recorded here (act keeps one
		// per key) and queues the card's update and the notes as the
		// first run would have; those are queued after the write either
		// way, so they render it.
		in.act(en.Key, now.UnixMilli(), string(kind), done)
	}); err != nil && !errors.Is(err, errNoIncident) {
		return nil, err
	}
	// Queued before the alert waiting for this revocation is brought
	// forward, while it is still queued: it then shows the revocation,
	// and neither an update nor a note follows. Before the audit record,
	// which may wait for the batch's insert, so that the alert does not.
	e.refreshCard(ctx, j.Incident)
	e.queueNote(ctx, j, en.Key, done)
	e.hastenAlerts(ctx, j.Incident)
	detail := fmt.Sprintf("%s: %s (%d calls)", res.Status, res.Detail, res.Attempts)
	if err := e.record(ctx, j, string(kind), audit.ResultOK, detail); err != nil {
		return nil, err
	}
	if j.Step.TTL > 0 {
		uj := j
		uj.Actor = audit.Actor{Kind: audit.ActorAutomatic}
		uj.Why = fmt.Sprintf("TTL of %s ended", j.Step.TTL)
		if _, err := e.enqueue(ctx, j.Step.UndoID(), kindRestore, uj, outbox.NotBefore(e.now().Add(j.Step.TTL))); err != nil {
			return nil, err
		}
	}
	b, _ := json.Marshal(res)
	return b, nil
}

// runRestore undoes a revocation or quarantine (TTL or `responder restore`).
func (e *Engine) runRestore(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	kind := j.Step.Kind()
	if kind == playbooks.KindThrottle {
		return e.unthrottle(ctx, en, j)
	}
	adapter, t := e.gateTarget(j)
	g, ok := e.o.Guards[adapter]
	if !ok {
		return nil, e.permanent(ctx, j, "restore", fmt.Errorf("adapter %q is not configured", adapter))
	}
	res, err := g.Restore(ctx, t)
	if err != nil {
		if revoke.Retryable(err) {
			return nil, err
		}
		return nil, e.permanent(ctx, j, "restore", err)
	}
	e.forgetRevoked(j.Incident, adapter+"/"+t.CredentialID)
	if err := e.record(ctx, j, "restore", audit.ResultOK, fmt.Sprintf("%s: %s", res.Status, res.Detail)); err != nil {
		return nil, err
	}
	e.note(ctx, j, en.Key, actRestore, fmt.Sprintf("restored: %s of agent %s through %s (%s)", t.CredentialID, t.AgentID, adapter, j.Why))
	b, _ := json.Marshal(res)
	return b, nil
}

func (e *Engine) forgetRevoked(incident, k string) {
	_, _ = e.inc.update(incident, e.now(), func(in *Incident) {
		in.Revoked = slices.DeleteFunc(in.Revoked, func(s string) bool { return s == k })
	})
}

func (e *Engine) runWebhook(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	name := j.Step.Webhook.Target
	if done, err := e.skipOrDry(ctx, j, string(playbooks.KindWebhook), "call webhook "+name); done {
		return nil, err
	}
	gw, ok := e.o.Webhooks[name]
	if !ok {
		return nil, e.permanent(ctx, j, string(playbooks.KindWebhook), fmt.Errorf("webhook target %q is not configured", name))
	}
	t := e.target(j)
	if t.CredentialID == "" {
		t.CredentialID = "-"
	}
	t.IncidentID = j.Step.ID // the Idempotency-Key of the call
	res, err := gw.Revoke(ctx, t, func([]byte) error { return nil })
	if err != nil {
		if revoke.Retryable(err) {
			return nil, err
		}
		return nil, e.permanent(ctx, j, string(playbooks.KindWebhook), err)
	}
	return nil, e.record(ctx, j, string(playbooks.KindWebhook), audit.ResultOK, res.Detail)
}

func (e *Engine) runThrottle(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	th := j.Step.Throttle
	_, t := e.gateTarget(j)
	what := fmt.Sprintf("throttle credential %s of agent %s to %d/min through %s", t.CredentialID, t.AgentID, th.RatePerMinute, th.Adapter)
	if done, err := e.skipOrDry(ctx, j, string(playbooks.KindThrottle), what); done {
		return nil, err
	}
	g, ok := e.o.Throttlers[th.Adapter]
	if !ok {
		return nil, e.permanent(ctx, j, string(playbooks.KindThrottle), fmt.Errorf("adapter %q cannot throttle (only kong does)", th.Adapter))
	}
	if t.CredentialID == "" {
		return nil, e.permanent(ctx, j, string(playbooks.KindThrottle), errors.New("the agent has no known credential"))
	}
	res, saved, err := g.Throttle(ctx, t, th.RatePerMinute)
	if err != nil {
		if revoke.Retryable(err) {
			return nil, err
		}
		return nil, e.permanent(ctx, j, string(playbooks.KindThrottle), err)
	}
	// On the card, and the alert waiting for it brought forward, before
	// the audit record (which may wait for the batch's insert), as a
	// revocation does.
	e.note(ctx, j, en.Key, actThrottle, fmt.Sprintf("throttle done: %s (%s)", what, res.Status))
	e.hastenAlerts(ctx, j.Incident)
	if err := e.record(ctx, j, string(playbooks.KindThrottle), audit.ResultOK, fmt.Sprintf("%s: %s", res.Status, res.Detail)); err != nil {
		return nil, err
	}
	if j.Step.TTL > 0 {
		uj := j
		uj.Actor = audit.Actor{Kind: audit.ActorAutomatic}
		uj.Why = fmt.Sprintf("TTL of %s ended", j.Step.TTL)
		uj.Saved = saved
		if _, err := e.enqueue(ctx, j.Step.UndoID(), kindRestore, uj, outbox.NotBefore(e.now().Add(j.Step.TTL))); err != nil {
			return nil, err
		}
	}
	return saved, nil
}

// unthrottle is runRestore for a throttle step.
func (e *Engine) unthrottle(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	th := j.Step.Throttle
	_, t := e.gateTarget(j)
	g, ok := e.o.Throttlers[th.Adapter]
	if !ok {
		return nil, e.permanent(ctx, j, "restore", fmt.Errorf("adapter %q cannot throttle (only kong does)", th.Adapter))
	}
	res, err := g.Unthrottle(ctx, t, j.Saved)
	if err != nil {
		if revoke.Retryable(err) {
			return nil, err
		}
		return nil, e.permanent(ctx, j, "restore", err)
	}
	if err := e.record(ctx, j, "restore", audit.ResultOK, fmt.Sprintf("%s: %s", res.Status, res.Detail)); err != nil {
		return nil, err
	}
	e.note(ctx, j, en.Key, actRestore, fmt.Sprintf("throttle lifted: credential %s of agent %s (%s)", t.CredentialID, t.AgentID, j.Why))
	return nil, nil
}

// askApproval turns a step into an approval request (budget spent, kill
// switch engaged): approved, it runs as Approved.
func (e *Engine) askApproval(ctx context.Context, j job, what, why string) ([]byte, error) {
	if err := e.record(ctx, j, string(j.Step.Kind()), audit.ResultNeedsApproval, why); err != nil {
		return nil, err
	}
	aj := j
	step := j.Step
	// The step's own entry is done (needs_approval); the approved run gets
	// a key of its own.
	step.ID += "-approved"
	aj.Pending = []playbooks.Action{step}
	aj.Step = playbooks.Action{ID: j.Step.ID + "-approval", Index: step.Index, Step: playbooks.Step{Approve: &playbooks.Approve{
		Channel: e.o.Settings.ApprovalChannel, Timeout: playbooks.DefaultApproveTimeout, Default: playbooks.DecisionDeny}}}
	aj.Text = what
	aj.Why = why
	if _, err := e.enqueue(ctx, aj.Step.ID, kindApprove, aj); err != nil {
		return nil, err
	}
	return []byte("needs_approval"), nil
}

// runApprove posts the approval request and queues its timeout.
func (e *Engine) runApprove(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	ap := j.Step.Approve
	timeout := ap.Timeout
	if timeout <= 0 {
		timeout = playbooks.DefaultApproveTimeout
	}
	what := j.Text
	if what == "" {
		var names []string
		for _, p := range j.Pending {
			names = append(names, string(p.Kind()))
		}
		what = fmt.Sprintf("playbook %s: %v for agent %s", j.Decision.Playbook, names, e.target(j).AgentID)
	}
	if j.Step.DryRun {
		return []byte("dry_run"), e.record(ctx, j, string(playbooks.KindApprove), audit.ResultDryRun, "would ask for approval of "+what)
	}
	tj := j
	tj.Request = en.Key
	tj.Approved = ap.Default == playbooks.DecisionApprove
	if _, err := e.enqueue(ctx, en.Key+"-timeout", kindTimeout, tj, outbox.NotBefore(e.now().Add(timeout))); err != nil {
		return nil, err
	}
	if e.o.Notifier != nil && e.o.Codec != nil {
		channel := ap.Channel
		in, _ := e.inc.get(j.Incident)
		var root string
		for c, r := range in.Roots {
			if channel == "" || c == channel {
				channel, root = c, r
				break
			}
		}
		why := orDefault(j.Why, "the playbook asks a human first")
		if leader, joined, err := e.groupApproval(ctx, en.Key, j, channel); err != nil {
			return nil, err
		} else if joined {
			e.o.Metrics.grouped()
			return []byte(groupedPrefix + leader), e.record(ctx, j, string(playbooks.KindApprove), audit.ResultNeedsApproval,
				fmt.Sprintf("asked for approval of %s, grouped into approval request %s (same cause): its answer answers this one; %s after %s",
					what, leader, orDefault(ap.Default, playbooks.DecisionDeny), timeout))
		} else if e.o.Settings.ApprovalGroupWindow > 0 && !j.Decision.Manual {
			why += fmt.Sprintf(". Requests of the same cause in the next %s join this one; an answer answers every request that joined before it.", e.o.Settings.ApprovalGroupWindow)
		}
		ac := slackui.AlertContext{IncidentID: j.Incident, Codec: e.o.Codec}
		m, err := slackui.RenderApproval(j.Anomaly, ac, slackui.ApprovalRequest{ID: en.Key, What: what, Why: why,
			Timeout: timeout, Default: ap.Default})
		if err != nil {
			return nil, e.permanent(ctx, j, string(playbooks.KindApprove), err)
		}
		c, ts, ok, err := e.rootTS(ctx, root)
		if err != nil && root != "" {
			return nil, err
		}
		postTo := channel
		if ok {
			postTo = c
		}
		m.Marker = en.Key
		inThread := ""
		if ok {
			inThread = ts
		}
		var prev earlierPost
		if postTo != "" { // no channel: nothing was posted, nothing will be
			if prev, err = e.earlier(ctx, en, postTo, inThread); err != nil {
				return nil, err
			}
		}
		if prev.Found {
			return nil, e.record(ctx, j, string(playbooks.KindApprove), audit.ResultNeedsApproval,
				fmt.Sprintf("asked for approval of %s (ts %s, posted by an interrupted run, found in Slack); %s after %s", what, prev.TS, orDefault(ap.Default, playbooks.DecisionDeny), timeout))
		}
		if admitted, wait := e.caps.admitApproval(postTo, en.Key, e.now()); !admitted {
			return nil, outbox.Wait(wait, "the channel is over its message cap; an approval request waits for the next minute")
		}
		if ok {
			_, err = e.o.Notifier.PostThreadReply(ctx, c, ts, m)
		} else if channel != "" {
			_, err = e.o.Notifier.PostAlert(ctx, channel, m)
		}
		if err != nil {
			return nil, e.postFailed(ctx, j, err)
		}
	}
	e.acted(ctx, j.Incident, en.Key, actApprovalAsked, fmt.Sprintf("approval asked: %s (%s after %s)", what, orDefault(ap.Default, playbooks.DecisionDeny), timeout))
	return nil, e.record(ctx, j, string(playbooks.KindApprove), audit.ResultNeedsApproval,
		fmt.Sprintf("asked for approval of %s; %s after %s", what, orDefault(ap.Default, playbooks.DecisionDeny), timeout))
}

// approvalJob reads an approval request's entry.
func (e *Engine) approvalJob(ctx context.Context, request string) (job, error) {
	req, ok, err := e.o.Outbox.Get(ctx, request)
	if err != nil {
		return job{}, err
	}
	if !ok || req.Kind != kindApprove {
		return job{}, fmt.Errorf("no approval request %q", request)
	}
	var j job
	if err := json.Unmarshal(req.Payload, &j); err != nil {
		return job{}, fmt.Errorf("decode approval request %s: %w", request, err)
	}
	return j, nil
}

// Answer records a human's (or the timeout's) answer to an approval
// request. The first answer wins: later ones change nothing and return
// false. Who may answer from Slack is checked by OnClick (authorize);
// other callers (the CLI, the demo's scripted analyst) are trusted.
func (e *Engine) Answer(ctx context.Context, request string, approved bool, actor audit.Actor) (bool, error) {
	j, err := e.approvalJob(ctx, request)
	if err != nil {
		return false, err
	}
	j.Request, j.Approved, j.Actor = request, approved, actor
	return e.enqueue(ctx, request+"-answer", kindAnswer, j)
}

func (e *Engine) runTimeout(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	_, err := e.Answer(ctx, j.Request, j.Approved, audit.Actor{Kind: audit.ActorAutomatic, Name: "approval timeout"})
	return nil, err
}

// runAnswer runs the gated steps when approved, and records them refused
// when not.
func (e *Engine) runAnswer(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	verdict := "denied"
	if j.Approved {
		verdict = "approved"
	}
	if err := e.record(ctx, j, string(playbooks.KindApprove), audit.ResultOK, fmt.Sprintf("%s by %s", verdict, j.Actor)); err != nil {
		return nil, err
	}
	for _, st := range j.Pending {
		sj := j
		sj.Step, sj.Pending, sj.Text, sj.Request = st, nil, "", ""
		if !j.Approved {
			if err := e.record(ctx, sj, string(st.Kind()), audit.ResultRefused, "approval "+verdict+" by "+j.Actor.String()); err != nil {
				return nil, err
			}
			continue
		}
		sj.Origin = revoke.Approved
		if _, err := e.queueStep(ctx, sj); err != nil {
			return nil, err
		}
	}
	members, err := e.answerGroup(ctx, j)
	if err != nil {
		return nil, err
	}
	text := fmt.Sprintf("Approval request %s %s by %s", j.Request, verdict, j.Actor)
	if members > 0 {
		text += fmt.Sprintf(", and with it %d grouped requests of the same cause", members)
	}
	e.note(ctx, j, en.Key, actApproval, text)
	return []byte(verdict), nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// verdictValues finds the window's observed feature values for a verdict.
func (e *Engine) verdictValues(ctx context.Context, a anomaly.Anomaly) []float64 {
	if e.o.Scores == nil || a.WindowEndMs == 0 {
		return nil
	}
	ss, err := e.o.Scores.Scores(ctx, a.AgentID, a.WindowStartMs, a.WindowEndMs)
	if err != nil {
		e.log.Warn("verdict without the window's values", "anomaly", a.ID, "err", err)
		return nil
	}
	for _, s := range ss {
		if s.WindowStartMs == a.WindowStartMs {
			return s.Values
		}
	}
	return nil
}
