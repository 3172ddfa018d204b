package gateway

import (
	"bytes"
	"errors"

	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/identity"
	"github.com/agentwatch/agentwatch/pkg/internal/jsonscan"
)

// parseCombined reads the NGINX "combined" layout
//
//	$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//
// optionally followed by agentwatch's extras, in this order, each quoted or
// bare and "-" when empty: $request_time, $http_x_agent_id, $request_length.
// Quoted fields may hold nginx's \xHH escapes (and \" \\ from other
// writers); they are unescaped.
func (p *Parser) parseCombined(line []byte) error {
	r := &p.rec
	s := line
	tok := func() []byte {
		i := bytes.IndexByte(s, ' ')
		if i < 0 {
			t := s
			s = nil
			return t
		}
		t := s[:i]
		s = s[i+1:]
		return t
	}
	r.sourceIP = tok()
	if len(tok()) == 0 { // ident, always "-"
		return errors.New("missing ident field")
	}
	end := bytes.Index(s, []byte(" ["))
	if end < 0 {
		return errors.New("missing [time_local]")
	}
	if u := s[:end]; !(len(u) == 1 && u[0] == '-') {
		r.ident.ConsumerName = u
	}
	s = s[end+2:]
	end = bytes.IndexByte(s, ']')
	if end < 0 {
		return errors.New("unterminated [time_local]")
	}
	r.timeText = s[:end]
	s = s[end+1:]
	if len(s) < 2 || s[0] != ' ' {
		return errors.New("missing request")
	}
	s = s[1:]
	req, rest, ok := p.quoted(s)
	if !ok {
		return errors.New("request is not a quoted string")
	}
	s = rest
	// "METHOD target PROTOCOL"; HTTP/0.9 lines have no protocol.
	sp := bytes.IndexByte(req, ' ')
	if sp < 0 {
		return reject(ReasonBadField, "request line %.64q", req)
	}
	r.method = req[:sp]
	target := req[sp+1:]
	if sp2 := bytes.LastIndexByte(target, ' '); sp2 >= 0 {
		target = target[:sp2]
	}
	r.uri = target
	if len(s) == 0 || s[0] != ' ' {
		return errors.New("missing status")
	}
	s = s[1:]
	st := tok()
	n, err := parseUint(st)
	if err != nil || len(st) == 0 || n > 999 {
		return reject(ReasonBadField, "status %q", st)
	}
	r.status = int64(n)
	bs := tok()
	if !(len(bs) == 1 && bs[0] == '-') {
		if r.respBytes, err = parseUint(bs); err != nil {
			return reject(ReasonBadField, "body_bytes_sent %q", bs)
		}
	}
	if _, s, ok = p.quoted(s); !ok { // referer: not kept
		return errors.New("missing quoted referer")
	}
	if len(s) == 0 || s[0] != ' ' {
		return errors.New("missing user agent")
	}
	if r.userAgent, s, ok = p.quoted(s[1:]); !ok {
		return errors.New("user agent is not a quoted string")
	}
	// Optional extras.
	for i := 0; len(s) > 0; i++ {
		if s[0] != ' ' {
			return errors.New("junk after user agent")
		}
		s = s[1:]
		var v []byte
		if len(s) > 0 && s[0] == '"' {
			if v, s, ok = p.quoted(s); !ok {
				return errors.New("unterminated extra field")
			}
		} else {
			i := bytes.IndexByte(s, ' ')
			if i < 0 {
				i = len(s)
			}
			v, s = s[:i], s[i:]
		}
		if len(v) == 1 && v[0] == '-' {
			v = nil
		}
		switch i {
		case 0:
			if r.durUs, err = parseDuration(v, 1e6); err != nil {
				return reject(ReasonBadField, "request_time %q", v)
			}
		case 1:
			if len(v) > 0 && p.wantsHeader("x-agent-id") {
				r.headers = append(r.headers, identity.Field{Name: "x-agent-id", Value: v})
			}
		case 2:
			if r.reqBytes, err = parseUint(v); err != nil {
				return reject(ReasonBadField, "request_length %q", v)
			}
		default:
			// Later extras are allowed and ignored, so the layout can grow.
		}
	}
	if len(r.userAgent) == 1 && r.userAgent[0] == '-' {
		r.userAgent = nil
	}
	return nil
}

func (p *Parser) wantsHeader(h string) bool {
	for _, n := range p.resolver.HeaderNames() {
		if n == h {
			return true
		}
	}
	return false
}

// quoted reads a "..." field at the start of s, unescaping \xHH, \" and \\
// into p.nums when needed, and returns the value and what follows.
func (p *Parser) quoted(s []byte) (val, rest []byte, ok bool) {
	if len(s) == 0 || s[0] != '"' {
		return nil, s, false
	}
	s = s[1:]
	esc := false
	i := 0
	for ; i < len(s); i++ {
		if s[i] == '\\' {
			esc = true
			i++
			continue
		}
		if s[i] == '"' {
			break
		}
	}
	if i >= len(s) {
		return nil, s, false
	}
	val, rest = s[:i], s[i+1:]
	if !esc {
		return val, rest, true
	}
	start := len(p.nums)
	for j := 0; j < len(val); j++ {
		c := val[j]
		if c != '\\' || j+1 >= len(val) {
			p.nums = append(p.nums, c)
			continue
		}
		j++
		switch val[j] {
		case 'x':
			if j+2 < len(val) {
				if h, ok := jsonscan.Unhex(val[j+1]); ok {
					if l, ok := jsonscan.Unhex(val[j+2]); ok {
						p.nums = append(p.nums, h<<4|l)
						j += 2
						continue
					}
				}
			}
			p.nums = append(p.nums, '\\', 'x')
		default:
			p.nums = append(p.nums, val[j])
		}
	}
	return p.nums[start:len(p.nums):len(p.nums)], rest, true
}

// parseCanonical decodes agentwatch's own form. Identity is taken as
// resolved (validated again); the route is recomputed from the path, with
// the carried route as the logged-template fallback.
func (p *Parser) parseCanonical(line []byte) error {
	e, err := p.dec.DecodeTransient(line) // finish copies what it keeps
	return p.canonical(&e, err)
}

// canonical takes a decoded canonical event into the record.
func (p *Parser) canonical(e *event.Event, err error) error {
	switch {
	case errors.Is(err, event.ErrControlChar):
		return reject(ReasonControlChar, "%v", err)
	case errors.Is(err, event.ErrDuplicateField):
		return reject(ReasonDuplicateKey, "%v", err)
	case errors.Is(err, event.ErrSyntax):
		return reject(ReasonNotJSON, "%v", err)
	case errors.Is(err, event.ErrVersion):
		return reject(ReasonUnknownFormat, "%v", err)
	case err != nil:
		return reject(ReasonBadField, "%v", err)
	}
	r := &p.rec
	r.canonical = true
	if e.EventTimeMs <= 0 {
		return reject(ReasonNoTimestamp, "")
	}
	r.timeMs, r.hasTimeMs = e.EventTimeMs, true
	r.method = s2b(e.Method)
	r.uri = s2b(e.Path)
	r.queryList = e.QueryParams
	r.status = int64(e.Status)
	r.reqBytes, r.respBytes, r.durUs = e.RequestBytes, e.ResponseBytes, e.DurationUs
	r.sourceIP = s2b(e.SourceIP)
	r.userAgent = s2b(e.UserAgent)
	r.gateway = s2b(e.Gateway)
	r.upstream = s2b(e.Upstream)
	r.requestID = s2b(e.RequestID)
	r.route = s2b(e.Route)
	r.agentID = s2b(e.AgentID)
	r.identitySrc = s2b(e.IdentitySource)
	r.ident.CredentialID = s2b(e.CredentialID)
	return nil
}
