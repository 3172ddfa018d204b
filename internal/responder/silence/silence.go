// Package silence holds the responder's silences: time-boxed rules, in the
// manner of Alertmanager's silences, that stop alerts for the anomalies they
// match. A Silence is a set of Matchers over an anomaly's Labels (agent_id,
// kind, severity, role, owner, credential_id, partition, feature) and a
// time range; an anomaly is muted while at least one active silence has
// every matcher match it.
//
// Silences come from three places: an operator (the CLI or HTTP API, with
// matchers in the text form ParseMatchers reads), the Slack "snooze" button
// (ForSnooze: the agent, for a while) and the Slack "false positive" button
// (ForFalsePositive: the agent, the kind and the top feature). Button
// handlers add theirs with Store.AddWithKey under the click's or the outbox
// entry's key, so a retried click makes one silence.
//
// The Store keeps them in a JSON-lines file with the conventions of the
// outbox: every change is fsynced before it returns, a torn last line is cut
// off on open, the file is 0600 and locked to one process. Silences that
// ended more than Options.Retention ago are dropped when the file is opened
// or compacted. docs/silences.md is the operator's guide.
package silence

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// Limits on a silence's text fields, in bytes.
const (
	// MaxAuthorLen bounds CreatedBy and ExpiredBy.
	MaxAuthorLen = 256
	// MaxCommentLen bounds Comment.
	MaxCommentLen = 4096
	// MaxKeyLen bounds an AddWithKey key.
	MaxKeyLen = 512
	// maxIDLen bounds ID and AnomalyID.
	maxIDLen = 128
)

// Reason says what created a silence. It is the label of the suppressed
// counter, so it comes from this fixed set.
type Reason string

// The reasons. Alike in shape to other enums (revoke.Origin), not shared.
const (
	// ReasonManual: an operator added it (CLI, HTTP API). The default.
	ReasonManual Reason = "manual"
	// ReasonSnooze: the Slack snooze button (ForSnooze).
	ReasonSnooze Reason = "snooze"
	// ReasonFalsePositive: the Slack false-positive button
	// (ForFalsePositive).
	ReasonFalsePositive Reason = "false_positive"
)

func (r Reason) valid() bool {
	return r == ReasonManual || r == ReasonSnooze || r == ReasonFalsePositive
}

// State is where a silence stands at a given time.
type State string

// The states.
const (
	// StatePending: StartsAt is still ahead.
	StatePending State = "pending"
	// StateActive: it mutes what it matches.
	StateActive State = "active"
	// StateExpired: EndsAt has passed, or someone expired it.
	StateExpired State = "expired"
)

// Silence mutes the anomalies its matchers all match from StartsAt
// (inclusive) to EndsAt (exclusive), unless expired earlier. Silences are
// immutable once added, except that Expire ends one: to change a silence,
// expire it and add another (Alertmanager does the same underneath).
type Silence struct {
	// ID is set by the Store: random, or derived from the AddWithKey key.
	ID string `json:"id"`
	// Matchers must all match; at least one must not match the empty
	// value, so that a silence cannot mute every anomaly.
	Matchers []Matcher `json:"matchers"`
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at"`
	// CreatedBy is who asked for it: a Slack user id, a CLI user.
	CreatedBy string `json:"created_by"`
	// Comment says why, for the next person who wonders.
	Comment string `json:"comment"`
	// Reason is what created it; empty means ReasonManual.
	Reason Reason `json:"reason"`
	// AnomalyID is the anomaly whose alert led to the silence (snooze,
	// false positive), if any.
	AnomalyID string `json:"anomaly_id,omitempty"`
	// CreatedAt is when the Store added it (its clock).
	CreatedAt time.Time `json:"created_at"`
	// ExpiredAt is when someone expired it early, and ExpiredBy who; both
	// are zero for a silence that ran or runs its course. A silence with
	// ExpiredAt set never matches again.
	ExpiredAt time.Time `json:"expired_at,omitzero"`
	ExpiredBy string    `json:"expired_by,omitempty"`
}

// State returns where s stands at now.
func (s Silence) State(now time.Time) State {
	switch {
	case !s.ExpiredAt.IsZero() || !now.Before(s.EndsAt):
		return StateExpired
	case now.Before(s.StartsAt):
		return StatePending
	}
	return StateActive
}

// Ended returns when s stopped or will stop muting: ExpiredAt if it was
// expired before its EndsAt, else EndsAt. Retention counts from it.
func (s Silence) Ended() time.Time {
	if !s.ExpiredAt.IsZero() && s.ExpiredAt.Before(s.EndsAt) {
		return s.ExpiredAt
	}
	return s.EndsAt
}

// Matches reports whether every matcher of s selects labels, whatever the
// time. It compiles regular expressions on every call; Store.Match does not.
func (s Silence) Matches(labels map[string]string) bool {
	for _, m := range s.Matchers {
		if !m.Matches(labels) {
			return false
		}
	}
	return len(s.Matchers) > 0
}

// ErrInvalid means a matcher or silence was refused as written; the error
// says which field and why. An API answers 400 with it.
var ErrInvalid = errors.New("invalid")

// ErrNotFound means no silence has the id (or it was dropped after its
// retention): List shows the ids.
var ErrNotFound = errors.New("no silence with this id")

// ErrClosed means the store was closed, or stopped after a write it could
// not make durable; open it again.
var ErrClosed = errors.New("silence store is closed")

// ErrInUse means another process holds the silence file: one responder per
// file. Stop the other process, or give this one its own file.
var ErrInUse = errors.New("silence file is in use by another process")

// check validates what every stored silence must satisfy and returns its
// compiled matchers. It does not look at the clock: that is Add's policy.
func (s Silence) check() ([]compiled, error) {
	var errs []error
	text := func(name, v string, lo, hi int) {
		if len(v) < lo || len(v) > hi {
			errs = append(errs, fmt.Errorf("%s: want %d to %d bytes, got %d", name, lo, hi, len(v)))
		} else if !utf8.ValidString(v) {
			errs = append(errs, fmt.Errorf("%s: not valid UTF-8", name))
		}
	}
	text("id", s.ID, 1, maxIDLen)
	text("created_by", s.CreatedBy, 1, MaxAuthorLen)
	text("comment", s.Comment, 0, MaxCommentLen)
	text("anomaly_id", s.AnomalyID, 0, maxIDLen)
	if !s.Reason.valid() {
		errs = append(errs, fmt.Errorf("reason %q: want manual, snooze or false_positive", clip(string(s.Reason), 40)))
	}
	if s.StartsAt.IsZero() || s.EndsAt.IsZero() || s.CreatedAt.IsZero() {
		errs = append(errs, errors.New("starts_at, ends_at and created_at are required"))
	} else if !s.EndsAt.After(s.StartsAt) {
		errs = append(errs, fmt.Errorf("ends_at %s: must be after starts_at %s", s.EndsAt.Format(time.RFC3339), s.StartsAt.Format(time.RFC3339)))
	}
	if s.ExpiredAt.IsZero() != (s.ExpiredBy == "") {
		errs = append(errs, errors.New("expired_at and expired_by: set both or neither"))
	} else if s.ExpiredBy != "" {
		text("expired_by", s.ExpiredBy, 1, MaxAuthorLen)
	}
	ms, err := compileAll(s.Matchers)
	if err != nil {
		errs = append(errs, err)
	}
	return ms, errors.Join(errs...)
}

// compileAll validates a silence's matchers and compiles them.
func compileAll(ms []Matcher) ([]compiled, error) {
	if len(ms) == 0 || len(ms) > MaxMatchers {
		return nil, fmt.Errorf("matchers: want 1 to %d, got %d", MaxMatchers, len(ms))
	}
	var errs []error
	out := make([]compiled, 0, len(ms))
	selective := false
	for i, m := range ms {
		c, err := compile(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("matchers[%d] %s: %w", i, clip(m.String(), 80), err))
			continue
		}
		selective = selective || !matchesEmpty(c)
		out = append(out, c)
	}
	if len(errs) == 0 && !selective {
		errs = append(errs, errors.New("matchers: every one matches the empty value, so the silence would mute every anomaly; add one such as agent_id=<id>"))
	}
	return out, errors.Join(errs...)
}

// ForFalsePositive returns the silence the Slack false-positive button asks
// for: anomalies of a's agent and kind, and of a's top feature when a has an
// explanation, are muted from now for d. The caller adds it, with
// AddWithKey so a retried click makes one silence.
func ForFalsePositive(a anomaly.Anomaly, author string, now time.Time, d time.Duration) Silence {
	ms := []Matcher{
		{Name: LabelAgentID, Type: MatchEqual, Value: a.AgentID},
		{Name: LabelKind, Type: MatchEqual, Value: a.Kind},
	}
	if f := a.TopFeature(); f != "" {
		ms = append(ms, Matcher{Name: LabelFeature, Type: MatchEqual, Value: f})
	}
	return Silence{
		Matchers: ms, StartsAt: now, EndsAt: now.Add(d),
		CreatedBy: author, Comment: "marked false positive", Reason: ReasonFalsePositive, AnomalyID: a.ID,
	}
}

// ForSnooze returns the silence the Slack snooze button asks for: every
// anomaly of the agent is muted from now for d. Set AnomalyID on the result
// to record which alert was snoozed.
func ForSnooze(agentID, author string, now time.Time, d time.Duration) Silence {
	return Silence{
		Matchers: []Matcher{{Name: LabelAgentID, Type: MatchEqual, Value: agentID}},
		StartsAt: now, EndsAt: now.Add(d),
		CreatedBy: author, Comment: "snoozed", Reason: ReasonSnooze,
	}
}
