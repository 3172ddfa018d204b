package gateway

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// FieldMap maps canonical field names to JSON key paths in a format's
// layout. A path is dot-separated ("request.headers.x-agent-id"); several
// alternatives separated by '|' are tried in order ("msec|time_iso8601");
// an empty value removes a default. Field names:
//
//	time            event time: epoch s/ms/µs/ns (number or string) or a date
//	method, path    request method; path, optionally with query string
//	query           object whose keys are the query parameter names, used
//	                when path has no query string
//	status, request_bytes, response_bytes
//	duration_s | duration_ms | duration_us   total duration, in that unit
//	source_ip, user_agent, gateway, upstream, request_id
//	route           a route template the gateway already knows (AWS resourcePath)
//	consumer_name, consumer_id, credential_id, mtls_subject
//	header.<name>   one request header (name lower-case)
//	headers         where the other headers are: an object path
//	                ("request.headers") or a key pattern with '*' standing
//	                for the header name in snake_case ("http_*")
//	claim.<name>    a JWT claim the gateway already verified and logged
//
// Setting one duration_* field replaces the default's duration field.
type FieldMap map[string]string

// Canonical field names of a FieldMap.
const (
	fTime          = "time"
	fMethod        = "method"
	fPath          = "path"
	fQuery         = "query"
	fStatus        = "status"
	fRequestBytes  = "request_bytes"
	fResponseBytes = "response_bytes"
	fDurationS     = "duration_s"
	fDurationMs    = "duration_ms"
	fDurationUs    = "duration_us"
	fSourceIP      = "source_ip"
	fUserAgent     = "user_agent"
	fGateway       = "gateway"
	fUpstream      = "upstream"
	fRequestID     = "request_id"
	fRoute         = "route"
	fConsumerName  = "consumer_name"
	fConsumerID    = "consumer_id"
	fCredentialID  = "credential_id"
	fMTLSSubject   = "mtls_subject"
	fHeaders       = "headers"
	prefixHeader   = "header."
	prefixClaim    = "claim."
)

var plainFields = []string{fTime, fMethod, fPath, fQuery, fStatus, fRequestBytes, fResponseBytes,
	fDurationS, fDurationMs, fDurationUs, fSourceIP, fUserAgent, fGateway, fUpstream, fRequestID,
	fRoute, fConsumerName, fConsumerID, fCredentialID, fMTLSSubject, fHeaders}

// DefaultMapping returns a copy of the default mapping of a JSON format
// (nil for the others), matching the layouts in docs/formats.md.
func DefaultMapping(format string) FieldMap {
	var m FieldMap
	// One literal per format on purpose: the cases look alike but each is
	// that gateway's own field names, read side by side with docs/formats.md.
	switch format {
	case FormatEnvoy:
		m = FieldMap{
			fTime: "start_time", fMethod: "method", fPath: "path", fStatus: "response_code",
			fRequestBytes: "bytes_received", fResponseBytes: "bytes_sent", fDurationMs: "duration",
			fSourceIP: "downstream_remote_address", fUserAgent: "user_agent", fUpstream: "upstream_cluster",
			fGateway: "gateway", fRequestID: "request_id", fMTLSSubject: "downstream_peer_subject",
			fHeaders: "*",
		}
	case FormatKong:
		m = FieldMap{
			fTime: "started_at", fMethod: "request.method", fPath: "request.uri", fQuery: "request.querystring",
			fStatus: "response.status", fRequestBytes: "request.size", fResponseBytes: "response.size",
			fDurationMs: "latencies.request", fSourceIP: "client_ip", fUserAgent: "request.headers.user-agent",
			fUpstream: "service.name|service.host", fRequestID: "request.id|request.headers.x-request-id",
			fConsumerName: "consumer.username", fConsumerID: "consumer.id", fCredentialID: "authenticated_entity.id",
			fHeaders: "request.headers",
		}
	case FormatNginxJSON:
		m = FieldMap{
			fTime: "msec|time_iso8601", fMethod: "request_method", fPath: "request_uri", fStatus: "status",
			fRequestBytes: "request_length", fResponseBytes: "bytes_sent", fDurationS: "request_time",
			fSourceIP: "remote_addr", fUserAgent: "http_user_agent", fUpstream: "upstream_addr",
			fGateway: "hostname", fRequestID: "request_id", fConsumerName: "remote_user",
			fMTLSSubject: "ssl_client_s_dn", fHeaders: "http_*",
		}
	case FormatAWS:
		m = FieldMap{
			fTime: "requestTimeEpoch|requestTime", fMethod: "httpMethod", fPath: "path", fStatus: "status",
			fResponseBytes: "responseLength", fDurationMs: "responseLatency", fSourceIP: "ip|sourceIp",
			fUserAgent: "userAgent", fGateway: "apiId", fRequestID: "requestId", fRoute: "resourcePath|routeKey",
			fConsumerName: "principalId", fConsumerID: "apiKeyId", fCredentialID: "apiKeyId",
			fMTLSSubject: "clientCertSubjectDN", "claim.sub": "sub", "claim.client_id": "clientId",
		}
	}
	return m
}

func (m FieldMap) merge(over FieldMap) FieldMap {
	out := maps.Clone(m)
	for k, v := range over {
		if strings.HasPrefix(k, "duration_") {
			delete(out, fDurationS)
			delete(out, fDurationMs)
			delete(out, fDurationUs)
		}
		if v == "" {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

func (m FieldMap) validate() error {
	durations := 0
	for k, v := range m {
		known := strings.HasPrefix(k, prefixHeader) && len(k) > len(prefixHeader) ||
			strings.HasPrefix(k, prefixClaim) && len(k) > len(prefixClaim)
		for _, f := range plainFields {
			known = known || k == f
		}
		if !known {
			return fmt.Errorf("%s: unknown canonical field, want one of %v or header.<name> or claim.<name>", k, plainFields)
		}
		if strings.HasPrefix(k, "duration_") && v != "" {
			durations++
		}
		for _, alt := range strings.Split(v, "|") {
			if v != "" && (alt == "" || strings.Contains(alt, "..") || alt[0] == '.' || alt[len(alt)-1] == '.') {
				return fmt.Errorf("%s: bad key path %q; write keys as a.b.c, alternatives as a|b", k, v)
			}
		}
		if k == fHeaders && strings.Count(v, "*") > 1 {
			return fmt.Errorf("%s: pattern %q has more than one '*'", k, v)
		}
	}
	if durations > 1 {
		return fmt.Errorf("duration_*: set only one of duration_s, duration_ms, duration_us")
	}
	return nil
}

// Field slots of a compiled mapping, so the per-line path does array
// indexing instead of map lookups.
const (
	iTime = iota
	iMethod
	iPath
	iQuery
	iStatus
	iRequestBytes
	iResponseBytes
	iDuration
	iSourceIP
	iUserAgent
	iGateway
	iUpstream
	iRequestID
	iRoute
	iConsumerName
	iConsumerID
	iCredentialID
	iMTLSSubject
	numFields
)

var fieldSlot = map[string]int{
	fTime: iTime, fMethod: iMethod, fPath: iPath, fQuery: iQuery, fStatus: iStatus, fRequestBytes: iRequestBytes,
	fResponseBytes: iResponseBytes, fSourceIP: iSourceIP, fUserAgent: iUserAgent, fGateway: iGateway,
	fUpstream: iUpstream, fRequestID: iRequestID, fRoute: iRoute, fConsumerName: iConsumerName,
	fConsumerID: iConsumerID, fCredentialID: iCredentialID, fMTLSSubject: iMTLSSubject,
}

// compiled is a FieldMap split into key paths. Every distinct path gets an
// id and ends at a node of a trie of keys (nodes[0] is the line's object),
// so one pass over the line's keys, descending only into objects some path
// goes through, finds every field.
type compiled struct {
	paths      [][]string
	nodes      []pathNode
	pathNode   []int32          // trie node per path id
	alts       [numFields][]int // path ids per field, in preference order
	durUnit    uint64           // µs per unit of the duration field
	headers    [][]int          // per resolver header name
	claims     []claimPath
	overridden bool
}

type claimPath struct {
	name string
	ids  []int
}

func (c *compiled) add(v string) []int {
	if v == "" {
		return nil
	}
	var ids []int
	for _, alt := range strings.Split(v, "|") {
		ids = append(ids, c.addPath(strings.Split(alt, ".")))
	}
	return ids
}

func (c *compiled) addPath(path []string) int {
	for id, p := range c.paths {
		if slices.Equal(p, path) {
			return id
		}
	}
	c.paths = append(c.paths, path)
	n := int32(0)
	for _, k := range path {
		next := int32(-1)
		for _, kid := range c.nodes[n].kids {
			if c.nodes[kid].key == k {
				next = kid
			}
		}
		if next < 0 {
			next = int32(len(c.nodes))
			c.nodes = append(c.nodes, pathNode{key: k, index: keyIndex(k)})
			c.nodes[n].kids = append(c.nodes[n].kids, next)
		}
		n = next
	}
	c.pathNode = append(c.pathNode, n)
	return len(c.paths) - 1
}

// pathNode is one key of the trie of a compiled mapping.
type pathNode struct {
	key   string
	index int       // the array index key stands for, or -1
	kids  []int32   // child nodes
	table []kidSlot // open-addressing hash of kids by key, len a power of 2
	seed  uint32    // multiplier of keyHash, chosen so kids rarely collide
	shift uint8     // 32 - log2(len(table))
}

// kidSlot is one slot of a node's table: node 0 (the root, never a kid)
// marks it empty. The key is kept here, not only in the kid's node, so a
// lookup touches one cache line.
type kidSlot struct {
	key  string
	node int32
}

// keyHash is cheap and, with a seed picked per table, good enough for a
// few dozen distinct keys: length, first, middle and last byte, one
// multiplication.
func keyHash(k []byte, seed uint32) uint32 {
	n := len(k)
	if n == 0 {
		return 0
	}
	return (uint32(n) | uint32(k[0])<<8 | uint32(k[n>>1])<<16 | uint32(k[n-1])<<24) * seed
}

// buildTables builds each node's hash table of its kids, trying a few
// seeds and keeping the one with the fewest probes (usually none).
func (c *compiled) buildTables() {
	for i := range c.nodes {
		n := &c.nodes[i]
		bits := 2
		for 1<<bits < 2*len(n.kids) {
			bits++
		}
		best := -1
		seed := uint32(0x9E3779B1)
		for try := 0; try < 64 && best != 0; try++ {
			t, probes := c.fill(n.kids, seed, bits)
			if best < 0 || probes < best {
				best, n.table, n.seed, n.shift = probes, t, seed, uint8(32-bits)
			}
			seed = seed*0x2C9277B5 + 0xAC564B05 | 1 // next odd multiplier
		}
	}
}

// fill builds a table of 1<<bits slots for kids and counts the extra
// probes a lookup of each kid takes.
func (c *compiled) fill(kids []int32, seed uint32, bits int) ([]kidSlot, int) {
	t := make([]kidSlot, 1<<bits)
	mask := uint32(len(t) - 1)
	probes := 0
	for _, kid := range kids {
		k := c.nodes[kid].key
		h := keyHash(s2b(k), seed) >> (32 - bits)
		for t[h].node != 0 {
			h = (h + 1) & mask
			probes++
		}
		t[h] = kidSlot{key: k, node: kid}
	}
	return t, probes
}

// child returns the kid of node n named key, or -1.
func (c *compiled) child(n int32, key []byte) int32 {
	nd := &c.nodes[n]
	t := nd.table
	mask := uint32(len(t) - 1)
	for h := keyHash(key, nd.seed) >> nd.shift; ; h = (h + 1) & mask {
		s := &t[h&mask]
		if s.node == 0 {
			return -1
		}
		if s.key == string(key) {
			return s.node
		}
	}
}

func compile(m FieldMap, headerNames []string, overridden bool) *compiled {
	c := &compiled{nodes: []pathNode{{index: -1}}, overridden: overridden}
	for _, k := range slices.Sorted(maps.Keys(m)) { // sorted: stable path ids
		v := m[k]
		if strings.HasPrefix(k, prefixClaim) {
			c.claims = append(c.claims, claimPath{name: k[len(prefixClaim):], ids: c.add(v)})
			continue
		}
		if i, ok := fieldSlot[k]; ok {
			c.alts[i] = c.add(v)
		}
	}
	switch {
	case m[fDurationS] != "":
		c.alts[iDuration], c.durUnit = c.add(m[fDurationS]), 1e6
	case m[fDurationMs] != "":
		c.alts[iDuration], c.durUnit = c.add(m[fDurationMs]), 1e3
	case m[fDurationUs] != "":
		c.alts[iDuration], c.durUnit = c.add(m[fDurationUs]), 1
	}
	c.headers = make([][]int, len(headerNames))
	for i, h := range headerNames {
		if v, ok := m[prefixHeader+h]; ok {
			c.headers[i] = c.add(v)
			continue
		}
		hs := m[fHeaders]
		if hs == "" {
			continue
		}
		if star := strings.IndexByte(hs, '*'); star >= 0 {
			key := hs[:star] + strings.ReplaceAll(h, "-", "_") + hs[star+1:]
			c.headers[i] = []int{c.addPath([]string{key})}
			continue
		}
		for _, alt := range strings.Split(hs, "|") {
			c.headers[i] = append(c.headers[i], c.addPath(append(strings.Split(alt, "."), h)))
		}
	}
	c.buildTables()
	return c
}

// hasTop reports whether the line's object has the first key of the
// field's first path.
func (p *Parser) hasTop(c *compiled, field int) bool {
	ids := c.alts[field]
	if len(ids) == 0 {
		return false
	}
	k := c.paths[ids[0]][0]
	for i := range p.kvs {
		if string(p.key(&p.kvs[i])) == k {
			return true
		}
	}
	return false
}
