// Package testsrv holds local stand-ins for the outside services the
// responder calls, for tests and benchmarks: a recording Slack Web API
// (chat.postMessage, chat.update, chat.postEphemeral,
// conversations.history, conversations.replies, auth.test,
// usergroups.users.list and the external file upload) and a Kong Admin API for key-auth
// credentials. They listen on loopback only and never reach the internet.
package testsrv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// conversationID is what Slack accepts as a channel where it takes IDs
// only (chat.update): the IDs this server hands out are C and 8 digits.
var conversationID = regexp.MustCompile(`^[CGD][A-Z0-9]+$`)

// SlackPost is one message the Slack server received.
type SlackPost struct {
	Method   string // chat.postMessage, chat.update or chat.postEphemeral
	Channel  string
	User     string // who sees an ephemeral message
	TS       string // the ts the server gave (or updated)
	ThreadTS string
	Text     string
	Blocks   string // the raw JSON of the blocks
	// Metadata is the raw JSON of the message metadata sent, if any.
	Metadata string
	At       time.Time
}

// Slack is a recording Slack Web API. Every post gets a unique ts, from
// the clock as Slack's are, and chat.postMessage keeps the message (with its
// metadata) for conversations.history and conversations.replies. A post to
// a channel name ("#soc-alerts") creates the channel with an ID, which the
// post's answer gives and which the reads require, as Slack's do;
// conversations.list lists the named channels. The bot is user UBOT, bot
// BBOT (auth.test).
type Slack struct {
	srv *httptest.Server

	mu    sync.Mutex
	posts []SlackPost
	seq   int
	// rateLimit answers that many next calls 429 with Retry-After.
	rateLimit  int
	retryAfter int
	notify     chan struct{}
	groups     map[string][]string
	groupCalls int
	lastTS     int64                  // microseconds of the last ts given
	msgs       map[string][]*slackMsg // by channel, in ts order
	byTS       map[string]*slackMsg   // by channel ID+" "+ts
	chanIDs    map[string]string      // channel name (no "#") → ID
	chanNames  []string               // in creation order
	failNext   map[string][]string    // method → Slack errors to answer next
	pageLimit  int                    // cap on a read's limit; 0: Slack's usual
	reads      map[string]int         // conversations.* calls answered, by method
	files      map[string]*SlackFile  // uploads by file id
	fileOrder  []string
	before     func(method string)
}

// Before has fn see every later chat.postMessage, chat.update and
// chat.postEphemeral call (its method) before it is answered; fn may block
// to hold the call (nil: none).
func (s *Slack) Before(fn func(method string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.before = fn
}

// NewSlack starts the server; Close stops it.
func NewSlack() *Slack {
	s := &Slack{notify: make(chan struct{}, 1), groups: map[string][]string{}, msgs: map[string][]*slackMsg{}, byTS: map[string]*slackMsg{}, chanIDs: map[string]string{},
		failNext: map[string][]string{}, reads: map[string]int{}, files: map[string]*SlackFile{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/chat.postMessage", s.post)
	mux.HandleFunc("/chat.update", s.post)
	mux.HandleFunc("/chat.postEphemeral", s.post)
	mux.HandleFunc("/usergroups.users.list", s.groupMembers)
	mux.HandleFunc("/auth.test", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"ok": true, "user_id": SlackBotUser, "bot_id": SlackBotID, "team_id": "T1"})
	})
	mux.HandleFunc("/conversations.history", s.history)
	mux.HandleFunc("/conversations.replies", s.replies)
	mux.HandleFunc("/conversations.list", s.list)
	mux.HandleFunc("/files.getUploadURLExternal", s.getUploadURL)
	mux.HandleFunc("/upload/", s.upload)
	mux.HandleFunc("/files.completeUploadExternal", s.completeUpload)
	s.srv = httptest.NewServer(mux)
	return s
}

// URL is the API URL to configure (responder.slack.api_url).
func (s *Slack) URL() string { return s.srv.URL + "/" }

// Close stops the server.
func (s *Slack) Close() { s.srv.Close() }

// RateLimit makes the next n calls answer 429 with Retry-After secs.
func (s *Slack) RateLimit(n, secs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimit, s.retryAfter = n, secs
}

// SetGroup makes user group id hold members (usergroups.users.list).
func (s *Slack) SetGroup(id string, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[id] = slices.Clone(members)
}

// GroupCalls is how many usergroups.users.list calls were answered.
func (s *Slack) GroupCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.groupCalls
}

func (s *Slack) groupMembers(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_form_data"})
		return
	}
	s.mu.Lock()
	s.groupCalls++
	m, ok := s.groups[r.Form.Get("usergroup")]
	s.mu.Unlock()
	if !ok {
		writeJSON(w, map[string]any{"ok": false, "error": "no_such_subteam"})
		return
	}
	writeJSON(w, map[string]any{"ok": true, "users": m})
}

// Posts returns what was received, in order.
func (s *Slack) Posts() []SlackPost {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SlackPost(nil), s.posts...)
}

// Changes receives a value (coalesced) after each post.
func (s *Slack) Changes() <-chan struct{} { return s.notify }

func (s *Slack) post(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_form_data"})
		return
	}
	method := strings.TrimPrefix(r.URL.Path, "/")
	s.mu.Lock()
	before := s.before
	s.mu.Unlock()
	if before != nil {
		before(method)
	}
	s.mu.Lock()
	if s.rateLimit > 0 {
		s.rateLimit--
		ra := s.retryAfter
		s.mu.Unlock()
		w.Header().Set("Retry-After", strconv.Itoa(ra))
		w.WriteHeader(http.StatusTooManyRequests)
		writeJSON(w, map[string]any{"ok": false, "error": "ratelimited"})
		return
	}
	ch := r.Form.Get("channel")
	if ch == "" {
		s.mu.Unlock()
		writeJSON(w, map[string]any{"ok": false, "error": "channel_not_found"})
		return
	}
	if e := s.takeFailure(method); e != "" {
		s.mu.Unlock()
		writeJSON(w, map[string]any{"ok": false, "error": e})
		return
	}
	if method == "chat.update" && !conversationID.MatchString(ch) {
		// Slack updates by conversation ID only; a "#name" is not found.
		s.mu.Unlock()
		writeJSON(w, map[string]any{"ok": false, "error": "channel_not_found"})
		return
	}
	ts := r.Form.Get("ts")
	if method == "chat.postMessage" || method == "chat.postEphemeral" {
		s.seq++
		ts = s.nextTS()
	}
	p := SlackPost{Method: method, Channel: ch, TS: ts, ThreadTS: r.Form.Get("thread_ts"),
		User: r.Form.Get("user"), Text: r.Form.Get("text"), Blocks: r.Form.Get("blocks"), Metadata: r.Form.Get("metadata"), At: time.Now()}
	s.posts = append(s.posts, p)
	id := s.channelID(ch)
	s.keep(id, p)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	writeJSON(w, map[string]any{"ok": true, "channel": id, "ts": ts, "message_ts": ts})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// KongCredential is a key-auth credential of the Kong server.
type KongCredential struct {
	ID       string   `json:"id"`
	Key      string   `json:"key"`
	Tags     []string `json:"tags,omitempty"`
	Consumer string   `json:"-"`
}

// Kong is a Kong Admin API for key-auth credentials (GET, DELETE, PUT of
// /key-auths/{id} and /consumers/{c}/key-auth/{id}) and consumer plugins
// (POST and GET, with ?tags= filtering, of /consumers/{c}/plugins; GET
// and DELETE of /plugins/{id}) that records the requests it gets. A
// consumer is named by its username or by "uuid-"+username, the id the
// credential reads give. Safe for concurrent use.
type Kong struct {
	srv *httptest.Server

	mu      sync.Mutex
	creds   map[string]KongCredential
	reqs    []KongRequest
	plugins []KongPlugin // in creation order
	seq     int
	fail    []int // codes answered to the next requests instead of acting
	before  func(*http.Request)
}

// Before has fn see every later request before it is answered; fn may
// block to hold the request (nil: none).
func (k *Kong) Before(fn func(*http.Request)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.before = fn
}

// KongPlugin is a plugin of the Kong server, on a consumer.
type KongPlugin struct {
	ID       string         `json:"id"`
	Name     string         `json:"name"`
	Config   map[string]any `json:"config,omitempty"`
	Tags     []string       `json:"tags,omitempty"`
	Consumer string         `json:"-"` // username
}

// KongRequest is one request Kong received.
type KongRequest struct {
	Method, Path string
	At           time.Time
}

// NewKong starts the server; Close stops it.
func NewKong() *Kong {
	k := &Kong{creds: map[string]KongCredential{}}
	mux := http.NewServeMux()
	for _, p := range []string{"/consumers/{c}/key-auth/{id}", "/key-auths/{id}"} {
		mux.HandleFunc("GET "+p, k.get)
		mux.HandleFunc("DELETE "+p, k.delete)
		mux.HandleFunc("PUT "+p, k.put)
	}
	mux.HandleFunc("POST /consumers/{c}/plugins", k.addPlugin)
	mux.HandleFunc("GET /consumers/{c}/plugins", k.listPlugins)
	mux.HandleFunc("GET /plugins/{id}", k.getPlugin)
	mux.HandleFunc("DELETE /plugins/{id}", k.deletePlugin)
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.mu.Lock()
		k.reqs = append(k.reqs, KongRequest{Method: r.Method, Path: r.URL.EscapedPath(), At: time.Now()})
		code := 0
		if len(k.fail) > 0 {
			code, k.fail = k.fail[0], k.fail[1:]
		}
		before := k.before
		k.mu.Unlock()
		if before != nil {
			before(r)
		}
		if code != 0 {
			w.WriteHeader(code)
			writeJSON(w, map[string]any{"message": http.StatusText(code)})
			return
		}
		mux.ServeHTTP(w, r)
	}))
	return k
}

// URL is the admin URL (responder.kong.admin_url).
func (k *Kong) URL() string { return k.srv.URL }

// Addr is the host:port to allow (responder.egress_allow).
func (k *Kong) Addr() string { u, _ := url.Parse(k.srv.URL); return u.Host }

// Close stops the server.
func (k *Kong) Close() { k.srv.Close() }

// Add creates a credential.
func (k *Kong) Add(consumer, id, key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.creds[id] = KongCredential{ID: id, Key: key, Consumer: consumer}
}

// Has reports whether the credential exists.
func (k *Kong) Has(id string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.creds[id]
	return ok
}

// Requests returns the requests received, in order.
func (k *Kong) Requests() []KongRequest {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]KongRequest(nil), k.reqs...)
}

// Count returns how many requests had the method.
func (k *Kong) Count(method string) int {
	n := 0
	for _, r := range k.Requests() {
		if r.Method == method {
			n++
		}
	}
	return n
}

func (k *Kong) lookup(r *http.Request) (KongCredential, bool) {
	c, ok := k.creds[r.PathValue("id")]
	if ok && r.PathValue("c") != "" && r.PathValue("c") != c.Consumer {
		return c, false
	}
	return c, ok
}

func (k *Kong) get(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	c, ok := k.lookup(r)
	k.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		writeJSON(w, map[string]any{"message": "Not found"})
		return
	}
	writeJSON(w, map[string]any{"id": c.ID, "key": c.Key, "tags": c.Tags, "consumer": map[string]any{"id": "uuid-" + c.Consumer}, "created_at": 1700000000})
}

func (k *Kong) delete(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.lookup(r); ok {
		delete(k.creds, c.ID)
	}
	w.WriteHeader(http.StatusNoContent) // Kong answers 204 for a missing credential too
}

func (k *Kong) put(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Key      string   `json:"key"`
		Tags     []string `json:"tags"`
		Consumer *struct {
			ID string `json:"id"`
		} `json:"consumer"`
	}
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &body); err != nil || body.Key == "" {
		w.WriteHeader(http.StatusBadRequest)
		writeJSON(w, map[string]any{"message": "schema violation"})
		return
	}
	cons := r.PathValue("c")
	if cons == "" && body.Consumer != nil {
		cons = strings.TrimPrefix(body.Consumer.ID, "uuid-")
	}
	k.mu.Lock()
	k.creds[r.PathValue("id")] = KongCredential{ID: r.PathValue("id"), Key: body.Key, Tags: body.Tags, Consumer: cons}
	k.mu.Unlock()
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// FailNext makes the next requests, one per code, answer that status
// instead of acting (they are still recorded).
func (k *Kong) FailNext(codes ...int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fail = append(k.fail, codes...)
}

// Plugins returns the consumer's plugins (consumer is a username or
// "uuid-"+username), in creation order.
func (k *Kong) Plugins(consumer string) []KongPlugin {
	consumer = strings.TrimPrefix(consumer, "uuid-")
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []KongPlugin
	for _, p := range k.plugins {
		if p.Consumer == consumer {
			out = append(out, p)
		}
	}
	return out
}

// AddPlugin creates a plugin on the consumer, as an operator would, and
// returns its id. It does not check uniqueness.
func (k *Kong) AddPlugin(consumer, name string, config map[string]any, tags ...string) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.newPlugin(strings.TrimPrefix(consumer, "uuid-"), name, config, tags)
}

// RemovePlugin deletes a plugin, as an operator would; it reports whether
// there was one.
func (k *Kong) RemovePlugin(id string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.removePlugin(id)
}

func (k *Kong) newPlugin(consumer, name string, config map[string]any, tags []string) string {
	k.seq++
	id := fmt.Sprintf("00000000-0000-4000-8000-%012d", k.seq)
	k.plugins = append(k.plugins, KongPlugin{ID: id, Name: name, Config: config, Tags: tags, Consumer: consumer})
	return id
}

func (k *Kong) removePlugin(id string) bool {
	for i, p := range k.plugins {
		if p.ID == id {
			k.plugins = append(k.plugins[:i], k.plugins[i+1:]...)
			return true
		}
	}
	return false
}

func pluginJSON(p KongPlugin) map[string]any {
	return map[string]any{"id": p.ID, "name": p.Name, "config": p.Config, "tags": p.Tags,
		"consumer": map[string]any{"id": "uuid-" + p.Consumer}, "route": nil, "service": nil, "enabled": true, "created_at": 1700000000}
}

func (k *Kong) addPlugin(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name   string         `json:"name"`
		Config map[string]any `json:"config"`
		Tags   []string       `json:"tags"`
	}
	b, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(b, &body); err != nil || body.Name == "" {
		w.WriteHeader(http.StatusBadRequest)
		writeJSON(w, map[string]any{"code": 2, "name": "schema violation", "message": "schema violation (name: required field missing)"})
		return
	}
	cons := strings.TrimPrefix(r.PathValue("c"), "uuid-")
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range k.plugins {
		if p.Consumer == cons && p.Name == body.Name {
			// Kong allows one plugin of a name per (consumer, route, service).
			w.WriteHeader(http.StatusConflict)
			writeJSON(w, map[string]any{"code": 5, "name": "unique constraint violation",
				"message": fmt.Sprintf("UNIQUE violation detected on '{consumer={id=\"uuid-%s\"},name=\"%s\",route=null,service=null}'", cons, body.Name)})
			return
		}
	}
	k.newPlugin(cons, body.Name, body.Config, body.Tags)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(pluginJSON(k.plugins[len(k.plugins)-1]))
}

// listPlugins filters by ?tags= as Kong does: "a,b" is AND, "a/b" is OR.
func (k *Kong) listPlugins(w http.ResponseWriter, r *http.Request) {
	cons := strings.TrimPrefix(r.PathValue("c"), "uuid-")
	q := r.URL.Query().Get("tags")
	match := func(tags []string) bool {
		if q == "" {
			return true
		}
		has := func(t string) bool { return slices.Contains(tags, t) }
		if strings.Contains(q, "/") {
			for _, t := range strings.Split(q, "/") {
				if has(t) {
					return true
				}
			}
			return false
		}
		for _, t := range strings.Split(q, ",") {
			if !has(t) {
				return false
			}
		}
		return true
	}
	k.mu.Lock()
	data := []map[string]any{}
	for _, p := range k.plugins {
		if p.Consumer == cons && match(p.Tags) {
			data = append(data, pluginJSON(p))
		}
	}
	k.mu.Unlock()
	writeJSON(w, map[string]any{"data": data, "next": nil})
}

func (k *Kong) getPlugin(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, p := range k.plugins {
		if p.ID == r.PathValue("id") {
			writeJSON(w, pluginJSON(p))
			return
		}
	}
	w.WriteHeader(http.StatusNotFound)
	writeJSON(w, map[string]any{"message": "Not found"})
}

func (k *Kong) deletePlugin(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.removePlugin(r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent) // Kong answers 204 for a missing plugin too
}
