package respond

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
)

// PostFinder is a Notifier that can find a message it posted for an
// outbox entry (slackui.Poster). The console cannot: after a crash it
// prints again.
type PostFinder interface {
	// FindPosted: see slackui.Poster.FindPosted.
	FindPosted(ctx context.Context, channel, threadTS, marker string, since time.Time) (ts string, found bool, err error)
}

var _ PostFinder = (*slackui.Poster)(nil)

// unconfirmedTag marks an entry's LastError when an earlier run may have
// posted without the post being recorded: a lookup that failed and will be
// retried, or a post whose answer was lost (a timeout, a 5xx). The Worker
// sets Entry.Recovered only for the run right after a crash, so this tag
// is what makes the following runs look before posting too.
const unconfirmedTag = "Slack post unconfirmed, the next run looks for it first"

// lookupMargin is how far before the entry's creation the lookup reaches:
// Slack's ts is Slack's clock, the entry's creation this host's.
const lookupMargin = 5 * time.Minute

// mayHavePosted reports whether an earlier run of en may have posted its
// message without recording it.
func mayHavePosted(en outbox.Entry) bool {
	return en.Recovered || strings.Contains(en.LastError, unconfirmedTag)
}

// unconfirmed tags err (see unconfirmedTag), keeping what it wraps (a
// Retry-After, a Permanent) visible to the Worker.
func unconfirmed(err error) error {
	if err == nil || strings.Contains(err.Error(), unconfirmedTag) {
		return err
	}
	return fmt.Errorf("%s: %w", unconfirmedTag, err)
}

// ambiguousPost reports whether err leaves it open whether Slack posted:
// the answer was lost (transport, timeout) or was a 5xx. A 429 or an ok:false
// answer says it did not.
func ambiguousPost(err error) bool {
	var pe *slackui.PostError
	return errors.As(err, &pe) && pe.Op == "chat.postMessage" && pe.Retry && pe.RetryAfter == 0
}

// checkPosts wraps the handler of a kind that posts one Slack message per
// entry, so that a run that may have left a message behind (see
// mayHavePosted) makes the next run look for it.
func checkPosts(h outbox.Handler) outbox.Handler {
	return func(ctx context.Context, en outbox.Entry) ([]byte, error) {
		res, err := h(ctx, en)
		if err != nil && (mayHavePosted(en) || ambiguousPost(err)) {
			err = unconfirmed(err)
		}
		return res, err
	}
}

// earlierPost is what a lookup found.
type earlierPost struct {
	// TS is the message's ts when Found.
	TS    string
	Found bool
	// Unchecked, when set, says why the lookup could not be made: the
	// message is posted anyway (a duplicate beats a lost alert) and the
	// audit record says it may be one.
	Unchecked string
}

// earlier looks, when an earlier run of en may have posted its message
// (Recovered, or tagged unconfirmed), for that message in channel (in the
// thread of threadTS when set) by its marker, en.Key. A retryable lookup
// error (rate limit, 5xx, transport) is returned, tagged, so the entry is
// retried and looks again; any other (missing_scope: the app lacks
// channels:history or groups:history; a channel the bot cannot read) is
// logged at error level, counted as unchecked, and the caller posts.
func (e *Engine) earlier(ctx context.Context, en outbox.Entry, channel, threadTS string) (earlierPost, error) {
	if !mayHavePosted(en) {
		return earlierPost{}, nil
	}
	f, ok := e.o.Notifier.(PostFinder)
	if !ok {
		e.o.Metrics.postCheck("unsupported")
		return earlierPost{}, nil
	}
	log := e.log.With("key", en.Key, "kind", en.Kind, "channel", channel, "thread", threadTS)
	ts, found, err := f.FindPosted(ctx, channel, threadTS, en.Key, en.Created.Add(-lookupMargin))
	var pe *slackui.PostError
	switch {
	case err == nil && found:
		e.o.Metrics.postCheck("found")
		log.Info("found the message an interrupted run posted; not posting it again", "ts", ts)
		return earlierPost{TS: ts, Found: true}, nil
	case err == nil:
		e.o.Metrics.postCheck("not_found")
		log.Info("the interrupted run did not post; posting")
		return earlierPost{}, nil
	case errors.Is(err, slackui.ErrLookupIncomplete):
		e.o.Metrics.postCheck("unchecked")
		log.Warn("could not look far enough back for an earlier post; posting, which may duplicate it", "err", err)
		return earlierPost{Unchecked: err.Error()}, nil
	case errors.As(err, &pe) && pe.RetryAfter > 0:
		e.o.Metrics.postCheck("retry")
		return earlierPost{}, outbox.RetryAfter(pe.RetryAfter, unconfirmed(err))
	case errors.As(err, &pe) && pe.Retry, ctx.Err() != nil:
		e.o.Metrics.postCheck("retry")
		return earlierPost{}, unconfirmed(err)
	}
	e.o.Metrics.postCheck("unchecked")
	log.Error("cannot look for the message an interrupted run may have posted; posting, which may duplicate it. "+
		"Give the Slack app the channels:history and groups:history scopes, and invite it to the channel", "err", err)
	return earlierPost{Unchecked: err.Error()}, nil
}

// note is appended to the audit detail of a post made without
// the lookup it needed.
func (p earlierPost) note() string {
	if p.Unchecked == "" {
		return ""
	}
	return " (posted without checking for the post of an interrupted run, so it may be a duplicate: " + p.Unchecked + ")"
}
