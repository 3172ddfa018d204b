package preview

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// The files Write makes.
const (
	JSONFile = "messages.json"
	HTMLFile = "preview.html"
)

// File is the JSON form of a preview (messages.json).
type File struct {
	Stats     FileStats      `json:"stats"`
	Incidents []FileIncident `json:"incidents"`
}

// FileStats are Stats in JSON.
type FileStats struct {
	Incidents    int     `json:"incidents"`
	Median       float64 `json:"median_messages_per_incident"`
	Max          int     `json:"max_messages_per_incident"`
	TopLevel     int     `json:"top_level_messages"`
	Thread       int     `json:"thread_messages"`
	Updates      int     `json:"updates"`
	Unattributed int     `json:"messages_of_no_incident"`
}

// FileIncident is one incident's messages; Incident "" holds those of no
// incident.
type FileIncident struct {
	Incident string        `json:"incident"`
	TopLevel int           `json:"top_level"`
	Thread   int           `json:"thread"`
	Messages []FileMessage `json:"messages"`
}

// FileMessage is one message as Slack shows it: Text and Blocks are what
// chat.postMessage (or the last chat.update) sent, so {"blocks": …} pastes
// into Slack's Block Kit Builder. A top-level message lists its thread's
// replies in Thread.
type FileMessage struct {
	Channel string          `json:"channel"`
	TS      string          `json:"ts"`
	Updates int             `json:"updates,omitempty"`
	Text    string          `json:"text"`
	Blocks  json.RawMessage `json:"blocks"`
	Thread  []FileMessage   `json:"thread,omitempty"`
}

// JSON returns the preview file of incidents.
func JSON(incidents []Incident) (File, error) {
	s := Count(incidents)
	f := File{Stats: FileStats{Incidents: s.Incidents, Median: s.Median, Max: s.Max, TopLevel: s.Top, Thread: s.Thread,
		Updates: s.Updates, Unattributed: s.Unattributed}, Incidents: []FileIncident{}}
	for _, in := range incidents {
		fi := FileIncident{Incident: in.ID, Messages: []FileMessage{}}
		fi.TopLevel, fi.Thread = in.Messages()
		for _, t := range in.Threads {
			m, err := fileMessage(t.Top)
			if err != nil {
				return f, err
			}
			for _, r := range t.Replies {
				rm, err := fileMessage(r)
				if err != nil {
					return f, err
				}
				m.Thread = append(m.Thread, rm)
			}
			fi.Messages = append(fi.Messages, m)
		}
		f.Incidents = append(f.Incidents, fi)
	}
	return f, nil
}

func fileMessage(p Posted) (FileMessage, error) {
	b, err := blocksJSON(p.Message.Blocks)
	if err != nil {
		return FileMessage{}, fmt.Errorf("message %s: %w", p.TS, err)
	}
	return FileMessage{Channel: p.Channel, TS: p.TS, Updates: p.Updates, Text: p.Message.Text, Blocks: b}, nil
}

// Write writes incidents' messages.json and preview.html into dir, which
// it creates (mode 0700: the messages hold agent ids and evidence). It
// returns the two paths.
func Write(dir, title string, incidents []Incident) (jsonPath, htmlPath string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("preview directory: %w", err)
	}
	f, err := JSON(incidents)
	if err != nil {
		return "", "", err
	}
	var jb bytes.Buffer
	enc := json.NewEncoder(&jb)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // a file to read, not a page: "<!here>" as Slack gets it
	if err := enc.Encode(f); err != nil {
		return "", "", fmt.Errorf("encode %s: %w", JSONFile, err)
	}
	var hb bytes.Buffer
	if err := WriteHTML(&hb, title, incidents); err != nil {
		return "", "", err
	}
	jsonPath, htmlPath = filepath.Join(dir, JSONFile), filepath.Join(dir, HTMLFile)
	for path, b := range map[string][]byte{jsonPath: jb.Bytes(), htmlPath: hb.Bytes()} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return "", "", fmt.Errorf("write preview: %w", err)
		}
	}
	return jsonPath, htmlPath, nil
}
