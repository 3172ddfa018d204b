package sim

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/agentwatch/agentwatch/pkg/event"
)

// defaultRenderer is the stand-in renderer used until pkg/gateway's Render
// is available. Its layouts are this package's guess at each format's
// default layout.
var defaultRenderer Renderer = fallbackRender

// fallbackRender writes e in format with hand-rolled appends: the simulator
// must outrun any ingest it feeds.
func fallbackRender(format string, e *event.Event, id Identity) []byte {
	b := make([]byte, 0, 512)
	t := time.UnixMilli(e.EventTimeMs).UTC()
	target := e.Path + queryString(e.QueryParams)
	switch format {
	case "envoy":
		b = append(b, '{')
		b = field(b, "start_time", t.Format("2006-01-02T15:04:05.000Z"))
		b = field(b, "method", e.Method)
		b = field(b, "path", target)
		b = field(b, "protocol", "HTTP/1.1")
		b = num(b, "response_code", uint64(e.Status))
		b = num(b, "bytes_received", e.RequestBytes)
		b = num(b, "bytes_sent", e.ResponseBytes)
		b = num(b, "duration", e.DurationUs/1000)
		b = field(b, "downstream_remote_address", e.SourceIP+":443")
		b = field(b, "user_agent", e.UserAgent)
		b = field(b, "request_id", e.RequestID)
		b = field(b, "upstream_cluster", e.Upstream)
		b = optField(b, "x_agent_id", id.AgentHeader)
		b = optField(b, "authorization", bearer(id.BearerToken))
		b = optField(b, "downstream_peer_subject", id.MTLSSubject)
	case "kong":
		b = append(b, '{')
		b = num(b, "started_at", uint64(e.EventTimeMs))
		b = field(b, "client_ip", e.SourceIP)
		b = append(b, `"request":{`...)
		b = field(b, "method", e.Method)
		b = field(b, "uri", target)
		b = num(b, "size", e.RequestBytes)
		b = append(b, `"headers":{`...)
		b = field(b, "user-agent", e.UserAgent)
		b = optField(b, "x-agent-id", id.AgentHeader)
		b = closeObj(b)
		b = closeObj(b)
		b = append(b, `"response":{`...)
		b = num(b, "status", uint64(e.Status))
		b = num(b, "size", e.ResponseBytes)
		b = closeObj(b)
		b = append(b, `"latencies":{`...)
		b = num(b, "request", e.DurationUs/1000)
		b = closeObj(b)
		b = append(b, `"service":{`...)
		b = field(b, "name", e.Upstream)
		b = closeObj(b)
		if id.ConsumerUsername != "" || id.ConsumerID != "" {
			b = append(b, `"consumer":{`...)
			b = field(b, "id", id.ConsumerID)
			b = field(b, "username", id.ConsumerUsername)
			b = closeObj(b)
		}
		b = field(b, "request_id", e.RequestID)
	case "nginx_json":
		b = append(b, '{')
		b = field(b, "time_iso8601", t.Format("2006-01-02T15:04:05.000Z07:00"))
		b = field(b, "remote_addr", e.SourceIP)
		b = field(b, "request_method", e.Method)
		b = field(b, "request_uri", target)
		b = num(b, "status", uint64(e.Status))
		b = num(b, "request_length", e.RequestBytes)
		b = num(b, "body_bytes_sent", e.ResponseBytes)
		b = field(b, "request_time", strconv.FormatFloat(float64(e.DurationUs)/1e6, 'f', 3, 64))
		b = field(b, "http_user_agent", e.UserAgent)
		b = field(b, "request_id", e.RequestID)
		b = field(b, "upstream", e.Upstream)
		b = optField(b, "http_x_agent_id", id.AgentHeader)
		b = optField(b, "http_authorization", bearer(id.BearerToken))
	case "aws_apigw":
		b = append(b, '{')
		b = field(b, "requestId", e.RequestID)
		b = num(b, "requestTimeEpoch", uint64(e.EventTimeMs))
		b = field(b, "ip", e.SourceIP)
		b = field(b, "httpMethod", e.Method)
		b = field(b, "path", target)
		b = field(b, "status", strconv.Itoa(int(e.Status)))
		b = field(b, "requestLength", strconv.FormatUint(e.RequestBytes, 10))
		b = field(b, "responseLength", strconv.FormatUint(e.ResponseBytes, 10))
		b = field(b, "responseLatency", strconv.FormatUint(e.DurationUs/1000, 10))
		b = field(b, "userAgent", e.UserAgent)
		b = field(b, "integration", e.Upstream)
		b = optField(b, "apiKeyId", id.APIKeyID)
		b = optField(b, "authorization", bearer(id.BearerToken))
	case "nginx_combined":
		b = append(b, e.SourceIP...)
		b = append(b, " - - ["...)
		b = t.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
		b = append(b, `] "`...)
		b = append(b, e.Method...)
		b = append(b, ' ')
		b = append(b, target...)
		b = append(b, ` HTTP/1.1" `...)
		b = strconv.AppendUint(b, uint64(e.Status), 10)
		b = append(b, ' ')
		b = strconv.AppendUint(b, e.ResponseBytes, 10)
		b = append(b, ` "-" "`...)
		b = append(b, e.UserAgent...)
		b = append(b, `" "`...)
		b = append(b, dash(id.AgentHeader)...)
		b = append(b, `" `...)
		b = strconv.AppendFloat(b, float64(e.DurationUs)/1e6, 'f', 3, 64)
		return b
	default: // canonical
		b = append(b, '{')
		b = num(b, "v", event.Version)
		b = num(b, "event_time_ms", uint64(e.EventTimeMs))
		b = field(b, "agent_id", id.AgentHeader)
		b = field(b, "credential_id", e.CredentialID)
		b = field(b, "source_ip", e.SourceIP)
		b = field(b, "method", e.Method)
		b = field(b, "path", e.Path)
		b = field(b, "status", strconv.Itoa(int(e.Status)))
		b = num(b, "request_bytes", e.RequestBytes)
		b = num(b, "response_bytes", e.ResponseBytes)
		b = num(b, "duration_us", e.DurationUs)
		b = field(b, "user_agent", e.UserAgent)
		b = field(b, "gateway", e.Gateway)
		b = field(b, "upstream", e.Upstream)
		b = field(b, "request_id", e.RequestID)
	}
	b = closeObj(b)
	return b[:len(b)-1]
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

// queryString invents values for query parameter names: only the names are
// part of the truth.
func queryString(names []string) string {
	if len(names) == 0 {
		return ""
	}
	b := []byte{'?'}
	for i, n := range names {
		if i > 0 {
			b = append(b, '&')
		}
		b = append(b, n...)
		b = append(b, '=')
		b = strconv.AppendInt(b, int64(len(n)*7+i), 10)
	}
	return string(b)
}

func optField(b []byte, k, v string) []byte {
	if v == "" {
		return b
	}
	return field(b, k, v)
}

func field(b []byte, k, v string) []byte {
	b = appendString(b, k)
	b = append(b, ':')
	b = appendString(b, v)
	return append(b, ',')
}

func num(b []byte, k string, v uint64) []byte {
	b = appendString(b, k)
	b = append(b, ':')
	b = strconv.AppendUint(b, v, 10)
	return append(b, ',')
}

// closeObj replaces a trailing comma with the closing brace and a comma for
// whatever follows; the renderer drops the very last comma.
func closeObj(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == ',' {
		b = b[:len(b)-1]
	}
	return append(b, '}', ',')
}

// appendString appends s as a JSON string. Invalid UTF-8 is copied as is,
// which the invalid_utf8 garbage depends on.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, `\u00`...)
			b = append(b, hexDigits[c>>4], hexDigits[c&0xf])
		default:
			if c >= utf8.RuneSelf {
				_, n := utf8.DecodeRuneInString(s[i:])
				b = append(b, s[i:i+n]...)
				i += n
				continue
			}
			b = append(b, c)
		}
		i++
	}
	return append(b, '"')
}
