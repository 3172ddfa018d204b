package slackui

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/slack-go/slack"
)

// DefaultRetryAfter is the wait a PostError asks for after a 429 that came
// without a usable Retry-After header.
const DefaultRetryAfter = 5 * time.Second

// PostError is the error of every Poster call. It says, once, whether the
// call may succeed if tried again: the outbox retries when Retry is set,
// not before RetryAfter has passed, and gives up (and tells a human)
// otherwise.
type PostError struct {
	// Op is the Slack method: chat.postMessage or chat.update.
	Op      string
	Channel string
	// Retry is true for rate limits, Slack's 5xx answers, Slack errors that
	// say "try later", and transport failures.
	Retry bool
	// RetryAfter is set on a 429: Slack's Retry-After, or DefaultRetryAfter
	// when it gave none. Zero otherwise.
	RetryAfter time.Duration
	// Err is slack-go's error: *slack.RateLimitedError on a 429 with
	// Retry-After, slack.StatusCodeError, slack.SlackErrorResponse, or a
	// transport error.
	Err error
}

func (e *PostError) Error() string {
	switch {
	case e.RetryAfter > 0:
		return fmt.Sprintf("%s to %s: rate limited, retry after %s: %v", e.Op, e.Channel, e.RetryAfter, e.Err)
	case e.Retry:
		return fmt.Sprintf("%s to %s (will retry): %v", e.Op, e.Channel, e.Err)
	}
	return fmt.Sprintf("%s to %s: %v", e.Op, e.Channel, e.Err)
}

func (e *PostError) Unwrap() error { return e.Err }

// Poster sends rendered messages through a slack-go client. Build the client
// without slack.OptionRetry, so that a 429 comes back here, to be retried by
// the durable outbox, instead of blocking in slack-go. A Poster is safe for
// concurrent use; it does not own the client.
type Poster struct {
	c *slack.Client
	// Metrics counts calls by method and outcome; nil counts nothing. Set
	// it before use, if at all.
	Metrics *Metrics

	who      selfOnce       // FindPosted's identity of the token
	progress lookupProgress // FindPosted's interrupted lookups
	ids      channelIDs     // channel names to IDs, for FindPosted
}

// NewPoster returns a Poster over c.
func NewPoster(c *slack.Client) *Poster { return &Poster{c: c} }

// PostAlert posts m to channelID and returns the new message's ts, which
// names the incident's thread.
func (p *Poster) PostAlert(ctx context.Context, channelID string, m Message) (ts string, err error) {
	start := time.Now()
	id, ts, err := p.c.PostMessageContext(ctx, channelID, m.Options()...)
	if err := p.done("chat.postMessage", channelID, start, err); err != nil {
		return "", err
	}
	p.learn(channelID, id)
	return ts, nil
}

// PostThreadReply posts m into the thread of threadTS (not broadcast to the
// channel) and returns the reply's ts.
func (p *Poster) PostThreadReply(ctx context.Context, channelID, threadTS string, m Message) (ts string, err error) {
	if threadTS == "" {
		return "", &PostError{Op: "chat.postMessage", Channel: channelID, Err: errors.New("empty thread ts")}
	}
	start := time.Now()
	id, ts, err := p.c.PostMessageContext(ctx, channelID, append(m.Options(), slack.MsgOptionTS(threadTS))...)
	if err := p.done("chat.postMessage", channelID, start, err); err != nil {
		return "", err
	}
	p.learn(channelID, id)
	return ts, nil
}

// UpdateMessage replaces the message ts in channel with m (an incident's
// card after a change). channel may be a name ("#soc-alerts", as playbooks
// write it): chat.update takes only a conversation ID and answers a name
// with channel_not_found, so a name is resolved first (see channelID).
func (p *Poster) UpdateMessage(ctx context.Context, channel, ts string, m Message) error {
	channelID, err := p.channelID(ctx, channel)
	if err != nil {
		return err
	}
	start := time.Now()
	_, _, _, err = p.c.UpdateMessageContext(ctx, channelID, ts, m.Options()...)
	if err := p.done("chat.update", channelID, start, err); err != nil {
		return err
	}
	return nil
}

// done classifies err (nil stays nil) and counts the call.
func (p *Poster) done(method, channel string, start time.Time, err error) error {
	var pe *PostError
	if err != nil {
		pe = classify(method, channel, err)
	}
	p.Metrics.call(method, time.Since(start).Seconds(), pe)
	if pe == nil {
		return nil
	}
	return pe
}

// retryableSlackErrors are the Slack API error codes that mean "try later".
var retryableSlackErrors = map[string]bool{
	"ratelimited":         true,
	"rate_limited":        true,
	"internal_error":      true,
	"fatal_error":         true,
	"service_unavailable": true,
	"request_timeout":     true,
}

func classify(op, channel string, err error) *PostError {
	e := &PostError{Op: op, Channel: channel, Err: err}
	var rl *slack.RateLimitedError
	var sc slack.StatusCodeError
	var se slack.SlackErrorResponse
	switch {
	case errors.As(err, &rl):
		e.Retry, e.RetryAfter = true, rl.RetryAfter
		if e.RetryAfter <= 0 {
			e.RetryAfter = DefaultRetryAfter
		}
	case errors.As(err, &sc):
		e.Retry = sc.Retryable()
		if sc.Code == http.StatusTooManyRequests {
			e.RetryAfter = DefaultRetryAfter
		}
	case errors.As(err, &se):
		e.Retry = retryableSlackErrors[se.Err]
		if se.Err == "ratelimited" || se.Err == "rate_limited" {
			e.RetryAfter = DefaultRetryAfter
		}
	default:
		// Transport trouble (refused, reset, timeout) or a malformed
		// answer: the message may or may not have been posted; Slack has no
		// idempotency key, so a retry can duplicate it, which beats losing
		// an alert.
		e.Retry = true
	}
	return e
}

// PostEphemeral shows m to user only, in channelID (chat.postEphemeral):
// the answer to a click the user may not make.
func (p *Poster) PostEphemeral(ctx context.Context, channelID, user string, m Message) error {
	start := time.Now()
	_, err := p.c.PostEphemeralContext(ctx, channelID, user, m.Options()...)
	return p.done("chat.postEphemeral", channelID, start, err)
}
