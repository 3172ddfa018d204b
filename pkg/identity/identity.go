// Package identity decides which agent made an API call, from the identity
// material a gateway logged: a request header, the gateway's authenticated
// consumer, claims of a bearer JWT, or an mTLS client subject. Rules are
// tried in order; the first that yields a value wins.
//
// JWTs are decoded, never verified: the gateway verified them (or did not,
// and then the claim is only as trustworthy as the header). Decoding is
// bounded and allocation-free after warm-up.
//
// The package is pure: no I/O, no globals, no logging.
package identity

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/valyala/fastjson"

	"github.com/agentwatch/agentwatch/pkg/internal/jsonscan"
)

// Rule kinds.
const (
	KindHeader   = "header"
	KindConsumer = "consumer"
	KindJWT      = "jwt"
	KindMTLS     = "mtls"
)

// MaxAgentIDLen is the longest accepted agent id, in bytes.
const MaxAgentIDLen = 128

// maxTokenLen bounds the bearer token we are willing to decode, so a hostile
// header cannot make us base64-decode megabytes.
const maxTokenLen = 8 << 10

// Rule is one way to find the agent id.
//
//   - Kind "header": the value of request header Header (case-insensitive).
//   - Kind "consumer": the gateway's authenticated consumer: the consumer
//     name if logged, else the consumer id (Kong consumer.username, then
//     consumer.id; AWS principalId, then identity.apiKeyId; NGINX $remote_user).
//   - Kind "jwt": claim Claim of the bearer token in header Header
//     (default Authorization), or the same claim already extracted and
//     verified by the gateway (AWS authorizer claims).
//   - Kind "mtls": the CN of the client certificate subject DN.
type Rule struct {
	Kind   string
	Header string
	Claim  string
}

// Rules are tried in order; nil means DefaultRules.
type Rules []Rule

// DefaultRules returns header X-Agent-Id, consumer, jwt sub, jwt client_id,
// mtls. A fresh slice is returned each time so callers may modify it.
func DefaultRules() Rules {
	return Rules{
		{Kind: KindHeader, Header: "X-Agent-Id"},
		{Kind: KindConsumer},
		{Kind: KindJWT, Claim: "sub"},
		{Kind: KindJWT, Claim: "client_id"},
		{Kind: KindMTLS},
	}
}

// Validate reports every bad rule at once, each prefixed with its index.
func (rs Rules) Validate() error {
	var errs []error
	for i, r := range rs {
		switch r.Kind {
		case KindHeader:
			if !validHeaderName(r.Header) {
				errs = append(errs, fmt.Errorf("identity[%d].header: %q is not a valid header name", i, r.Header))
			}
		case KindJWT:
			if r.Claim == "" {
				errs = append(errs, fmt.Errorf("identity[%d].claim: required for kind jwt, e.g. sub or client_id", i))
			}
			if r.Header != "" && !validHeaderName(r.Header) {
				errs = append(errs, fmt.Errorf("identity[%d].header: %q is not a valid header name", i, r.Header))
			}
		case KindConsumer, KindMTLS:
		default:
			errs = append(errs, fmt.Errorf("identity[%d].kind: %q is not one of header, consumer, jwt, mtls", i, r.Kind))
		}
	}
	return errors.Join(errs...)
}

func validHeaderName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ErrInvalidAgentID means an identity rule matched but its value is not an
// acceptable agent id. The record must be rejected, never truncated or
// attributed to anyone else: a hostile client controls that value.
var ErrInvalidAgentID = errors.New("invalid agent id")

// ValidAgentID reports whether b is an acceptable agent id: 1 to 128 bytes
// of [A-Za-z0-9._:@/-]. The charset keeps ids safe to show in Slack, URLs,
// log lines and ClickHouse queries without escaping.
func ValidAgentID(b []byte) bool {
	if len(b) == 0 || len(b) > MaxAgentIDLen {
		return false
	}
	for _, c := range b {
		if !agentIDChar[c] {
			return false
		}
	}
	return true
}

var agentIDChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "._:@/-" {
		t[c] = true
	}
	return t
}()

// Field is a named value: a request header (Name lower-case) or a claim.
type Field struct {
	Name  string
	Value []byte
}

// Input is the identity material of one logged request. Byte slices may
// alias the caller's buffers; Resolve does not keep them.
type Input struct {
	// Headers holds the request headers named by HeaderNames, lower-case.
	Headers []Field
	// Claims holds JWT claims the gateway already extracted (and
	// verified), e.g. AWS $context.authorizer.claims.*.
	Claims       []Field
	ConsumerName []byte
	ConsumerID   []byte
	// CredentialID is the credential the gateway authenticated (Kong
	// authenticated_entity.id, AWS identity.apiKeyId).
	CredentialID []byte
	// MTLSSubject is the client certificate subject DN, RFC 2253
	// ("CN=a,O=b") or OpenSSL one-line ("/O=b/CN=a").
	MTLSSubject []byte
}

// Result is the resolved identity. Its byte slices alias the Input or the
// Resolver's buffers and are valid only until the next Resolve: copy them.
type Result struct {
	// AgentID is nil when no rule matched (the event is unattributed).
	AgentID []byte
	// Source is the Kind of the rule that matched, "" when none did.
	Source string
	// CredentialID is the first of: Input.CredentialID, Input.ConsumerID,
	// the JWT client_id claim, the JWT jti claim. Not validated like agent
	// ids (it is informative and JSON-escaped downstream), only bounded.
	CredentialID []byte
}

// Resolver applies Rules. It reuses buffers, so it is not safe for
// concurrent use: one per goroutine.
type Resolver struct {
	rules   Rules
	headers []string // lower-case header names the rules need

	jwtParser fastjson.Parser
	jwtBuf    []byte
	jwtDone   bool   // the token of header jwtFor is decoded (into jwt, nil if none)
	jwtFor    string // header whose token jwt holds
	jwt       *fastjson.Value
	claimBuf  []byte
	claimKeys [][]byte // repeatsKey's names, into jwtParser's memory
	idBuf     []byte
}

// NewResolver validates rules (nil = DefaultRules) and returns a Resolver.
func NewResolver(rules Rules) (*Resolver, error) {
	if rules == nil {
		rules = DefaultRules()
	}
	if err := rules.Validate(); err != nil {
		return nil, err
	}
	r := &Resolver{rules: append(Rules(nil), rules...)}
	for i := range r.rules {
		r.rules[i].Header = strings.ToLower(r.rules[i].Header)
		if r.rules[i].Kind == KindJWT {
			r.rules[i].Header = jwtHeader(r.rules[i])
		}
	}
	add := func(h string) {
		h = strings.ToLower(h)
		for _, have := range r.headers {
			if have == h {
				return
			}
		}
		r.headers = append(r.headers, h)
	}
	for _, rule := range r.rules {
		switch rule.Kind {
		case KindHeader:
			add(rule.Header)
		case KindJWT:
			add(jwtHeader(rule))
		}
	}
	// credential_id falls back to JWT claims of the default header.
	add("authorization")
	return r, nil
}

func jwtHeader(r Rule) string {
	if r.Header == "" {
		return "authorization"
	}
	return strings.ToLower(r.Header)
}

// HeaderNames returns the lower-case request header names the rules read;
// parsers extract just these. The slice must not be modified.
func (r *Resolver) HeaderNames() []string { return r.headers }

// Resolve applies the rules to in. A matched but unacceptable agent id is an
// error wrapping ErrInvalidAgentID; no match is not an error.
func (r *Resolver) Resolve(in *Input) (Result, error) {
	r.jwtDone = false
	var res Result
	for _, rule := range r.rules {
		var v []byte
		switch rule.Kind {
		case KindHeader:
			v = header(in, rule.Header)
		case KindConsumer:
			v = in.ConsumerName
			if len(v) == 0 {
				v = in.ConsumerID
			}
		case KindJWT:
			v = r.claim(in, rule.Header, rule.Claim)
		case KindMTLS:
			v = CommonName(in.MTLSSubject)
		}
		if len(v) == 0 {
			continue
		}
		if !ValidAgentID(v) {
			return Result{}, fmt.Errorf("%s rule: %w", rule.Kind, ErrInvalidAgentID)
		}
		if rule.Kind == KindJWT {
			// A later claim lookup may re-parse into the buffer v points to.
			r.idBuf = append(r.idBuf[:0], v...)
			v = r.idBuf
		}
		res.AgentID, res.Source = v, rule.Kind
		break
	}
	res.CredentialID = in.CredentialID
	if len(res.CredentialID) == 0 {
		res.CredentialID = in.ConsumerID
	}
	if len(res.CredentialID) == 0 {
		res.CredentialID = r.claim(in, "authorization", "client_id")
	}
	if len(res.CredentialID) == 0 {
		res.CredentialID = r.claim(in, "authorization", "jti")
	}
	if len(res.CredentialID) > MaxAgentIDLen*2 || !utf8.Valid(res.CredentialID) {
		res.CredentialID = nil
	}
	return res, nil
}

func header(in *Input, name string) []byte {
	for i := range in.Headers {
		if in.Headers[i].Name == name {
			return in.Headers[i].Value
		}
	}
	return nil
}

// claim returns claim name from the gateway-extracted claims, else from the
// bearer token in header h. Consecutive lookups in the same header decode
// the token once.
func (r *Resolver) claim(in *Input, h, name string) []byte {
	for i := range in.Claims {
		if in.Claims[i].Name == name && len(in.Claims[i].Value) > 0 {
			return in.Claims[i].Value
		}
	}
	if !r.jwtDone || r.jwtFor != h {
		r.jwtDone, r.jwtFor, r.jwt = true, h, nil
		if payload, ok := r.decodeJWT(header(in, h)); ok && jsonscan.ControlChar(payload) < 0 {
			if v, err := r.jwtParser.ParseBytes(payload); err == nil && v.Type() == fastjson.TypeObject && !r.repeatsKey(v) {
				r.jwt = v
			}
		}
	}
	if r.jwt == nil {
		return nil
	}
	c := r.jwt.Get(name)
	if c == nil {
		return nil
	}
	switch c.Type() {
	case fastjson.TypeString:
		b, _ := c.StringBytes()
		return b
	case fastjson.TypeNumber:
		r.claimBuf = c.MarshalTo(r.claimBuf[:0])
		return r.claimBuf
	}
	return nil
}

// repeatsKey reports whether a claim name appears twice in the JWT
// payload v. Such a token is ignored like a malformed one: fastjson's Get
// would take the first, the gateway's JSON library may take the last, and
// the agent would be one thing there and another here. The names are
// sorted, so a token of a thousand claims costs n log n, not n².
func (r *Resolver) repeatsKey(v *fastjson.Value) bool {
	o, _ := v.Object()
	keys := r.claimKeys[:0]
	o.Visit(func(k []byte, _ *fastjson.Value) { keys = append(keys, k) })
	r.claimKeys = keys
	slices.SortFunc(keys, bytes.Compare)
	for i := 1; i < len(keys); i++ {
		if bytes.Equal(keys[i-1], keys[i]) {
			return true
		}
	}
	return false
}

// decodeJWT returns the decoded payload of a "Bearer <jwt>" value, or false.
func (r *Resolver) decodeJWT(v []byte) ([]byte, bool) {
	if len(v) < 7 || len(v) > maxTokenLen || !bytes.EqualFold(v[:7], []byte("bearer ")) {
		return nil, false
	}
	tok := bytes.TrimSpace(v[7:])
	first := bytes.IndexByte(tok, '.')
	if first < 0 {
		return nil, false
	}
	rest := tok[first+1:]
	second := bytes.IndexByte(rest, '.')
	if second < 0 {
		return nil, false
	}
	payload := rest[:second]
	// Some encoders keep '=' padding; RawURLEncoding rejects it.
	payload = bytes.TrimRight(payload, "=")
	n := base64.RawURLEncoding.DecodedLen(len(payload))
	if cap(r.jwtBuf) < n {
		r.jwtBuf = make([]byte, n)
	}
	m, err := base64.RawURLEncoding.Decode(r.jwtBuf[:n], payload)
	if err != nil {
		return nil, false
	}
	return r.jwtBuf[:m], true
}

// CommonName returns the CN attribute of a subject DN in RFC 2253 form
// ("CN=agent-7,OU=bots,O=Acme", most specific first, as nginx
// $ssl_client_s_dn and Envoy %DOWNSTREAM_PEER_SUBJECT% print it) or OpenSSL
// one-line form ("/O=Acme/CN=agent-7"). If several CNs are present the
// first is returned. Escaped separators ("\,") are not unescaped: such a CN
// fails agent id validation, which is the safe outcome.
func CommonName(dn []byte) []byte {
	if len(dn) == 0 {
		return nil
	}
	sep := byte(',')
	if dn[0] == '/' {
		sep = '/'
		dn = dn[1:]
	}
	for len(dn) > 0 {
		var part []byte
		i := indexUnescaped(dn, sep)
		if i < 0 {
			part, dn = dn, nil
		} else {
			part, dn = dn[:i], dn[i+1:]
		}
		part = bytes.TrimSpace(part)
		if len(part) > 3 && (part[0] == 'C' || part[0] == 'c') && (part[1] == 'N' || part[1] == 'n') && part[2] == '=' {
			return part[3:]
		}
	}
	return nil
}

func indexUnescaped(b []byte, sep byte) int {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case sep:
			return i
		}
	}
	return -1
}
