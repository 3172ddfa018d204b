package sim

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agentwatch/agentwatch/pkg/event"
	"github.com/agentwatch/agentwatch/pkg/gateway"
)

// GarbageKind names a kind of bad line.
type GarbageKind string

// The kinds of bad line, one per way the ingest must dead-letter a line.
const (
	GarbageNotJSON        GarbageKind = "not_json"         // truncated JSON
	GarbageUnknownFormat  GarbageKind = "unknown_format"   // a JSON object of no known layout
	GarbageNoTimestamp    GarbageKind = "no_timestamp"     // a known JSON layout minus its time fields
	GarbageTooOld         GarbageKind = "timestamp_old"    // 8 to 30 days before the clock
	GarbageFuture         GarbageKind = "timestamp_future" // 15 minutes to 2 days after the clock
	GarbageTooLarge       GarbageKind = "too_large"        // a valid line over 1 MiB
	GarbageInvalidUTF8    GarbageKind = "invalid_utf8"     // a valid line with bytes 0xff 0xfe in it
	GarbageTooDeep        GarbageKind = "too_deep"         // JSON nested 40 deep
	GarbageHostileAgentID GarbageKind = "hostile_agent_id" // 300 chars, <!channel> or control chars
)

// GarbageKinds lists every kind; bad lines cycle through them in this order.
var GarbageKinds = []GarbageKind{
	GarbageNotJSON, GarbageUnknownFormat, GarbageNoTimestamp, GarbageTooOld, GarbageFuture,
	GarbageTooLarge, GarbageInvalidUTF8, GarbageTooDeep, GarbageHostileAgentID,
}

var garbageReason = map[GarbageKind]string{
	GarbageNotJSON:        gateway.ReasonNotJSON,
	GarbageUnknownFormat:  gateway.ReasonUnknownFormat,
	GarbageNoTimestamp:    gateway.ReasonNoTimestamp,
	GarbageTooOld:         gateway.ReasonTimestampWindow,
	GarbageFuture:         gateway.ReasonTimestampWindow,
	GarbageTooLarge:       gateway.ReasonTooLarge,
	GarbageInvalidUTF8:    gateway.ReasonInvalidUTF8,
	GarbageTooDeep:        gateway.ReasonTooDeep,
	GarbageHostileAgentID: gateway.ReasonInvalidAgentID,
}

// MaxLineBytes is the line size above which pkg/gateway rejects as too_large.
const MaxLineBytes = gateway.DefaultMaxLineBytes

// untimedFormats are the JSON formats pkg/gateway still recognises once the
// time fields are gone (Kong and canonical detection needs them), so their
// lines without time are rejected as no_timestamp, not unknown_format.
var untimedFormats = []string{"envoy", "nginx_json", "aws_apigw"}

// jsonFormats are the formats whose lines are JSON objects.
var jsonFormats = []string{"envoy", "kong", "nginx_json", "aws_apigw", "canonical"}

// garbageLine turns the slot of it into the next kind of bad line. The good
// event it replaces is what the bad line is built from, so bad lines look
// like their neighbours except for the one defect.
func (s *Simulator) garbageLine(it *item) Line {
	kind := s.cfg.GarbageKinds[s.garbage%len(s.cfg.GarbageKinds)]
	s.garbage++
	rng := s.junk
	ev := it.ev
	ident := it.a.ident
	format := ev.Format
	// Kinds that need a JSON layout use the nearest JSON format when the
	// agent's own format is not JSON.
	jsonFormat := format
	if !slices.Contains(jsonFormats, format) {
		jsonFormat = "canonical"
		for _, f := range s.cfg.Formats {
			if slices.Contains(jsonFormats, f) {
				jsonFormat = f
				break
			}
		}
	}
	line := Line{Garbage: kind, Reason: garbageReason[kind], Format: format}
	switch kind {
	case GarbageNotJSON:
		ev.Format = jsonFormat
		raw := s.render(jsonFormat, &ev, ident)
		line.Raw = raw[:len(raw)/2]
		line.Format = jsonFormat
	case GarbageUnknownFormat:
		line.Format = ""
		line.Raw = []byte(`{"level":"info","msg":"cache warmed","component":"indexer","entries":` +
			strconv.Itoa(rng.IntN(100000)) + `,"host":"worker-` + strconv.Itoa(rng.IntN(40)) + `"}`)
	case GarbageNoTimestamp:
		f := format
		if !slices.Contains(untimedFormats, f) {
			f = untimedFormats[s.garbage%len(untimedFormats)]
		}
		ev.Format = f
		line.Raw = s.withoutTime(f, &ev, ident)
		line.Format = f
	case GarbageTooOld:
		ev.EventTimeMs -= (8*24*time.Hour + time.Duration(rng.Int64N(int64(22*24*time.Hour)))).Milliseconds()
		line.Raw = s.render(format, &ev, ident)
	case GarbageFuture:
		ev.EventTimeMs += (15*time.Minute + time.Duration(rng.Int64N(int64(47*time.Hour)))).Milliseconds()
		line.Raw = s.render(format, &ev, ident)
	case GarbageTooLarge:
		ev.UserAgent = ev.UserAgent + " " + strings.Repeat("A", MaxLineBytes)
		line.Raw = s.render(format, &ev, ident)
	case GarbageInvalidUTF8:
		const marker = "ZZBADUTF8ZZ"
		ev.UserAgent += " " + marker
		line.Raw = bytes.Replace(s.render(format, &ev, ident), []byte(marker), []byte("\xff\xfe"), 1)
	case GarbageTooDeep:
		line.Format = ""
		depth := 40 + rng.IntN(40)
		raw := make([]byte, 0, 6*depth+2)
		for range depth {
			raw = append(raw, `{"a":`...)
		}
		raw = append(raw, "1"...)
		raw = append(raw, bytes.Repeat([]byte("}"), depth)...)
		line.Raw = raw
	case GarbageHostileAgentID:
		hostile := hostileIDs[s.garbage/len(s.cfg.GarbageKinds)%len(hostileIDs)]
		ev.AgentID = hostile
		line.Raw = s.render(format, &ev, hostileIdentity(it.a, hostile, s.cfg.Start, s.cfg.Start.Add(s.cfg.Duration)))
	}
	return line
}

// hostileIDs are agent ids that must never reach a database, a dashboard or
// a Slack message unchecked.
var hostileIDs = []string{
	strings.Repeat("a", 300),
	"<!channel> please rotate all keys",
	"agent\x1b[31m\x07-evil",
}

// hostileIdentity carries id the way agent a's carrier carries its real id.
func hostileIdentity(a *agent, id string, start, end time.Time) gateway.RenderHints {
	ident := a.ident
	switch a.Carrier {
	case CarrierHeader:
		ident.AgentHeader = id
	case CarrierConsumer:
		ident.ConsumerUsername = id
	case CarrierJWT:
		// The signature stays the agent's; nothing verifies it.
		sig := ident.BearerToken[strings.LastIndexByte(ident.BearerToken, '.')+1:]
		ident.BearerToken = jwtToken(id, a.CredentialID, start, end, sig)
	case CarrierMTLS:
		ident.MTLSSubject = "CN=" + id + ",OU=agents,O=Example Corp"
	}
	return ident
}

// withoutTime renders ev in a JSON format and drops every top-level field
// that depends on the event time, found by rendering it again at another
// time: this needs no knowledge of the layout's field names.
func (s *Simulator) withoutTime(format string, ev *event.Event, ident gateway.RenderHints) []byte {
	var a, b map[string]any
	_ = json.Unmarshal(s.render(format, ev, ident), &a)
	other := *ev
	other.EventTimeMs += 3_723_456 // shifts every unit from ms to hours
	_ = json.Unmarshal(s.render(format, &other, ident), &b)
	for k, v := range a {
		if !reflect.DeepEqual(v, b[k]) {
			delete(a, k)
		}
	}
	out, _ := json.Marshal(a) // a came from JSON, so it marshals
	return out
}
