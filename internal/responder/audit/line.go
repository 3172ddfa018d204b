package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// MarshalLine encodes r as one line of a FileStore: a JSON object and a
// newline. The JSON escapes every control character, so the line holds
// no other newline. It refuses an invalid record.
func MarshalLine(r Record) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("encode audit record: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode audit record: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseLine decodes one line of a FileStore (with or without its newline)
// and validates the record. Unknown fields are ignored, so that an older
// `responder audit` reads a newer file.
func ParseLine(line []byte) (Record, error) {
	line = bytes.TrimSuffix(line, []byte{'\n'})
	if len(line) == 0 || line[0] != '{' {
		return Record{}, errors.New("audit line: not a JSON object")
	}
	var r Record
	if err := json.Unmarshal(line, &r); err != nil {
		return Record{}, fmt.Errorf("audit line: %w", err)
	}
	if err := r.Validate(); err != nil {
		return Record{}, fmt.Errorf("audit line: %w", err)
	}
	return r, nil
}
