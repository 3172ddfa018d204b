package report

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/slack-go/slack"
)

// Uploader uploads a file to Slack through the external upload flow
// (files.getUploadURLExternal, the upload, files.completeUploadExternal);
// *slack.Client satisfies it.
type Uploader interface {
	UploadFileContext(ctx context.Context, params slack.UploadFileParameters) (*slack.FileSummary, error)
}

var _ Uploader = (*slack.Client)(nil)

// channelID is what files.completeUploadExternal shares to: a
// conversation id, not a "#name".
var channelID = regexp.MustCompile(`^[CGD][A-Z0-9]{2,}$`)

// ValidChannel says whether ch can receive a report.
func ValidChannel(ch string) error {
	if !channelID.MatchString(ch) {
		return fmt.Errorf("slack channel %q: want a conversation id (C…, G…), as Slack's file sharing takes no channel names", clip(ch, 40))
	}
	return nil
}

// Output is one rendered edition of a report.
type Output struct {
	// Name is the file name: "agentwatch-report-2026-11.html".
	Name string
	Data []byte
}

// Post uploads each output to channel, the first with a comment holding
// the report's headline numbers, and returns the Slack file ids. Agent ids
// and routes are not in the comment, so nothing from the traffic is
// rendered as Slack markup.
func Post(ctx context.Context, up Uploader, channel string, r *Report, outs []Output) ([]string, error) {
	if err := ValidChannel(channel); err != nil {
		return nil, err
	}
	var ids []string
	for i, o := range outs {
		p := slack.UploadFileParameters{
			Reader: bytes.NewReader(o.Data), FileSize: len(o.Data), Filename: o.Name,
			Title: fmt.Sprintf("agentwatch report %s (%s)", r.Period.Name, strings.ToUpper(strings.TrimPrefix(ext(o.Name), "."))), Channel: channel,
		}
		if i == 0 {
			p.InitialComment = Headline(r)
		}
		f, err := up.UploadFileContext(ctx, p)
		if err != nil {
			return ids, fmt.Errorf("post report %s to Slack: upload %s: %w", r.Period.Name, o.Name, err)
		}
		ids = append(ids, f.ID)
	}
	return ids, nil
}

func ext(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i:]
	}
	return ""
}

// Headline is the report's key numbers in one short message.
func Headline(r *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "agentwatch report %s\n", r.Period.Name)
	for _, key := range []string{"inventory.agents_registered", "inventory.ownership", "zombies.routes", "policy.coverage",
		"policy.unapproved_routes", "anomalies.total", "anomalies.false_positive_rate", "anomalies.time_to_contain", "review.agents"} {
		for _, s := range r.Sections {
			for _, m := range s.Metrics {
				if m.Key == key {
					fmt.Fprintf(&b, "• %s: %s", m.Label, m.Value)
					if m.Detail != "" {
						fmt.Fprintf(&b, " (%s)", m.Detail)
					}
					b.WriteByte('\n')
				}
			}
		}
	}
	return escapeSlack(strings.TrimSuffix(b.String(), "\n"))
}

// escapeSlack makes text inert in Slack's mrkdwn: &, < and > are the
// characters Slack asks to escape.
func escapeSlack(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
