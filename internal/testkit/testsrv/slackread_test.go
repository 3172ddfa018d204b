package testsrv

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
)

// call posts form to the stand-in's method and decodes the answer.
func call(t *testing.T, s *Slack, method string, form url.Values) map[string]any {
	t.Helper()
	resp, err := http.PostForm(s.URL()+method, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func messages(t *testing.T, out map[string]any) []map[string]any {
	t.Helper()
	if out["ok"] != true {
		t.Fatalf("answer not ok: %v", out)
	}
	raw, _ := out["messages"].([]any)
	var ms []map[string]any
	for _, m := range raw {
		ms = append(ms, m.(map[string]any))
	}
	return ms
}

func TestSlackHistoryAndReplies(t *testing.T) {
	s := NewSlack()
	defer s.Close()
	md := `{"event_type":"e","event_payload":{"k":"v"}}`
	root := call(t, s, "chat.postMessage", url.Values{"channel": {"C1"}, "text": {"root"}, "metadata": {md}})["ts"].(string)
	reply := call(t, s, "chat.postMessage", url.Values{"channel": {"C1"}, "text": {"reply"}, "thread_ts": {root}})["ts"].(string)
	second := call(t, s, "chat.postMessage", url.Values{"channel": {"C1"}, "text": {"second"}})["ts"].(string)
	if !(tsValue(root) < tsValue(reply) && tsValue(reply) < tsValue(second)) {
		t.Fatalf("ts not growing: %s %s %s", root, reply, second)
	}

	// History: top level only, newest first, metadata only when asked.
	ms := messages(t, call(t, s, "conversations.history", url.Values{"channel": {"C1"}}))
	if len(ms) != 2 || ms[0]["ts"] != second || ms[1]["ts"] != root {
		t.Fatalf("history = %v, want second then root", ms)
	}
	if _, ok := ms[1]["metadata"]; ok {
		t.Error("metadata returned without include_all_metadata")
	}
	if ms[1]["thread_ts"] != root || ms[1]["reply_count"] != float64(1) || ms[1]["user"] != SlackBotUser || ms[1]["bot_id"] != SlackBotID {
		t.Errorf("root message fields = %v", ms[1])
	}
	ms = messages(t, call(t, s, "conversations.history", url.Values{"channel": {"C1"}, "include_all_metadata": {"1"}}))
	if got, _ := ms[1]["metadata"].(map[string]any); got["event_type"] != "e" || got["event_payload"].(map[string]any)["k"] != "v" {
		t.Errorf("metadata = %v, want %s", ms[1]["metadata"], md)
	}

	// oldest is exclusive unless inclusive.
	if ms := messages(t, call(t, s, "conversations.history", url.Values{"channel": {"C1"}, "oldest": {root}})); len(ms) != 1 || ms[0]["ts"] != second {
		t.Errorf("history after root (exclusive) = %v, want second only", ms)
	}
	if ms := messages(t, call(t, s, "conversations.history", url.Values{"channel": {"C1"}, "oldest": {root}, "inclusive": {"1"}})); len(ms) != 2 {
		t.Errorf("history from root (inclusive) = %v, want 2", ms)
	}

	// Paging: one per page, the cursor carries on, the last page has none.
	out := call(t, s, "conversations.history", url.Values{"channel": {"C1"}, "limit": {"1"}})
	if out["has_more"] != true {
		t.Fatalf("first page of 1: has_more = %v", out["has_more"])
	}
	cur := out["response_metadata"].(map[string]any)["next_cursor"].(string)
	out = call(t, s, "conversations.history", url.Values{"channel": {"C1"}, "limit": {"1"}, "cursor": {cur}})
	if ms := messages(t, out); len(ms) != 1 || ms[0]["ts"] != root || out["has_more"] != false {
		t.Errorf("second page = %v", out)
	}
	if out := call(t, s, "conversations.history", url.Values{"channel": {"C1"}, "cursor": {"bogus"}}); out["error"] != "invalid_cursor" {
		t.Errorf("bogus cursor answered %v", out)
	}

	// Replies: the parent first, then the replies.
	ms = messages(t, call(t, s, "conversations.replies", url.Values{"channel": {"C1"}, "ts": {root}}))
	if len(ms) != 2 || ms[0]["ts"] != root || ms[1]["ts"] != reply || ms[1]["thread_ts"] != root {
		t.Errorf("replies = %v", ms)
	}
	if out := call(t, s, "conversations.replies", url.Values{"channel": {"C1"}, "ts": {"1.000001"}}); out["error"] != "thread_not_found" {
		t.Errorf("replies of an unknown thread answered %v", out)
	}

	// Failures are answered once each, then it works again.
	s.FailNext("conversations.history", "missing_scope")
	if out := call(t, s, "conversations.history", url.Values{"channel": {"C1"}}); out["error"] != "missing_scope" || out["needed"] == nil {
		t.Errorf("missing_scope answered %v", out)
	}
	messages(t, call(t, s, "conversations.history", url.Values{"channel": {"C1"}}))
	if got := s.Reads("conversations.history"); got != 7 {
		t.Errorf("Reads = %d, want 7 answered with messages", got)
	}
}

func TestSlackChannelNamesAndIDs(t *testing.T) {
	s := NewSlack()
	defer s.Close()
	out := call(t, s, "chat.postMessage", url.Values{"channel": {"#soc-alerts"}, "text": {"x"}})
	id, _ := out["channel"].(string)
	if !isConversationID(id) || id != s.ChannelID("soc-alerts") {
		t.Fatalf("a post to #soc-alerts answered channel %q; want its ID, %s", id, s.ChannelID("soc-alerts"))
	}
	if got := s.Posts()[0].Channel; got != "#soc-alerts" {
		t.Errorf("the post records channel %q, want what was sent", got)
	}
	if out := call(t, s, "conversations.history", url.Values{"channel": {"#soc-alerts"}}); out["error"] != "channel_not_found" {
		t.Errorf("history by name answered %v; Slack wants an ID", out)
	}
	if ms := messages(t, call(t, s, "conversations.history", url.Values{"channel": {id}})); len(ms) != 1 {
		t.Errorf("history by ID = %v, want the post", ms)
	}
	s.ChannelID("#soc-fleet")
	out = call(t, s, "conversations.list", url.Values{"limit": {"1"}})
	chs, _ := out["channels"].([]any)
	cur, _ := out["response_metadata"].(map[string]any)["next_cursor"].(string)
	if len(chs) != 1 || chs[0].(map[string]any)["name"] != "soc-alerts" || cur == "" {
		t.Fatalf("first page of conversations.list = %v", out)
	}
	out = call(t, s, "conversations.list", url.Values{"limit": {"1"}, "cursor": {cur}})
	chs, _ = out["channels"].([]any)
	if len(chs) != 1 || chs[0].(map[string]any)["name"] != "soc-fleet" || out["response_metadata"].(map[string]any)["next_cursor"] != "" {
		t.Errorf("second page of conversations.list = %v", out)
	}
}
