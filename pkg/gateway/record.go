package gateway

import (
	"bytes"
	"errors"
	"math"
	"net/netip"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/identity"
	"github.com/agentwatch/agentwatch/pkg/routes"
)

// Bounds on what one event may carry, whatever a client sends.
const (
	// MaxPathBytes is the most of a request path an event keeps: a longer
	// path is cut to it (at a rune boundary) and its call still counts,
	// under the route "/{too_long}" (any path over routes.MaxPathLen gets
	// it). Refusing such lines would let a client hide calls behind long
	// paths; the line size limit bounds them anyway.
	MaxPathBytes = 8 << 10
	// MaxQueryParams is the number of query parameter names kept.
	MaxQueryParams = 32
	// MaxQueryNameBytes truncates longer parameter names.
	MaxQueryNameBytes = 64
	// MaxUserAgentBytes truncates longer user agents.
	MaxUserAgentBytes = 512
	// MaxFieldBytes truncates other informative strings (request id,
	// upstream, gateway, credential id).
	MaxFieldBytes  = 256
	maxMethodBytes = 16
)

// record is what a format parser extracts from one line. Byte slices alias
// the line or p.nums and are valid until the next Parse.
type record struct {
	timeText  []byte
	timeMs    int64 // set instead of timeText when hasTimeMs
	hasTimeMs bool
	method    []byte
	uri       []byte
	queryObj  jval     // kind jObject when the mapping's query object is present
	queryList []string // canonical input's names
	status    int64
	reqBytes  uint64
	respBytes uint64
	durUs     uint64
	sourceIP  []byte
	userAgent []byte
	gateway   []byte
	upstream  []byte
	requestID []byte
	route     []byte
	ident     identity.Input
	headers   []identity.Field
	claims    []identity.Field
	// canonical carries a pre-resolved identity (canonical format).
	canonical    bool
	agentID      []byte
	identitySrc  []byte
	unattributed bool
}

func (r *record) reset() {
	h, c := r.headers[:0], r.claims[:0]
	clear(r.headers[:cap(r.headers)]) // drop references into the last line
	clear(r.claims[:cap(r.claims)])
	*r = record{headers: h, claims: c}
}

// b2s views b as a string without copying; only for immediate use.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// s2b views s as bytes without copying; the result must never be written.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func validUTF8(b []byte) bool { return utf8.Valid(b) }

var errField = errors.New("bad field")

// key returns the key of kv, unescaped if it has escapes (into p.keyBuf,
// valid until the next call).
func (p *Parser) key(kv *jkv) []byte {
	k := p.line[kv.KS:kv.KE]
	if kv.KEsc {
		p.keyBuf = unescape(p.keyBuf[:0], k)
		k = p.keyBuf
	}
	return k
}

// bind matches the members kvs of the object bound to trie node n against
// n's kids. A kid bound twice is a duplicate key: it is noted in p.dupAt
// (the first one) and fields refuses the line.
func (p *Parser) bind(c *compiled, n int32, kvs []jkv) {
	for i := range kvs {
		kid := c.child(n, p.key(&kvs[i]))
		if kid < 0 {
			continue
		}
		if p.bound[kid].Kind != jNone {
			if p.dupAt < 0 {
				p.dupAt = kvs[i].KS
			}
			continue
		}
		p.bound[kid] = kvs[i].V
		if len(c.nodes[kid].kids) > 0 {
			p.descend(c, kid)
		}
	}
}

// descend binds the kids of node n inside the value bound to n: members
// of an object, or elements of an array for decimal keys.
func (p *Parser) descend(c *compiled, n int32) {
	nd := &c.nodes[n]
	if len(nd.kids) == 0 {
		return
	}
	v := p.bound[n]
	switch v.Kind {
	case jObject:
		start := len(p.kvs)
		p.kvs, _, _ = scanObject(p.line, int(v.Start), 0, p.kvs) // validated already
		p.bind(c, n, p.kvs[start:])
		p.kvs = p.kvs[:start]
	case jArray:
		for _, kid := range nd.kids {
			if idx := c.nodes[kid].index; idx >= 0 && p.bound[kid].Kind == jNone {
				if e, ok := arrayElem(p.line, v, idx); ok {
					p.bound[kid] = e
					p.descend(c, kid)
				}
			}
		}
	}
}

// str returns the first present, non-empty, non-"-" alternative as text:
// strings unescaped, numbers in their JSON spelling.
func (p *Parser) str(c *compiled, ids []int) []byte {
	for _, id := range ids {
		if b := p.text(p.bound[c.pathNode[id]]); len(b) > 0 {
			return b
		}
	}
	return nil
}

func (p *Parser) text(v jval) []byte {
	switch v.Kind {
	case jString:
		b := p.line[v.Start+1 : v.End-1]
		if !v.Plain && bytes.IndexByte(b, '\\') >= 0 {
			start := len(p.nums)
			p.nums = unescape(p.nums, b)
			b = p.nums[start:len(p.nums):len(p.nums)]
		}
		if len(b) == 1 && b[0] == '-' {
			return nil
		}
		return b
	case jNumber:
		return p.line[v.Start:v.End]
	case jArray:
		// Repeated headers (Kong logs them as arrays): the first counts.
		if e, ok := arrayElem(p.line, v, 0); ok {
			return p.text(e)
		}
	}
	return nil
}

// extract reads a JSON record through a compiled mapping: one pass over
// the top-level members (p.kvs) binds the trie of key paths, descending
// only into the objects some path goes through; then each field takes its
// first non-empty alternative.
func (p *Parser) extract(c *compiled) error {
	p.resetBound(c)
	p.dupAt = -1 // a guessed mapping's repeats do not count
	p.bind(c, 0, p.kvs)
	return p.fields(c)
}

// resetBound unbinds every trie node of c.
func (p *Parser) resetBound(c *compiled) {
	if cap(p.bound) < len(c.nodes) {
		p.bound = make([]jval, len(c.nodes))
	}
	p.bound = p.bound[:len(c.nodes)]
	clear(p.bound)
}

// fields reads the record's fields from the bound trie of c: each takes
// its first non-empty alternative.
func (p *Parser) fields(c *compiled) error {
	if p.dupAt >= 0 {
		return p.duplicate()
	}
	r := &p.rec
	a := &c.alts
	r.timeText = p.str(c, a[iTime])
	r.method = p.str(c, a[iMethod])
	r.uri = p.str(c, a[iPath])
	for _, id := range a[iQuery] {
		if v := p.bound[c.pathNode[id]]; v.Kind == jObject {
			r.queryObj = v
			break
		}
	}
	var err error
	var st uint64
	if st, err = parseUint(p.str(c, a[iStatus])); err != nil || st > 999 {
		return reject(ReasonBadField, "status %q", p.str(c, a[iStatus]))
	}
	r.status = int64(st)
	if r.reqBytes, err = parseUint(p.str(c, a[iRequestBytes])); err != nil {
		return reject(ReasonBadField, "request_bytes %q", p.str(c, a[iRequestBytes]))
	}
	if r.respBytes, err = parseUint(p.str(c, a[iResponseBytes])); err != nil {
		return reject(ReasonBadField, "response_bytes %q", p.str(c, a[iResponseBytes]))
	}
	if d := p.str(c, a[iDuration]); len(d) > 0 {
		if r.durUs, err = parseDuration(d, c.durUnit); err != nil {
			return reject(ReasonBadField, "duration %q", d)
		}
	}
	r.sourceIP = p.str(c, a[iSourceIP])
	r.userAgent = p.str(c, a[iUserAgent])
	r.gateway = p.str(c, a[iGateway])
	r.upstream = p.str(c, a[iUpstream])
	r.requestID = p.str(c, a[iRequestID])
	r.route = p.str(c, a[iRoute])
	r.ident.ConsumerName = p.str(c, a[iConsumerName])
	r.ident.ConsumerID = p.str(c, a[iConsumerID])
	r.ident.CredentialID = p.str(c, a[iCredentialID])
	r.ident.MTLSSubject = p.str(c, a[iMTLSSubject])
	for i, name := range p.resolver.HeaderNames() {
		if b := p.str(c, c.headers[i]); len(b) > 0 {
			r.headers = append(r.headers, identity.Field{Name: name, Value: b})
		}
	}
	for _, cl := range c.claims {
		if b := p.str(c, cl.ids); len(b) > 0 {
			r.claims = append(r.claims, identity.Field{Name: cl.name, Value: b})
		}
	}
	return nil
}

// parseUint reads a non-negative integer; empty means 0. A number with a
// zero fraction ("512.0") is accepted, as some shippers coerce numbers.
// It never allocates (strconv's errors do).
func parseUint(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, frac, ok := decimal(b)
	if !ok || frac != 0 {
		return 0, errField
	}
	return n, nil
}

// decimal reads digits[.digits] and returns the integer part and the
// fraction scaled to 1e6 (micro-units), rounding at the seventh digit.
func decimal(b []byte) (n, frac uint64, ok bool) {
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if n > (math.MaxUint64-9)/10 {
			return 0, 0, false
		}
		n = n*10 + uint64(b[i]-'0')
	}
	if i == 0 {
		return 0, 0, false
	}
	if i == len(b) {
		return n, 0, true
	}
	if b[i] != '.' || i+1 == len(b) {
		return 0, 0, false
	}
	k := 0 // fraction digits seen
	for i++; i < len(b); i, k = i+1, k+1 {
		c := b[i]
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		switch {
		case k < 6:
			frac = frac*10 + uint64(c-'0')
		case k == 6 && c >= '5':
			frac++ // round half up on the seventh digit
		}
	}
	for ; k < 6; k++ {
		frac *= 10
	}
	if frac >= 1e6 { // 0.9999995 rounds up into the integer part
		n, frac = n+1, frac-1e6
	}
	return n, frac, true
}

// parseDuration converts a duration in units of unitUs microseconds
// (1e6 for seconds, 1e3 for ms, 1 for µs) to µs, rounding to the nearest µs.
func parseDuration(b []byte, unitUs uint64) (uint64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, frac, ok := decimal(b)
	if !ok || n > math.MaxInt64/unitUs {
		return 0, errField
	}
	return n*unitUs + (frac*unitUs+500000)/1e6, nil
}

// finish validates and normalises the record into an Event whose strings
// share one fresh backing string (one allocation, no aliasing of buffers).
func (p *Parser) finish(format string, src Source, now time.Time) (event.Event, error) {
	r := &p.rec
	var e event.Event
	nowMs := now.UnixMilli()

	// Time.
	ms := r.timeMs
	if !r.hasTimeMs {
		if len(r.timeText) == 0 {
			return e, reject(ReasonNoTimestamp, "")
		}
		var ok bool
		if ms, ok = parseTime(r.timeText); !ok {
			return e, reject(ReasonBadTimestamp, "%q", r.timeText)
		}
	}
	if ms < nowMs-p.opt.MaxAge.Milliseconds() || ms > nowMs+p.opt.MaxFuture.Milliseconds() {
		return e, reject(ReasonTimestampWindow, "event time %s, now %s", time.UnixMilli(ms).UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}

	// Method.
	method, ok := normMethod(r.method)
	if !ok {
		return e, reject(ReasonBadField, "method %q", r.method)
	}

	// Path and query names.
	path, query, ok := splitURI(r.uri)
	if !ok {
		return e, reject(ReasonBadField, "path %.64q", r.uri)
	}

	if r.status < 0 || r.status > 999 {
		return e, reject(ReasonBadField, "status %d", r.status)
	}

	// Identity.
	var id identity.Result
	if r.canonical {
		if len(r.agentID) > 0 {
			if !identity.ValidAgentID(r.agentID) {
				return e, reject(ReasonInvalidAgentID, "%v", identity.ErrInvalidAgentID)
			}
			src, ok := knownSource(r.identitySrc)
			if !ok {
				return e, reject(ReasonBadField, "identity_source %q", r.identitySrc)
			}
			id.AgentID, id.Source = r.agentID, src
		}
		id.CredentialID = r.ident.CredentialID
	} else {
		r.ident.Headers, r.ident.Claims = r.headers, r.claims
		var err error
		if id, err = p.resolver.Resolve(&r.ident); err != nil {
			return e, reject(ReasonInvalidAgentID, "%v", err)
		}
	}

	// Strings: append every string field to one buffer, then convert once.
	b := p.strs[:0]
	type span struct{ start, end int }
	add := func(v []byte, limit int) span {
		v = truncate(v, limit)
		s := len(b)
		b = append(b, v...)
		return span{s, len(b)}
	}
	sEventID := span{len(b), 0}
	b = event.AppendID(b, src.Topic, src.Partition, src.Offset)
	sEventID.end = len(b)
	sAgent := add(id.AgentID, identity.MaxAgentIDLen)
	sCred := add(id.CredentialID, MaxFieldBytes)
	sIP := add(cleanIP(r.sourceIP), 64)
	sPath := add(path, MaxPathBytes)
	sUA := add(r.userAgent, MaxUserAgentBytes)
	sGW := add(r.gateway, MaxFieldBytes) // empty: the format's name, below
	sUp := add(r.upstream, MaxFieldBytes)
	sRID := add(r.requestID, MaxFieldBytes)
	var sMethod span
	if method == "" { // not a well-known method: keep the upper-cased bytes
		sMethod = span{len(b), 0}
		for _, c := range r.method {
			if c >= 'a' && c <= 'z' {
				c -= 'a' - 'A'
			}
			b = append(b, c)
		}
		sMethod.end = len(b)
	}
	p.qbuf = p.qbuf[:0]
	queryStart := len(b)
	if len(query) > 0 {
		for len(query) > 0 && len(p.qbuf) < MaxQueryParams {
			var kv []byte
			if i := bytes.IndexByte(query, '&'); i >= 0 {
				kv, query = query[:i], query[i+1:]
			} else {
				kv, query = query, nil
			}
			if i := bytes.IndexByte(kv, '='); i >= 0 {
				kv = kv[:i]
			}
			if len(kv) > 0 {
				p.qbuf = append(p.qbuf, truncate(kv, MaxQueryNameBytes))
			}
		}
	} else if r.queryObj.Kind == jObject {
		start := len(p.kvs)
		p.kvs, _, _ = scanObject(p.line, int(r.queryObj.Start), 0, p.kvs) // validated already
		for i := start; i < len(p.kvs) && len(p.qbuf) < MaxQueryParams; i++ {
			k := p.line[p.kvs[i].KS:p.kvs[i].KE]
			if p.kvs[i].KEsc {
				s := len(p.nums)
				p.nums = unescape(p.nums, k)
				k = p.nums[s:len(p.nums):len(p.nums)]
			}
			if len(k) > 0 {
				p.qbuf = append(p.qbuf, truncate(k, MaxQueryNameBytes))
			}
		}
		p.kvs = p.kvs[:start]
	} else {
		for _, q := range r.queryList {
			if len(q) > 0 && len(p.qbuf) < MaxQueryParams {
				p.qbuf = append(p.qbuf, truncate(s2b(q), MaxQueryNameBytes))
			}
		}
	}
	for _, q := range p.qbuf {
		b = append(b, q...)
	}
	// Route: an OpenAPI/list template (a string of the Normalizer), else
	// a template the gateway logged, else heuristics; both in b.
	pathStr := b2s(b[sPath.start:sPath.end]) // appends below never write there
	route, tmpl := span{}, ""
	if t, ok := p.opt.Routes.Match(pathStr); ok {
		tmpl = t
	} else if lg, ok := loggedRoute(r.route); ok {
		route = add(lg, len(lg))
	} else {
		s := len(b)
		b = routes.AppendHeuristic(b, pathStr)
		if string(b[s:]) == pathStr {
			b, route = b[:s], sPath
		} else {
			route = span{s, len(b)}
		}
	}
	// The line was valid UTF-8, so only nginx's \xHH unescaping can make
	// b invalid; events hold valid UTF-8 only, which keeps the canonical
	// round trip exact. The JSON formats need no check: JSON unescaping of
	// valid UTF-8 is valid (a broken \u pair becomes U+FFFD), the event
	// Decoder replaces invalid UTF-8, every cut is at an ASCII byte or a
	// rune boundary (truncate), and identity.Resolve returns valid UTF-8
	// only (JWT payloads included).
	if format == FormatNginxCombined && !utf8.Valid(b) {
		return e, reject(ReasonInvalidUTF8, "escaped field decodes to invalid UTF-8")
	}
	p.strs = b
	all := string(b)
	sub := func(s span) string { return all[s.start:s.end] }

	e.EventID = sub(sEventID)
	e.EventTimeMs = ms
	e.IngestTimeMs = nowMs
	e.AgentID = sub(sAgent)
	e.IdentitySource = id.Source
	e.Unattributed = len(id.AgentID) == 0
	e.CredentialID = sub(sCred)
	e.SourceIP = sub(sIP)
	if method != "" {
		e.Method = method
	} else {
		e.Method = sub(sMethod)
	}
	e.Path = sub(sPath)
	if len(p.qbuf) > 0 {
		e.QueryParams = make([]string, len(p.qbuf))
		off := queryStart
		for i, q := range p.qbuf {
			e.QueryParams[i] = all[off : off+len(q)]
			off += len(q)
		}
	}
	e.Status = uint16(r.status)
	e.RequestBytes = r.reqBytes
	e.ResponseBytes = r.respBytes
	e.DurationUs = r.durUs
	e.UserAgent = sub(sUA)
	e.Gateway = sub(sGW)
	if e.Gateway == "" {
		e.Gateway = format
	}
	e.Upstream = sub(sUp)
	e.RequestID = sub(sRID)
	e.Format = format
	e.Topic = src.Topic // a string: immutable, so sharing it aliases nothing
	e.Partition = src.Partition
	e.Offset = src.Offset
	if tmpl != "" {
		e.Route = tmpl
	} else {
		e.Route = sub(route)
	}
	return e, nil
}

// loggedRoute returns the template a gateway logged, if it looks like one.
func loggedRoute(logged []byte) ([]byte, bool) {
	if len(logged) == 0 {
		return nil, false
	}
	if i := bytes.IndexByte(logged, ' '); i >= 0 { // AWS HTTP API routeKey "GET /x"
		logged = logged[i+1:]
	}
	if len(logged) > 1 && logged[0] == '/' && len(logged) <= MaxFieldBytes &&
		!bytes.Contains(logged, []byte("+}")) && bytes.IndexByte(logged, '?') < 0 {
		return logged, true
	}
	return nil, false
}

// knownSource returns the rule kind s names as a constant (no allocation).
func knownSource(s []byte) (string, bool) {
	for _, k := range []string{identity.KindHeader, identity.KindConsumer, identity.KindJWT, identity.KindMTLS} {
		if string(s) == k {
			return k, true
		}
	}
	return "", false
}

// truncate cuts b to at most limit bytes on a rune boundary.
func truncate(b []byte, limit int) []byte {
	if len(b) <= limit {
		return b
	}
	b = b[:limit]
	for i := 0; i < utf8.UTFMax && len(b) > 0; i++ {
		if r, size := utf8.DecodeLastRune(b); r != utf8.RuneError || size > 1 {
			break
		}
		b = b[:len(b)-1]
	}
	return b
}

var knownMethods = []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"}

// normMethod upper-cases m. Well-known methods come back as constants (no
// allocation); other [A-Za-z]{1,16} methods return "" and true, so the
// caller copies them upper-cased.
func normMethod(m []byte) (string, bool) {
	if len(m) == 0 || len(m) > maxMethodBytes {
		return "", false
	}
	for _, c := range m {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z') {
			return "", false
		}
	}
	for _, k := range knownMethods {
		if len(k) == len(m) && bytes.EqualFold(m, s2b(k)) {
			return k, true
		}
	}
	return "", true
}

// splitURI returns the path and the raw query of a request target. An
// absolute URL loses its scheme and authority; a fragment is dropped.
func splitURI(u []byte) (path, query []byte, ok bool) {
	if len(u) == 0 {
		return nil, nil, false
	}
	if u[0] != '/' {
		i := bytes.Index(u, []byte("://"))
		if i <= 0 {
			if len(u) == 1 && u[0] == '*' { // OPTIONS *
				return u, nil, true
			}
			return nil, nil, false
		}
		u = u[i+3:]
		j := bytes.IndexByte(u, '/')
		if j < 0 {
			u = []byte("/")
		} else {
			u = u[j:]
		}
	}
	if i := bytes.IndexByte(u, '#'); i >= 0 {
		u = u[:i]
	}
	path = u
	if i := bytes.IndexByte(u, '?'); i >= 0 {
		path, query = u[:i], u[i+1:]
	}
	return path, query, true
}

// cleanIP returns the client address of "ip", "ip:port", "[v6]:port" or a
// comma-separated X-Forwarded-For list (first entry), or nil if it is not
// an IP address: the field is informative, so junk is dropped, not fatal.
func cleanIP(b []byte) []byte {
	if i := bytes.IndexByte(b, ','); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || len(b) > 64 {
		return nil
	}
	// Fast path for the common IPv4 and IPv4:port, without netip's error
	// values; anything else goes the exact way below.
	if n := ipv4Prefix(b); n == len(b) {
		return b
	} else if n > 0 && b[n] == ':' && isPort(b[n+1:]) {
		return b[:n]
	}
	if _, err := netip.ParseAddr(b2s(b)); err == nil {
		return b
	}
	if ap, err := netip.ParseAddrPort(b2s(b)); err == nil {
		if b[0] == '[' {
			end := bytes.IndexByte(b, ']')
			b = b[1:end]
			if i := bytes.IndexByte(b, '%'); i >= 0 && !ap.Addr().Is6() {
				return nil
			}
			return b
		}
		return b[:bytes.LastIndexByte(b, ':')]
	}
	return nil
}

// ipv4Prefix returns the length of the dotted-quad IPv4 address that b
// starts with (four decimal fields 0-255 without leading zeros, which
// netip.ParseAddr accepts too) if the byte after it is neither a digit
// nor a dot; else 0.
func ipv4Prefix(b []byte) int {
	dots, val, nd := 0, 0, 0
	for i, c := range b {
		if c >= '0' && c <= '9' {
			if nd > 0 && val == 0 {
				return 0 // leading zero
			}
			val = val*10 + int(c-'0')
			nd++
			if val > 255 {
				return 0
			}
			continue
		}
		if c != '.' {
			if dots == 3 && nd > 0 {
				return i
			}
			return 0
		}
		if nd == 0 || dots == 3 {
			return 0
		}
		dots++
		val, nd = 0, 0
	}
	if dots == 3 && nd > 0 {
		return len(b)
	}
	return 0
}

// isPort reports whether b is a decimal port 0-65535 (as netip.ParseAddrPort
// reads it: strconv.ParseUint(b, 10, 16)).
func isPort(b []byte) bool {
	if len(b) == 0 || len(b) > 5 {
		return false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}
