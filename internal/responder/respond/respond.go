// Package respond is cmd/responder's engine: it turns anomalies into
// playbook decisions (pkg/playbooks decides), queues every step in the
// durable outbox, and runs them — Slack alerts in one thread per agent
// incident, revocations and quarantines through internal/responder/revoke's guarded
// adapters, evidence snapshots, webhooks and approval requests — writing an
// audit record for each. Slack button clicks and manual runs (CLI, HTTP API)
// go through the same queue.
//
// Each anomaly is handled once as seen from outside: its steps are queued
// under keys derived from the anomaly id (so a redelivery finds them queued),
// and only then is the id marked handled. A crash in between re-queues
// nothing new; the outbox resumes what was in flight.
package respond

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/platform/keylock"
	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/evidence"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/partstate"
	"github.com/agentwatch/agentwatch/internal/responder/revoke"
	"github.com/agentwatch/agentwatch/internal/responder/silence"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

var errNoIncident = errors.New("no such incident")

// Outbox entry kinds.
const (
	kindSnapshot = "snapshot"
	kindAlert    = "slack.alert"
	kindReply    = "slack.reply"
	kindNote     = "slack.note"
	kindRevoke   = "revoke"
	kindQuar     = "quarantine"
	kindRestore  = "restore"
	kindWebhook  = "webhook"
	kindThrottle = "throttle"
	kindApprove  = "approve"
	kindAnswer   = "approve.answer"
	kindTimeout  = "approve.timeout"
)

// Notifier posts rendered messages: Slack (slackui.Poster) or the console.
type Notifier interface {
	PostAlert(ctx context.Context, channel string, m slackui.Message) (ts string, err error)
	PostThreadReply(ctx context.Context, channel, threadTS string, m slackui.Message) (ts string, err error)
	// UpdateMessage replaces the message ts in channel with m (an
	// incident's card); the same update twice leaves the same message.
	UpdateMessage(ctx context.Context, channel, ts string, m slackui.Message) error
}

// Registry says what the agent registry knows about an agent.
type Registry interface {
	Agent(id string) (playbooks.AgentInfo, bool)
}

// ScoreSource reads an agent's window scores (ClickHouse, or the embedded
// detector), for evidence and false-positive verdicts.
type ScoreSource interface {
	Scores(ctx context.Context, agentID string, fromMs, toMs int64) ([]anomaly.Score, error)
}

// FeedbackSink takes false-positive verdicts to the detector.
type FeedbackSink interface {
	Put(ctx context.Context, v anomaly.Verdict) error
}

// Settings are the responder's timing and limits (config responder.*).
type Settings struct {
	GroupWait time.Duration
	// ActionWait is how much longer than GroupWait an incident's first
	// alert waits for a containment step (revoke, quarantine, throttle)
	// queued before it in its playbook: it is posted as soon as the first
	// such step's first run ends (its card then shows the action if it
	// was done), and at GroupWait + ActionWait at the latest. 0: it does
	// not wait.
	ActionWait            time.Duration
	IncidentWindow        time.Duration
	RepeatInterval        time.Duration
	FalsePositiveSuppress time.Duration
	Snooze                time.Duration
	SnapshotMaxEvents     int
	// ButtonAdapter is the adapter the revoke and quarantine buttons use.
	ButtonAdapter string
	// ApprovalChannel is where approval requests go when the incident has
	// no alert thread (a revocation past the budget in a playbook that
	// does not notify).
	ApprovalChannel string
	// Responders are the Slack users (U…, W…) and user groups (S…) who may
	// revoke, quarantine and answer approval requests from Slack, besides
	// the playbooks' approvers.
	Responders []string
	// MaxMessagesPerMinute caps the messages posted to one channel per
	// minute; 0: no cap.
	MaxMessagesPerMinute int
	// ApprovalGroupWindow is how long approval requests of one cause join
	// the first one's message; 0: no grouping.
	ApprovalGroupWindow time.Duration
	// DigestInterval is the least time between two summaries in an
	// incident's thread; 0: one follow-up per anomaly.
	DigestInterval time.Duration
}

// Options are what New needs. Outbox, Seen, Audit and Set are required;
// the rest may be nil where the playbooks do not use them (a step whose
// dependency is missing fails with an error saying so).
type Options struct {
	Set      playbooks.Set
	Settings Settings
	Outbox   outbox.Store
	Seen     outbox.Seen
	Audit    *audit.Logger
	Silences *silence.Store
	// Ledger, when set, is asked whether an incident's revocation was
	// restored (by anyone, anywhere) before its alerts are suppressed.
	Ledger   revoke.Ledger
	Registry Registry
	Notifier Notifier
	Codec    *slackui.ActionCodec
	// Groups resolves the user groups among the approvers and responders;
	// nil: user groups admit nobody.
	Groups *slackui.Groups
	Guards map[string]*revoke.Guard
	// Throttlers are the adapters that can rate-limit an agent (kong).
	Throttlers map[string]revoke.Throttler
	Webhooks   map[string]revoke.Gateway
	Events     evidence.EventSource
	Chain      evidence.ChainStore
	Evidence   string // evidence root directory
	Scores     ScoreSource
	Feedback   FeedbackSink
	Incidents  string // incidents file; "" keeps them in memory
	// Owner, in the distributed mode, says which anomaly partitions this
	// process owns: incidents are then kept in its changelog (Incidents
	// is ignored) and registered with it, and every entry is queued in
	// the partition of its agent. Outbox must then be a store of the
	// same partitions (outbox.PartStore), registered with it first.
	Owner   *partstate.Owner
	Log     *slog.Logger
	Now     func() time.Time
	Metrics *Metrics
	// AfterAction, when set, is called after a revocation or quarantine
	// reached the gateway (kind revoke or quarantine), or an alert was
	// posted (kind notify), and before it is recorded: the crash tests
	// stop the process there.
	AfterAction func(kind, key string)
	// Fence, when set, is asked right before each step runs and before a
	// revocation or quarantine is sent; an error stops the step (the
	// distributed mode's stall.Detector: an instance that stood still
	// past its group session must not act for agents another owns now).
	Fence func() error
	// BeforeAction, when set, is called before a revocation or quarantine
	// is sent to the gateway (after its entry was marked in flight): the
	// crash tests stop the process there.
	BeforeAction func(kind, key string)

	// Checkpoints signs the chain's head after snapshots; nil: no
	// checkpoints.
	Checkpoints *evidence.Checkpointer
}

// Engine is the responder. Safe for concurrent use.
type Engine struct {
	// rootLocks make choosing, queueing and recording a thread's alert
	// one step per incident (the consumer and approved steps may queue
	// notify steps at once). Per incident, not one lock for all: the step
	// holds it across two durable writes, and one lock made every agent's
	// alert wait for every other's writes, which capped an instance near
	// one alert per pair of round trips to the state topic.
	rootLocks keylock.Map[string]
	o         Options
	inc       *incidents
	log       *slog.Logger
	now       func() time.Time
	caps      *channelCaps
	// groupMu guards approvals: the open approval group of each cause.
	groupMu   sync.Mutex
	approvals map[string]approvalGroup
	// shown remembers the cards this process posted or updated (see
	// cardShown).
	shown shownCards
	// ended holds the containment steps whose run ended in this process,
	// whatever the outcome: what an alert queued after its step ended
	// reads (stepEnded) while the step's outcome is not written yet.
	ended memo[struct{}]
	// posting holds the alerts being posted (see postingCards).
	posting postingCards
}

// New builds an Engine.
func New(o Options) (*Engine, error) {
	if o.Outbox == nil || o.Seen == nil || o.Audit == nil {
		return nil, errors.New("respond: Outbox, Seen and Audit are required")
	}
	if err := o.Set.Validate(); err != nil {
		return nil, err
	}
	var inc *incidents
	if o.Owner != nil {
		inc = newPartIncidents(o.Owner.Changelog(), o.Owner.Partition)
		o.Owner.Add(inc)
	} else {
		var err error
		if inc, err = openIncidents(o.Incidents); err != nil {
			return nil, err
		}
	}
	e := &Engine{o: o, inc: inc, log: o.Log, now: o.Now, caps: newChannelCaps(o.Settings.MaxMessagesPerMinute), approvals: map[string]approvalGroup{}}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.o.Settings.IncidentWindow <= 0 {
		e.o.Settings.IncidentWindow = time.Hour
	}
	return e, nil
}

// job is an outbox entry's payload: everything its handler needs, so that
// it runs the same after a restart.
type job struct {
	Decision playbooks.Decision `json:"decision"` // without Steps
	Step     playbooks.Action   `json:"step"`
	Anomaly  anomaly.Anomaly    `json:"anomaly"`
	Incident string             `json:"incident"`
	Actor    audit.Actor        `json:"actor"`
	Why      string             `json:"why,omitempty"`
	Origin   revoke.Origin      `json:"origin,omitempty"`
	// Channel of an alert or reply; Root is the key of the thread's alert.
	Channel string `json:"channel,omitempty"`
	Root    string `json:"root,omitempty"`
	// SnapshotKey is the key of the decision's snapshot before this
	// alert: the alert waits for it, to show the bundle id.
	SnapshotKey string `json:"snapshot_key,omitempty"`
	// Text of a note.
	Text string `json:"text,omitempty"`
	// Pending are the steps an approval gates; Approved the answer.
	Pending  []playbooks.Action `json:"pending,omitempty"`
	Approved bool               `json:"approved,omitempty"`
	// Request is the approval request's id (its entry key).
	Request string `json:"request,omitempty"`
	// Saved is what an undo needs from the action (a throttle's plugin).
	Saved []byte `json:"saved,omitempty"`
	// User is who sees an ephemeral message.
	User string `json:"user,omitempty"`

	// waitFor are the keys of the containment steps queued before an
	// alert, in the same call: the alert waits for them (ActionWait).
	waitFor []string
}

// IncidentID is the id of the incident an anomaly opens. The shares of one
// fleet-wide event (anomaly.Group) all name the same incident, whichever
// partition reported first.
func IncidentID(a anomaly.Anomaly) string {
	h := sha256.Sum256([]byte("incident\x00" + a.AgentID + "\x00" + a.GroupKey()))
	return "inc-" + hex.EncodeToString(h[:10])
}

// HandleResult says what Handle did.
type HandleResult struct {
	Duplicate   bool
	Silenced    []string // silence ids
	Incident    string
	NewIncident bool
	Decisions   []playbooks.Decision
	Queued      int
}

// BatchSeen is a Seen that looks up and records many ids at once
// (chstore.Seen): HandleBatch then costs one lookup and one insert per
// batch instead of a check and an insert per anomaly.
type BatchSeen interface {
	HandledMany(ctx context.Context, ids []string) (map[string]bool, error)
	InsertHandled(ctx context.Context, ids []string) error
}

// Handle takes one anomaly: it skips an id already handled, records and
// drops a silenced one, joins the agent's incident, matches the playbooks,
// queues their steps and marks the id handled. An error means nothing is
// marked: the caller must not commit the anomaly's offset.
func (e *Engine) Handle(ctx context.Context, a anomaly.Anomaly) (HandleResult, error) {
	res, err := e.HandleBatch(ctx, []anomaly.Anomaly{a})
	if len(res) == 0 {
		return HandleResult{}, err
	}
	return res[0], err
}

// HandleBatch is Handle for the anomalies of one fetch, in order: with a
// BatchSeen it looks them up and marks them in one query each. An error
// means none is known to be marked: the caller must not commit the
// batch's offsets (handling them again queues nothing twice).
func (e *Engine) HandleBatch(ctx context.Context, as []anomaly.Anomaly) ([]HandleResult, error) {
	out, mark, err := e.ProcessBatch(ctx, as, nil)
	if err != nil {
		return out, err
	}
	return out, e.MarkHandled(ctx, mark)
}

// ProcessBatch is HandleBatch without the marking: it returns the ids the
// caller must mark (MarkHandled) before it commits their offsets. Until
// then a redelivery is processed again, which queues nothing twice (the
// outbox keys and the incident dedupe it): the handled set guards against
// other instances and restarts, not this process.
//
// known[i], when known is not nil, says the caller knows anomaly i was not
// handled (see Consumer): it is not looked up.
func (e *Engine) ProcessBatch(ctx context.Context, as []anomaly.Anomaly, known []bool) ([]HandleResult, []string, error) {
	ids := make([]string, 0, len(as))
	for i, a := range as {
		if a.ID == "" || a.AgentID == "" {
			return nil, nil, fmt.Errorf("anomaly without id or agent id")
		}
		if known == nil || !known[i] {
			ids = append(ids, a.ID)
		}
	}
	var handled map[string]bool
	if len(ids) == 0 {
		handled = map[string]bool{}
	} else if bs, ok := e.o.Seen.(BatchSeen); ok {
		h, err := bs.HandledMany(ctx, ids)
		if err != nil {
			return nil, nil, err
		}
		handled = h
	} else {
		handled = make(map[string]bool, len(ids))
		for _, id := range ids {
			done, err := e.o.Seen.Handled(ctx, id)
			if err != nil {
				return nil, nil, fmt.Errorf("check anomaly %s handled: %w", id, err)
			}
			handled[id] = done
		}
	}
	todo := make([]bool, len(as))
	dup := make([]bool, len(as))
	for i, a := range as {
		if handled[a.ID] {
			e.o.Metrics.handled("duplicate")
			dup[i] = true
			continue
		}
		handled[a.ID] = true // a second copy in the same batch
		todo[i] = true
	}
	out, mark, err := e.processBatch(ctx, as, todo)
	for i := range out {
		out[i].Duplicate = dup[i]
	}
	return out, mark, err
}

// MarkHandled records ids as handled: one insert with a BatchSeen.
func (e *Engine) MarkHandled(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	if bs, ok := e.o.Seen.(BatchSeen); ok {
		if err := bs.InsertHandled(ctx, ids); err != nil {
			return fmt.Errorf("mark %d anomalies handled: %w", len(ids), err)
		}
		return nil
	}
	for _, id := range ids {
		if _, err := e.o.Seen.MarkHandled(ctx, id); err != nil {
			return fmt.Errorf("mark anomaly %s handled: %w", id, err)
		}
	}
	return nil
}

// process is Handle after the duplicate check and before marking.
func (e *Engine) process(ctx context.Context, a anomaly.Anomaly) (HandleResult, error) {
	var res HandleResult
	now := e.now()
	if e.o.Silences != nil {
		if ss := e.o.Silences.Mutes(a, now); len(ss) > 0 {
			for _, s := range ss {
				res.Silenced = append(res.Silenced, s.ID)
			}
			rec := audit.Record{Actor: audit.Actor{Kind: audit.ActorAutomatic}, Action: audit.ActionPlaybook, AnomalyID: a.ID,
				AgentID: a.AgentID, CredentialID: a.CredentialID, Result: audit.ResultSkipped,
				Detail: fmt.Sprintf("silenced by %v", res.Silenced)}
			if err := e.o.Audit.Append(ctx, rec); err != nil {
				return res, fmt.Errorf("audit silenced anomaly %s: %w", a.ID, err)
			}
			e.o.Metrics.handled("silenced")
			return res, nil
		}
	}
	// An agent whose credential is revoked is contained: its later
	// anomalies are still recorded, with evidence, but not alerted again.
	// A redelivered anomaly (one already in the incident: its first
	// handling was cut short by a crash or a partition moving) whose alert
	// never got queued is not "later": its alert is the incident's first.
	var suppress string
	var alerted func(channel string) bool
	if prev, ok := e.inc.latest(a.AgentID); ok && len(prev.Revoked) > 0 {
		if still := e.stillRevoked(ctx, prev.ID, prev.Revoked); len(still) > 0 {
			suppress = "suppressed: the agent's credential is revoked (" + still[0] + ")"
			_, again := prev.Anomaly(a.ID)
			alerted = func(channel string) bool { return !again || prev.Roots[channel] != "" }
		}
	}
	in, created, err := e.inc.join(a, now, e.o.Settings.IncidentWindow)
	if err != nil {
		return res, err
	}
	res.Incident, res.NewIncident = in.ID, created
	info, _ := e.agentInfo(a.AgentID)
	res.Decisions = playbooks.Match(e.o.Set, a, info)
	for _, d := range res.Decisions {
		if suppress != "" {
			for i := range d.Steps {
				if d.Steps[i].Kind() == playbooks.KindNotify && d.Steps[i].Skip == "" && alerted(d.Steps[i].Notify.Channel) {
					d.Steps[i].Skip = suppress
				}
			}
		}
		n, err := e.queueDecision(ctx, d, a, in.ID, audit.Actor{Kind: audit.ActorAutomatic}, d.Why, revoke.Automatic)
		res.Queued += n
		if err != nil {
			return res, err
		}
	}
	if !created {
		e.refreshCard(ctx, in.ID) // a new incident's card is its alert, rendered when posted
	}
	e.o.Metrics.handled("handled")
	return res, nil
}

func (e *Engine) agentInfo(id string) (playbooks.AgentInfo, bool) {
	if e.o.Registry == nil {
		return playbooks.AgentInfo{}, false
	}
	return e.o.Registry.Agent(id)
}

// queueDecision queues the decision's steps up to its first approve step
// (which carries the rest). Keys are the steps' ids, so queueing the same
// decision twice queues nothing new.
func (e *Engine) queueDecision(ctx context.Context, d playbooks.Decision, a anomaly.Anomaly, incident string, actor audit.Actor, why string, origin revoke.Origin) (int, error) {
	steps := append([]playbooks.Action(nil), d.Steps...)
	d.Steps = nil
	if !d.Manual {
		// A playbook acts once per incident: the first anomaly of an
		// agent's incident snapshots, asks, revokes; the later ones only
		// post into its thread. Keying the steps by incident makes the
		// later anomalies' steps find the first one's entries.
		for i := range steps {
			if steps[i].Kind() != playbooks.KindNotify {
				steps[i].ID = incident + "-" + d.Playbook + "-" + strconv.Itoa(steps[i].Index)
			}
		}
	}
	n := 0
	snap := ""
	var contain []string
	for i, st := range steps {
		j := job{Decision: d, Step: st, Anomaly: a, Incident: incident, Actor: actor, Why: why, Origin: origin, SnapshotKey: snap, waitFor: contain}
		if st.Kind() == playbooks.KindSnapshot && st.Skip == "" {
			snap = st.ID
		}
		if st.Kind() == playbooks.KindApprove && st.Skip == "" && !st.DryRun {
			j.Pending = steps[i+1:]
			ok, err := e.enqueue(ctx, st.ID, kindApprove, j)
			if ok {
				n++
			}
			return n, err
		}
		ok, err := e.queueStep(ctx, j)
		if ok {
			n++
			if containing(st) && !d.Manual {
				contain = append(contain, st.ID)
			}
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// containing reports whether st acts on the agent at a gateway (revoke,
// quarantine, throttle) and will run: an alert after it in its playbook
// may wait for it (Settings.ActionWait).
func containing(st playbooks.Action) bool {
	switch st.Kind() {
	case playbooks.KindRevoke, playbooks.KindQuarantine, playbooks.KindThrottle:
		return st.Skip == "" && !st.DryRun
	}
	return false
}

// queueStep queues one step. Notify steps become the incident's alert in
// the channel, or a reply in its thread when the incident already has one.
func (e *Engine) queueStep(ctx context.Context, j job) (bool, error) {
	st := j.Step
	switch st.Kind() {
	case playbooks.KindNotify:
		j.Channel = st.Notify.Channel
		if st.Skip != "" {
			return e.enqueue(ctx, st.ID, kindAlert, j) // recorded as skipped; opens no thread
		}
		// The thread's alert is queued before the incident names it as
		// its root: whatever is queued for the thread afterwards (replies,
		// notes, approval requests, under the same order key) comes after
		// it in the queue and runs once it is posted, without polling.
		defer e.rootLocks.Lock(j.Incident)()
		now := e.now()
		in, ok := e.inc.get(j.Incident)
		root, hasRoot := in.Roots[j.Channel]
		// A follow-up past the repeat interval starts a new top-level
		// alert, so a long incident is seen again in the channel.
		isRoot := !ok || !hasRoot || root == st.ID ||
			(e.o.Settings.RepeatInterval > 0 && now.UnixMilli()-in.RootMs[j.Channel] > e.o.Settings.RepeatInterval.Milliseconds())
		if !isRoot {
			return e.queueFollowUp(ctx, in, j, root)
		}
		var opts []outbox.EnqueueOption
		wait := time.Duration(0)
		if !j.Decision.Manual {
			wait = e.o.Settings.GroupWait
			if len(j.waitFor) > 0 {
				wait += e.o.Settings.ActionWait
			}
		}
		if wait > 0 {
			opts = append(opts, outbox.NotBefore(now.Add(wait)))
		}
		created, err := e.enqueue(ctx, st.ID, kindAlert, j, opts...)
		if err != nil || !ok {
			return created, err // a manual run without an incident record: one alert
		}
		in, err = e.inc.update(j.Incident, now, func(in *Incident) {
			if in.Roots == nil {
				in.Roots, in.RootMs = map[string]string{}, map[string]int64{}
			}
			in.Roots[j.Channel], in.RootMs[j.Channel] = st.ID, now.UnixMilli()
			in.announced(j.Channel, now.UnixMilli())
		})
		if err != nil {
			return created, err
		}
		// A step that ended before the alert was its incident's root
		// found no alert to bring forward (hastenAlerts): the alert looks
		// for itself. It reads the incident after naming itself root, and
		// the step records its action before looking for roots, so one of
		// the two sees the other.
		if created && wait > e.o.Settings.GroupWait && slices.ContainsFunc(j.waitFor, func(k string) bool { return e.stepEnded(ctx, in, k) }) {
			e.hastenAlert(ctx, st.ID)
		}
		return created, nil
	case playbooks.KindSnapshot:
		// The evidence window ends "after" past the anomalous window: take
		// the snapshot then, so it holds what the agent did next.
		var opts []outbox.EnqueueOption
		if sn := st.Snapshot; sn != nil && j.Anomaly.WindowEndMs > 0 {
			if at := time.UnixMilli(j.Anomaly.WindowEndMs).Add(sn.After); at.After(e.now()) {
				opts = append(opts, outbox.NotBefore(at))
			}
		}
		return e.enqueue(ctx, st.ID, kindSnapshot, j, opts...)
	case playbooks.KindRevoke:
		return e.enqueue(ctx, st.ID, kindRevoke, j)
	case playbooks.KindQuarantine:
		return e.enqueue(ctx, st.ID, kindQuar, j)
	case playbooks.KindThrottle:
		return e.enqueue(ctx, st.ID, kindThrottle, j)
	case playbooks.KindWebhook:
		return e.enqueue(ctx, st.ID, kindWebhook, j)
	case playbooks.KindApprove:
		return e.enqueue(ctx, st.ID, kindApprove, j)
	}
	return false, fmt.Errorf("step %s: unknown kind %q", st.ID, st.Kind())
}

// orderKey keeps the actions of one decision in step order (a snapshot
// before the alert that shows its id), apart from Slack's rate limit: alerts
// and replies have their own key per thread.
func orderKey(kind string, j job) string {
	switch kind {
	case kindAlert, kindReply, kindNote, kindApprove, kindEscalate:
		return "slack:" + j.Incident
	case kindCard, kindDigest:
		// Due at the end of their slot: under the thread's key they would
		// hold back every post after them until then. One key per channel's
		// message: a card waiting for its channel's alert to be posted
		// must not hold back the card of another channel.
		return kind + ":" + j.Incident + ":" + j.Channel
	case kindTimeout, kindAnswer, kindRestore, kindSnapshot, kindSummary, kindEphemeral:
		// Due later (a TTL, an approval timeout, the end of a snapshot's
		// window) or answering: must not wait behind, nor hold back, the
		// decision's other steps.
		return ""
	}
	return "decision:" + j.Decision.ID
}

func (e *Engine) enqueue(ctx context.Context, key, kind string, j job, opts ...outbox.EnqueueOption) (bool, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return false, fmt.Errorf("encode %s %s: %w", kind, key, err)
	}
	if k := orderKey(kind, j); k != "" {
		opts = append(opts, outbox.WithOrderKey(k))
	}
	if own := e.o.Owner; own != nil {
		p, ok := own.Partition(j.Anomaly.AgentID), true
		if j.Anomaly.AgentID == "" {
			// Of no agent (a channel's summary, a refusal's ephemeral
			// note): any partition this process owns runs it.
			p, ok = own.Any()
		}
		if !ok {
			return false, fmt.Errorf("queue %s %s: %w", kind, key, partstate.ErrNotOwned)
		}
		opts = append(opts, outbox.InPartition(p))
	}
	_, created, err := e.o.Outbox.Enqueue(ctx, key, kind, b, opts...)
	if err != nil {
		return false, fmt.Errorf("queue %s %s: %w", kind, key, err)
	}
	return created, nil
}

// Incidents returns the incidents the engine keeps, for the demo's summary
// and `responder incidents`.
func (e *Engine) Incidents() []Incident { return e.inc.list() }

// Incident returns one incident.
func (e *Engine) Incident(id string) (Incident, bool) { return e.inc.get(id) }

func decodeJob(en outbox.Entry) (job, error) {
	var j job
	err := json.Unmarshal(en.Payload, &j)
	return j, err
}
