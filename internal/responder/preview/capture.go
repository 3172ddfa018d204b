package preview

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"

	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
)

// Capture is a respond.Notifier that keeps what was posted through it as
// Slack ends up showing it: each top-level message after its updates (an
// update replaces the message with that ts), and each thread's replies in
// order. Safe for concurrent use.
type Capture struct {
	// Inner, when set, gets every call first (the console, or Slack): its
	// ts names the message, and its error is returned with nothing kept.
	// Nil: Capture names the messages itself.
	Inner respond.Notifier

	mu    sync.Mutex
	seq   int
	posts []*Posted
	byTS  map[string]*Posted
	// orphanUpdates counts updates of messages Capture never saw posted
	// (Inner accepted them): nothing to replace.
	orphanUpdates int
}

// Posted is one message as it stands now.
type Posted struct {
	Channel string
	TS      string
	// ThreadTS is the ts of the thread's top-level message; "" for a
	// top-level message.
	ThreadTS string
	// Message is the last version posted or updated.
	Message slackui.Message
	// Updates counts the chat.update calls that replaced it.
	Updates int
	// Marker is the Marker of the first version: the outbox key of the
	// entry that posted it (respond.Engine.EntryIncident).
	Marker string
}

// updater is the Notifier's UpdateMessage (slackui.Poster has it; the
// console gains it with the incident card).
type updater interface {
	UpdateMessage(ctx context.Context, channel, ts string, m slackui.Message) error
}

var _ respond.Notifier = (*Capture)(nil)

// PostAlert implements respond.Notifier.
func (c *Capture) PostAlert(ctx context.Context, channel string, m slackui.Message) (string, error) {
	return c.post(ctx, channel, "", m)
}

// PostThreadReply implements respond.Notifier.
func (c *Capture) PostThreadReply(ctx context.Context, channel, threadTS string, m slackui.Message) (string, error) {
	return c.post(ctx, channel, threadTS, m)
}

// UpdateMessage replaces the message with ts (chat.update): Inner's first
// when it can update. Without Inner, a ts never posted is an error, as
// Slack's message_not_found.
func (c *Capture) UpdateMessage(ctx context.Context, channel, ts string, m slackui.Message) error {
	if u, ok := c.Inner.(updater); ok {
		if err := u.UpdateMessage(ctx, channel, ts, m); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.byTS[ts]
	if !ok {
		if c.Inner == nil {
			return fmt.Errorf("update message %s in %s: no such message", ts, channel)
		}
		c.orphanUpdates++
		return nil
	}
	p.Message, p.Updates = m, p.Updates+1 // Marker stays the first version's
	return nil
}

func (c *Capture) post(ctx context.Context, channel, thread string, m slackui.Message) (string, error) {
	var ts string
	if c.Inner != nil {
		var err error
		if thread == "" {
			ts, err = c.Inner.PostAlert(ctx, channel, m)
		} else {
			ts, err = c.Inner.PostThreadReply(ctx, channel, thread, m)
		}
		if err != nil {
			return "", err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	if ts == "" {
		// Slack's ts are seconds.microseconds; these sort the same way.
		ts = "1000000000." + fmt.Sprintf("%06d", c.seq)
	}
	if c.byTS == nil {
		c.byTS = map[string]*Posted{}
	}
	p := &Posted{Channel: channel, TS: ts, ThreadTS: thread, Message: m, Marker: m.Marker}
	c.posts = append(c.posts, p)
	c.byTS[ts] = p
	return ts, nil
}

// Posts returns a copy of every message posted, in posting order.
func (c *Capture) Posts() []Posted {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Posted, len(c.posts))
	for i, p := range c.posts {
		out[i] = *p
	}
	return out
}

// Thread is a top-level message and the replies in its thread, in order.
type Thread struct {
	Top     Posted
	Replies []Posted
}

// Incident is what an incident posted: its top-level messages (the alert,
// or the card, and any top-level escalation), each with its thread. ID ""
// holds the messages of no incident (a channel's summary of capped posts).
type Incident struct {
	ID      string
	Threads []Thread
}

// Messages counts the messages the incident posted: top-level ones and
// thread replies (updates are not messages).
func (in Incident) Messages() (top, replies int) {
	for _, t := range in.Threads {
		top++
		replies += len(t.Replies)
	}
	return top, replies
}

// IncidentOf names the incident of an outbox entry key (a message's
// Marker): respond.Engine.EntryIncident.
type IncidentOf func(ctx context.Context, marker string) (string, error)

// Incidents groups the posts by incident, in the order each incident first
// posted. A top-level message belongs to its Marker's incident; a reply to
// its thread's, or to its own Marker's when the thread's top-level message
// was not posted here. incidentOf nil puts every thread in an incident of
// its own, named by its top-level message's ts.
func (c *Capture) Incidents(ctx context.Context, incidentOf IncidentOf) ([]Incident, error) {
	posts := c.Posts()
	of := func(p Posted) (string, error) {
		if incidentOf == nil || p.Marker == "" {
			return "", nil
		}
		return incidentOf(ctx, p.Marker)
	}
	type thread struct {
		incident string
		t        *Thread
	}
	threads := map[string]*thread{} // by top-level ts
	var order []*thread
	for _, p := range posts {
		if p.ThreadTS == "" {
			id, err := of(p)
			if err != nil {
				return nil, err
			}
			if incidentOf == nil {
				id = "thread " + p.TS
			}
			th := &thread{incident: id, t: &Thread{Top: p}}
			threads[p.TS], order = th, append(order, th)
			continue
		}
		if th, ok := threads[p.ThreadTS]; ok {
			th.t.Replies = append(th.t.Replies, p)
			continue
		}
		// A reply in a thread posted before this Capture (or elsewhere):
		// kept as a thread of its own under its top-level ts.
		id, err := of(p)
		if err != nil {
			return nil, err
		}
		if incidentOf == nil {
			id = "thread " + p.ThreadTS
		}
		th := &thread{incident: id, t: &Thread{Top: Posted{Channel: p.Channel, TS: p.ThreadTS}, Replies: []Posted{p}}}
		threads[p.ThreadTS], order = th, append(order, th)
	}
	var out []Incident
	at := map[string]int{}
	for _, th := range order {
		i, ok := at[th.incident]
		if !ok {
			i = len(out)
			at[th.incident] = i
			out = append(out, Incident{ID: th.incident})
		}
		out[i].Threads = append(out[i].Threads, *th.t)
	}
	return out, nil
}

// Stats are the messages per incident.
type Stats struct {
	Incidents int
	// Median and Max are messages (top-level and replies) per incident.
	Median float64
	Max    int
	// Top and Thread are the top-level messages and the thread replies of
	// all incidents; Updates the updates of their top-level messages.
	Top, Thread, Updates int
	// Unattributed are the messages of no incident (channel summaries),
	// left out of the figures above.
	Unattributed int
}

// Count returns the Stats of incidents.
func Count(incidents []Incident) Stats {
	var s Stats
	var per []int
	for _, in := range incidents {
		top, rep := in.Messages()
		if in.ID == "" {
			s.Unattributed += top + rep
			continue
		}
		s.Incidents++
		s.Top += top
		s.Thread += rep
		for _, t := range in.Threads {
			s.Updates += t.Top.Updates
		}
		per = append(per, top+rep)
		s.Max = max(s.Max, top+rep)
	}
	sort.Ints(per)
	if n := len(per); n > 0 {
		s.Median = float64(per[n/2])
		if n%2 == 0 {
			s.Median = float64(per[n/2-1]+per[n/2]) / 2
		}
	}
	return s
}

// String is the line the demo prints.
func (s Stats) String() string {
	line := fmt.Sprintf("Slack messages per incident: median %s, max %d (top-level %d, thread %d)",
		strconv.FormatFloat(s.Median, 'f', -1, 64), s.Max, s.Top, s.Thread)
	line += fmt.Sprintf(" over %d incidents", s.Incidents)
	if s.Updates > 0 {
		line += fmt.Sprintf("; %d updates of top-level messages", s.Updates)
	}
	if s.Unattributed > 0 {
		line += fmt.Sprintf("; %d messages of no incident", s.Unattributed)
	}
	return line
}
