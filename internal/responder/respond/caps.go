package respond

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentwatch/agentwatch/internal/responder/audit"
	"github.com/agentwatch/agentwatch/internal/responder/outbox"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
	"github.com/agentwatch/agentwatch/pkg/playbooks"
)

// capInterval is the length of a channel cap's window.
const capInterval = time.Minute

// kindSummary is the outbox kind of a channel's "N more were not posted"
// message.
const kindSummary = "slack.summary"

// What a capped post is, for the summary and the metric.
const (
	capAlert    = "alert"
	capReply    = "follow-up"
	capNote     = "note"
	capApproval = "approval request"
)

// channelCaps holds each channel's count of messages in the current
// minute (by the engine's clock, in windows aligned to the minute). A
// flood of anomalies must not become a flood of messages: past the cap,
// alerts, follow-ups and notes are counted instead of posted, and the
// minute's count is posted once when it ends. Approval requests are not
// dropped (a dropped one could only time out): past the cap they wait for
// the next minute, and while one waits the others leave it a slot. Safe
// for concurrent use.
type channelCaps struct {
	max int
	mu  sync.Mutex
	win map[string]*capWindow
	// ended are windows over with posts suppressed, whose summary is due.
	ended []*capWindow
}

type capWindow struct {
	channel    string
	start      time.Time
	posted     int
	suppressed map[string]map[string]int // what → anomaly kind → count
	waiting    map[string]bool           // approval entries waiting for a slot
}

func newChannelCaps(max int) *channelCaps {
	return &channelCaps{max: max, win: map[string]*capWindow{}}
}

// window returns the channel's current window. Called with mu held.
func (c *channelCaps) window(channel string, now time.Time) *capWindow {
	start := now.Truncate(capInterval)
	w := c.win[channel]
	if w != nil && !w.start.Before(start) {
		return w
	}
	var waiting map[string]bool
	if w != nil {
		if len(w.suppressed) > 0 {
			c.ended = append(c.ended, w)
		}
		waiting = w.waiting
	}
	if waiting == nil {
		waiting = map[string]bool{}
	}
	nw := &capWindow{channel: channel, start: start, suppressed: map[string]map[string]int{}, waiting: waiting}
	c.win[channel] = nw
	return nw
}

// admit says whether a message of what (about an anomaly of kind) may be
// posted to channel now; if not, it is counted for the summary.
func (c *channelCaps) admit(channel, what, kind string, now time.Time) bool {
	if c == nil || c.max <= 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.window(channel, now)
	if w.posted+len(w.waiting) < c.max {
		w.posted++
		return true
	}
	if w.suppressed[what] == nil {
		w.suppressed[what] = map[string]int{}
	}
	w.suppressed[what][kind]++
	return false
}

// admitApproval is admit for an approval request (its entry key): past
// the cap it answers how long until the next window, where it has
// priority.
func (c *channelCaps) admitApproval(channel, key string, now time.Time) (bool, time.Duration) {
	if c == nil || c.max <= 0 {
		return true, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.window(channel, now)
	delete(w.waiting, key)
	if w.posted < c.max {
		w.posted++
		return true, 0
	}
	w.waiting[key] = true
	return false, w.start.Add(capInterval).Sub(now)
}

// due returns the summaries of windows that have ended.
func (c *channelCaps) due(now time.Time) []*capWindow {
	if c == nil || c.max <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for ch := range c.win {
		c.window(ch, now) // moves an ended window to ended
	}
	out := c.ended
	c.ended = nil
	return out
}

// text is the summary of a window.
func (w *capWindow) text(max int) string {
	total := 0
	var parts []string
	for _, what := range []string{capAlert, capReply, capNote} {
		kinds := w.suppressed[what]
		n := 0
		var ks []string
		for _, k := range slices.Sorted(maps.Keys(kinds)) {
			n += kinds[k]
			if k != "" {
				ks = append(ks, fmt.Sprintf("%s %d", k, kinds[k]))
			}
		}
		if n == 0 {
			continue
		}
		total += n
		p := fmt.Sprintf("%d %ss", n, what)
		if len(ks) > 0 {
			p += " (" + strings.Join(ks, ", ") + ")"
		}
		parts = append(parts, p)
	}
	from := w.start.UTC()
	return fmt.Sprintf("%d more messages to this channel were not posted between %s and %s UTC (cap: %d per minute): %s. "+
		"Nothing is lost: each anomaly is in its incident and the audit trail, see `responder incidents` and `responder audit --from %s`.",
		total, from.Format("15:04"), from.Add(capInterval).Format("15:04"), max, strings.Join(parts, ", "), from.Format(time.RFC3339))
}

// runCaps queues the summaries of ended windows, every second, until ctx
// ends.
func (e *Engine) runCaps(ctx context.Context) {
	if e.caps == nil || e.caps.max <= 0 {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			e.flushCaps(ctx)
		}
	}
}

// flushCaps queues one summary per channel and ended window with
// suppressed posts.
func (e *Engine) flushCaps(ctx context.Context) {
	for _, w := range e.caps.due(e.now()) {
		j := job{Channel: w.channel, Text: w.text(e.caps.max)}
		key := fmt.Sprintf("summary-%s-%d", w.channel, w.start.Unix())
		if _, err := e.enqueue(ctx, key, kindSummary, j); err != nil {
			e.log.Warn("queue a channel summary", "channel", w.channel, "err", err)
			continue
		}
		e.o.Metrics.summary()
	}
}

// runSummary posts a summary; it is not itself capped (one per channel and
// minute at most).
func (e *Engine) runSummary(ctx context.Context, en outbox.Entry, j job) ([]byte, error) {
	if e.o.Notifier == nil {
		return nil, nil
	}
	prev, err := e.earlier(ctx, en, j.Channel, "")
	if err != nil {
		return nil, err
	}
	if prev.Found {
		return []byte(j.Channel + " " + prev.TS), nil
	}
	m := slackui.RenderNote(j.Text)
	m.Marker = en.Key
	ts, err := e.o.Notifier.PostAlert(ctx, j.Channel, m)
	if err != nil {
		var pe *slackui.PostError
		if errors.As(err, &pe) && pe.RetryAfter > 0 {
			return nil, outbox.RetryAfter(pe.RetryAfter, err)
		}
		if errors.As(err, &pe) && !pe.Retry {
			return nil, outbox.Permanent(err)
		}
		return nil, err
	}
	return []byte(j.Channel + " " + ts), nil
}

// suppressed records a post the channel's cap held back.
func (e *Engine) suppressed(ctx context.Context, j job, what, channel string) error {
	e.o.Metrics.suppressed(what)
	if what == capNote {
		return nil // a note is no action: counted in the summary only
	}
	return e.record(ctx, j, string(playbooks.KindNotify), audit.ResultSkipped,
		fmt.Sprintf("not posted: %s is over its cap of %d messages per minute; counted in the minute's summary", channel, e.caps.max))
}
