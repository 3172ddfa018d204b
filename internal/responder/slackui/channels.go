package slackui

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"
)

// conversationID matches a Slack conversation ID (C…, G…, D…). Channel
// names are lower case, so nothing else matches.
var conversationID = regexp.MustCompile(`^[CGD][A-Z0-9]+$`)

// maxListPages bounds conversations.list when a name is resolved: 20 pages
// of 1000 channels.
const maxListPages = 20

// channelIDs caches channel names ("soc-alerts", no "#") to IDs, learned
// from chat.postMessage answers and conversations.list.
type channelIDs struct {
	mu sync.Mutex
	m  map[string]string
}

func (c *channelIDs) get(name string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.m[name]
	return id, ok
}

func (c *channelIDs) put(name, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]string{}
	}
	c.m[name] = id
}

// learn records the ID Slack answered a post to channel with.
func (p *Poster) learn(channel, id string) {
	if id != "" && !conversationID.MatchString(channel) {
		p.ids.put(strings.TrimPrefix(channel, "#"), id)
	}
}

// channelID returns the conversation ID of channel, which playbooks may name
// "#soc-alerts": chat.postMessage takes a name, conversations.history and
// conversations.replies only an ID. A name is resolved from the posts this
// Poster made, or else by listing the public and private channels the app
// can see (conversations.list: the channels:read and groups:read scopes).
func (p *Poster) channelID(ctx context.Context, channel string) (string, error) {
	if conversationID.MatchString(channel) {
		return channel, nil
	}
	name := strings.TrimPrefix(channel, "#")
	if id, ok := p.ids.get(name); ok {
		return id, nil
	}
	cursor := ""
	for range maxListPages {
		start := time.Now()
		chs, next, err := p.c.GetConversationsContext(ctx, &slack.GetConversationsParameters{Cursor: cursor, ExcludeArchived: true, Limit: 1000,
			Types: []string{"public_channel", "private_channel"}})
		if err := p.done("conversations.list", channel, start, err); err != nil {
			return "", err
		}
		id := ""
		for _, c := range chs {
			p.ids.put(c.Name, c.ID)
			if c.Name == name {
				id = c.ID
			}
		}
		if id != "" {
			return id, nil
		}
		if next == "" {
			break
		}
		cursor = next
	}
	return "", &PostError{Op: "conversations.list", Channel: channel, Err: errors.New("no public or private channel of this name is visible to the app")}
}
