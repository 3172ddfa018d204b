package report

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/agentwatch/agentwatch/internal/testkit/testsrv"
)

func TestPostUploadsIntact(t *testing.T) {
	srv := testsrv.NewSlack()
	defer srv.Close()
	client := slack.New("xoxb-test", slack.OptionAPIURL(srv.URL()))
	r, charts := built(t)
	page, err := HTML(r, charts)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := PDF(r, charts)
	if err != nil {
		t.Fatal(err)
	}
	outs := []Output{{Name: "agentwatch-report-2026-11.html", Data: page}, {Name: "agentwatch-report-2026-11.pdf", Data: doc}}
	ids, err := Post(context.Background(), client, "C0REPORTS", r, outs)
	if err != nil {
		t.Fatal(err)
	}
	files := srv.Files()
	if len(ids) != 2 || len(files) != 2 {
		t.Fatalf("ids %v, files %d", ids, len(files))
	}
	for i, f := range files {
		if f.ID != ids[i] || f.Filename != outs[i].Name || !bytes.Equal(f.Data, outs[i].Data) || !f.Completed || f.Channel != "C0REPORTS" {
			t.Errorf("file %d: id %s name %s %d bytes (want %d, same: %v) completed %v channel %s",
				i, f.ID, f.Filename, len(f.Data), len(outs[i].Data), bytes.Equal(f.Data, outs[i].Data), f.Completed, f.Channel)
		}
	}
	c := files[0].InitialComment
	if !strings.Contains(c, "False-positive rate: 33.3%") || !strings.Contains(c, "agentwatch report 2026-11") || files[1].InitialComment != "" {
		t.Errorf("comments: %q, %q", c, files[1].InitialComment)
	}
	if strings.Contains(c, "<") {
		t.Errorf("comment holds markup: %q", c)
	}
	if files[1].Title != "agentwatch report 2026-11 (PDF)" {
		t.Errorf("title %q", files[1].Title)
	}
}

func TestPostFailures(t *testing.T) {
	srv := testsrv.NewSlack()
	defer srv.Close()
	client := slack.New("xoxb-test", slack.OptionAPIURL(srv.URL()))
	r, _ := built(t)
	outs := []Output{{Name: "r.html", Data: []byte("<html></html>")}}
	if _, err := Post(context.Background(), client, "#reports", r, outs); err == nil {
		t.Error("a channel name was accepted")
	}
	srv.FailNext("files.completeUploadExternal", "not_in_channel")
	if _, err := Post(context.Background(), client, "C0REPORTS", r, outs); err == nil || !strings.Contains(err.Error(), "not_in_channel") {
		t.Errorf("failed completion: %v", err)
	}
	if f := srv.Files(); len(f) != 1 || f[0].Completed {
		t.Errorf("files: %+v", f)
	}
}
