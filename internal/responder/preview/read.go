package preview

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/agentwatch/agentwatch/pkg/anomaly"
)

// MaxAnomalies caps the anomalies one preview reads: its HTML page shows
// every message, and a preview is for looking at, not for replaying a
// topic.
const MaxAnomalies = 5000

// maxInput caps the bytes read from one input.
const maxInput = 64 << 20

var severities = []string{"low", "medium", "high", "critical"}

// ReadAnomalies reads anomaly records (docs/anomalies.md) from r: one JSON
// object, a JSON array of them, or JSON lines (one object per line; blank
// lines are skipped). name names r in errors, which say which record (and
// for JSON lines, which line) is wrong and why. Unknown fields are
// ignored, as the responder's consumer does; a record needs anomaly_id,
// agent_id, a known kind and a known severity.
func ReadAnomalies(name string, r io.Reader) ([]anomaly.Anomaly, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(b) > maxInput {
		return nil, fmt.Errorf("%s: larger than %d MiB", name, maxInput>>20)
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // a UTF-8 byte order mark
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("%s: not UTF-8 text", name)
	}
	body := bytes.TrimSpace(b)
	lead := len(b) - len(bytes.TrimLeftFunc(b, unicode.IsSpace))
	if len(body) == 0 {
		return nil, fmt.Errorf("%s: empty: want an anomaly record, a JSON array of them, or JSON lines", name)
	}
	var out []anomaly.Anomaly
	add := func(where string, raw json.RawMessage) error {
		if len(out) == MaxAnomalies {
			return fmt.Errorf("%s: more than %d anomalies; split the input", name, MaxAnomalies)
		}
		a, err := decodeAnomaly(raw)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", name, where, err)
		}
		out = append(out, a)
		return nil
	}
	switch body[0] {
	case '[':
		var raws []json.RawMessage
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, fmt.Errorf("%s: not a JSON array of anomaly records: %w", name, syntaxAt(b, lead, err))
		}
		if len(raws) == 0 {
			return nil, fmt.Errorf("%s: an empty array: no anomaly to preview", name)
		}
		for i, raw := range raws {
			if err := add(fmt.Sprintf("record %d", i+1), raw); err != nil {
				return nil, err
			}
		}
	case '{':
		// One record, pretty-printed or not, or JSON lines: try the whole
		// first, then line by line.
		if json.Valid(body) {
			if err := add("record 1", body); err != nil {
				return nil, err
			}
			break
		}
		first, _, _ := bytes.Cut(body, []byte("\n"))
		if !json.Valid(bytes.TrimSpace(first)) {
			var v any
			err := json.Unmarshal(body, &v)
			return nil, fmt.Errorf("%s: not an anomaly record: %w", name, syntaxAt(b, lead, err))
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 0, 64<<10), maxInput)
		n := 0
		for line := 1; sc.Scan(); line++ {
			l := bytes.TrimSpace(sc.Bytes())
			if len(l) == 0 {
				continue
			}
			n++
			where := fmt.Sprintf("line %d", line)
			if !json.Valid(l) {
				var v any
				err := json.Unmarshal(l, &v)
				return nil, fmt.Errorf("%s: %s: not a JSON object (%v); want one anomaly record per line, or one record, or a JSON array", name, where, err)
			}
			if err := add(where, l); err != nil {
				return nil, err
			}
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	default:
		return nil, fmt.Errorf("%s: starts with %q: want an anomaly record ({…}), a JSON array of them ([…]), or JSON lines", name, firstRune(body))
	}
	return out, nil
}

func decodeAnomaly(raw json.RawMessage) (anomaly.Anomaly, error) {
	var a anomaly.Anomaly
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return a, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return a, fmt.Errorf("field %s: want a %s, got a JSON %s", te.Field, te.Type, te.Value)
		}
		return a, err
	}
	var missing []string
	if a.ID == "" {
		missing = append(missing, "anomaly_id")
	}
	if a.AgentID == "" {
		missing = append(missing, "agent_id")
	}
	if a.Kind == "" {
		missing = append(missing, "kind")
	}
	if a.Severity == "" {
		missing = append(missing, "severity")
	}
	if len(missing) > 0 {
		return a, fmt.Errorf("%s missing or empty", strings.Join(missing, ", "))
	}
	if a.V > anomaly.Version {
		return a, fmt.Errorf("record version %d; this responder reads version %d", a.V, anomaly.Version)
	}
	if !slices.Contains(anomaly.Kinds(), a.Kind) {
		return a, fmt.Errorf("kind %q is not one of %s", a.Kind, strings.Join(anomaly.Kinds(), ", "))
	}
	if !slices.Contains(severities, a.Severity) {
		return a, fmt.Errorf("severity %q is not one of %s", a.Severity, strings.Join(severities, ", "))
	}
	return a, nil
}

// syntaxAt adds the line and column of a JSON syntax error in b, found
// decoding b from lead on.
func syntaxAt(b []byte, lead int, err error) error {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		return err
	}
	off := int(min(max(se.Offset+int64(lead), 0), int64(len(b))))
	line := 1 + bytes.Count(b[:off], []byte("\n"))
	col := off - bytes.LastIndexByte(b[:off], '\n')
	return fmt.Errorf("line %d, column %d: %w", line, col, err)
}

func firstRune(b []byte) string {
	r, _ := utf8.DecodeRune(b)
	return string(r)
}
