package slackui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/internal/responder/clientlimit"
)

// ReplayWindow is how far a request's X-Slack-Request-Timestamp may be from
// now, either way, before the request is refused (Slack's own rule).
const ReplayWindow = 5 * time.Minute

// MinDedupRetention is how long a Deduper must remember a key for dedup to
// close the replay window: a request stamped up to ReplayWindow in the
// future stays acceptable until ReplayWindow after its stamp.
const MinDedupRetention = 2 * ReplayWindow

// maxBody bounds what the handler reads. A block_actions payload carries
// the whole message (at most 50 blocks of at most 3000 characters), form-
// encoded; 2 MiB is well above that.
const maxBody = 2 << 20

// Action is one verified, decoded button click.
type Action struct {
	Kind       ActionKind
	IncidentID string
	AnomalyID  string
	// UserID, UserName and TeamID say who clicked, as Slack reports it.
	// The names are Slack display data: escape them (Render does) before
	// showing them in a message.
	UserID   string
	UserName string
	TeamID   string
	// ChannelID and MessageTS locate the message whose button was clicked;
	// ThreadTS is its thread's parent when it is a reply.
	ChannelID string
	MessageTS string
	ThreadTS  string
	// ResponseURL lets the responder answer the click (for 30 minutes).
	ResponseURL string
	TriggerID   string
	// Key is the dedup key the handler marked before calling on.
	Key string
	// At is when the handler accepted the click (its now()).
	At time.Time
}

// A Deduper remembers which interaction keys were processed, for at least
// MinDedupRetention. Implementations must be safe for concurrent use.
type Deduper interface {
	// Seen reports whether key has been marked.
	Seen(ctx context.Context, key string) (bool, error)
	// Mark records key and reports whether this call recorded it (false:
	// it was already there). An implementation shared by several processes
	// must make the check and the record one atomic step: the handler runs
	// an action only when Mark reports true.
	Mark(ctx context.Context, key string) (bool, error)
}

// InteractionHandler is Slack's interactivity endpoint for alert buttons. It
// is safe for concurrent use. Set Log and Metrics before serving, if at all.
type InteractionHandler struct {
	secret string
	codec  *ActionCodec
	dedup  Deduper
	now    func() time.Time
	on     func(context.Context, Action) error
	// Log gets one line per refused or failed request; nil discards.
	Log *slog.Logger
	// Metrics counts requests by outcome; nil counts nothing.
	Metrics *Metrics
	// Limit, when set, rate-limits each client: a verified click by its
	// Slack user id, anything else by remote address (behind the TLS
	// proxy that is the proxy: forgeries then share one bucket, which
	// verified clicks never touch). Its refusals, and those of bad
	// signatures, go to its sampled audit rows instead of a WARN line
	// each.
	Limit *clientlimit.Limiter
	// Route, when set, is asked about each verified click before it is
	// deduplicated here: when several responders share the work, the
	// click may belong to another instance (the one that owns the agent),
	// which dedupes and runs it. Route returns forwarded true when it
	// handed the click on; err is then the owner's outcome (nil when it
	// ran, or is still running: it answers the analyst in Slack itself),
	// and the handler answers as if the click had run here. forwarded
	// false runs the click here as usual; an error with it answers 503.
	Route func(ctx context.Context, a Action) (forwarded bool, err error)
}

var _ http.Handler = (*InteractionHandler)(nil)

// NewInteractionHandler returns the handler for Slack's interactivity
// requests (block_actions from alert buttons). For each request it:
//
//  1. reads at most 2 MiB of body;
//  2. verifies Slack's v0 signature with secret (slack.NewSecretsVerifier:
//     HMAC-SHA256 of "v0:{timestamp}:{body}") and that the timestamp is
//     within ReplayWindow of now(); else it answers 401 and runs nothing;
//  3. decodes the payload form field, which must be one block_actions click
//     on a button whose value ActionCodec (keyed from secret) verifies and
//     whose action_id matches its kind; else 400 and nothing runs;
//  4. derives the click's dedup key from team, trigger_id, action_ts and the
//     button value, so a replay or an X-Slack-Retry-Num retry of the same
//     click has the same key; a key already marked answers 200 and runs
//     nothing; a Deduper error answers 503 and runs nothing;
//  5. calls on once per key with the decoded Action. The key is marked
//     before on runs (at most once): if on fails, the handler answers 500,
//     Slack shows the analyst an error, and a new click (a new trigger_id)
//     can try again.
//
// on runs on the request's goroutine, with a context that is not canceled
// when Slack hangs up, and Slack waits at most 3 seconds for the answer: it
// should record the action durably (an outbox) and return, not revoke
// inline. now is the clock for the timestamp window; slack-go's
// verifier also checks the window against the wall clock, so now must be
// the wall clock or close to it (nil means time.Now). dedup and on are
// required.
func NewInteractionHandler(secret string, dedup Deduper, now func() time.Time, on func(context.Context, Action) error) *InteractionHandler {
	if now == nil {
		now = time.Now
	}
	h := &InteractionHandler{secret: secret, dedup: dedup, now: now, on: on}
	h.codec, _ = NewActionCodec(secret) // an empty secret leaves codec nil: every request is refused below
	return h
}

// ServeHTTP implements http.Handler.
func (h *InteractionHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.Metrics.interaction("method")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		h.refuse(w, http.StatusRequestEntityTooLarge, "too_large", err)
		return
	}
	if err := h.verify(r.Header, body); err != nil {
		if h.Limit == nil {
			h.refuse(w, http.StatusUnauthorized, "unauthorized", err)
			return
		}
		c := clientlimit.IP(r.RemoteAddr)
		if ok, wait := h.Limit.Admit(c); !ok {
			h.limited(w, r, c, wait)
			return
		}
		h.Metrics.interaction("unauthorized")
		h.Limit.Refused(r.Context(), c, clientlimit.ReasonBadRequest, r.URL.Path)
		http.Error(w, http.StatusText(http.StatusUnauthorized), http.StatusUnauthorized)
		return
	}
	act, err := h.decode(body)
	if err != nil {
		h.refuse(w, http.StatusBadRequest, "bad_request", err)
		return
	}
	if h.Limit != nil {
		c := clientlimit.Client{Kind: "slack", ID: act.UserID}
		if ok, wait := h.Limit.Admit(c); !ok {
			h.limited(w, r, c, wait) // before dedup: a later click of the same button still works
			return
		}
	}
	// Slack hangs up after 3 s; what on records must not be cut off by that.
	ctx := context.WithoutCancel(r.Context())
	act.At = h.now()
	if h.Route != nil {
		// Not marked here: the owner marks it, and a mark here would make
		// the owner take the click for a retry.
		forwarded, err := h.Route(ctx, act)
		switch {
		case forwarded:
			h.ran(w, act, err, "forwarded")
			return
		case err != nil:
			h.refuse(w, http.StatusServiceUnavailable, "route_error", err)
			return
		}
	}
	if seen, err := h.dedup.Seen(ctx, act.Key); err != nil {
		h.refuse(w, http.StatusServiceUnavailable, "dedup_error", err)
		return
	} else if seen {
		h.duplicate(w, act)
		return
	}
	if first, err := h.dedup.Mark(ctx, act.Key); err != nil {
		h.refuse(w, http.StatusServiceUnavailable, "dedup_error", err)
		return
	} else if !first {
		h.duplicate(w, act)
		return
	}
	h.ran(w, act, h.on(ctx, act), "ok")
}

// ran answers a click that ran (here, or on the instance it was forwarded
// to) with err its outcome.
func (h *InteractionHandler) ran(w http.ResponseWriter, act Action, err error, okOutcome string) {
	if errors.Is(err, ErrNotAllowed) {
		h.Metrics.interaction("refused")
		if h.Log != nil {
			h.Log.Info("interaction refused: the user may not take this action", "kind", act.Kind, "incident_id", act.IncidentID,
				"user_id", act.UserID)
		}
		w.WriteHeader(http.StatusOK)
		return
	} else if err != nil {
		if h.Log != nil {
			h.Log.Error("interaction action failed", "kind", act.Kind, "incident_id", act.IncidentID,
				"anomaly_id", act.AnomalyID, "user_id", act.UserID, "err", err)
		}
		h.Metrics.interaction("action_error")
		http.Error(w, "action failed; try again", http.StatusInternalServerError)
		return
	}
	h.Metrics.interaction(okOutcome)
	w.WriteHeader(http.StatusOK)
}

// verify checks the v0 signature over the raw body and the timestamp window.
func (h *InteractionHandler) verify(hdr http.Header, body []byte) error {
	if h.codec == nil {
		return errors.New("no signing secret configured; set the Slack app's signing secret")
	}
	sv, err := slack.NewSecretsVerifier(hdr, h.secret)
	if err != nil {
		return err
	}
	if _, err := sv.Write(body); err != nil {
		return err
	}
	if err := sv.Ensure(); err != nil {
		return err
	}
	ts, err := strconv.ParseInt(hdr.Get("X-Slack-Request-Timestamp"), 10, 64)
	if err != nil {
		return err
	}
	if d := h.now().Sub(time.Unix(ts, 0)); d > ReplayWindow || d < -ReplayWindow {
		return slack.ErrExpiredTimestamp
	}
	return nil
}

// decode parses the payload and verifies the button it names.
func (h *InteractionHandler) decode(body []byte) (Action, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return Action{}, err
	}
	payload := form.Get("payload")
	if payload == "" {
		return Action{}, errors.New("no payload field")
	}
	var cb slack.InteractionCallback
	if err := json.Unmarshal([]byte(payload), &cb); err != nil {
		return Action{}, err
	}
	if cb.Type != slack.InteractionTypeBlockActions {
		return Action{}, errors.New("unsupported interaction type " + strconv.Quote(string(cb.Type)))
	}
	if n := len(cb.ActionCallback.BlockActions); n != 1 {
		return Action{}, errors.New("want exactly one block action, got " + strconv.Itoa(n))
	}
	ba := cb.ActionCallback.BlockActions[0]
	ref, err := h.codec.Decode(ba.Value)
	if err != nil {
		return Action{}, err
	}
	if ba.ActionID != slackActionID[ref.Kind] {
		return Action{}, errors.New("action_id " + strconv.Quote(ba.ActionID) + " does not match the button's kind " + string(ref.Kind))
	}
	if cb.User.ID == "" {
		return Action{}, errors.New("no user: an action nobody can be held to is refused")
	}
	if cb.TriggerID == "" && ba.ActionTs == "" {
		return Action{}, errors.New("neither trigger_id nor action_ts: cannot deduplicate")
	}
	channel := cb.Container.ChannelID
	if channel == "" {
		channel = cb.Channel.ID
	}
	msgTS := cb.Container.MessageTs
	if msgTS == "" {
		msgTS = cb.Message.Timestamp
	}
	return Action{
		Kind:        ref.Kind,
		IncidentID:  ref.IncidentID,
		AnomalyID:   ref.AnomalyID,
		UserID:      cb.User.ID,
		UserName:    firstNonEmpty(cb.User.Name, cb.User.Profile.DisplayName),
		TeamID:      firstNonEmpty(cb.Team.ID, cb.User.TeamID),
		ChannelID:   channel,
		MessageTS:   msgTS,
		ThreadTS:    firstNonEmpty(cb.Container.ThreadTs, cb.Message.ThreadTimestamp),
		ResponseURL: cb.ResponseURL,
		TriggerID:   cb.TriggerID,
		Key:         DedupKey(firstNonEmpty(cb.Team.ID, cb.User.TeamID), cb.TriggerID, ba.ActionTs, ba.Value),
	}, nil
}

// DedupKey is the key under which a click is marked: "slack-action:" and the
// hex SHA-256 of team id, trigger id, action_ts and button value, joined by
// NUL bytes. A replay or a retry of the same click has the same key; a new
// click (even on the same button) has a new trigger_id and action_ts.
func DedupKey(teamID, triggerID, actionTS, value string) string {
	s := sha256.New()
	for _, p := range []string{teamID, triggerID, actionTS, value} {
		s.Write([]byte(p))
		s.Write([]byte{0})
	}
	return "slack-action:" + hex.EncodeToString(s.Sum(nil))
}

// refuse answers code, counts outcome and logs why.
func (h *InteractionHandler) refuse(w http.ResponseWriter, code int, outcome string, err error) {
	h.Metrics.interaction(outcome)
	if h.Log != nil {
		h.Log.Warn("interaction refused", "reason", outcome, "status", code, "err", err)
	}
	http.Error(w, http.StatusText(code), code)
}

// limited answers 429 with Retry-After and counts the refusal.
func (h *InteractionHandler) limited(w http.ResponseWriter, r *http.Request, c clientlimit.Client, wait time.Duration) {
	h.Metrics.interaction("rate_limited")
	h.Limit.Refused(r.Context(), c, clientlimit.ReasonRateLimited, r.URL.Path)
	w.Header().Set("Retry-After", clientlimit.RetryAfter(wait))
	http.Error(w, http.StatusText(http.StatusTooManyRequests), http.StatusTooManyRequests)
}

func (h *InteractionHandler) duplicate(w http.ResponseWriter, a Action) {
	h.Metrics.interaction("duplicate")
	w.WriteHeader(http.StatusOK)
	if h.Log != nil {
		h.Log.Debug("duplicate interaction", "kind", a.Kind, "incident_id", a.IncidentID, "user_id", a.UserID)
	}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// MemoryDeduper is an in-process Deduper that forgets keys after a
// retention period. It is safe for concurrent use. It does not survive a
// restart; use it in tests and the one-process demo.
type MemoryDeduper struct {
	mu        sync.Mutex
	keys      map[string]time.Time // key → when it may be forgotten
	retention time.Duration
	now       func() time.Time
	nextPrune time.Time
}

var _ Deduper = (*MemoryDeduper)(nil)

// NewMemoryDeduper returns a MemoryDeduper that keeps keys for retention,
// raised to MinDedupRetention if shorter, by the clock now.
func NewMemoryDeduper(retention time.Duration, now func() time.Time) *MemoryDeduper {
	return &MemoryDeduper{keys: map[string]time.Time{}, retention: max(retention, MinDedupRetention), now: now}
}

// Seen implements Deduper.
func (d *MemoryDeduper) Seen(_ context.Context, key string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	exp, ok := d.keys[key]
	return ok && d.now().Before(exp), nil
}

// Mark implements Deduper.
func (d *MemoryDeduper) Mark(_ context.Context, key string) (bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if !now.Before(d.nextPrune) {
		for k, exp := range d.keys {
			if !now.Before(exp) {
				delete(d.keys, k)
			}
		}
		d.nextPrune = now.Add(d.retention)
	}
	if exp, ok := d.keys[key]; ok && now.Before(exp) {
		return false, nil
	}
	d.keys[key] = now.Add(d.retention)
	return true, nil
}
