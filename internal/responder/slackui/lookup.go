package slackui

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// MarkerEventType is the event_type of the message metadata that names the
// outbox entry a message was posted for (Message.Marker). Slack keeps
// metadata with the message and returns it from conversations.history and
// conversations.replies, so a responder that crashed between a post and its
// record finds the message instead of posting it again.
const MarkerEventType = "agentwatch_outbox_post"

// markerField is the event_payload field holding the outbox key.
const markerField = "outbox_key"

// Lookup bounds. A page of lookupPageSize messages, at most lookupMaxPages
// pages per lookup: the lookup covers the messages since the entry was
// created, and a channel that received more than that in between is one
// where the lookup gives up (ErrLookupIncomplete) rather than page for
// minutes. Slack may return fewer per page (15 for apps under its reduced
// history limits); the page count bounds the calls either way.
const (
	lookupPageSize = 200
	lookupMaxPages = 10
)

// ErrLookupIncomplete means FindPosted read lookupMaxPages pages without
// reaching the start of its window: the message may be older. The caller
// decides whether to post anyway.
var ErrLookupIncomplete = errors.New("lookup stopped before the start of its window: the channel has too many messages since then")

// FindPosted looks for a message this bot posted in channelID since since,
// carrying marker (see Message.Marker): at the top level of the channel
// when threadTS is empty (conversations.history), in the thread of
// threadTS otherwise (conversations.replies). found false with a nil error
// means Slack was asked about every message of the window and none carries
// the marker. Errors are *PostError (Op conversations.history or
// conversations.replies), sorted like a post's, or ErrLookupIncomplete.
// After a *PostError, the same lookup asked again resumes at the page
// that failed.
//
// A message counts only if this bot posted it (its user or bot id is the
// token's, from auth.test, asked once per Poster): another app in the
// workspace could post a message with the same metadata to hide an alert.
// channelID may be a channel's name ("#soc-alerts"), resolved to its ID
// (see channelID). It needs the channels:history scope (groups:history for
// private channels), and channels:read / groups:read to resolve a name the
// Poster has not posted to since it started; without them Slack answers
// missing_scope, which is not retried.
func (p *Poster) FindPosted(ctx context.Context, channelID, threadTS, marker string, since time.Time) (ts string, found bool, err error) {
	if marker == "" {
		return "", false, errors.New("find posted message: empty marker")
	}
	self, err := p.self(ctx)
	if err != nil {
		return "", false, err
	}
	name := channelID
	if channelID, err = p.channelID(ctx, name); err != nil {
		return "", false, err
	}
	label := name // what errors name: the channel as configured, and its ID
	if channelID != name {
		label += " (" + channelID + ")"
	}
	oldest := slackTS(since)
	method := "conversations.history"
	if threadTS != "" {
		method = "conversations.replies"
	}
	// A lookup cut short by an error resumes where it stopped when asked
	// again: under Slack's tightest limit (one read a minute) a lookup
	// that started over after each 429 would never get past its second page.
	key := lookupKey{channelID, threadTS, marker, oldest}
	pos := p.progress.take(key)
	defer func() {
		if err != nil && !errors.Is(err, ErrLookupIncomplete) {
			p.progress.keep(key, pos)
		}
	}()
	for pos.pages < lookupMaxPages {
		cursor := pos.cursor
		start := time.Now()
		var msgs []slack.Message
		var more bool
		var next string
		var cerr error
		if threadTS == "" {
			var r *slack.GetConversationHistoryResponse
			r, cerr = p.c.GetConversationHistoryContext(ctx, &slack.GetConversationHistoryParameters{ChannelID: channelID, Cursor: cursor,
				Oldest: oldest, Inclusive: true, Limit: lookupPageSize, IncludeAllMetadata: true})
			if r != nil {
				msgs, more, next = r.Messages, r.HasMore, r.ResponseMetaData.NextCursor
			}
		} else {
			msgs, more, next, cerr = p.c.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{ChannelID: channelID, Timestamp: threadTS,
				Cursor: cursor, Oldest: oldest, Inclusive: true, Limit: lookupPageSize, IncludeAllMetadata: true})
		}
		if err := p.done(method, label, start, cerr); err != nil {
			return "", false, err
		}
		pos.pages++
		for _, m := range msgs {
			if m.Metadata.EventType != MarkerEventType || !self.posted(m) {
				continue
			}
			if k, _ := m.Metadata.EventPayload[markerField].(string); k == marker {
				return m.Timestamp, true, nil
			}
		}
		if !more || next == "" {
			return "", false, nil
		}
		pos.cursor = next
	}
	return "", false, fmt.Errorf("%s of %s since %s: %w", method, label, oldest, ErrLookupIncomplete)
}

// lookupKey names a lookup; lookupPos is how far it got.
type (
	lookupKey struct{ channel, thread, marker, oldest string }
	lookupPos struct {
		cursor string
		pages  int
	}
)

// maxProgress bounds the lookups kept for resuming; past it they are
// forgotten (and start over).
const maxProgress = 10000

// lookupProgress keeps where interrupted lookups stopped.
type lookupProgress struct {
	mu sync.Mutex
	m  map[lookupKey]lookupPos
}

func (lp *lookupProgress) take(k lookupKey) lookupPos {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	pos := lp.m[k]
	delete(lp.m, k)
	return pos
}

func (lp *lookupProgress) keep(k lookupKey, pos lookupPos) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.m == nil || len(lp.m) >= maxProgress {
		lp.m = map[lookupKey]lookupPos{}
	}
	lp.m[k] = pos
}

// identity is who the token posts as.
type identity struct{ user, bot string }

func (id identity) posted(m slack.Message) bool {
	return (id.user != "" && m.User == id.user) || (id.bot != "" && m.BotID == id.bot)
}

// selfOnce caches the token's identity; a failed auth.test is asked again
// by the next lookup.
type selfOnce struct {
	mu sync.Mutex
	id identity
}

func (p *Poster) self(ctx context.Context) (identity, error) {
	p.who.mu.Lock()
	defer p.who.mu.Unlock()
	if p.who.id != (identity{}) {
		return p.who.id, nil
	}
	start := time.Now()
	r, err := p.c.AuthTestContext(ctx)
	if err := p.done("auth.test", "", start, err); err != nil {
		return identity{}, err
	}
	if r.UserID == "" && r.BotID == "" {
		return identity{}, &PostError{Op: "auth.test", Err: errors.New("auth.test named neither a user nor a bot")}
	}
	p.who.id = identity{user: r.UserID, bot: r.BotID}
	return p.who.id, nil
}

// slackTS formats t as a Slack timestamp ("seconds.micros"), the form of
// the oldest and latest parameters.
func slackTS(t time.Time) string {
	if t.IsZero() || t.Unix() < 0 {
		return "0"
	}
	return strconv.FormatInt(t.Unix(), 10) + "." + fmt.Sprintf("%06d", t.Nanosecond()/1000)
}
