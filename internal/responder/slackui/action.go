package slackui

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ActionKind is what an analyst asked for with a button.
type ActionKind string

// The buttons of an alert.
const (
	// Acknowledge: an analyst has seen the incident and owns it.
	Acknowledge ActionKind = "acknowledge"
	// FalsePositive: the anomaly was benign; the responder records the
	// verdict and folds the window into the agent's baseline.
	FalsePositive ActionKind = "false_positive"
	// Revoke: revoke the agent's credential now.
	Revoke ActionKind = "revoke"
	// Quarantine: block the agent at the gateway for QuarantineTTL.
	Quarantine ActionKind = "quarantine"
	// Snooze: hold further alerts of the incident for a while.
	Snooze ActionKind = "snooze"
	// Approve and Deny answer an approval request (a playbook's approve
	// step, or a revocation past the blast-radius budget). Their
	// ActionRef.AnomalyID carries the request's id instead.
	Approve ActionKind = "approve"
	Deny    ActionKind = "deny"
)

// QuarantineTTL is how long the quarantine button promises to block the
// agent; the button's label says so, so the responder must use it.
const QuarantineTTL = time.Hour

// kindCodes is the one-byte code of each kind inside an encoded action id.
// Codes are part of the wire format of buttons already posted: never reuse
// or renumber one.
var kindCodes = map[ActionKind]byte{
	Acknowledge:   1,
	FalsePositive: 2,
	Revoke:        3,
	Quarantine:    4,
	Snooze:        5,
	Approve:       6,
	Deny:          7,
}

// slackActionID is the Block Kit action_id of each kind's button. The
// interaction handler checks that it agrees with the kind in the button's
// value.
var slackActionID = map[ActionKind]string{
	Acknowledge:   "aw_ack",
	FalsePositive: "aw_false_positive",
	Revoke:        "aw_revoke",
	Quarantine:    "aw_quarantine",
	Snooze:        "aw_snooze",
	Approve:       "aw_approve",
	Deny:          "aw_deny",
}

// ActionRef is what a button's value encodes: which action, on which
// incident, prompted by which anomaly.
type ActionRef struct {
	Kind       ActionKind
	IncidentID string
	AnomalyID  string
}

// ActionCodec encodes an ActionRef into a button value and verifies it when
// Slack sends it back. The value is "aw1." followed by base64url (no
// padding) of: kind code (1 byte), incident id length (1 byte), incident
// id, anomaly id length (1 byte), anomaly id, and the first 16 bytes of
// HMAC-SHA256 over everything before it. Its key is derived from the Slack
// signing secret, so rotating the secret invalidates buttons already
// posted (they answer 400 and run nothing). An ActionCodec is immutable and
// safe for concurrent use.
type ActionCodec struct {
	key []byte
}

const (
	actionPrefix = "aw1."
	tagLen       = 16
	maxRefID     = 128 // longest incident or anomaly id a button can carry
)

// NewActionCodec derives the codec's key from the Slack signing secret,
// kept apart from the request-signing use by a fixed label.
func NewActionCodec(signingSecret string) (*ActionCodec, error) {
	if signingSecret == "" {
		return nil, errors.New("action codec: empty signing secret; set the Slack app's signing secret")
	}
	m := hmac.New(sha256.New, []byte(signingSecret))
	m.Write([]byte("agentwatch/slackui action id v1"))
	return &ActionCodec{key: m.Sum(nil)}, nil
}

// Encode returns the button value for ref. Ids must be 1 to 128 bytes of
// printable ASCII without spaces; they are ours (incident ids from the
// responder, anomaly ids from the detector), so anything else is a bug.
func (c *ActionCodec) Encode(ref ActionRef) (string, error) {
	code, ok := kindCodes[ref.Kind]
	if !ok {
		return "", fmt.Errorf("encode action: unknown kind %q", ref.Kind)
	}
	if err := checkRefID("incident id", ref.IncidentID); err != nil {
		return "", fmt.Errorf("encode action: %w", err)
	}
	if err := checkRefID("anomaly id", ref.AnomalyID); err != nil {
		return "", fmt.Errorf("encode action: %w", err)
	}
	buf := make([]byte, 0, 3+len(ref.IncidentID)+len(ref.AnomalyID)+tagLen)
	buf = append(buf, code, byte(len(ref.IncidentID)))
	buf = append(buf, ref.IncidentID...)
	buf = append(buf, byte(len(ref.AnomalyID)))
	buf = append(buf, ref.AnomalyID...)
	buf = append(buf, c.tag(buf)...)
	return actionPrefix + base64.RawURLEncoding.EncodeToString(buf), nil
}

// errBadAction means a button value was not made by this codec (or not
// with this key); the request is refused and nothing runs.
var errBadAction = errors.New("not a valid agentwatch action id")

// Decode verifies v and returns what it encodes.
func (c *ActionCodec) Decode(v string) (ActionRef, error) {
	rest, ok := strings.CutPrefix(v, actionPrefix)
	if !ok || len(v) > maxButtonValue {
		return ActionRef{}, errBadAction
	}
	buf, err := base64.RawURLEncoding.DecodeString(rest)
	// Only the canonical encoding: the decoder skips newlines and ignores
	// trailing bits, and one click must have one value (its dedup key).
	if err != nil || len(buf) < 3+tagLen || base64.RawURLEncoding.EncodeToString(buf) != rest {
		return ActionRef{}, errBadAction
	}
	body, tag := buf[:len(buf)-tagLen], buf[len(buf)-tagLen:]
	if !hmac.Equal(tag, c.tag(body)) {
		return ActionRef{}, errBadAction
	}
	// The tag is good, so the layout is ours; still, check every length.
	var ref ActionRef
	for k, code := range kindCodes {
		if code == body[0] {
			ref.Kind = k
		}
	}
	if ref.Kind == "" {
		return ActionRef{}, errBadAction
	}
	body = body[1:]
	var ids [2]string
	for i := range ids {
		if len(body) < 1 || len(body) < 1+int(body[0]) {
			return ActionRef{}, errBadAction
		}
		n := int(body[0])
		ids[i] = string(body[1 : 1+n])
		body = body[1+n:]
	}
	if len(body) != 0 {
		return ActionRef{}, errBadAction
	}
	ref.IncidentID, ref.AnomalyID = ids[0], ids[1]
	if checkRefID("", ref.IncidentID) != nil || checkRefID("", ref.AnomalyID) != nil {
		return ActionRef{}, errBadAction
	}
	return ref, nil
}

func (c *ActionCodec) tag(b []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write(b)
	return m.Sum(nil)[:tagLen]
}

func checkRefID(what, id string) error {
	if id == "" || len(id) > maxRefID {
		return fmt.Errorf("%s of %d bytes: need 1 to %d", what, len(id), maxRefID)
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return fmt.Errorf("%s %q: only printable ASCII without spaces is allowed", what, id)
		}
	}
	return nil
}
