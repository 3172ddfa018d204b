package outbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// A line of the outbox file is one JSON object holding either an entry's
// whole state ({"entry":{...}}; the last line of a key wins) or a handled
// anomaly id ({"seen":{"id":"...","at":"..."}}).
type line struct {
	Entry *Entry    `json:"entry,omitempty"`
	Seen  *seenLine `json:"seen,omitempty"`
}

type seenLine struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// parseLine decodes one line of the file (without its newline): exactly
// the fields above, one of entry and seen, and valid values.
func parseLine(b []byte) (line, error) {
	var l line
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return line{}, fmt.Errorf("decode outbox line: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return line{}, errors.New("decode outbox line: trailing data after the JSON object")
	}
	switch {
	case (l.Entry == nil) == (l.Seen == nil):
		return line{}, errors.New("outbox line: want exactly one of entry and seen")
	case l.Entry != nil:
		if err := l.Entry.validate(); err != nil {
			return line{}, fmt.Errorf("outbox entry: %w", err)
		}
	default:
		if l.Seen.ID == "" || len(l.Seen.ID) > MaxKeyLen {
			return line{}, fmt.Errorf("outbox seen id: want 1 to %d bytes, got %d", MaxKeyLen, len(l.Seen.ID))
		}
	}
	return l, nil
}

// appendLine appends l as JSON and a newline to b.
func appendLine(b []byte, l line) ([]byte, error) {
	j, err := json.Marshal(l)
	if err != nil {
		return b, fmt.Errorf("encode outbox line: %w", err)
	}
	b = append(b, j...)
	return append(b, '\n'), nil
}
