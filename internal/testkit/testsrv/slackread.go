package testsrv

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The identity of the stand-in's bot token (auth.test), which every
// message posted through the API is from.
const (
	SlackBotUser = "UBOT"
	SlackBotID   = "BBOT"
)

// slackMsg is a message kept for the conversations.* reads.
type slackMsg struct {
	ts, threadTS, user, bot, text string
	blocks, metadata              json.RawMessage
	replies                       int
}

// nextTS gives a Slack ts from the clock ("seconds.micros"), unique and
// growing, as Slack's are within a channel. Called with mu held.
func (s *Slack) nextTS() string {
	us := time.Now().UnixMicro()
	if us <= s.lastTS {
		us = s.lastTS + 1
	}
	s.lastTS = us
	return fmt.Sprintf("%d.%06d", us/1e6, us%1e6)
}

// isConversationID tells a conversation ID (C…, G…, D…) from a channel
// name, which Slack keeps lower case.
func isConversationID(ch string) bool {
	if len(ch) < 2 || !strings.ContainsRune("CGD", rune(ch[0])) {
		return false
	}
	for _, r := range ch[1:] {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// channelID returns the ID of ch, an ID or a name (with or without "#"),
// creating the channel of a new name. Called with mu held.
func (s *Slack) channelID(ch string) string {
	if isConversationID(ch) {
		return ch
	}
	name := strings.TrimPrefix(ch, "#")
	if id, ok := s.chanIDs[name]; ok {
		return id
	}
	id := fmt.Sprintf("C%08d", len(s.chanNames)+1)
	s.chanIDs[name] = id
	s.chanNames = append(s.chanNames, name)
	return id
}

// ChannelID returns the ID of the channel named name (with or without
// "#"), creating the channel if there is none, as a workspace admin would.
func (s *Slack) ChannelID(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.channelID(name)
}

// keep records what a chat.postMessage or chat.update changed in the
// messages of channel id. Called with mu held.
func (s *Slack) keep(id string, p SlackPost) {
	raw := func(v string) json.RawMessage {
		if v == "" || !json.Valid([]byte(v)) {
			return nil
		}
		return json.RawMessage(v)
	}
	switch p.Method {
	case "chat.postMessage":
		m := &slackMsg{ts: p.TS, threadTS: p.ThreadTS, user: SlackBotUser, bot: SlackBotID, text: p.Text, blocks: raw(p.Blocks), metadata: raw(p.Metadata)}
		s.add(id, m)
	case "chat.update":
		if m := s.byTS[id+" "+p.TS]; m != nil {
			m.text, m.blocks = p.Text, raw(p.Blocks)
			if md := raw(p.Metadata); md != nil {
				m.metadata = md
			}
		}
	}
}

// add keeps m, indexed by ts so that a benchmark's thousands of replies do
// not each scan the channel.
func (s *Slack) add(channel string, m *slackMsg) {
	if parent := s.byTS[channel+" "+m.threadTS]; m.threadTS != "" && parent != nil {
		parent.threadTS = parent.ts // Slack marks a parent with its own ts
		parent.replies++
	}
	s.msgs[channel] = append(s.msgs[channel], m)
	s.byTS[channel+" "+m.ts] = m
}

// AddMessage puts a message into channel (into the thread of threadTS
// when set) as if user and botID had posted it, for example another app's
// message with metadata; it returns the message's ts. metadata may be nil.
func (s *Slack) AddMessage(channel, threadTS, user, botID, text string, metadata map[string]any) string {
	var md json.RawMessage
	if metadata != nil {
		md, _ = json.Marshal(metadata)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.nextTS()
	s.add(s.channelID(channel), &slackMsg{ts: ts, threadTS: threadTS, user: user, bot: botID, text: text, metadata: md})
	return ts
}

// FailNext makes the next calls of method (conversations.history,
// chat.postMessage, ...) answer ok:false with the given Slack errors, one
// per call ("missing_scope", "channel_not_found", ...). "ratelimited" is
// answered as Slack does: HTTP 429 with Retry-After: 1.
func (s *Slack) FailNext(method string, slackErrors ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext[method] = append(s.failNext[method], slackErrors...)
}

// SetPageLimit caps the limit of conversations.history and
// conversations.replies at n (Slack's 15 for apps under its reduced
// limits); 0 lifts the cap.
func (s *Slack) SetPageLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageLimit = n
}

// Reads is how many calls of method (conversations.history or
// conversations.replies) were answered with messages.
func (s *Slack) Reads(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reads[method]
}

// takeFailure pops the next failure queued for method. Called with mu held.
func (s *Slack) takeFailure(method string) string {
	q := s.failNext[method]
	if len(q) == 0 {
		return ""
	}
	s.failNext[method] = q[1:]
	return q[0]
}

// readParams are the parameters both reads share.
type readParams struct {
	channel, ts, oldest, latest, cursor string
	inclusive, metadata                 bool
	limit                               int
}

func (s *Slack) readRequest(w http.ResponseWriter, r *http.Request, method string) (readParams, bool) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_form_data"})
		return readParams{}, false
	}
	f := r.Form
	p := readParams{channel: f.Get("channel"), ts: f.Get("ts"), oldest: f.Get("oldest"), latest: f.Get("latest"), cursor: f.Get("cursor"),
		inclusive: truthy(f.Get("inclusive")), metadata: truthy(f.Get("include_all_metadata")), limit: 100}
	if v := f.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeJSON(w, map[string]any{"ok": false, "error": "invalid_limit"})
			return readParams{}, false
		}
		if n > 0 {
			p.limit = min(n, 999)
		}
	}
	s.mu.Lock()
	fail := s.takeFailure(method)
	if s.pageLimit > 0 {
		p.limit = min(p.limit, s.pageLimit)
	}
	s.mu.Unlock()
	switch fail {
	case "":
	case "ratelimited":
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		writeJSON(w, map[string]any{"ok": false, "error": "ratelimited"})
		return readParams{}, false
	case "missing_scope":
		writeJSON(w, map[string]any{"ok": false, "error": fail, "needed": "channels:history,groups:history", "provided": "chat:write"})
		return readParams{}, false
	default:
		writeJSON(w, map[string]any{"ok": false, "error": fail})
		return readParams{}, false
	}
	if !isConversationID(p.channel) { // the reads take no names
		writeJSON(w, map[string]any{"ok": false, "error": "channel_not_found"})
		return readParams{}, false
	}
	return p, true
}

func truthy(v string) bool { return v == "1" || v == "true" }

// inWindow applies oldest, latest and inclusive as Slack does.
func (p readParams) inWindow(ts string) bool {
	t := tsValue(ts)
	if p.oldest != "" {
		if o := tsValue(p.oldest); t < o || (t == o && !p.inclusive) {
			return false
		}
	}
	if p.latest != "" {
		if l := tsValue(p.latest); t > l || (t == l && !p.inclusive) {
			return false
		}
	}
	return true
}

// tsValue is a ts in microseconds, for comparing; 0 for a malformed one.
func tsValue(ts string) int64 {
	sec, frac, _ := strings.Cut(ts, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return 0
	}
	frac = (frac + "000000")[:6]
	us, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return 0
	}
	return s*1e6 + us
}

// page cuts msgs (in the read's order) at the cursor and the limit. The
// cursor is, as Slack's, opaque base64: it names the ts the next page
// starts at.
func (p readParams) page(msgs []*slackMsg) (out []*slackMsg, next string, ok bool) {
	start := 0
	if p.cursor != "" {
		b, err := base64.StdEncoding.DecodeString(p.cursor)
		ts, found := strings.CutPrefix(string(b), "next_ts:")
		if err != nil || !found {
			return nil, "", false
		}
		start = slices.IndexFunc(msgs, func(m *slackMsg) bool { return m.ts == ts })
		if start < 0 {
			return nil, "", false
		}
	}
	end := min(start+p.limit, len(msgs))
	if end < len(msgs) {
		next = base64.StdEncoding.EncodeToString([]byte("next_ts:" + msgs[end].ts))
	}
	return msgs[start:end], next, true
}

func (p readParams) render(m *slackMsg) map[string]any {
	out := map[string]any{"type": "message", "ts": m.ts, "text": m.text}
	if m.user != "" {
		out["user"] = m.user
	}
	if m.bot != "" {
		out["bot_id"] = m.bot
	}
	if m.threadTS != "" {
		out["thread_ts"] = m.threadTS
	}
	if m.replies > 0 {
		out["reply_count"] = m.replies
	}
	if m.blocks != nil {
		out["blocks"] = m.blocks
	}
	if p.metadata && m.metadata != nil {
		out["metadata"] = m.metadata
	}
	return out
}

func (s *Slack) answerPage(w http.ResponseWriter, method string, p readParams, msgs []*slackMsg) {
	pg, next, ok := p.page(msgs)
	if !ok {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_cursor"})
		return
	}
	s.mu.Lock()
	out := make([]map[string]any, 0, len(pg))
	for _, m := range pg {
		out = append(out, p.render(m))
	}
	s.reads[method]++
	s.mu.Unlock()
	writeJSON(w, map[string]any{"ok": true, "messages": out, "has_more": next != "",
		"response_metadata": map[string]any{"next_cursor": next}})
}

// history answers conversations.history: the channel's top-level messages
// (thread parents included, replies not), newest first.
func (s *Slack) history(w http.ResponseWriter, r *http.Request) {
	p, ok := s.readRequest(w, r, "conversations.history")
	if !ok {
		return
	}
	s.mu.Lock()
	var msgs []*slackMsg
	for _, m := range slices.Backward(s.msgs[p.channel]) {
		if (m.threadTS == "" || m.threadTS == m.ts) && p.inWindow(m.ts) {
			msgs = append(msgs, m)
		}
	}
	s.mu.Unlock()
	s.answerPage(w, "conversations.history", p, msgs)
}

// replies answers conversations.replies: the thread of ts, its parent
// first, then the replies oldest first.
func (s *Slack) replies(w http.ResponseWriter, r *http.Request) {
	p, ok := s.readRequest(w, r, "conversations.replies")
	if !ok {
		return
	}
	s.mu.Lock()
	var msgs []*slackMsg
	found := false
	for _, m := range s.msgs[p.channel] {
		if m.ts == p.ts {
			found = true
		}
		if (m.ts == p.ts || m.threadTS == p.ts) && p.inWindow(m.ts) {
			msgs = append(msgs, m)
		}
	}
	s.mu.Unlock()
	if !found {
		writeJSON(w, map[string]any{"ok": false, "error": "thread_not_found"})
		return
	}
	s.answerPage(w, "conversations.replies", p, msgs)
}

// list answers conversations.list: the named channels, oldest first, with
// limit and cursor.
func (s *Slack) list(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_form_data"})
		return
	}
	limit := 100
	if n, err := strconv.Atoi(r.Form.Get("limit")); err == nil && n > 0 {
		limit = min(n, 1000)
	}
	start := 0
	if c := r.Form.Get("cursor"); c != "" {
		b, err := base64.StdEncoding.DecodeString(c)
		n, ok := strings.CutPrefix(string(b), "offset:")
		if start, err = strconv.Atoi(n); err != nil || !ok {
			writeJSON(w, map[string]any{"ok": false, "error": "invalid_cursor"})
			return
		}
	}
	s.mu.Lock()
	if e := s.takeFailure("conversations.list"); e != "" {
		s.mu.Unlock()
		writeJSON(w, map[string]any{"ok": false, "error": e})
		return
	}
	var chs []map[string]any
	end := min(start+limit, len(s.chanNames))
	for _, name := range s.chanNames[min(start, end):end] {
		chs = append(chs, map[string]any{"id": s.chanIDs[name], "name": name, "is_channel": true, "is_archived": false})
	}
	next := ""
	if end < len(s.chanNames) {
		next = base64.StdEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(end)))
	}
	s.reads["conversations.list"]++
	s.mu.Unlock()
	writeJSON(w, map[string]any{"ok": true, "channels": chs, "response_metadata": map[string]any{"next_cursor": next}})
}
