// Package gateway parses API-gateway access-log lines (Envoy/Istio, Kong,
// NGINX JSON and combined, AWS API Gateway, and agentwatch's canonical
// form) into canonical events, and renders events back into those formats
// for simulators and tests. Field mappings of the JSON formats are
// configurable; see docs/formats.md.
//
// The package is pure: no I/O, no globals, no logging; time is an argument.
package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/identity"
	"github.com/agentwatch/agentwatch/pkg/internal/jsonscan"
	"github.com/agentwatch/agentwatch/pkg/routes"
)

// Format names, as used in Options.Format, Event.Format and Render.
const (
	FormatEnvoy         = "envoy"
	FormatKong          = "kong"
	FormatNginxJSON     = "nginx_json"
	FormatNginxCombined = "nginx_combined"
	FormatAWS           = "aws_apigw"
	FormatCanonical     = "canonical"
	// FormatAuto detects the format of each line.
	FormatAuto = "auto"
)

// Formats returns the explicit format names, in detection order.
func Formats() []string {
	return []string{FormatCanonical, FormatKong, FormatAWS, FormatEnvoy, FormatNginxJSON, FormatNginxCombined}
}

// Reject reasons: the Reason of every *ParseError is one of these. They are
// Prometheus label values and dead-letter headers, so they never change.
const (
	ReasonTooLarge        = "too_large"
	ReasonInvalidUTF8     = "invalid_utf8"
	ReasonNotJSON         = "not_json"
	ReasonTooDeep         = "too_deep"
	ReasonUnknownFormat   = "unknown_format"
	ReasonNoTimestamp     = "no_timestamp"
	ReasonBadTimestamp    = "bad_timestamp"
	ReasonTimestampWindow = "timestamp_out_of_window"
	ReasonBadField        = "bad_field"
	ReasonInvalidAgentID  = "invalid_agent_id"
	ReasonEmpty           = "empty"
	// ReasonControlChar: a raw control character (below 0x20) inside a
	// JSON string, which RFC 8259 forbids; it must be escaped (\u0000).
	ReasonControlChar = "control_char"
	// ReasonDuplicateKey: a key agentwatch reads appears twice in one JSON
	// object. Decoders disagree on which one wins, so no winner is picked.
	ReasonDuplicateKey = "duplicate_key"
)

// Reasons returns every reject reason, so metrics can pre-create series.
func Reasons() []string {
	return []string{ReasonTooLarge, ReasonInvalidUTF8, ReasonNotJSON, ReasonTooDeep,
		ReasonUnknownFormat, ReasonNoTimestamp, ReasonBadTimestamp, ReasonTimestampWindow,
		ReasonBadField, ReasonInvalidAgentID, ReasonEmpty, ReasonControlChar, ReasonDuplicateKey}
}

// ParseError is the error of every rejected line. Reason is one of the
// Reason constants; Err says what exactly was wrong and may be nil.
type ParseError struct {
	Reason string
	Err    error
}

func (e *ParseError) Error() string {
	if e.Err == nil {
		return "reject line: " + e.Reason
	}
	return "reject line: " + e.Reason + ": " + e.Err.Error()
}

func (e *ParseError) Unwrap() error { return e.Err }

func reject(reason string, format string, args ...any) error {
	if format == "" {
		return &ParseError{Reason: reason}
	}
	return &ParseError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Options configure a Parser. The zero value parses every format with
// default mappings, default identity rules and heuristic routes.
type Options struct {
	// Format is "" or "auto" to detect per line, else one of Formats().
	Format string
	// Mappings are per-format overrides merged over DefaultMapping.
	Mappings map[string]FieldMap
	// Identity rules; nil means identity.DefaultRules().
	Identity identity.Rules
	// Routes normalises paths; nil means heuristics only.
	Routes *routes.Normalizer
	// MaxLineBytes rejects longer lines; default 1 MiB.
	MaxLineBytes int
	// MaxDepth is the JSON nesting limit; default 32.
	MaxDepth int
	// MaxAge rejects events older than now-MaxAge; default 7 days.
	MaxAge time.Duration
	// MaxFuture rejects events newer than now+MaxFuture; default 10 minutes.
	MaxFuture time.Duration
}

// Defaults for zero Options fields.
const (
	DefaultMaxLineBytes = 1 << 20
	DefaultMaxDepth     = 32
	DefaultMaxAge       = 7 * 24 * time.Hour
	DefaultMaxFuture    = 10 * time.Minute
)

func (o Options) withDefaults() Options {
	if o.Format == "" {
		o.Format = FormatAuto
	}
	if o.MaxLineBytes == 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	if o.MaxDepth == 0 {
		o.MaxDepth = DefaultMaxDepth
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxFuture == 0 {
		o.MaxFuture = DefaultMaxFuture
	}
	return o
}

// Validate reports every problem at once; each error names its field.
func (o Options) Validate() error {
	var errs []error
	if o.Format != "" && o.Format != FormatAuto && !isFormat(o.Format) {
		errs = append(errs, fmt.Errorf("format: %q is not auto or one of %v", o.Format, Formats()))
	}
	for f, m := range o.Mappings {
		switch {
		case f == FormatNginxCombined || f == FormatCanonical:
			errs = append(errs, fmt.Errorf("mappings.%s: format has a fixed layout and takes no field mapping", f))
		case !isFormat(f):
			errs = append(errs, fmt.Errorf("mappings.%s: unknown format, want one of %v", f, Formats()))
		default:
			if err := m.validate(); err != nil {
				errs = append(errs, fmt.Errorf("mappings.%s.%w", f, err))
			}
		}
	}
	if o.Identity != nil {
		if err := o.Identity.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if o.MaxLineBytes < 0 {
		errs = append(errs, fmt.Errorf("max_line_bytes: must be positive, got %d", o.MaxLineBytes))
	}
	if o.MaxDepth < 0 || o.MaxDepth > 256 {
		errs = append(errs, fmt.Errorf("max_depth: must be in 1..256, got %d", o.MaxDepth))
	}
	if o.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max_age: must be positive, got %s", o.MaxAge))
	}
	if o.MaxFuture < 0 {
		errs = append(errs, fmt.Errorf("max_future: must be positive, got %s", o.MaxFuture))
	}
	return errors.Join(errs...)
}

func isFormat(f string) bool {
	for _, g := range Formats() {
		if f == g {
			return true
		}
	}
	return false
}

// Source locates a raw line in the message log.
type Source struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Parser parses lines into events. It reuses buffers between calls, so it is
// NOT safe for concurrent use: create one per goroutine. Returned events
// never alias the line or the Parser's buffers.
type Parser struct {
	opt      Options
	maps     map[string]*compiled // JSON formats
	resolver *identity.Resolver
	dec      event.Decoder
	rec      record
	strs     []byte // backing bytes of the next event's strings
	nums     []byte // scratch for unescaped strings
	qbuf     [][]byte
	line     []byte // the line being parsed
	kvs      []jkv  // members of the line's object, then of nested objects being read
	bound    []jval // per trie node of the compiled mapping
	keyBuf   []byte // scratch for unescaped keys
	// lastFormat is the last JSON line's detected mapped format: auto
	// mode binds its mapping while scanning and checks it after.
	lastFormat string
	recordTop  bool // scanBind appends the top-level members to kvs
	// dupAt is where the key that repeated an earlier one of its object
	// starts (-1: none), set by scanBind and bind.
	dupAt   int32
	twoPass bool // tests: scan, then bind, even for a known format
}

// NewParser validates o and builds a Parser.
func NewParser(o Options) (*Parser, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("gateway options: %w", err)
	}
	o = o.withDefaults()
	res, err := identity.NewResolver(o.Identity)
	if err != nil {
		return nil, fmt.Errorf("gateway options: %w", err)
	}
	p := &Parser{opt: o, resolver: res, maps: map[string]*compiled{}}
	for _, f := range []string{FormatEnvoy, FormatKong, FormatNginxJSON, FormatAWS} {
		m := DefaultMapping(f).merge(o.Mappings[f])
		p.maps[f] = compile(m, res.HeaderNames(), len(o.Mappings[f]) > 0)
	}
	p.rec.headers = make([]identity.Field, 0, len(res.HeaderNames()))
	return p, nil
}

// Parse parses one line (a trailing newline is ignored) read from src at
// now. Every rejection is a *ParseError.
func (p *Parser) Parse(line []byte, src Source, now time.Time) (event.Event, error) {
	line = trimSpace(line)
	if len(line) == 0 {
		return event.Event{}, reject(ReasonEmpty, "")
	}
	if len(line) > p.opt.MaxLineBytes {
		return event.Event{}, reject(ReasonTooLarge, "%d bytes, limit %d", len(line), p.opt.MaxLineBytes)
	}
	if !validUTF8(line) {
		return event.Event{}, reject(ReasonInvalidUTF8, "")
	}
	p.rec.reset()
	p.nums = p.nums[:0]
	p.dupAt = -1
	format := p.opt.Format
	var err error
	if line[0] != '{' && line[0] != '[' {
		switch format {
		case FormatAuto, FormatNginxCombined:
			err = p.parseCombined(line)
			var pe *ParseError
			if err != nil && !errors.As(err, &pe) {
				// Not even the shape of a combined line.
				if format == FormatAuto {
					return event.Event{}, reject(ReasonUnknownFormat, "not JSON and not nginx combined: %v", err)
				}
				return event.Event{}, reject(ReasonBadField, "nginx combined: %v", err)
			}
			format = FormatNginxCombined
		default:
			return event.Event{}, reject(ReasonNotJSON, "%s line must be a JSON object", format)
		}
	} else {
		if format == FormatNginxCombined {
			return event.Event{}, reject(ReasonBadField, "nginx combined line starts with '{'")
		}
		if err := checkDepth(line, p.opt.MaxDepth); err != nil {
			return event.Event{}, err
		}
		if format == FormatCanonical {
			err = p.parseCanonical(line)
		} else if e, derr := p.tryCanonical(line); derr == nil {
			// Detection would say canonical too: the object has "v" and
			// "event_time_ms" (non-zero, so present).
			format = FormatCanonical
			err = p.canonical(&e, nil)
		} else {
			if line[0] != '{' {
				return event.Event{}, reject(ReasonNotJSON, "top level is not an object")
			}
			p.line = line
			p.kvs = p.kvs[:0]
			guess := format // the format whose mapping is bound while scanning
			if guess == FormatAuto {
				guess = p.lastFormat // usually right: a topic carries one format
			}
			if c := p.maps[guess]; c != nil && !p.twoPass {
				// Bind the mapping while scanning; in auto mode, keep the
				// top-level members too, to detect the format by.
				p.resetBound(c)
				p.recordTop = format == FormatAuto
				end, ok := p.scanBind(c, 0, line, 0, 1)
				p.recordTop = false
				if !ok || skipWS(line, end) != len(line) {
					return event.Event{}, p.broken(line, end)
				}
				if format == FormatAuto {
					if format = p.detect(); format == "" {
						return event.Event{}, reject(ReasonUnknownFormat, "JSON object with none of the distinctive keys of %v", Formats())
					}
				}
				if format == guess {
					if err := p.fields(c); err != nil {
						return event.Event{}, err
					}
					return p.finish(format, src, now)
				}
			} else {
				var ok bool
				var end int
				if p.kvs, end, ok = scanObject(line, 0, 1, p.kvs); !ok || skipWS(line, end) != len(line) {
					return event.Event{}, p.broken(line, end)
				}
				if format == FormatAuto {
					format = p.detect()
					if format == "" {
						return event.Event{}, reject(ReasonUnknownFormat, "JSON object with none of the distinctive keys of %v", Formats())
					}
				}
			}
			if format == FormatCanonical {
				err = p.parseCanonical(line)
			} else {
				p.lastFormat = format
				err = p.extract(p.maps[format])
			}
		}
	}
	if err != nil {
		return event.Event{}, err
	}
	return p.finish(format, src, now)
}

// broken is the rejection of a JSON line the scanner refused at byte end:
// a raw control character in a string, or else broken JSON. The slow
// diagnosis runs on refused lines only. (A repeated key is judged later,
// by fields, on a line that is JSON: only the keys of the line's own
// format count.)
func (p *Parser) broken(line []byte, end int) error {
	if i := jsonscan.ControlChar(line); i >= 0 {
		return reject(ReasonControlChar, "raw control character 0x%02x inside a string at byte %d; escape it as \\u%04x (RFC 8259)", line[i], i, line[i])
	}
	return reject(ReasonNotJSON, "broken JSON at byte %d", end)
}

// duplicate is the rejection of a line whose key at p.dupAt repeats one of
// its object: decoders disagree on which one wins (first or last), and an
// attacker can use that to show the gateway one value and agentwatch
// another.
func (p *Parser) duplicate() error {
	k := p.line[p.dupAt:]
	if q := jsonscan.ScanString(k, 0); q >= 0 {
		k = k[:q]
	}
	return reject(ReasonDuplicateKey, "key %.64q appears twice in one object (byte %d)", k, p.dupAt)
}

var errNotCanonical = errors.New("not canonical")

// tryCanonical decodes, in auto mode, a line that starts the way
// event.AppendJSON writes, so canonical lines are scanned once. Any failure
// (or a zero event_time_ms, which may mean the key is absent) sends the
// line the general way: scan, detect, extract.
func (p *Parser) tryCanonical(line []byte) (event.Event, error) {
	if p.opt.Format != FormatAuto || !bytes.HasPrefix(line, []byte(`{"v":`)) {
		return event.Event{}, errNotCanonical
	}
	e, err := p.dec.DecodeTransient(line) // finish copies what it keeps
	if err != nil || e.EventTimeMs == 0 {
		return event.Event{}, errNotCanonical
	}
	return e, nil
}

// detect picks the format of a JSON object by a few distinctive top-level
// keys (see docs/formats.md). Formats whose mapping was overridden are also
// recognised by their mapped method and time keys, checked last.
func (p *Parser) detect() string {
	// One pass over the keys, a bit per distinctive key.
	const (
		kV = 1 << iota
		kEventTime
		kStartedAt
		kRequest
		kAWS
		kEnvoy
		kNginx
	)
	seen := 0
	for i := range p.kvs {
		switch string(p.key(&p.kvs[i])) {
		case "v":
			seen |= kV
		case "event_time_ms":
			seen |= kEventTime
		case "started_at":
			seen |= kStartedAt
		case "request":
			seen |= kRequest
		case "httpMethod", "requestTimeEpoch", "resourcePath":
			seen |= kAWS
		case "response_code", "upstream_cluster", "start_time":
			seen |= kEnvoy
		case "request_method", "time_iso8601", "msec", "remote_addr":
			seen |= kNginx
		}
	}
	switch {
	case seen&(kV|kEventTime) == kV|kEventTime:
		return FormatCanonical
	case seen&(kStartedAt|kRequest) == kStartedAt|kRequest:
		return FormatKong
	case seen&kAWS != 0:
		return FormatAWS
	case seen&kEnvoy != 0:
		return FormatEnvoy
	case seen&kNginx != 0:
		return FormatNginxJSON
	}
	for _, f := range []string{FormatKong, FormatAWS, FormatEnvoy, FormatNginxJSON} {
		c := p.maps[f]
		if c.overridden && p.hasTop(c, iMethod) && p.hasTop(c, iTime) {
			return f
		}
	}
	return ""
}

// checkDepth rejects JSON nested deeper than max. The count of brackets
// bounds the depth, so the exact scan runs only for lines that might fail.
func checkDepth(line []byte, max int) error {
	if bytes.Count(line, []byte{'{'})+bytes.Count(line, []byte{'['}) <= max {
		return nil
	}
	depth, inStr := 0, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		if inStr {
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '{', '[':
			depth++
			if depth > max {
				return reject(ReasonTooDeep, "JSON nesting deeper than %d", max)
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}
