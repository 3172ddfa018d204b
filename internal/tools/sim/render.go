package sim

import (
	"strconv"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/gateway"
)

// render writes e as one access-log line in format: byte for byte what
// gateway.Render writes (TestRenderMatchesGateway holds it to that), about
// three times faster, because the simulator must outrun any ingest it feeds
// and gateway.Render alone runs at about 300k lines per CPU-second.
// If the two ever disagree, the test fails; fix this copy, or switch
// Simulator.render to gateway.Render at the cost of speed. Deliberately
// parallel to pkg/gateway/render.go for that speed, so the look-alike
// lines stay; the nginx escaping and the query, byte for byte the same,
// are shared.
func render(format string, e *event.Event, h gateway.RenderHints) []byte {
	switch format {
	case gateway.FormatCanonical:
		return event.AppendJSON(make([]byte, 0, 512+len(e.UserAgent)+len(e.Path)), e)
	case gateway.FormatNginxCombined:
		return renderCombined(e, h)
	}
	// Sized so a line never grows and copies, without zeroing much more
	// than it needs: the allocation is most of the renderer's cost.
	b := make([]byte, 0, layoutBytes[format]+len(h.BearerToken)+len(h.MTLSSubject)+len(h.AgentHeader)+
		len(h.ConsumerUsername)+len(h.ConsumerID)+len(h.APIKeyID)+len(e.UserAgent)+3*len(e.Path)+2*len(e.Upstream)+len(e.Gateway))
	ts := time.UnixMilli(e.EventTimeMs).UTC()
	switch format {
	case gateway.FormatEnvoy:
		b = append(b, `{"start_time":"`...)
		b = ts.AppendFormat(b, "2006-01-02T15:04:05.000Z")
		b = append(b, `","method":`...)
		b = str(b, e.Method)
		b = append(b, `,"path":`...)
		b = uri(b, e)
		b = append(b, `,"protocol":"HTTP/1.1","response_code":`...)
		b = strconv.AppendUint(b, uint64(e.Status), 10)
		b = append(b, `,"response_flags":"-","response_code_details":"via_upstream","connection_termination_details":null,"upstream_transport_failure_reason":null,"bytes_received":`...)
		b = strconv.AppendUint(b, e.RequestBytes, 10)
		b = append(b, `,"bytes_sent":`...)
		b = strconv.AppendUint(b, e.ResponseBytes, 10)
		b = append(b, `,"duration":`...)
		b = strconv.AppendUint(b, e.DurationUs/1000, 10)
		b = append(b, `,"upstream_service_time":"`...)
		b = strconv.AppendUint(b, e.DurationUs*9/10/1000, 10)
		b = append(b, `","x_forwarded_for":`...)
		b = strOrNull(b, e.SourceIP)
		b = append(b, `,"user_agent":`...)
		b = strOrNull(b, e.UserAgent)
		b = append(b, `,"request_id":`...)
		b = strOrNull(b, e.RequestID)
		b = append(b, `,"authority":"api.example.com","upstream_host":"10.8.3.17:8080","upstream_cluster":`...)
		b = strOrNull(b, e.Upstream)
		b = append(b, `,"upstream_local_address":"10.8.1.4:41022","downstream_local_address":"10.8.1.4:8443","downstream_remote_address":`...)
		if e.SourceIP == "" {
			b = append(b, "null"...)
		} else {
			b = append(b, '"')
			b = appendHostPort(b, e.SourceIP, e.Offset)
			b = append(b, '"')
		}
		b = append(b, `,"requested_server_name":null,"route_name":"default","x_agent_id":`...)
		b = strOrNull(b, h.AgentHeader)
		b = append(b, `,"authorization":`...)
		b = bearerOrNull(b, h.BearerToken)
		b = append(b, `,"downstream_peer_subject":`...)
		b = strOrNull(b, h.MTLSSubject)
		b = append(b, `,"gateway":`...)
		b = strOrNull(b, e.Gateway)
	case gateway.FormatKong:
		b = append(b, `{"request":{"method":`...)
		b = str(b, e.Method)
		b = append(b, `,"uri":`...)
		b = uri(b, e)
		b = append(b, `,"url":"https://api.example.com:8443`...)
		b = appendURI(b, e) // inside the quote already opened
		b = append(b, `","size":`...)
		b = strconv.AppendUint(b, e.RequestBytes, 10)
		b = append(b, `,"querystring":{`...)
		for i, q := range e.QueryParams {
			if i > 0 {
				b = append(b, ',')
			}
			b = str(b, q)
			b = append(b, `:"1"`...)
		}
		b = append(b, `},"headers":{"host":"api.example.com","accept":"application/json"`...)
		if e.UserAgent != "" {
			b = append(b, `,"user-agent":`...)
			b = str(b, e.UserAgent)
		}
		if h.AgentHeader != "" {
			b = append(b, `,"x-agent-id":`...)
			b = str(b, h.AgentHeader)
		}
		if h.BearerToken != "" {
			b = append(b, `,"authorization":`...)
			b = bearerOrNull(b, h.BearerToken)
		}
		if e.RequestID != "" {
			b = append(b, `,"x-request-id":`...)
			b = str(b, e.RequestID)
		}
		b = append(b, '}')
		if e.RequestID != "" {
			b = append(b, `,"id":`...)
			b = str(b, e.RequestID)
		}
		b = append(b, `},"upstream_uri":`...)
		b = uri(b, e)
		b = append(b, `,"response":{"status":`...)
		b = strconv.AppendUint(b, uint64(e.Status), 10)
		b = append(b, `,"size":`...)
		b = strconv.AppendUint(b, e.ResponseBytes, 10)
		b = append(b, `,"headers":{"content-type":"application/json"}},"latencies":{"request":`...)
		b = strconv.AppendUint(b, e.DurationUs/1000, 10)
		b = append(b, `,"proxy":`...)
		b = strconv.AppendUint(b, e.DurationUs*9/10/1000, 10)
		b = append(b, `,"kong":`...)
		b = strconv.AppendUint(b, e.DurationUs/10/1000, 10)
		b = append(b, `},"client_ip":`...)
		b = str(b, e.SourceIP)
		b = append(b, `,"started_at":`...)
		b = strconv.AppendInt(b, e.EventTimeMs, 10)
		if e.Upstream != "" {
			b = append(b, `,"service":{"name":`...)
			b = str(b, e.Upstream)
			b = append(b, `,"host":`...)
			b = str(b, e.Upstream+".internal")
			b = append(b, `,"port":8080,"protocol":"http"}`...)
		}
		b = append(b, `,"route":{"name":"api","paths":["/"]}`...)
		if h.ConsumerUsername != "" || h.ConsumerID != "" {
			b = append(b, `,"consumer":{`...)
			if h.ConsumerID != "" {
				b = append(b, `"id":`...)
				b = str(b, h.ConsumerID)
			}
			if h.ConsumerUsername != "" {
				if h.ConsumerID != "" {
					b = append(b, ',')
				}
				b = append(b, `"username":`...)
				b = str(b, h.ConsumerUsername)
			}
			b = append(b, '}')
		}
		if h.APIKeyID != "" {
			b = append(b, `,"authenticated_entity":{"id":`...)
			b = str(b, h.APIKeyID)
			b = append(b, '}')
		}
		b = append(b, `,"workspace_name":"default"`...)
	case gateway.FormatNginxJSON:
		b = append(b, `{"time_iso8601":"`...)
		b = ts.AppendFormat(b, "2006-01-02T15:04:05-07:00")
		b = append(b, `","msec":"`...)
		b = strconv.AppendInt(b, e.EventTimeMs/1000, 10)
		b = appendFrac3(b, e.EventTimeMs%1000)
		b = append(b, `","remote_addr":`...)
		b = str(b, e.SourceIP)
		b = append(b, `,"remote_user":`...)
		b = str(b, h.ConsumerUsername)
		b = append(b, `,"request_method":`...)
		b = str(b, e.Method)
		b = append(b, `,"request_uri":`...)
		b = uri(b, e)
		b = append(b, `,"status":`...)
		b = strconv.AppendUint(b, uint64(e.Status), 10)
		b = append(b, `,"request_length":`...)
		b = strconv.AppendUint(b, e.RequestBytes, 10)
		b = append(b, `,"bytes_sent":`...)
		b = strconv.AppendUint(b, e.ResponseBytes, 10)
		b = append(b, `,"request_time":`...)
		b = appendSeconds(b, e.DurationUs)
		b = append(b, `,"http_user_agent":`...)
		b = str(b, e.UserAgent)
		b = append(b, `,"http_x_agent_id":`...)
		b = str(b, h.AgentHeader)
		b = append(b, `,"http_authorization":`...)
		if h.BearerToken == "" {
			b = append(b, `""`...)
		} else {
			b = bearerOrNull(b, h.BearerToken)
		}
		b = append(b, `,"ssl_client_s_dn":`...)
		b = str(b, h.MTLSSubject)
		b = append(b, `,"upstream_addr":`...)
		b = str(b, e.Upstream)
		b = append(b, `,"request_id":`...)
		b = str(b, e.RequestID)
		b = append(b, `,"host":"api.example.com","hostname":`...)
		b = str(b, e.Gateway)
	case gateway.FormatAWS:
		b = append(b, `{"requestId":`...)
		b = str(b, e.RequestID)
		b = append(b, `,"ip":`...)
		b = str(b, dash(e.SourceIP))
		b = append(b, `,"requestTime":"`...)
		b = ts.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
		b = append(b, `","requestTimeEpoch":"`...)
		b = strconv.AppendInt(b, e.EventTimeMs, 10)
		b = append(b, `","httpMethod":`...)
		b = str(b, e.Method)
		b = append(b, `,"resourcePath":`...)
		b = str(b, dash(e.Route))
		b = append(b, `,"path":`...)
		b = str(b, e.Path)
		b = append(b, `,"status":"`...)
		b = strconv.AppendUint(b, uint64(e.Status), 10)
		b = append(b, `","protocol":"HTTP/1.1","responseLength":"`...)
		b = strconv.AppendUint(b, e.ResponseBytes, 10)
		b = append(b, `","responseLatency":"`...)
		b = strconv.AppendUint(b, e.DurationUs/1000, 10)
		b = append(b, `","integrationLatency":"`...)
		b = strconv.AppendUint(b, e.DurationUs*9/10/1000, 10)
		b = append(b, `","userAgent":`...)
		b = str(b, dash(e.UserAgent))
		b = append(b, `,"apiKeyId":`...)
		b = str(b, dash(h.APIKeyID))
		b = append(b, `,"principalId":`...)
		b = str(b, dash(h.ConsumerUsername))
		b = append(b, `,"clientCertSubjectDN":`...)
		b = str(b, dash(h.MTLSSubject))
		b = append(b, `,"domainName":"api.example.com","stage":"prod","apiId":`...)
		b = str(b, dash(e.Gateway))
	default:
		return nil
	}
	return append(b, '}')
}

// layoutBytes bounds each JSON layout's bytes besides its variable strings.
var layoutBytes = map[string]int{
	gateway.FormatEnvoy:     880,
	gateway.FormatKong:      720,
	gateway.FormatNginxJSON: 480,
	gateway.FormatAWS:       480,
}

func renderCombined(e *event.Event, h gateway.RenderHints) []byte {
	b := make([]byte, 0, 256+len(e.UserAgent)+2*len(e.Path))
	b = append(b, dash(e.SourceIP)...)
	b = append(b, " - "...)
	b = append(b, dash(h.ConsumerUsername)...)
	b = append(b, " ["...)
	b = time.UnixMilli(e.EventTimeMs).UTC().AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = nginxEscaped(b, e.Method)
	b = append(b, ' ')
	b = nginxEscaped(b, e.Path)
	for i, q := range e.QueryParams {
		if i == 0 {
			b = append(b, '?')
		} else {
			b = append(b, '&')
		}
		b = nginxEscaped(b, q)
		b = append(b, "=1"...)
	}
	b = append(b, " HTTP/1.1\" "...)
	b = strconv.AppendUint(b, uint64(e.Status), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, e.ResponseBytes, 10)
	b = append(b, ` "-" "`...)
	b = nginxEscaped(b, dash(e.UserAgent))
	b = append(b, "\" "...)
	b = appendSeconds(b, e.DurationUs)
	b = append(b, ` "`...)
	b = nginxEscaped(b, dash(h.AgentHeader))
	b = append(b, "\" "...)
	return strconv.AppendUint(b, e.RequestBytes, 10)
}

// nginxEscaped is gateway.AppendNginxEscaped: one escaper, so the two
// renderers cannot drift apart in it.
func nginxEscaped(b []byte, s string) []byte { return gateway.AppendNginxEscaped(b, s) }

func str(b []byte, s string) []byte { return event.AppendJSONString(b, s) }

func strOrNull(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return event.AppendJSONString(b, s)
}

// bearerOrNull writes "Bearer <tok>" as a JSON string, null if no token.
// Tokens the simulator makes are base64url and dots: nothing to escape.
func bearerOrNull(b []byte, tok string) []byte {
	if tok == "" {
		return append(b, "null"...)
	}
	b = append(b, `"Bearer `...)
	b = append(b, tok...)
	return append(b, '"')
}

// uri writes the request target (path and query names with value 1) as a
// JSON string.
func uri(b []byte, e *event.Event) []byte {
	b = append(b, '"')
	b = appendURI(b, e)
	return append(b, '"')
}

// appendURI writes the request target unquoted; paths and parameter names
// the simulator makes need no JSON escaping.
func appendURI(b []byte, e *event.Event) []byte {
	b = append(b, e.Path...)
	return gateway.AppendQuery(b, e.QueryParams)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func appendFrac3(b []byte, ms int64) []byte {
	return append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
}

// appendSeconds writes µs as nginx writes $request_time: seconds with ms.
func appendSeconds(b []byte, us uint64) []byte {
	ms := us / 1000
	b = strconv.AppendUint(b, ms/1000, 10)
	return appendFrac3(b, int64(ms%1000))
}

func appendHostPort(b []byte, ip string, seed int64) []byte {
	for i := 0; i < len(ip); i++ {
		if ip[i] == ':' {
			b = append(b, '[')
			b = append(b, ip...)
			b = append(b, ']', ':')
			return strconv.AppendInt(b, 32768+(seed&0x3fff), 10)
		}
	}
	b = append(b, ip...)
	b = append(b, ':')
	return strconv.AppendInt(b, 32768+(seed&0x3fff), 10)
}
