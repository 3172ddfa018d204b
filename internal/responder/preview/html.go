package preview

import (
	"embed"
	"fmt"
	"html/template"
	"io"
)

//go:embed page.html.tmpl
var pageFS embed.FS

var page = template.Must(template.New("page.html.tmpl").ParseFS(pageFS, "page.html.tmpl"))

type pageView struct {
	Title     string
	Stats     Stats
	Incidents []incidentView
}

type incidentView struct {
	ID           string
	Top, Replies int
	Threads      []msgView
}

// WriteHTML writes incidents as one self-contained HTML page: each
// incident's top-level messages as Slack shows them (after their updates),
// each with its thread. Every string from the messages is escaped by
// html/template; the page loads nothing and runs no script (its Content
// Security Policy allows neither), except the images Block Kit blocks point
// at.
func WriteHTML(w io.Writer, title string, incidents []Incident) error {
	v := pageView{Title: title, Stats: Count(incidents)}
	for _, in := range incidents {
		iv := incidentView{ID: in.ID}
		iv.Top, iv.Replies = in.Messages()
		for _, t := range in.Threads {
			mv, err := viewMessage(t.Top)
			if err != nil {
				return err
			}
			for _, r := range t.Replies {
				rv, err := viewMessage(r)
				if err != nil {
					return err
				}
				mv.Replies = append(mv.Replies, rv)
			}
			iv.Threads = append(iv.Threads, mv)
		}
		v.Incidents = append(v.Incidents, iv)
	}
	if err := page.Execute(w, v); err != nil {
		return fmt.Errorf("render preview page: %w", err)
	}
	return nil
}

func viewMessage(p Posted) (msgView, error) {
	raw, err := blocksJSON(p.Message.Blocks)
	if err != nil {
		return msgView{}, fmt.Errorf("message %s: %w", p.TS, err)
	}
	blocks, err := viewBlocks(raw)
	if err != nil {
		return msgView{}, fmt.Errorf("message %s: %w", p.TS, err)
	}
	return msgView{Channel: p.Channel, TS: p.TS, Fallback: mrkdwnSpans(p.Message.Text), Blocks: blocks, Updates: p.Updates}, nil
}
