package respond

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"

	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/internal/responder/slackui"
)

// Console is the Notifier of the embedded mode without a Slack token: each
// message is printed as its text and section lines, indented under its
// thread. The text was escaped by slackui, so nothing an attacker sent can
// move the cursor or fake a line (control characters are gone). Mentions
// are shown as a reader sees them in Slack (@here, not <!here>).
type Console struct {
	mu  sync.Mutex
	w   io.Writer
	seq int
	// Posts counts messages by channel, for the demo's summary.
	posts map[string]int
}

// NewConsole writes to w.
func NewConsole(w io.Writer) *Console { return &Console{w: w, posts: map[string]int{}} }

// PostAlert implements Notifier.
func (c *Console) PostAlert(_ context.Context, channel string, m slackui.Message) (string, error) {
	return c.print(channel, "", m)
}

// PostThreadReply implements Notifier.
func (c *Console) PostThreadReply(_ context.Context, channel, threadTS string, m slackui.Message) (string, error) {
	return c.print(channel, threadTS, m)
}

// Posts returns how many messages went to each channel.
func (c *Console) Posts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.posts {
		out[k] = v
	}
	return out
}

func (c *Console) print(channel, thread string, m slackui.Message) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	ts := "console." + strconv.Itoa(c.seq)
	c.posts[channel]++
	var b strings.Builder
	if thread == "" {
		fmt.Fprintf(&b, "[%s] %s\n", channel, TextOfMrkdwn(m.Text))
	} else {
		fmt.Fprintf(&b, "    ↳ [%s thread %s] %s\n", channel, thread, TextOfMrkdwn(m.Text))
	}
	for _, bl := range m.Blocks {
		if s, ok := bl.(*slack.SectionBlock); ok && thread == "" && s.Text != nil && s.BlockID == "aw_summary" {
			fmt.Fprintf(&b, "      %s\n", TextOfMrkdwn(s.Text.Text))
		}
	}
	_, err := io.WriteString(c.w, b.String())
	return ts, err
}
