package gateway

import (
	"strconv"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
)

// RenderHints carries identity material to put into a rendered line; empty
// fields are left out (or logged as the gateway logs absent values).
type RenderHints struct {
	// AgentHeader is the X-Agent-Id request header value.
	AgentHeader string
	// BearerToken is a JWT sent as "Authorization: Bearer <token>".
	BearerToken string
	// ConsumerUsername and ConsumerID are the gateway's authenticated
	// consumer (Kong consumer, NGINX $remote_user, AWS principalId).
	ConsumerUsername string
	ConsumerID       string
	// APIKeyID is the API key / credential id (AWS identity.apiKeyId,
	// Kong authenticated_entity.id).
	APIKeyID string
	// MTLSSubject is the client certificate subject DN, e.g. "CN=agent-7,O=Acme".
	MTLSSubject string
}

// Render renders e as one line (no trailing newline) in format's default
// layout, as documented in docs/formats.md; Parse of the result with
// default options gives back e's request fields (times and durations at the
// format's resolution). Unknown formats render nil. Safe for concurrent use.
//
// Render and renderCombined have a deliberately parallel, faster twin in
// internal/tools/sim (render.go), because Render alone cannot outrun the
// ingest the simulator feeds; TestRenderMatchesGateway holds the two
// byte-identical, so a change here must be made there too. What is the
// same to the byte (AppendQuery, AppendNginxEscaped) is shared.
func Render(format string, e *event.Event, h RenderHints) []byte {
	w := jw{b: make([]byte, 0, 640)}
	ts := time.UnixMilli(e.EventTimeMs).UTC()
	uri := requestURI(e)
	switch format {
	case FormatCanonical:
		return event.AppendJSON(nil, e)
	case FormatNginxCombined:
		return renderCombined(e, h)
	case FormatEnvoy:
		w.str("start_time", ts.Format("2006-01-02T15:04:05.000Z"))
		w.str("method", e.Method)
		w.str("path", uri)
		w.str("protocol", "HTTP/1.1")
		w.num("response_code", uint64(e.Status))
		w.str("response_flags", "-")
		w.str("response_code_details", "via_upstream")
		w.raw("connection_termination_details", "null")
		w.raw("upstream_transport_failure_reason", "null")
		w.num("bytes_received", e.RequestBytes)
		w.num("bytes_sent", e.ResponseBytes)
		w.num("duration", e.DurationUs/1000)
		w.str("upstream_service_time", strconv.FormatUint(e.DurationUs*9/10/1000, 10))
		w.strOrNull("x_forwarded_for", e.SourceIP)
		w.strOrNull("user_agent", e.UserAgent)
		w.strOrNull("request_id", e.RequestID)
		w.str("authority", "api.example.com")
		w.str("upstream_host", "10.8.3.17:8080")
		w.strOrNull("upstream_cluster", e.Upstream)
		w.str("upstream_local_address", "10.8.1.4:41022")
		w.str("downstream_local_address", "10.8.1.4:8443")
		w.strOrNull("downstream_remote_address", hostPort(e.SourceIP, e.Offset))
		w.raw("requested_server_name", "null")
		w.str("route_name", "default")
		w.strOrNull("x_agent_id", h.AgentHeader)
		w.strOrNull("authorization", bearer(h.BearerToken))
		w.strOrNull("downstream_peer_subject", h.MTLSSubject)
		w.strOrNull("gateway", e.Gateway)
	case FormatKong:
		w.obj("request")
		w.str("method", e.Method)
		w.str("uri", uri)
		w.str("url", "https://api.example.com:8443"+uri)
		w.num("size", e.RequestBytes)
		w.obj("querystring")
		for _, q := range e.QueryParams {
			w.str(q, "1")
		}
		w.end()
		w.obj("headers")
		w.str("host", "api.example.com")
		w.str("accept", "application/json")
		if e.UserAgent != "" {
			w.str("user-agent", e.UserAgent)
		}
		if h.AgentHeader != "" {
			w.str("x-agent-id", h.AgentHeader)
		}
		if h.BearerToken != "" {
			w.str("authorization", bearer(h.BearerToken))
		}
		if e.RequestID != "" {
			w.str("x-request-id", e.RequestID)
		}
		w.end()
		if e.RequestID != "" {
			w.str("id", e.RequestID)
		}
		w.end()
		w.str("upstream_uri", uri)
		w.obj("response")
		w.num("status", uint64(e.Status))
		w.num("size", e.ResponseBytes)
		w.obj("headers")
		w.str("content-type", "application/json")
		w.end()
		w.end()
		w.obj("latencies")
		w.num("request", e.DurationUs/1000)
		w.num("proxy", e.DurationUs*9/10/1000)
		w.num("kong", e.DurationUs/10/1000)
		w.end()
		w.str("client_ip", e.SourceIP)
		w.num("started_at", uint64(e.EventTimeMs))
		if e.Upstream != "" {
			w.obj("service")
			w.str("name", e.Upstream)
			w.str("host", e.Upstream+".internal")
			w.num("port", 8080)
			w.str("protocol", "http")
			w.end()
		}
		w.obj("route")
		w.str("name", "api")
		w.raw("paths", `["/"]`)
		w.end()
		if h.ConsumerUsername != "" || h.ConsumerID != "" {
			w.obj("consumer")
			if h.ConsumerID != "" {
				w.str("id", h.ConsumerID)
			}
			if h.ConsumerUsername != "" {
				w.str("username", h.ConsumerUsername)
			}
			w.end()
		}
		if h.APIKeyID != "" {
			w.obj("authenticated_entity")
			w.str("id", h.APIKeyID)
			w.end()
		}
		w.str("workspace_name", "default")
	case FormatNginxJSON:
		w.str("time_iso8601", ts.Format("2006-01-02T15:04:05-07:00"))
		w.str("msec", strconv.FormatInt(e.EventTimeMs/1000, 10)+"."+pad3(e.EventTimeMs%1000))
		w.str("remote_addr", e.SourceIP)
		w.str("remote_user", h.ConsumerUsername)
		w.str("request_method", e.Method)
		w.str("request_uri", uri)
		w.num("status", uint64(e.Status))
		w.num("request_length", e.RequestBytes)
		w.num("bytes_sent", e.ResponseBytes)
		w.raw("request_time", seconds(e.DurationUs))
		w.str("http_user_agent", e.UserAgent)
		w.str("http_x_agent_id", h.AgentHeader)
		w.str("http_authorization", bearer(h.BearerToken))
		w.str("ssl_client_s_dn", h.MTLSSubject)
		w.str("upstream_addr", e.Upstream)
		w.str("request_id", e.RequestID)
		w.str("host", "api.example.com")
		w.str("hostname", e.Gateway)
	case FormatAWS:
		w.str("requestId", e.RequestID)
		w.str("ip", dash(e.SourceIP))
		w.str("requestTime", ts.Format("02/Jan/2006:15:04:05 -0700"))
		w.str("requestTimeEpoch", strconv.FormatInt(e.EventTimeMs, 10))
		w.str("httpMethod", e.Method)
		w.str("resourcePath", dash(e.Route))
		w.str("path", e.Path)
		w.str("status", strconv.Itoa(int(e.Status)))
		w.str("protocol", "HTTP/1.1")
		w.str("responseLength", strconv.FormatUint(e.ResponseBytes, 10))
		w.str("responseLatency", strconv.FormatUint(e.DurationUs/1000, 10))
		w.str("integrationLatency", strconv.FormatUint(e.DurationUs*9/10/1000, 10))
		w.str("userAgent", dash(e.UserAgent))
		w.str("apiKeyId", dash(h.APIKeyID))
		w.str("principalId", dash(h.ConsumerUsername))
		w.str("clientCertSubjectDN", dash(h.MTLSSubject))
		w.str("domainName", "api.example.com")
		w.str("stage", "prod")
		w.str("apiId", dash(e.Gateway))
	default:
		return nil
	}
	return w.close()
}

// requestURI is e's path with its query parameter names given value 1.
func requestURI(e *event.Event) string {
	if len(e.QueryParams) == 0 {
		return e.Path
	}
	return string(AppendQuery([]byte(e.Path), e.QueryParams))
}

// AppendQuery appends the query Render writes after a path: "?" and then
// each parameter name with value 1, joined by "&"; nothing when params is
// empty. It is exported for the simulator's faster renderer
// (internal/tools/sim), which must write the same bytes. Safe for
// concurrent use.
func AppendQuery(b []byte, params []string) []byte {
	for i, q := range params {
		if i == 0 {
			b = append(b, '?')
		} else {
			b = append(b, '&')
		}
		b = append(b, q...)
		b = append(b, "=1"...)
	}
	return b
}

func bearer(tok string) string {
	if tok == "" {
		return ""
	}
	return "Bearer " + tok
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func pad3(n int64) string {
	s := strconv.FormatInt(n, 10)
	for len(s) < 3 {
		s = "0" + s
	}
	return s
}

// seconds renders µs as nginx does $request_time: seconds with ms.
func seconds(us uint64) string {
	ms := us / 1000
	return strconv.FormatUint(ms/1000, 10) + "." + pad3(int64(ms%1000))
}

// hostPort gives a source address a stable, plausible ephemeral port.
func hostPort(ip string, seed int64) string {
	if ip == "" {
		return ""
	}
	port := strconv.FormatInt(32768+(seed&0x3fff), 10)
	for i := 0; i < len(ip); i++ {
		if ip[i] == ':' {
			return "[" + ip + "]:" + port
		}
	}
	return ip + ":" + port
}

// jw writes a JSON object key by key.
type jw struct {
	b     []byte
	first []bool
}

func (w *jw) key(k string) {
	if len(w.first) == 0 {
		w.b = append(w.b, '{')
		w.first = append(w.first, true)
	}
	if w.first[len(w.first)-1] {
		w.first[len(w.first)-1] = false
	} else {
		w.b = append(w.b, ',')
	}
	w.b = event.AppendJSONString(w.b, k)
	w.b = append(w.b, ':')
}

func (w *jw) str(k, v string) { w.key(k); w.b = event.AppendJSONString(w.b, v) }
func (w *jw) raw(k, v string) { w.key(k); w.b = append(w.b, v...) }
func (w *jw) num(k string, v uint64) {
	w.key(k)
	w.b = strconv.AppendUint(w.b, v, 10)
}

func (w *jw) strOrNull(k, v string) {
	if v == "" {
		w.raw(k, "null")
		return
	}
	w.str(k, v)
}

func (w *jw) obj(k string) {
	w.key(k)
	w.b = append(w.b, '{')
	w.first = append(w.first, true)
}

func (w *jw) end() {
	w.b = append(w.b, '}')
	w.first = w.first[:len(w.first)-1]
}

func (w *jw) close() []byte {
	if len(w.first) == 0 {
		return append(w.b, '{', '}')
	}
	return append(w.b, '}')
}

func renderCombined(e *event.Event, h RenderHints) []byte {
	b := make([]byte, 0, 256)
	b = append(b, dash(e.SourceIP)...)
	b = append(b, " - "...)
	b = append(b, dash(h.ConsumerUsername)...)
	b = append(b, " ["...)
	b = time.UnixMilli(e.EventTimeMs).UTC().AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = AppendNginxEscaped(b, e.Method+" "+requestURI(e)+" HTTP/1.1")
	b = append(b, "\" "...)
	b = strconv.AppendUint(b, uint64(e.Status), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, e.ResponseBytes, 10)
	b = append(b, ` "-" "`...)
	b = AppendNginxEscaped(b, dash(e.UserAgent))
	b = append(b, "\" "...)
	b = append(b, seconds(e.DurationUs)...)
	b = append(b, ` "`...)
	b = AppendNginxEscaped(b, dash(h.AgentHeader))
	b = append(b, "\" "...)
	b = strconv.AppendUint(b, e.RequestBytes, 10)
	return b
}

// AppendNginxEscaped appends s escaped like nginx's default (non-JSON) log
// escaping: '"', '\\', control bytes and bytes ≥ 0x7f become \xHH. It is
// exported for the simulator's faster renderer (internal/tools/sim), which
// must write the same bytes. Safe for concurrent use.
func AppendNginxEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}
