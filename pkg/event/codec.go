package event

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/agentwatch/agentwatch/pkg/internal/jsonscan"
)

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

// ErrControlChar means a string holds a raw control character (below
// 0x20), which RFC 8259 forbids; errors wrapping it wrap ErrSyntax too.
var ErrControlChar = errors.New("raw control character in a string")

// ErrDuplicateField means a field the decoder reads appears twice. No
// winner is picked: decoders disagree on first or last, and that
// disagreement is a way to show two readers two different events.
var ErrDuplicateField = errors.New("field appears twice")

// Decoder decodes the canonical wire form written by AppendJSON with the
// hand-written JSON scanner in pkg/internal/jsonscan, shared with
// pkg/gateway (whose fuzz test checks it against fastjson). It reuses
// its scan buffers between calls, so it is not safe for concurrent use:
// give each goroutine its own. The zero value is ready to use. Returned
// Events never alias data or the Decoder's buffers: all their strings
// share one fresh backing string.
type Decoder struct {
	kvs   []jsonscan.KV
	buf   []byte // backing bytes of the next event's strings
	tmp   []byte // jsonscan.Unescape scratch
	qs    []strSpan
	qstrs []string // DecodeTransient's QueryParams
	strs  [numStrFields]strSpan
	// seen has a bit per field read so far in this event (see once).
	seen uint64
}

type strSpan struct{ start, end int32 }

// String fields of Event, in the order of Event.
const (
	sEventID = iota
	sAgentID
	sIdentitySource
	sCredentialID
	sSourceIP
	sMethod
	sRoute
	sPath
	sUserAgent
	sGateway
	sUpstream
	sRequestID
	sFormat
	sTopic
	numStrFields
)

// Bits of Decoder.seen past the string fields.
const (
	bV = numStrFields + iota
	bEventTime
	bIngestTime
	bUnattributed
	bQuery
	bStatus
	bRequestBytes
	bResponseBytes
	bDuration
	bPartition
	bOffset
)

// once records that the field of bit was read, or says it was already.
func (d *Decoder) once(bit int) error {
	m := uint64(1) << bit
	if d.seen&m != 0 {
		return ErrDuplicateField
	}
	d.seen |= m
	return nil
}

var errWrongType = errors.New("wrong type")

// Decode parses one encoded event. Unknown fields are ignored (a newer
// writer of the same version may add optional fields); a missing or
// unknown "v" is an error wrapping ErrVersion; bad JSON wraps ErrSyntax
// (and ErrControlChar for a raw control character in a string); a field of
// the wrong type or out of range, or read twice (ErrDuplicateField), is an
// error naming the field.
func (d *Decoder) Decode(data []byte) (Event, error) {
	return d.decode(data, false)
}

// DecodeTransient is Decode for a caller that copies whatever it keeps:
// the strings and QueryParams of the returned Event alias the Decoder's
// buffers and are valid only until the next call. It does not allocate.
func (d *Decoder) DecodeTransient(data []byte) (Event, error) {
	return d.decode(data, true)
}

func (d *Decoder) decode(data []byte, transient bool) (Event, error) {
	var e Event
	i := jsonscan.SkipWS(data, 0)
	if i >= len(data) || data[i] != '{' {
		return e, fmt.Errorf("decode canonical event: %w: top level is not an object", ErrSyntax)
	}
	kvs, end, ok := jsonscan.ScanObject(data, i, 1, d.kvs[:0])
	d.kvs = kvs
	if !ok || jsonscan.SkipWS(data, end) != len(data) {
		if c := jsonscan.ControlChar(data); c >= 0 {
			return e, fmt.Errorf("decode canonical event: %w: %w 0x%02x at byte %d", ErrSyntax, ErrControlChar, data[c], c)
		}
		return e, fmt.Errorf("decode canonical event: %w: broken JSON at byte %d", ErrSyntax, end)
	}
	var ver *jsonscan.Val
	for k := range kvs {
		if string(d.key(data, &kvs[k])) == "v" {
			ver = &kvs[k].V
			break
		}
	}
	if ver == nil {
		return e, fmt.Errorf("decode canonical event: no \"v\" field: %w", ErrVersion)
	}
	if n, err := intOf(data, *ver); err != nil || n != Version {
		return e, fmt.Errorf("decode canonical event: v=%s: %w", data[ver.Start:ver.End], ErrVersion)
	}
	d.buf = d.buf[:0]
	d.strs = [numStrFields]strSpan{}
	d.seen = 0
	d.qs = d.qs[:0]
	for k := range kvs {
		if err := d.field(&e, data, &kvs[k]); err != nil {
			return Event{}, fmt.Errorf("decode canonical event: field %q: %w", d.key(data, &kvs[k]), err)
		}
	}
	var all string
	if transient {
		all = unsafe.String(unsafe.SliceData(d.buf), len(d.buf)) // d.buf is not written until the next call
	} else {
		all = string(d.buf)
	}
	sub := func(f int) string { return all[d.strs[f].start:d.strs[f].end] }
	e.EventID, e.AgentID, e.IdentitySource = sub(sEventID), sub(sAgentID), sub(sIdentitySource)
	e.CredentialID, e.SourceIP, e.Method = sub(sCredentialID), sub(sSourceIP), sub(sMethod)
	e.Route, e.Path, e.UserAgent = sub(sRoute), sub(sPath), sub(sUserAgent)
	e.Gateway, e.Upstream, e.RequestID = sub(sGateway), sub(sUpstream), sub(sRequestID)
	e.Format, e.Topic = sub(sFormat), sub(sTopic)
	if len(d.qs) > 0 {
		if transient {
			e.QueryParams = d.qstrs[:0]
			for _, q := range d.qs {
				e.QueryParams = append(e.QueryParams, all[q.start:q.end])
			}
			d.qstrs = e.QueryParams
		} else {
			e.QueryParams = make([]string, len(d.qs))
			for k, q := range d.qs {
				e.QueryParams[k] = all[q.start:q.end]
			}
		}
	}
	return e, nil
}

// key returns the (unescaped) key of kv, valid until the next call.
func (d *Decoder) key(data []byte, kv *jsonscan.KV) []byte {
	k := data[kv.KS:kv.KE]
	if kv.KEsc {
		d.tmp = jsonscan.Unescape(d.tmp[:0], k)
		k = d.tmp
	}
	return k
}

func (d *Decoder) field(e *Event, data []byte, kv *jsonscan.KV) error {
	v := kv.V
	var err error
	str := func(f int) {
		if err = d.once(f); err == nil {
			d.strs[f], err = d.str(data, v)
		}
	}
	// One case per key, alike in shape on purpose: a switch on the key is
	// the decoder's fastest dispatch, and each case sets a different field.
	switch string(d.key(data, kv)) {
	case "v":
		err = d.once(bV) // read by decode already
	case "event_id":
		str(sEventID)
	case "event_time_ms":
		if err = d.once(bEventTime); err == nil {
			e.EventTimeMs, err = intOf(data, v)
		}
	case "ingest_time_ms":
		if err = d.once(bIngestTime); err == nil {
			e.IngestTimeMs, err = intOf(data, v)
		}
	case "agent_id":
		str(sAgentID)
	case "identity_source":
		str(sIdentitySource)
	case "unattributed":
		if err := d.once(bUnattributed); err != nil {
			return err
		}
		switch v.Kind {
		case jsonscan.True:
			e.Unattributed = true
		case jsonscan.False:
			e.Unattributed = false
		default:
			err = errWrongType
		}
	case "credential_id":
		str(sCredentialID)
	case "source_ip":
		str(sSourceIP)
	case "method":
		str(sMethod)
	case "route":
		str(sRoute)
	case "path":
		str(sPath)
	case "query_params":
		if err := d.once(bQuery); err != nil {
			return err
		}
		d.qs = d.qs[:0]
		if v.Kind != jsonscan.Array {
			return errWrongType
		}
		i := jsonscan.SkipWS(data, int(v.Start)+1)
		for data[i] != ']' {
			end, kind, _ := jsonscan.ScanValue(data, i, 0) // validated already
			q, err := d.str(data, jsonscan.Val{Start: int32(i), End: int32(end), Kind: kind})
			if err != nil {
				return err
			}
			d.qs = append(d.qs, q)
			i = jsonscan.SkipWS(data, end)
			if data[i] == ',' {
				i = jsonscan.SkipWS(data, i+1)
			}
		}
	case "status":
		if err := d.once(bStatus); err != nil {
			return err
		}
		var n uint64
		n, err = uintOf(data, v)
		if err == nil && n > math.MaxUint16 {
			err = fmt.Errorf("%d out of range", n)
		}
		e.Status = uint16(n)
	case "request_bytes":
		if err = d.once(bRequestBytes); err == nil {
			e.RequestBytes, err = uintOf(data, v)
		}
	case "response_bytes":
		if err = d.once(bResponseBytes); err == nil {
			e.ResponseBytes, err = uintOf(data, v)
		}
	case "duration_us":
		if err = d.once(bDuration); err == nil {
			e.DurationUs, err = uintOf(data, v)
		}
	case "user_agent":
		str(sUserAgent)
	case "gateway":
		str(sGateway)
	case "upstream":
		str(sUpstream)
	case "request_id":
		str(sRequestID)
	case "format":
		str(sFormat)
	case "topic":
		str(sTopic)
	case "partition":
		if err := d.once(bPartition); err != nil {
			return err
		}
		var n int64
		n, err = intOf(data, v)
		if err == nil && (n < math.MinInt32 || n > math.MaxInt32) {
			err = fmt.Errorf("%d out of range", n)
		}
		e.Partition = int32(n)
	case "offset":
		if err = d.once(bOffset); err == nil {
			e.Offset, err = intOf(data, v)
		}
	}
	return err
}

// str appends a JSON string to d.buf, unescaped, invalid UTF-8 replaced by
// U+FFFD (the encoder would write that anyway, so decode(encode(e)) == e).
func (d *Decoder) str(data []byte, v jsonscan.Val) (strSpan, error) {
	if v.Kind != jsonscan.String {
		return strSpan{}, errWrongType
	}
	b := data[v.Start+1 : v.End-1]
	if bytes.IndexByte(b, '\\') >= 0 {
		d.tmp = jsonscan.Unescape(d.tmp[:0], b)
		b = d.tmp
	}
	start := len(d.buf)
	if utf8.Valid(b) {
		d.buf = append(d.buf, b...)
	} else {
		d.buf = append(d.buf, bytes.ToValidUTF8(b, []byte("\ufffd"))...)
	}
	return strSpan{int32(start), int32(len(d.buf))}, nil
}

// intOf reads a JSON number as an int64 the way fastjson's Int64 did: an
// optional '-' and decimal digits only.
func intOf(data []byte, v jsonscan.Val) (int64, error) {
	b := data[v.Start:v.End]
	if v.Kind != jsonscan.Number {
		return 0, errWrongType
	}
	if !digitsOnly(b, true) {
		return 0, fmt.Errorf("%q is not an integer", b)
	}
	if len(b) <= 18 { // no overflow: |n| < 1e18 < 2^63
		neg := b[0] == '-'
		if neg {
			b = b[1:]
		}
		var n int64
		for _, c := range b {
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		return n, nil
	}
	return strconv.ParseInt(string(b), 10, 64)
}

// uintOf reads a JSON number as a uint64: decimal digits only.
func uintOf(data []byte, v jsonscan.Val) (uint64, error) {
	b := data[v.Start:v.End]
	if v.Kind != jsonscan.Number {
		return 0, errWrongType
	}
	if !digitsOnly(b, false) {
		return 0, fmt.Errorf("%q is not a non-negative integer", b)
	}
	if len(b) <= 19 { // no overflow: 19 digits < 1e19 < 2^64
		var n uint64
		for _, c := range b {
			n = n*10 + uint64(c-'0')
		}
		return n, nil
	}
	return strconv.ParseUint(string(b), 10, 64)
}

func digitsOnly(b []byte, minus bool) bool {
	if minus && len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
