package silence

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// A line of the silence file is one JSON object holding a silence's whole
// state: {"silence":{...}}. The last line of an id wins, so Expire appends
// the expired silence again.
type line struct {
	Silence *Silence `json:"silence"`
}

// parseLine decodes one line of the file (without its newline): exactly
// the fields above and a silence that passes check. Unknown fields are
// refused: a field this version ignores could change what a silence mutes.
func parseLine(b []byte) (Silence, []compiled, error) {
	var l line
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return Silence{}, nil, fmt.Errorf("decode silence line: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Silence{}, nil, errors.New("decode silence line: trailing data after the JSON object")
	}
	if l.Silence == nil {
		return Silence{}, nil, errors.New("silence line: no silence")
	}
	s := normalize(*l.Silence)
	ms, err := s.check()
	if err != nil {
		return Silence{}, nil, fmt.Errorf("silence %.40q: %w", s.ID, err)
	}
	return s, ms, nil
}

// appendLine appends s as one JSON line to b.
func appendLine(b []byte, s Silence) ([]byte, error) {
	j, err := json.Marshal(line{Silence: &s})
	if err != nil {
		return b, fmt.Errorf("encode silence line: %w", err)
	}
	b = append(b, j...)
	return append(b, '\n'), nil
}
