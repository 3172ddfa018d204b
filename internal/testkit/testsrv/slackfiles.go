package testsrv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxUpload bounds one uploaded file, as Slack bounds them (1 GB there;
// 64 MiB is plenty for a test).
const maxUpload = 64 << 20

// SlackFile is one file uploaded through the external upload flow
// (files.getUploadURLExternal, a POST of the bytes to the URL it gave,
// files.completeUploadExternal).
type SlackFile struct {
	ID       string
	Filename string
	// Length is what files.getUploadURLExternal was told.
	Length int
	// Data is what was posted to the upload URL; nil until then.
	Data []byte
	// Completed: files.completeUploadExternal shared it.
	Completed bool
	Title     string
	// Channel is the channel_id it was shared to; ThreadTS the thread.
	Channel        string
	ThreadTS       string
	InitialComment string
	At             time.Time
}

// Files returns the uploads, in the order their URLs were asked for.
func (s *Slack) Files() []SlackFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SlackFile, 0, len(s.fileOrder))
	for _, id := range s.fileOrder {
		f := *s.files[id]
		f.Data = append([]byte(nil), f.Data...)
		out = append(out, f)
	}
	return out
}

func (s *Slack) getUploadURL(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_form_data"})
		return
	}
	name := r.Form.Get("filename")
	n, err := strconv.Atoi(r.Form.Get("length"))
	if name == "" || err != nil || n <= 0 || n > maxUpload {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_arguments"})
		return
	}
	s.mu.Lock()
	if e := s.takeFailure("files.getUploadURLExternal"); e != "" {
		s.mu.Unlock()
		writeJSON(w, map[string]any{"ok": false, "error": e})
		return
	}
	s.seq++
	id := fmt.Sprintf("F%08d", s.seq)
	s.files[id] = &SlackFile{ID: id, Filename: name, Length: n, At: time.Now()}
	s.fileOrder = append(s.fileOrder, id)
	s.mu.Unlock()
	writeJSON(w, map[string]any{"ok": true, "file_id": id, "upload_url": s.srv.URL + "/upload/" + id})
}

// upload takes the bytes of a file: a multipart form with a "file" part,
// as slack-go sends them, or a raw body.
func (s *Slack) upload(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/upload/")
	var data []byte
	var err error
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		if err = r.ParseMultipartForm(maxUpload); err == nil {
			f, _, ferr := r.FormFile("file")
			if err = ferr; err == nil {
				data, err = io.ReadAll(f)
				f.Close()
			}
		}
	} else {
		data, err = io.ReadAll(io.LimitReader(r.Body, maxUpload+1))
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.files[id]
	switch {
	case f == nil:
		http.Error(w, "no such upload", http.StatusNotFound)
		return
	case f.Data != nil:
		http.Error(w, "already uploaded", http.StatusConflict)
		return
	case len(data) != f.Length:
		// Slack refuses a body of another length than announced.
		http.Error(w, fmt.Sprintf("%d bytes, announced %d", len(data), f.Length), http.StatusBadRequest)
		return
	}
	f.Data = data
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "OK - "+strconv.Itoa(len(data)))
}

func (s *Slack) completeUpload(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_form_data"})
		return
	}
	var files []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	}
	if err := json.Unmarshal([]byte(r.Form.Get("files")), &files); err != nil || len(files) == 0 {
		writeJSON(w, map[string]any{"ok": false, "error": "invalid_arguments"})
		return
	}
	s.mu.Lock()
	if e := s.takeFailure("files.completeUploadExternal"); e != "" {
		s.mu.Unlock()
		writeJSON(w, map[string]any{"ok": false, "error": e})
		return
	}
	ch := r.Form.Get("channel_id")
	if ch != "" && !conversationID.MatchString(ch) {
		// Slack shares to a conversation ID only.
		s.mu.Unlock()
		writeJSON(w, map[string]any{"ok": false, "error": "channel_not_found"})
		return
	}
	var out []map[string]any
	for _, in := range files {
		f := s.files[in.ID]
		if f == nil || f.Data == nil {
			s.mu.Unlock()
			writeJSON(w, map[string]any{"ok": false, "error": "file_not_found"})
			return
		}
		f.Completed, f.Title, f.Channel, f.ThreadTS, f.InitialComment = true, in.Title, ch, r.Form.Get("thread_ts"), r.Form.Get("initial_comment")
		out = append(out, map[string]any{"id": f.ID, "title": f.Title})
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	writeJSON(w, map[string]any{"ok": true, "files": out})
}
