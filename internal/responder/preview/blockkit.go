package preview

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/slack-go/slack"
)

// The view of a message the HTML page shows, made from its Block Kit JSON
// (not slack-go's types), so that whatever blocks the responder posts are
// shown as Slack would read them, and an unknown block says so. Every
// string here is text: only html/template turns it into HTML.

type msgView struct {
	Channel  string
	TS       string
	Fallback []span
	Blocks   []blockView
	Updates  int
	Replies  []msgView
}

type blockView struct {
	Type    string // header, section, context, actions, divider, image, or other
	Header  string
	Text    *textView
	Fields  []textView
	Side    *elemView // a section's accessory
	Elems   []elemView
	Image   *imageView
	Unknown string
}

type textView struct {
	Spans []span
}

type span struct {
	Text                              string
	Bold, Italic, Strike, Code, Alert bool
	// Href is a link's address; html/template refuses one that is not
	// http(s) or mailto.
	Href string
}

type elemView struct {
	Text    *textView
	Button  *buttonView
	Image   *imageView
	Unknown string
}

type buttonView struct {
	Label   string
	Style   string // primary, danger or ""
	Confirm string // the confirmation dialog, as one line
	URL     string
}

type imageView struct {
	URL   string
	Alt   string
	Title string
}

// Block Kit JSON, as much of it as the page shows.
type bkText struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji bool   `json:"emoji"`
}

type bkBlock struct {
	Type      string            `json:"type"`
	Text      *bkText           `json:"text"`
	Fields    []bkText          `json:"fields"`
	Accessory json.RawMessage   `json:"accessory"`
	Elements  []json.RawMessage `json:"elements"`
	ImageURL  string            `json:"image_url"`
	AltText   string            `json:"alt_text"`
	Title     *bkText           `json:"title"`
}

type bkElem struct {
	Type     string          `json:"type"`
	Text     json.RawMessage `json:"text"` // a string in a text object, an object in a button
	Style    string          `json:"style"`
	URL      string          `json:"url"`
	ImageURL string          `json:"image_url"`
	AltText  string          `json:"alt_text"`
	Confirm  *struct {
		Title   *bkText `json:"title"`
		Text    *bkText `json:"text"`
		Confirm *bkText `json:"confirm"`
	} `json:"confirm"`
}

// blocksJSON is the Block Kit JSON of blocks, as chat.postMessage sends it.
func blocksJSON(blocks []slack.Block) (json.RawMessage, error) {
	if len(blocks) == 0 {
		return json.RawMessage("[]"), nil
	}
	b, err := json.Marshal(blocks)
	if err != nil {
		return nil, fmt.Errorf("encode blocks: %w", err)
	}
	return b, nil
}

// viewBlocks reads Block Kit JSON (an array of blocks) into the page's view.
func viewBlocks(raw json.RawMessage) ([]blockView, error) {
	var bs []bkBlock
	if err := json.Unmarshal(raw, &bs); err != nil {
		return nil, fmt.Errorf("read blocks: %w", err)
	}
	out := make([]blockView, 0, len(bs))
	for _, b := range bs {
		v := blockView{Type: b.Type}
		switch b.Type {
		case "header":
			if b.Text != nil {
				for _, sp := range viewText(*b.Text).Spans {
					v.Header += sp.Text
				}
			}
		case "section":
			if b.Text != nil {
				t := viewText(*b.Text)
				v.Text = &t
			}
			for _, f := range b.Fields {
				v.Fields = append(v.Fields, viewText(f))
			}
			if len(b.Accessory) > 0 && string(b.Accessory) != "null" {
				e := viewElem(b.Accessory)
				v.Side = &e
			}
		case "context", "actions":
			for _, e := range b.Elements {
				v.Elems = append(v.Elems, viewElem(e))
			}
		case "divider":
		case "image":
			v.Image = &imageView{URL: b.ImageURL, Alt: slackEntities(b.AltText)}
			if b.Title != nil {
				v.Image.Title = slackEntities(b.Title.Text)
			}
		default:
			v.Type, v.Unknown = "other", b.Type
		}
		out = append(out, v)
	}
	return out, nil
}

func viewElem(raw json.RawMessage) elemView {
	var e bkElem
	if err := json.Unmarshal(raw, &e); err != nil {
		return elemView{Unknown: "unreadable element"}
	}
	switch e.Type {
	case "plain_text", "mrkdwn":
		var s string
		_ = json.Unmarshal(e.Text, &s)
		t := viewText(bkText{Type: e.Type, Text: s})
		return elemView{Text: &t}
	case "image":
		return elemView{Image: &imageView{URL: e.ImageURL, Alt: slackEntities(e.AltText)}}
	case "button":
		var label bkText
		_ = json.Unmarshal(e.Text, &label)
		b := &buttonView{Label: slackEntities(label.Text), URL: e.URL}
		if e.Style == "primary" || e.Style == "danger" {
			b.Style = e.Style
		}
		if c := e.Confirm; c != nil {
			var parts []string
			for _, t := range []*bkText{c.Title, c.Text} {
				if t != nil {
					parts = append(parts, slackEntities(t.Text))
				}
			}
			if c.Confirm != nil {
				parts = append(parts, "["+slackEntities(c.Confirm.Text)+"]")
			}
			b.Confirm = strings.Join(parts, " · ")
		}
		return elemView{Button: b}
	}
	return elemView{Unknown: e.Type}
}

func viewText(t bkText) textView {
	if t.Type == "mrkdwn" {
		return textView{Spans: mrkdwnSpans(t.Text)}
	}
	text := slackEntities(t.Text)
	if t.Emoji {
		text = emojiOf(text)
	}
	return textView{Spans: []span{{Text: text}}}
}

// shortcodes are the emoji shortcodes the responder writes, and a few
// common ones; others are shown as typed.
var shortcodes = map[string]string{
	"raised_hand": "✋", "skull": "💀", "warning": "⚠️", "rotating_light": "🚨", "white_check_mark": "✅",
	"heavy_check_mark": "✔️", "x": "❌", "no_entry": "⛔", "no_entry_sign": "🚫", "lock": "🔒", "unlock": "🔓",
	"hourglass": "⌛", "hourglass_flowing_sand": "⏳", "eyes": "👀", "bell": "🔔", "mag": "🔍", "red_circle": "🔴",
	"large_orange_circle": "🟠", "large_yellow_circle": "🟡", "large_blue_circle": "🔵", "white_circle": "⚪",
	"arrow_up": "⬆️", "chart_with_upwards_trend": "📈", "shield": "🛡️", "zzz": "💤", "mute": "🔇",
}

var shortcodeRE = regexp.MustCompile(`:([a-z0-9_+-]+):`)

// emojiOf replaces the known :shortcodes: in s by their emoji.
func emojiOf(s string) string {
	return shortcodeRE.ReplaceAllStringFunc(s, func(m string) string {
		if e, ok := shortcodes[m[1:len(m)-1]]; ok {
			return e
		}
		return m
	})
}

// slackEntities undoes Slack's three escapes (&amp; &lt; &gt;), which
// Slack shows as the characters in any text.
func slackEntities(s string) string {
	return entities.Replace(s)
}

var entities = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

// mrkdwnSpans reads Slack's mrkdwn into spans: *bold*, _italic_,
// ~strike~, `code` and ```code```, mentions (<!here>, <@U1>,
// <!subteam^S1|@x>) and links (<url|label>). It is Slack's format in
// brief, enough for what the responder posts; anything it does not know
// stays text.
func mrkdwnSpans(s string) []span {
	var out []span
	var cur span
	var b strings.Builder
	flush := func() {
		if b.Len() > 0 {
			cur.Text = slackEntities(b.String())
			if !cur.Code {
				cur.Text = emojiOf(cur.Text)
			}
			out = append(out, cur)
			b.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case strings.HasPrefix(s[i:], "```"):
			flush()
			cur.Code = !cur.Code
			i += 3
			continue
		case c == '`':
			flush()
			cur.Code = !cur.Code
			i++
			continue
		case cur.Code:
		case c == '<':
			end := strings.IndexByte(s[i:], '>')
			if end < 0 {
				break
			}
			flush()
			out = append(out, tokenSpan(s[i+1:i+end], cur))
			i += end + 1
			continue
		case c == '*' || c == '_' || c == '~':
			if on := flag(&cur, c); *on || opens(s, i) {
				flush()
				*on = !*on
				i++
				continue
			}
		}
		b.WriteByte(c)
		i++
	}
	flush()
	return out
}

func flag(sp *span, c byte) *bool {
	switch c {
	case '*':
		return &sp.Bold
	case '_':
		return &sp.Italic
	}
	return &sp.Strike
}

// opens says whether the marker at s[i] starts formatting: text follows
// it, and the same marker closes it later on the line.
func opens(s string, i int) bool {
	if i+1 >= len(s) || s[i+1] == ' ' || s[i+1] == '\n' || s[i+1] == s[i] {
		return false
	}
	if i > 0 && isWordByte(s[i-1]) {
		return false
	}
	rest := s[i+1:]
	if nl := strings.IndexByte(rest, '\n'); nl >= 0 {
		rest = rest[:nl]
	}
	return strings.IndexByte(rest, s[i]) > 0
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// tokenSpan is the span of one <…> control sequence, with the formatting
// around it.
func tokenSpan(tok string, around span) span {
	body, label, _ := strings.Cut(tok, "|")
	sp := around
	sp.Text = ""
	switch {
	case body == "":
		sp.Text = "<" + slackEntities(tok) + ">"
	case body[0] == '!' || body[0] == '@':
		sp.Alert = true
		switch {
		case label != "":
			sp.Text = "@" + strings.TrimPrefix(slackEntities(label), "@")
		case strings.HasPrefix(body, "!subteam^"):
			sp.Text = "@" + strings.TrimPrefix(body, "!subteam^")
		default:
			sp.Text = "@" + body[1:]
		}
	case body[0] == '#':
		sp.Text = "#" + strings.TrimPrefix(slackEntities(cmpOr(label, body[1:])), "#")
	case schemeRE.MatchString(body):
		sp.Href = slackEntities(body)
		sp.Text = slackEntities(cmpOr(label, body))
	default: // not a sequence Slack knows: text as typed
		sp.Text = "<" + slackEntities(tok) + ">"
	}
	return sp
}

var schemeRE = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
