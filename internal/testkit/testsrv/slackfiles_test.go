package testsrv

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestSlackUploadRefusesAnotherLength(t *testing.T) {
	s := NewSlack()
	defer s.Close()
	resp, err := http.PostForm(s.URL()+"files.getUploadURLExternal", url.Values{"filename": {"a.txt"}, "length": {"5"}})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		OK        bool   `json:"ok"`
		FileID    string `json:"file_id"`
		UploadURL string `json:"upload_url"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || !got.OK {
		t.Fatalf("%+v %v", got, err)
	}
	resp.Body.Close()
	post := func(body string) int {
		r, err := http.Post(got.UploadURL, "application/octet-stream", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		return r.StatusCode
	}
	if c := post("toolong"); c != http.StatusBadRequest {
		t.Errorf("7 bytes for 5: %d", c)
	}
	if c := post("hello"); c != http.StatusOK {
		t.Errorf("5 bytes: %d", c)
	}
	if c := post("hello"); c != http.StatusConflict {
		t.Errorf("again: %d", c)
	}
	resp, err = http.PostForm(s.URL()+"files.completeUploadExternal", url.Values{"files": {`[{"id":"` + got.FileID + `","title":"t"}]`}, "channel_id": {"#general"}})
	if err != nil {
		t.Fatal(err)
	}
	var done struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&done)
	resp.Body.Close()
	if done.OK || done.Error != "channel_not_found" {
		t.Errorf("shared to a channel name: %+v", done)
	}
	if f := s.Files(); len(f) != 1 || string(f[0].Data) != "hello" || f[0].Completed {
		t.Errorf("%+v", f)
	}
}
