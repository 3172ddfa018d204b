package preview

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/agentwatch/agentwatch/internal/responder/respond"
	"github.com/agentwatch/agentwatch/internal/responder/slackui"
)

func msg(text, marker string) slackui.Message { return slackui.Message{Text: text, Marker: marker} }

func TestCaptureKeepsWhatSlackShows(t *testing.T) {
	ctx := context.Background()
	c := &Capture{}
	card, _ := c.PostAlert(ctx, "#soc", msg("card v1", "k-card"))
	r1, _ := c.PostThreadReply(ctx, "#soc", card, msg("follow-up 1", "k-r1"))
	if err := c.UpdateMessage(ctx, "#soc", card, msg("card v2", "k-update")); err != nil {
		t.Fatal(err)
	}
	esc, _ := c.PostAlert(ctx, "#soc", msg("escalated to CRITICAL", "k-esc"))
	c.PostThreadReply(ctx, "#soc", card, msg("approval", "k-appr"))
	other, _ := c.PostAlert(ctx, "#soc", msg("other agent", "k-other"))
	c.PostAlert(ctx, "#soc", msg("3 posts held back this minute", "summary-1"))
	if err := c.UpdateMessage(ctx, "#soc", card, msg("card v3", "")); err != nil {
		t.Fatal(err)
	}
	if err := c.UpdateMessage(ctx, "#soc", "9.9", msg("x", "")); err == nil {
		t.Error("an update of a message never posted succeeded")
	}
	if card >= r1 || r1 >= esc || esc >= other {
		t.Errorf("ts do not grow with each post: %s %s %s %s", card, r1, esc, other)
	}
	owner := map[string]string{"k-card": "inc-1", "k-r1": "inc-1", "k-esc": "inc-1", "k-appr": "inc-1", "k-other": "inc-2"}
	got, err := c.Incidents(ctx, func(_ context.Context, m string) (string, error) { return owner[m], nil })
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, in := range got {
		b.WriteString(in.ID + ":")
		for _, th := range in.Threads {
			b.WriteString(" [" + th.Top.Message.Text)
			for _, r := range th.Replies {
				b.WriteString(" / " + r.Message.Text)
			}
			b.WriteString("]")
		}
		b.WriteString("\n")
	}
	want := "inc-1: [card v3 / follow-up 1 / approval] [escalated to CRITICAL]\ninc-2: [other agent]\n: [3 posts held back this minute]\n"
	if b.String() != want {
		t.Fatalf("incidents:\n%s\nwant:\n%s", b.String(), want)
	}
	if got[0].Threads[0].Top.Updates != 2 || got[0].Threads[0].Top.Marker != "k-card" {
		t.Errorf("the card: %d updates, marker %q; want 2 and its first post's", got[0].Threads[0].Top.Updates, got[0].Threads[0].Top.Marker)
	}
	s := Count(got)
	if s != (Stats{Incidents: 2, Median: 2.5, Max: 4, Top: 3, Thread: 2, Updates: 2, Unattributed: 1}) {
		t.Fatalf("stats %+v", s)
	}
	if line := s.String(); !strings.HasPrefix(line, "Slack messages per incident: median 2.5, max 4 (top-level 3, thread 2)") {
		t.Errorf("stats line %q", line)
	}
}

func TestCaptureIncidentsWithoutALookup(t *testing.T) {
	ctx := context.Background()
	c := &Capture{}
	a, _ := c.PostAlert(ctx, "#a", msg("one", "k1"))
	c.PostThreadReply(ctx, "#a", a, msg("one'", "k2"))
	c.PostAlert(ctx, "#a", msg("two", "k3"))
	c.PostThreadReply(ctx, "#a", "7.7", msg("in a thread posted before", "k4"))
	got, err := c.Incidents(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].ID != "thread "+a || len(got[0].Threads[0].Replies) != 1 || got[2].Threads[0].Top.TS != "7.7" {
		t.Fatalf("incidents %+v", got)
	}
	if _, err := c.Incidents(ctx, func(context.Context, string) (string, error) { return "", errors.New("gone") }); err == nil {
		t.Error("a failing lookup went unnoticed")
	}
}

func TestMedian(t *testing.T) {
	in := func(n int) Incident {
		th := Thread{Top: Posted{TS: "1"}}
		th.Replies = make([]Posted, n-1)
		return Incident{ID: "i", Threads: []Thread{th}}
	}
	for _, c := range []struct {
		sizes []int
		want  float64
	}{{nil, 0}, {[]int{5}, 5}, {[]int{1, 9, 3}, 3}, {[]int{4, 1, 9, 2}, 3}} {
		var ins []Incident
		for _, n := range c.sizes {
			ins = append(ins, in(n))
		}
		if got := Count(ins).Median; got != c.want {
			t.Errorf("median of %v = %v, want %v", c.sizes, got, c.want)
		}
	}
}

// TestCaptureTees: in front of the console, the console still prints and
// names the messages, and Capture keeps them.
func TestCaptureTees(t *testing.T) {
	ctx := context.Background()
	var out bytes.Buffer
	c := &Capture{Inner: respond.NewConsole(&out)}
	ts, err := c.PostAlert(ctx, "#soc", msg("<!here> alert", "k"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PostThreadReply(ctx, "#soc", ts, msg("reply", "k2")); err != nil {
		t.Fatal(err)
	}
	// The console may not update (before the incident card); an update
	// is still kept.
	if err := c.UpdateMessage(ctx, "#soc", ts, msg("alert, updated", "")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "[#soc] @here alert") || !strings.Contains(out.String(), "thread "+ts+"] reply") {
		t.Errorf("console printed:\n%s", out.String())
	}
	ps := c.Posts()
	if len(ps) != 2 || ps[0].TS != ts || ps[0].Message.Text != "alert, updated" || ps[1].ThreadTS != ts {
		t.Fatalf("kept %+v", ps)
	}
}
