package preview

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/internal/responder/slackui"
)

const hostile = `"'><script>alert(1)</script><img src=x onerror=alert(2)>&amp;<!channel>`

func plainText(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, false, false)
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

// allowedTags are the only elements the page may hold: every other "<" in
// it must be text, escaped.
var allowedTags = []string{"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "div", "span", "strong",
	"em", "s", "code", "a", "hr", "img", "figure", "figcaption"}

var tagRE = regexp.MustCompile(`<(/?)([a-zA-Z][a-zA-Z0-9]*)`)

// checkSafe fails unless page holds only the template's own elements and
// attributes: no script, no event handler, no javascript: address.
func checkSafe(t *testing.T, page string) {
	t.Helper()
	body := page[strings.Index(page, "</style>"):] // the style sheet has no tags but "<" in it is not expected either
	for _, m := range tagRE.FindAllStringSubmatch(body, -1) {
		if !slices.Contains(allowedTags, strings.ToLower(m[2])) {
			t.Errorf("the page holds a <%s%s> element", m[1], m[2])
		}
	}
	// Every "<" that text put there is escaped, so each match is an
	// element the template wrote: none may carry a handler or a script
	// address.
	for _, tag := range elementRE.FindAllString(body, -1) {
		names := quotedRE.ReplaceAllString(tag, `""`) // html/template quotes every value and escapes " in it
		if handlerRE.MatchString(names) || strings.Contains(strings.ToLower(tag), "javascript:") {
			t.Errorf("the page holds the element %s", tag)
		}
	}
	for _, bad := range []string{"<script", "<!channel>", "<!here>"} {
		if strings.Contains(strings.ToLower(page), bad) {
			t.Errorf("the page holds %q", bad)
		}
	}
}

var (
	elementRE = regexp.MustCompile(`<[a-zA-Z][^>]*>`)
	handlerRE = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	quotedRE  = regexp.MustCompile(`"[^"]*"`)
)

func TestWriteHTMLRendersBlocksAndEscapesEverything(t *testing.T) {
	for _, c := range []struct {
		name   string
		m      slackui.Message
		want   []string // substrings of the page
		noWant []string
	}{
		{"header", slackui.Message{Blocks: []slack.Block{slack.NewHeaderBlock(plainText("🔴 CRITICAL · " + hostile))}},
			[]string{`<div class="header">🔴 CRITICAL · &#34;&#39;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;&amp;&lt;!channel&gt;</div>`}, nil},
		{"section plain text and fields", slackui.Message{Blocks: []slack.Block{slack.NewSectionBlock(plainText("summary "+hostile),
			[]*slack.TextBlockObject{plainText("Agent\n" + hostile), plainText("Owner\n&lt;b&gt;")}, nil)}},
			[]string{`<div class="section">`, `<div class="fields">`, "summary &#34;&#39;&gt;&lt;script&gt;", "Agent\n&#34;", "Owner\n&lt;b&gt;"}, nil},
		{"section mrkdwn", slackui.Message{Blocks: []slack.Block{slack.NewSectionBlock(
			mrkdwn("*What was anomalous* _now_ ~gone~ `code *not bold*` <!here> <@U123> <!subteam^S9|@oncall> <https://example.com/r?a=1&amp;b=2|the runbook> <javascript:alert(1)|click>"), nil, nil)}},
			[]string{"<strong>What was anomalous</strong>", "<em>now</em>", "<s>gone</s>", "<code>code *not bold*</code>",
				`<span class="alert">@here</span>`, `<span class="alert">@U123</span>`, `<span class="alert">@oncall</span>`,
				`<a href="https://example.com/r?a=1&amp;b=2" rel="noopener noreferrer">the runbook</a>`, `<a href="#ZgotmplZ"`},
			[]string{"javascript:alert"}},
		{"section accessory", slackui.Message{Blocks: []slack.Block{slack.NewSectionBlock(plainText("x"), nil,
			slack.NewAccessory(slack.NewButtonBlockElement("a", "v", plainText(hostile))))}},
			[]string{`<span class="btn" role="button">&#34;&#39;&gt;&lt;script&gt;`}, nil},
		{"context", slackui.Message{Blocks: []slack.Block{slack.NewContextBlock("c", plainText("anomaly "+hostile),
			mrkdwn("*bold* "+hostile), slack.NewImageBlockElement("javascript:alert(3)", hostile))}},
			[]string{`<div class="context">`, "<span>anomaly &#34;", "<strong>bold</strong>", `<img src="#ZgotmplZ" alt="&#34;&#39;&gt;&lt;script&gt;`}, nil},
		{"actions", slackui.Message{Blocks: []slack.Block{slack.NewActionBlock("aw_actions",
			slack.NewButtonBlockElement("ack", "v", plainText("Acknowledge")).WithStyle(slack.StylePrimary),
			slack.NewButtonBlockElement("rev", "v", plainText("Revoke now")).WithStyle(slack.StyleDanger).WithConfirm(
				slack.NewConfirmationBlockObject(plainText("Revoke credential?"), plainText("Revoke agent "+hostile+"?"), plainText("Revoke"), plainText("Cancel"))),
			slack.NewButtonBlockElement("x", "v", plainText("</span>"+hostile)).WithStyle("bogus\" onclick=\"x"))}},
			[]string{`<div class="actions">`, `<span class="btn primary" role="button">Acknowledge</span>`,
				`<span class="btn danger" role="button" title="asks first: Revoke credential? · Revoke agent &#34;&#39;&gt;&lt;script&gt;alert(1)&lt;/script&gt;`,
				`>Revoke now</span>`, `<span class="btn" role="button">&lt;/span&gt;&#34;`},
			[]string{"onclick", "bogus"}},
		{"divider and image", slackui.Message{Blocks: []slack.Block{slack.NewDividerBlock(),
			slack.NewImageBlock("https://example.com/plot.png", hostile, "i", plainText("Plot "+hostile))}},
			[]string{"<hr>", `<figcaption>Plot &#34;&#39;&gt;&lt;script&gt;`, `<img class="block" src="https://example.com/plot.png" alt="&#34;&#39;&gt;&lt;script&gt;alert(1)&lt;/script&gt;`}, nil},
		{"image with a hostile address", slackui.Message{Blocks: []slack.Block{slack.NewImageBlock(`javascript:alert(1)//"onerror="x`, "a", "i", nil)}},
			[]string{`src="#ZgotmplZ"`}, nil},
		{"block the preview does not draw", slackui.Message{Blocks: []slack.Block{slack.NewRichTextBlock("r")}},
			[]string{`<div class="unknown">[a rich_text block, which this preview does not draw]</div>`}, nil},
		{"text only", slackui.Message{Text: "<!here> *Approval needed* for " + hostile},
			// Raw mrkdwn (slackui never sends input unescaped): <!channel>
			// is a mention, which the page shows as one.
			[]string{"text only", `<span class="alert">@here</span> <strong>Approval needed</strong> for &#34;&#39;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;&amp;<span class="alert">@channel</span>`}, nil},
		{"emoji shortcodes", slackui.Message{Blocks: []slack.Block{slack.NewSectionBlock(mrkdwn(":raised_hand: Approval `:skull:` :nope:"), nil, nil),
			slack.NewSectionBlock(plainText(":skull: as typed"), nil, nil)}},
			[]string{"✋ Approval <code>:skull:</code> :nope:", ":skull: as typed"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := []Incident{{ID: "inc-" + hostile, Threads: []Thread{{
				Top:     Posted{Channel: "#soc" + hostile, TS: "1.000001", Message: c.m, Updates: 2},
				Replies: []Posted{{Channel: "#soc", TS: "1.000002", ThreadTS: "1.000001", Message: c.m}},
			}}}}
			var b bytes.Buffer
			if err := WriteHTML(&b, "preview "+hostile, in); err != nil {
				t.Fatal(err)
			}
			page := b.String()
			checkSafe(t, page)
			for _, w := range append(c.want, "<title>preview &#34;&#39;&gt;&lt;script&gt;", "Incident inc-&#34;&#39;&gt;&lt;script&gt;",
				"#soc&#34;&#39;&gt;&lt;script&gt;", "updated 2 times", `<div class="thread">`, "1 top-level, 1 in threads") {
				if !strings.Contains(page, w) {
					t.Errorf("the page lacks %q", w)
				}
			}
			for _, w := range c.noWant {
				if strings.Contains(page, w) {
					t.Errorf("the page holds %q", w)
				}
			}
			if t.Failed() {
				t.Log(page[strings.Index(page, "<body>"):])
			}
		})
	}
}

func TestMrkdwnSpans(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []span
	}{
		{"plain", []span{{Text: "plain"}}},
		{"a *b* c", []span{{Text: "a "}, {Text: "b", Bold: true}, {Text: " c"}}},
		{"2 * 3 * 4", []span{{Text: "2 * 3 * 4"}}},
		{"snake_case_name", []span{{Text: "snake_case_name"}}},
		{"*open only", []span{{Text: "*open only"}}},
		{"*a\nb*", []span{{Text: "*a\nb*"}}},
		{"`*x*`", []span{{Text: "*x*", Code: true}}},
		{"```\nblock\n```", []span{{Text: "\nblock\n", Code: true}}},
		{"&lt;b&gt; &amp;", []span{{Text: "<b> &"}}},
		{"<!channel>", []span{{Text: "@channel", Alert: true}}},
		{"*<!here>*", []span{{Text: "@here", Alert: true, Bold: true}}},
		{"<#C1|soc>", []span{{Text: "#soc"}}},
		{"<https://x.test>", []span{{Text: "https://x.test", Href: "https://x.test"}}},
		{"a < b", []span{{Text: "a < b"}}},
		{"<>", []span{{Text: "<>"}}},
		{"<script>", []span{{Text: "<script>"}}},
		{"<mailto:a@b.test|mail>", []span{{Text: "mail", Href: "mailto:a@b.test"}}},
	} {
		if got := mrkdwnSpans(c.in); !slices.Equal(got, c.want) {
			t.Errorf("mrkdwnSpans(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
}
