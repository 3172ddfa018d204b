package respond

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/anomaly"
	"github.com/agentwatch/agentwatch/pkg/attack"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// An incident's top-level message is its card: the incident as it stands,
// updated in place (chat.update) whenever it changes. The thread under it
// gets at most one summary per digest interval; what cannot wait (a new
// attack class, an approval request, an action's result) still posts at
// once, and a severity step is announced at the top level with the notify
// step's mentions. All of it is scheduled through the outbox, rendered
// from the incident when the entry runs, so it survives restarts and
// partition moves like every other step.

// Outbox kinds of the card, the thread's summaries and the escalations.
const (
	kindCard     = "slack.card"
	kindDigest   = "slack.digest"
	kindEscalate = "slack.escalate"
)

// cardEvery is the least time between two updates of one card: the first
// change in a slot of this length updates the card at once, and the
// changes after it are rendered in one update at the start of the next
// slot. A busy incident so stays well under Slack's chat.update limit
// (about 50 a minute per workspace).
const cardEvery = 10 * time.Second

// maxIncidentActions caps the actions an incident keeps for its card (the
// audit trail keeps them all).
const maxIncidentActions = 50

// maxStatKeys caps each of an incident's counters (kinds, features,
// routes), so an agent calling ever new routes cannot grow its incident
// without bound.
const maxStatKeys = 64

// Action kinds an incident records, from which its card's status follows.
const (
	actSnapshot      = "snapshot"
	actRevoke        = "revoke"
	actQuarantine    = "quarantine"
	actThrottle      = "throttle"
	actRestore       = "restore"
	actApprovalAsked = "approval_asked"
	actApproval      = "approval"
	actAcknowledge   = "acknowledge"
	actFalsePositive = "false_positive"
	actSnooze        = "snooze"
)

// ClassSeen is an attack class an incident showed, and the anomaly that
// first showed it.
type ClassSeen struct {
	Class   attack.Class `json:"class"`
	Anomaly string       `json:"anomaly"`
}

// IncidentStats count what an incident's anomalies showed.
type IncidentStats struct {
	// Kinds counts anomalies by kind.
	Kinds map[string]int `json:"kinds,omitempty"`
	// Features counts the anomalies each feature explained, with the
	// highest value seen.
	Features map[string]FeatureSeen `json:"features,omitempty"`
	// Routes adds up the calls of each route.
	Routes map[string]int `json:"routes,omitempty"`
}

// FeatureSeen is one feature of an incident's anomalies.
type FeatureSeen struct {
	N    int             `json:"n"`
	Peak anomaly.Feature `json:"peak"`
	// WindowMs is the width of the peak's window, which a rate is shown
	// per.
	WindowMs int64 `json:"window_ms,omitempty"`
}

func (s IncidentStats) clone() IncidentStats {
	return IncidentStats{Kinds: maps.Clone(s.Kinds), Features: maps.Clone(s.Features), Routes: maps.Clone(s.Routes)}
}

// IncidentAction is one action taken on an incident.
type IncidentAction struct {
	// Key is the outbox key (or click key) that took it: recording the
	// same action twice keeps one.
	Key  string `json:"key"`
	AtMs int64  `json:"at_ms"`
	Kind string `json:"kind"`
	Text string `json:"text"`
}

// DigestPlan is a summary about to be posted: its outbox key and what it
// covers.
type DigestPlan struct {
	Key  string     `json:"key"`
	Mark DigestMark `json:"mark"`
}

// DigestMark is what a thread's last summary covered: the incident's
// counters then.
type DigestMark struct {
	AtMs     int64          `json:"at_ms"`
	Count    int            `json:"count"`
	Kinds    map[string]int `json:"kinds,omitempty"`
	Features map[string]int `json:"features,omitempty"`
	Routes   map[string]int `json:"routes,omitempty"`
}

// severityRank orders severities; unknown ones rank lowest.
func severityRank(s string) int {
	switch s {
	case "low":
		return 1
	case "medium":
		return 2
	case "high":
		return 3
	case "critical":
		return 4
	}
	return 0
}

// observe counts a joining anomaly in the incident's severity, classes and
// stats, and says whether its attack class is new to the incident.
func (in *Incident) observe(a anomaly.Anomaly) (newClass bool) {
	if severityRank(a.Severity) > severityRank(in.Severity) {
		in.Severity = a.Severity
	}
	in.Risk.Observe(a)
	c := attack.Classify(a)
	if !slices.ContainsFunc(in.Classes, func(s ClassSeen) bool { return s.Class == c }) {
		in.Classes = append(in.Classes, ClassSeen{Class: c, Anomaly: a.ID})
		newClass = true
	}
	s := &in.Stats
	if s.Kinds == nil {
		s.Kinds, s.Features, s.Routes = map[string]int{}, map[string]FeatureSeen{}, map[string]int{}
	}
	count(s.Kinds, a.Kind, 1)
	for _, f := range a.Explanation {
		fs, ok := s.Features[f.Name]
		if !ok && len(s.Features) >= maxStatKeys {
			continue
		}
		fs.N++
		if !ok || f.Observed > fs.Peak.Observed {
			fs.Peak, fs.WindowMs = f, a.WindowEndMs-a.WindowStartMs
		}
		s.Features[f.Name] = fs
	}
	for _, r := range a.Routes {
		count(s.Routes, r.Route, r.Calls)
	}
	return newClass
}

func count(m map[string]int, k string, n int) {
	if _, ok := m[k]; ok || len(m) < maxStatKeys {
		m[k] += n
	}
}

// introduced reports whether anomaly id brought a class new to the
// incident.
func (in *Incident) introduced(id string) bool {
	return slices.ContainsFunc(in.Classes, func(s ClassSeen) bool { return s.Anomaly == id })
}

// status is the incident's status as its card shows it.
func (in *Incident) status() string {
	last := func(kinds ...string) int {
		for i := len(in.Actions) - 1; i >= 0; i-- {
			if slices.Contains(kinds, in.Actions[i].Kind) {
				return i
			}
		}
		return -1
	}
	switch {
	case last(actFalsePositive) >= 0:
		return slackui.StatusFalsePositive
	case len(in.Revoked) > 0 || last(actRevoke, actQuarantine, actThrottle) > last(actRestore):
		return slackui.StatusContained
	case last(actRestore) >= 0:
		return slackui.StatusRestored
	case last(actSnooze) >= 0:
		return slackui.StatusSilenced
	case last(actAcknowledge) >= 0:
		return slackui.StatusAcknowledged
	}
	return slackui.StatusOpen
}

// lead is the anomaly a card shows in detail: the first of the highest
// severity among those of the lead class.
func (in *Incident) lead() (anomaly.Anomaly, attack.Class) {
	c := leadClass(in.Anomalies)
	var best anomaly.Anomaly
	found := false
	for _, a := range in.Anomalies {
		if attack.Classify(a) != c {
			continue
		}
		if !found || severityRank(a.Severity) > severityRank(best.Severity) {
			best, found = a, true
		}
	}
	if !found && len(in.Anomalies) > 0 {
		best = in.Anomalies[0]
	}
	return best, c
}

// leadClass is the class an incident's card names: the most telling of
// its anomalies' classes.
func leadClass(as []anomaly.Anomaly) attack.Class { return attack.Lead(as) }

// card renders the incident's card state.
func (in *Incident) card() slackui.Card {
	lead, class := in.lead()
	c := slackui.Card{Status: in.status(), Severity: in.Severity, Class: attack.Describe(class), Count: in.Count,
		FirstMs: in.OpenedMs, LastMs: in.LastMs, Lead: lead, Risk: in.Risk}
	if c.Severity == "" {
		c.Severity = lead.Severity
	}
	for k, n := range in.Stats.Kinds {
		c.Kinds = append(c.Kinds, slackui.KindCount{Kind: k, N: n})
	}
	slackui.SortKinds(c.Kinds)
	for _, a := range in.Actions {
		c.Actions = append(c.Actions, slackui.CardAction{AtMs: a.AtMs, Text: a.Text})
	}
	return c
}

// mark is what a summary rendered now covers.
func (in *Incident) mark(nowMs int64) DigestMark {
	m := DigestMark{AtMs: nowMs, Count: in.Count, Kinds: maps.Clone(in.Stats.Kinds), Routes: maps.Clone(in.Stats.Routes),
		Features: map[string]int{}}
	for k, f := range in.Stats.Features {
		m.Features[k] = f.N
	}
	return m
}

// digest is what is new in the incident since prev.
func (in *Incident) digest(prev DigestMark) slackui.Digest {
	d := slackui.Digest{IncidentID: in.ID, AgentID: in.AgentID, FromMs: prev.AtMs, ToMs: in.LastMs,
		New: in.Count - prev.Count, Severity: in.Severity}
	for k, n := range in.Stats.Kinds {
		if n > prev.Kinds[k] {
			d.Kinds = append(d.Kinds, slackui.KindCount{Kind: k, N: n - prev.Kinds[k]})
		}
	}
	slackui.SortKinds(d.Kinds)
	type fn struct {
		f slackui.DigestFeature
		n int
	}
	var fs []fn
	for k, f := range in.Stats.Features {
		if f.N > prev.Features[k] {
			fs = append(fs, fn{slackui.DigestFeature{Feature: f.Peak, WindowMs: f.WindowMs}, f.N - prev.Features[k]})
		}
	}
	slices.SortFunc(fs, func(a, b fn) int {
		if a.n != b.n {
			return b.n - a.n
		}
		if a.f.Contribution != b.f.Contribution {
			if a.f.Contribution > b.f.Contribution {
				return -1
			}
			return 1
		}
		return strings.Compare(a.f.Name, b.f.Name)
	})
	for _, f := range fs {
		d.Features = append(d.Features, f.f)
	}
	for r, n := range in.Stats.Routes {
		if n > prev.Routes[r] {
			d.Routes = append(d.Routes, anomaly.RouteCount{Route: r, Calls: n - prev.Routes[r]})
		}
		if _, seen := prev.Routes[r]; !seen && prev.Count > 0 {
			d.NewRoutes = append(d.NewRoutes, r)
		}
	}
	slices.SortFunc(d.Routes, func(a, b anomaly.RouteCount) int {
		if a.Calls != b.Calls {
			return b.Calls - a.Calls
		}
		return strings.Compare(a.Route, b.Route)
	})
	slices.Sort(d.NewRoutes)
	return d
}

// acted records an action taken on the incident (once per key) and
// schedules its card's update.
func (e *Engine) acted(ctx context.Context, incident, key, kind, text string) {
	if incident == "" {
		return
	}
	now := e.now()
	_, err := e.inc.update(incident, now, func(in *Incident) { in.act(key, now.UnixMilli(), kind, text) })
	if err != nil {
		if !errors.Is(err, errNoIncident) {
			e.log.Warn("record an action on the incident's card", "incident", incident, "key", key, "err", err)
		}
		return
	}
	e.refreshCard(ctx, incident)
}

// act records an action taken on the incident at atMs, unless one of key
// is recorded already (a step run again after a crash keeps its first).
func (in *Incident) act(key string, atMs int64, kind, text string) {
	if slices.ContainsFunc(in.Actions, func(a IncidentAction) bool { return a.Key == key }) {
		return
	}
	in.Actions = append(in.Actions, IncidentAction{Key: key, AtMs: atMs, Kind: kind, Text: text})
	if n := len(in.Actions) - maxIncidentActions; n > 0 {
		in.Actions = slices.Delete(in.Actions, 0, n)
	}
}

// refreshCard schedules the update of the incident's card in each channel
// it was posted to. The update of the current cardEvery slot is due at
// once; a change that finds it already run (or running: it may have
// rendered before the change) schedules the next slot's, and every later
// change of the slot finds that one queued. Updates are rendered when they
// run, so one shows every change before it.
func (e *Engine) refreshCard(ctx context.Context, incident string) {
	in, ok := e.inc.get(incident)
	if !ok {
		return
	}
	slot := e.now().Truncate(cardEvery)
	for ch, root := range in.Roots {
		if e.posting.changed(root) || e.alertPending(ctx, root) {
			continue // the alert shows this change, or queues the update once posted
		}
		j := job{Incident: in.ID, Channel: ch, Root: root,
			Anomaly: anomaly.Anomaly{AgentID: in.AgentID}}
		key := fmt.Sprintf("%s-card-%s-%d", in.ID, ch, slot.Unix())
		var opts []outbox.EnqueueOption
		cur, found, err := e.o.Outbox.Get(ctx, key)
		if err == nil && found && cur.State != outbox.StatePending {
			next := slot.Add(cardEvery)
			key = fmt.Sprintf("%s-card-%s-%d", in.ID, ch, next.Unix())
			opts = append(opts, outbox.NotBefore(next))
		}
		if err == nil {
			_, err = e.enqueue(ctx, key, kindCard, j, opts...)
		}
		if err != nil {
			e.log.Warn("queue a card update", "incident", in.ID, "channel", ch, "err", err)
		}
	}
}

// alertPending reports whether the alert of outbox key root is queued and
// not started. Its run claims it first and renders the incident as it is
// then, so it shows every change made to the incident before this call:
// such a change needs no card update or thread note of its own. An error
// or any other state reads false (queue them, as always).
func (e *Engine) alertPending(ctx context.Context, root string) bool {
	r, found, err := e.o.Outbox.Get(ctx, root)
	return err == nil && found && r.Kind == kindAlert && r.State == outbox.StatePending
}

// hastenAlerts brings forward the incident's alerts that wait for a
// containment step (Settings.ActionWait): one ended, and the card an
// alert renders now shows how.
func (e *Engine) hastenAlerts(ctx context.Context, incident string) {
	if e.o.Settings.ActionWait <= 0 || incident == "" {
		return
	}
	for _, root := range e.inc.roots(incident) {
		e.hastenAlert(ctx, root)
	}
}

// hastenAlert brings the alert of outbox key root forward to the end of
// its group wait (or now, if that has passed), if it is queued for later.
// The outbox keeps this in memory only: lost in a crash, the alert is
// posted at the end of its action wait.
func (e *Engine) hastenAlert(ctx context.Context, root string) {
	h, ok := e.o.Outbox.(interface {
		Hasten(key string, at time.Time) bool
	})
	if !ok {
		return
	}
	r, found, err := e.o.Outbox.Get(ctx, root)
	if err != nil || !found || r.Kind != kindAlert || r.State != outbox.StatePending || r.Attempts > 0 {
		return // not waiting: running, done, or waiting for its own retry
	}
	at := r.Created.Add(e.o.Settings.GroupWait)
	if !r.NextAttempt.After(at) {
		return // not in an action wait
	}
	if now := e.now(); now.After(at) {
		at = now
	}
	h.Hasten(root, at)
}

// stepEnded reports whether the first run of the containment step of
// outbox key key has ended: its action is on the incident in, or its
// entry is closed or waits for a retry. Unknown reads as ended: nothing
// will bring the alert forward for it.
func (e *Engine) stepEnded(ctx context.Context, in Incident, key string) bool {
	if _, ok := e.ended.get(key); ok {
		return true
	}
	if slices.ContainsFunc(in.Actions, func(a IncidentAction) bool { return a.Key == key }) {
		return true
	}
	r, found, err := e.o.Outbox.Get(ctx, key)
	if err != nil || !found {
		return true
	}
	return !(r.State == outbox.StateInFlight || (r.State == outbox.StatePending && r.Attempts == 0))
}

// memo is what this process noted by outbox key, in memory only and
// bounded: past maxMemo keys it starts again empty, which costs only what
// the notes saved (shownCards: an update sent again; Engine.ended: an
// alert that waits its whole action wait). Safe for concurrent use.
type memo[V any] struct {
	mu sync.Mutex
	m  map[string]V
}

const maxMemo = 50_000

func (s *memo[V]) set(key string, v V) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil || len(s.m) >= maxMemo {
		s.m = map[string]V{}
	}
	s.m[key] = v
}

func (s *memo[V]) forget(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
}

func (s *memo[V]) get(key string) (V, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return v, ok
}

// renderCard renders the incident's card for the channel whose top-level
// message is the entry root, with that message's mentions (an update must
// not drop them) and buttons.
func (e *Engine) renderCard(ctx context.Context, in Incident, root job) (slackui.Message, error) {
	ac, err := e.alertContext(ctx, root)
	if err != nil {
		return slackui.Message{}, err
	}
	if n := root.Step.Notify; n != nil {
		ac.Mention, ac.MentionIDs = n.Mention, n.MentionIDs
	}
	if ac.SnapshotID == "" && len(in.Snapshots) > 0 {
		ac.SnapshotID = in.Snapshots[len(in.Snapshots)-1]
		if in.Checkpoint != "" {
			ac.SnapshotID += " · " + in.Checkpoint
		}
	}
	return e.cardMessage(in, ac, root.Anomaly)
}

// cardMessage renders the incident's card; fallback is the anomaly shown
// when the incident keeps none (a manual run's).
func (e *Engine) cardMessage(in Incident, ac slackui.AlertContext, fallback anomaly.Anomaly) (slackui.Message, error) {
	c := in.card()
	if c.Lead.ID == "" {
		c.Lead = fallback
		if c.Severity == "" {
			c.Severity = fallback.Severity
		}
	}
	return slackui.RenderCard(c, ac)
}

// runCard updates a card in place. An update is idempotent: a run after a
// crash renders and sends it again.
func (e *Engine) runCard(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	if e.o.Notifier == nil {
		return nil, nil
	}
	in, ok := e.inc.get(j.Incident)
	if !ok {
		return nil, nil
	}
	root := in.Roots[j.Channel]
	channel, ts, ok, err := e.rootTS(ctx, root)
	if err != nil || !ok {
		return nil, err // not posted yet (wait), or never (suppressed, dry run): nothing to update
	}
	rj, err := e.entryJob(ctx, root)
	if err != nil {
		return nil, err
	}
	m, err := e.renderCard(ctx, in, rj)
	if err != nil {
		return nil, outbox.Permanent(err)
	}
	m.Marker = root
	h, hashed := cardHash(m)
	if hashed && e.shown.is(root, h) {
		// The card shows this already: the change that queued the
		// update was made before the card was posted or last updated.
		return []byte(channel + " " + ts), nil
	}
	if err := e.o.Notifier.UpdateMessage(ctx, channel, ts, m); err != nil {
		var pe *slackui.PostError
		if errors.As(err, &pe) {
			if pe.RetryAfter > 0 {
				return nil, outbox.RetryAfter(pe.RetryAfter, err)
			}
			if !pe.Retry {
				return nil, outbox.Permanent(err)
			}
		}
		return nil, err
	}
	e.o.Metrics.cardUpdate()
	e.shown.set(root, h, hashed)
	return []byte(channel + " " + ts), nil
}

// shownCards remembers, for each card (by its alert's outbox key), a hash
// of the message this process last posted or updated it with, so that an
// update rendering the same card is not sent: a revocation done before its
// incident's alert is posted queues an update that the card, rendered when
// posted, already shows. Only this process's own posts are remembered
// (forgotten at a restart or hand-over: the update is then sent, as
// before), and only the responder changes a card, so a match means Slack
// shows it.
type shownCards struct{ memo[uint64] }

// cardHash is computed outside the lock: the encoding is most of the cost.
func cardHash(m slackui.Message) (uint64, bool) {
	b, err := json.Marshal(m)
	if err != nil {
		return 0, false
	}
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64(), true
}

func (s *shownCards) remember(key string, m slackui.Message) {
	h, ok := cardHash(m)
	s.set(key, h, ok)
}

// set remembers hash h of key's card (ok false: forget it, the card was
// not hashed).
func (s *shownCards) set(key string, h uint64, ok bool) {
	if !ok {
		s.forget(key)
		return
	}
	s.memo.set(key, h)
}

// is reports whether key's card was last shown with hash h.
func (s *shownCards) is(key string, h uint64) bool {
	old, found := s.get(key)
	return found && old == h
}

// postingCards tracks the alerts this process is rendering and posting, by
// outbox key, and whether their incident changed meanwhile. A change while
// an alert posts queues no card update of its own: the alert, once posted,
// queues one if the incident changed since it began (it may have rendered
// before the change). Either the change finds the alert still posting and
// marks it, or the alert has ended and the change queues the update: both
// take the same lock, so no change is left unshown. Only in memory: an
// alert cut short by a crash runs again and either renders afresh or
// finds its post and updates the card.
type postingCards struct {
	mu sync.Mutex
	m  map[string]bool // key → changed since the alert began
}

// begin registers the alert of outbox key root as posting; the returned
// end unregisters it and says whether the incident changed meanwhile. An
// entry runs once at a time, so a key is registered once at a time.
func (p *postingCards) begin(root string) (end func() bool) {
	p.mu.Lock()
	if p.m == nil {
		p.m = map[string]bool{}
	}
	p.m[root] = false
	p.mu.Unlock()
	return func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		changed := p.m[root]
		delete(p.m, root)
		return changed
	}
}

// changed marks the alert of root changed if it is posting, and says
// whether it was (the alert then sees to the card's update).
func (p *postingCards) changed(root string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.m[root]
	if ok {
		p.m[root] = true
	}
	return ok
}

// entryJob decodes the payload of the entry key.
func (e *Engine) entryJob(ctx context.Context, key string) (job, error) {
	en, ok, err := e.o.Outbox.Get(ctx, key)
	if err != nil || !ok {
		return job{}, err
	}
	return decodeJob(en)
}

// queueFollowUp queues what a later anomaly of an incident posts in the
// channel whose top-level message is root: an escalation when it raised
// the incident's severity past what the channel was told; then its own
// follow-up at once when it brought a new attack class (or summaries are
// off, or it was run by hand), else its share of the thread's next
// summary. Called with the incident's rootLocks held.
func (e *Engine) queueFollowUp(ctx context.Context, in Incident, j job, root string) (bool, error) {
	j.Root = root
	if err := e.escalate(ctx, in, j); err != nil {
		return false, err
	}
	iv := e.o.Settings.DigestInterval
	// Under a millisecond (refused by the configuration) the slot
	// arithmetic below would divide by zero: one follow-up per anomaly.
	if iv < time.Millisecond || j.Decision.Manual || j.Step.DryRun || in.introduced(j.Anomaly.ID) {
		return e.enqueue(ctx, j.Step.ID, kindReply, j)
	}
	// The thread's summaries fall at the card's post time plus whole
	// intervals: every anomaly of one interval finds the same entry.
	base := in.RootMs[j.Channel]
	now := e.now().UnixMilli()
	slot := (now-base)/iv.Milliseconds() + 1
	dj := job{Incident: in.ID, Decision: j.Decision, Channel: j.Channel, Root: root, Step: j.Step,
		Anomaly: anomaly.Anomaly{AgentID: in.AgentID, CredentialID: j.Anomaly.CredentialID, Kind: j.Anomaly.Kind}}
	key := fmt.Sprintf("%s-digest-%s-%d-%d", in.ID, j.Channel, base, slot)
	return e.enqueue(ctx, key, kindDigest, dj, outbox.NotBefore(time.UnixMilli(base+slot*iv.Milliseconds())))
}

// escalate queues the top-level announcement of the incident's severity
// when it is above what the channel was last told, keyed by incident,
// channel and severity: one per step, however often the anomaly is
// redelivered. Called with the incident's rootLocks held.
func (e *Engine) escalate(ctx context.Context, in Incident, j job) error {
	told, ok := in.Announced[j.Channel]
	if severityRank(in.Severity) <= severityRank(told) {
		return nil
	}
	if !ok {
		// A card posted before incidents remembered what each channel
		// was told (an upgrade): start from now, announcing nothing.
		_, err := e.inc.update(in.ID, e.now(), func(in *Incident) { in.announced(j.Channel, e.now().UnixMilli()) })
		return err
	}
	ej := j
	ej.Text = told
	ej.Why = in.Severity
	key := in.ID + "-escalate-" + j.Channel + "-" + in.Severity
	if _, err := e.enqueue(ctx, key, kindEscalate, ej); err != nil {
		return err
	}
	// What was queued, not the incident's severity now: a higher anomaly
	// joining meanwhile (join does not hold rootLocks) must still find its
	// own step unannounced.
	_, err := e.inc.update(in.ID, e.now(), func(in *Incident) {
		if severityRank(ej.Why) > severityRank(in.Announced[j.Channel]) {
			if in.Announced == nil {
				in.Announced = map[string]string{}
			}
			in.Announced[j.Channel] = ej.Why
		}
	})
	return err
}

// announced records what a channel's first post of the incident told it
// (the card, whose severity is the incident's), and where its summaries
// start. Called with the incident's rootLocks held.
func (in *Incident) announced(channel string, nowMs int64) {
	if in.Announced == nil {
		in.Announced = map[string]string{}
	}
	if severityRank(in.Severity) > severityRank(in.Announced[channel]) {
		in.Announced[channel] = in.Severity
	}
	if in.Digested == nil {
		in.Digested = map[string]DigestMark{}
	}
	in.Digested[channel] = in.mark(nowMs)
}

// runEscalate posts a severity step at the top level, with the notify
// step's mentions. Like an approval request it is never dropped by the
// channel's cap: past it, it waits for the next minute.
func (e *Engine) runEscalate(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	if done, err := e.skipOrDry(ctx, j, string(playbooks.KindNotify), "announce the escalation of incident "+j.Incident+" to "+j.Why+" in "+j.Channel); done {
		return nil, err
	}
	if e.o.Notifier == nil {
		return nil, nil
	}
	in, ok := e.inc.get(j.Incident)
	if !ok {
		return nil, nil
	}
	if now := in.Announced[j.Channel]; severityRank(now) > severityRank(j.Why) {
		// A later step was queued before this one was posted: it alone
		// is announced, as a jump straight to it would be.
		return []byte("superseded"), e.record(ctx, j, string(playbooks.KindNotify), audit.ResultSkipped,
			"escalation to "+j.Why+" not posted: superseded by the escalation to "+now)
	}
	_, cardTS, posted, err := e.rootTS(ctx, in.Roots[j.Channel])
	if err != nil {
		return nil, err
	}
	if posted {
		// Read again: the card may have been posted since, at a severity
		// this step does not exceed, and with its own mention.
		if cur, ok := e.inc.get(j.Incident); ok {
			in = cur
		}
		if shown := in.Carded[j.Channel]; severityRank(shown) >= severityRank(j.Why) {
			return []byte("superseded"), e.record(ctx, j, string(playbooks.KindNotify), audit.ResultSkipped,
				"escalation to "+j.Why+" not posted: the card was first posted at "+shown+", with its mention")
		}
	}
	_, class := in.lead()
	esc := slackui.Escalation{IncidentID: in.ID, From: j.Text, To: j.Why, Class: attack.Describe(class), AgentID: in.AgentID}
	if posted {
		if sec, err := strconv.ParseFloat(cardTS, 64); err == nil && sec > 1e9 {
			esc.CardMs = int64(sec * 1000)
		}
	}
	var ac slackui.AlertContext
	if n := j.Step.Notify; n != nil {
		ac.Mention, ac.MentionIDs = n.Mention, n.MentionIDs
	}
	m := slackui.RenderEscalation(esc, ac)
	m.Marker = en.Key
	prev, err := e.earlier(ctx, en, j.Channel, "")
	if err != nil {
		return nil, err
	}
	if prev.Found {
		return []byte(j.Channel + " " + prev.TS), e.record(ctx, j, string(playbooks.KindNotify), audit.ResultOK,
			"escalation to "+j.Why+" posted to "+j.Channel+" ts "+prev.TS+" (by an interrupted run, found in the channel)")
	}
	if admitted, wait := e.caps.admitApproval(j.Channel, en.Key, e.now()); !admitted {
		return nil, outbox.Wait(wait, "the channel is over its message cap; an escalation waits for the next minute")
	}
	ts, err := e.o.Notifier.PostAlert(ctx, j.Channel, m)
	if err != nil {
		return nil, e.postFailed(ctx, j, err)
	}
	e.o.Metrics.escalation(j.Why)
	return []byte(j.Channel + " " + ts), e.record(ctx, j, string(playbooks.KindNotify), audit.ResultOK,
		"escalation from "+orDefault(j.Text, "none")+" to "+j.Why+" posted to "+j.Channel+" ts "+ts+prev.note())
}

// runDigest posts the thread's summary of what is new since the last one,
// rendered from the incident now; nothing new, nothing posted.
func (e *Engine) runDigest(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	if e.o.Notifier == nil {
		return nil, nil
	}
	in, ok := e.inc.get(j.Incident)
	if !ok {
		return nil, nil
	}
	root := in.Roots[j.Channel]
	if root != j.Root {
		// The incident has a new top-level message (the repeat interval):
		// its own summaries cover what this one would.
		return []byte("superseded"), nil
	}
	channel, ts, ok, err := e.rootTS(ctx, root)
	if err != nil || !ok {
		return nil, err
	}
	now := e.now().UnixMilli()
	prev := in.Digested[j.Channel]
	if in.Count <= prev.Count {
		return []byte("nothing new"), nil
	}
	d := in.digest(prev)
	m := slackui.RenderDigest(d)
	m.Marker = en.Key
	found, err := e.earlier(ctx, en, channel, ts)
	if err != nil {
		return nil, err
	}
	got := found.TS
	mark := in.mark(now)
	if found.Found {
		if p, ok := in.Summarising[j.Channel]; ok && p.Key == en.Key {
			mark = p.Mark // what the interrupted run posted, not what joined since
		}
	} else {
		if !e.caps.admit(channel, capReply, j.Anomaly.Kind, e.now()) {
			return []byte(channel), e.suppressed(ctx, j, capReply, channel)
		}
		if _, err := e.inc.update(in.ID, e.now(), func(cur *Incident) {
			if cur.Summarising == nil {
				cur.Summarising = map[string]DigestPlan{}
			}
			cur.Summarising[j.Channel] = DigestPlan{Key: en.Key, Mark: mark}
		}); err != nil {
			return nil, err
		}
		if got, err = e.o.Notifier.PostThreadReply(ctx, channel, ts, m); err != nil {
			return nil, e.postFailed(ctx, j, err)
		}
		e.o.Metrics.digest()
	}
	if _, err := e.inc.update(in.ID, e.now(), func(cur *Incident) {
		if cur.Digested == nil {
			cur.Digested = map[string]DigestMark{}
		}
		if cur.Digested[j.Channel].Count < mark.Count {
			cur.Digested[j.Channel] = mark
		}
	}); err != nil {
		return nil, err
	}
	if err := e.record(ctx, j, string(playbooks.KindNotify), audit.ResultOK,
		fmt.Sprintf("summary of %d anomalies posted in thread %s of %s ts %s%s", d.New, ts, channel, got, found.note())); err != nil {
		return nil, err
	}
	return []byte(channel + " " + got), nil
}
