package event

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// AppendID appends ID(topic, partition, offset) to dst without the
// intermediate allocations of ID, for the per-event hot path of parsers.
func AppendID(dst []byte, topic string, partition int32, offset int64) []byte {
	var scratch [128]byte
	buf := scratch[:0]
	buf = append(buf, topic...)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, int64(partition), 10)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, offset, 10)
	sum := sha256.Sum256(buf)
	return hex.AppendEncode(dst, sum[:16])
}

// AppendJSON appends the canonical wire form of e (one JSON object, no
// trailing newline) to dst and returns the extended slice. Every field is
// always written, in a fixed order, so encoded events are byte-comparable.
// Invalid UTF-8 in strings is replaced by U+FFFD: the output is always valid
// JSON, and valid-UTF-8 events round-trip exactly through Decoder.
func AppendJSON(dst []byte, e *Event) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, Version, 10)
	dst = appendStrField(dst, "event_id", e.EventID)
	dst = appendIntField(dst, "event_time_ms", e.EventTimeMs)
	dst = appendIntField(dst, "ingest_time_ms", e.IngestTimeMs)
	dst = appendStrField(dst, "agent_id", e.AgentID)
	dst = appendStrField(dst, "identity_source", e.IdentitySource)
	dst = append(dst, `,"unattributed":`...)
	dst = strconv.AppendBool(dst, e.Unattributed)
	dst = appendStrField(dst, "credential_id", e.CredentialID)
	dst = appendStrField(dst, "source_ip", e.SourceIP)
	dst = appendStrField(dst, "method", e.Method)
	dst = appendStrField(dst, "route", e.Route)
	dst = appendStrField(dst, "path", e.Path)
	dst = append(dst, `,"query_params":[`...)
	for i, q := range e.QueryParams {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONString(dst, q)
	}
	dst = append(dst, ']')
	dst = appendUintField(dst, "status", uint64(e.Status))
	dst = appendUintField(dst, "request_bytes", e.RequestBytes)
	dst = appendUintField(dst, "response_bytes", e.ResponseBytes)
	dst = appendUintField(dst, "duration_us", e.DurationUs)
	dst = appendStrField(dst, "user_agent", e.UserAgent)
	dst = appendStrField(dst, "gateway", e.Gateway)
	dst = appendStrField(dst, "upstream", e.Upstream)
	dst = appendStrField(dst, "request_id", e.RequestID)
	dst = appendStrField(dst, "format", e.Format)
	dst = appendStrField(dst, "topic", e.Topic)
	dst = appendIntField(dst, "partition", int64(e.Partition))
	dst = appendIntField(dst, "offset", e.Offset)
	return append(dst, '}')
}

func appendStrField(dst []byte, name, v string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return AppendJSONString(dst, v)
}

func appendIntField(dst []byte, name string, v int64) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return strconv.AppendInt(dst, v, 10)
}

func appendUintField(dst []byte, name string, v uint64) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, name...)
	dst = append(dst, '"', ':')
	return strconv.AppendUint(dst, v, 10)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a quoted JSON string. Control characters,
// quotes and backslashes are escaped; U+2028 and U+2029 are escaped too so
// the output can be embedded in JavaScript; invalid UTF-8 becomes \ufffd.
// Renderers of gateway lines share it so every producer escapes alike.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// ErrVersion means the record was written by a schema version this build
// does not know; it should be dead-lettered, not retried.
var ErrVersion = errors.New("unsupported canonical event version")

// ErrSyntax means the data is not a JSON object at all.
var ErrSyntax = errors.New("not a JSON object")

// Decoder decodes the canonical wire form written by AppendJSON. It reuses
// its parse buffers between calls, so it is not safe for concurrent use:
// give each goroutine its own. The zero value is ready to use. Returned
// Events never alias data or the Decoder's buffers.
type Decoder struct {
	p fastjson.Parser
}

// Decode parses one encoded event. Unknown fields are ignored (a newer
// writer of the same version may add optional fields); a missing or
// unknown "v" is an error wrapping ErrVersion; bad JSON wraps ErrSyntax; a field of the wrong type or
// out of range is an error naming the field.
func (d *Decoder) Decode(data []byte) (Event, error) {
	var e Event
	v, err := d.p.ParseBytes(data)
	if err != nil {
		return e, fmt.Errorf("decode canonical event: %w: %w", ErrSyntax, err)
	}
	o, err := v.Object()
	if err != nil {
		return e, fmt.Errorf("decode canonical event: %w: %w", ErrSyntax, err)
	}
	ver := o.Get("v")
	if ver == nil {
		return e, fmt.Errorf("decode canonical event: no \"v\" field: %w", ErrVersion)
	}
	if n, err := ver.Int64(); err != nil || n != Version {
		return e, fmt.Errorf("decode canonical event: v=%s: %w", ver.String(), ErrVersion)
	}
	var ferr error
	o.Visit(func(key []byte, v *fastjson.Value) {
		if ferr != nil {
			return
		}
		if err := decodeField(&e, string(key), v); err != nil {
			ferr = fmt.Errorf("decode canonical event: field %q: %w", key, err)
		}
	})
	if ferr != nil {
		return Event{}, ferr
	}
	return e, nil
}

func decodeField(e *Event, key string, v *fastjson.Value) error {
	var err error
	switch key {
	case "v":
	case "event_id":
		e.EventID, err = str(v)
	case "event_time_ms":
		e.EventTimeMs, err = v.Int64()
	case "ingest_time_ms":
		e.IngestTimeMs, err = v.Int64()
	case "agent_id":
		e.AgentID, err = str(v)
	case "identity_source":
		e.IdentitySource, err = str(v)
	case "unattributed":
		e.Unattributed, err = v.Bool()
	case "credential_id":
		e.CredentialID, err = str(v)
	case "source_ip":
		e.SourceIP, err = str(v)
	case "method":
		e.Method, err = str(v)
	case "route":
		e.Route, err = str(v)
	case "path":
		e.Path, err = str(v)
	case "query_params":
		var arr []*fastjson.Value
		arr, err = v.Array()
		if err != nil || len(arr) == 0 {
			e.QueryParams = nil
			break
		}
		e.QueryParams = make([]string, len(arr))
		for i, a := range arr {
			if e.QueryParams[i], err = str(a); err != nil {
				break
			}
		}
	case "status":
		var n uint64
		n, err = v.Uint64()
		if err == nil && n > math.MaxUint16 {
			err = fmt.Errorf("%d out of range", n)
		}
		e.Status = uint16(n)
	case "request_bytes":
		e.RequestBytes, err = v.Uint64()
	case "response_bytes":
		e.ResponseBytes, err = v.Uint64()
	case "duration_us":
		e.DurationUs, err = v.Uint64()
	case "user_agent":
		e.UserAgent, err = str(v)
	case "gateway":
		e.Gateway, err = str(v)
	case "upstream":
		e.Upstream, err = str(v)
	case "request_id":
		e.RequestID, err = str(v)
	case "format":
		e.Format, err = str(v)
	case "topic":
		e.Topic, err = str(v)
	case "partition":
		var n int64
		n, err = v.Int64()
		if err == nil && (n < math.MinInt32 || n > math.MaxInt32) {
			err = fmt.Errorf("%d out of range", n)
		}
		e.Partition = int32(n)
	case "offset":
		e.Offset, err = v.Int64()
	}
	return err
}

// str copies a JSON string out of the parser's buffer, so the Event stays
// valid after the next Decode.
func str(v *fastjson.Value) (string, error) {
	b, err := v.StringBytes()
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		// Keeps decode(encode(e)) == e: the encoder would write U+FFFD anyway.
		return strings.ToValidUTF8(string(b), "\ufffd"), nil
	}
	return string(b), nil
}
