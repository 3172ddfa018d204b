// Package event holds agentwatch's canonical agent event: the one shape every
// gateway format is normalised into, stored in ClickHouse and published on the
// events topic. The wire form is documented in docs/canonical-event.md; it is
// versioned by the "v" field so consumers can refuse what they do not know.
//
// The package is pure: no I/O, no globals, no logging.
package event

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Version is the canonical schema version written in every encoded event.
// Bump it on any incompatible change and keep decoding the older versions.
const Version = 1

// Event is one API call made by (or on behalf of) an agent, after parsing and
// normalisation. Values are plain and comparable except QueryParams; an Event
// is not safe for concurrent mutation.
type Event struct {
	// EventID is derived from the Kafka coordinates the raw line came from
	// (see ID), never from request data an attacker controls.
	EventID string
	// EventTimeMs is when the gateway saw the request, Unix milliseconds.
	EventTimeMs int64
	// IngestTimeMs is when agentwatch parsed it, Unix milliseconds.
	IngestTimeMs int64
	// AgentID is the resolved agent identity, "" when Unattributed.
	AgentID string
	// IdentitySource names the rule that produced AgentID ("header",
	// "consumer", "jwt", "mtls"), "" when Unattributed.
	IdentitySource string
	// Unattributed is true when no identity rule matched; such events are
	// kept so that unattributed traffic is visible too.
	Unattributed bool
	// CredentialID is the credential the call was made with (API key id,
	// Kong credential, JWT client), the thing a responder would revoke.
	CredentialID string
	SourceIP     string
	Method       string
	// Route is the normalised route template, e.g. /customers/{id}/orders.
	Route string
	// Path is the raw request path without the query string.
	Path string
	// QueryParams are the names (never the values) of query parameters,
	// in the order they appeared.
	QueryParams   []string
	Status        uint16
	RequestBytes  uint64
	ResponseBytes uint64
	// DurationUs is the total request duration in microseconds.
	DurationUs uint64
	UserAgent  string
	// Gateway is the gateway instance or kind that logged the call.
	Gateway string
	// Upstream is the upstream service the gateway routed to.
	Upstream string
	// RequestID is the gateway's request id: informative only, never trusted.
	RequestID string
	// Format names the source format ("envoy", "kong", "nginx_json",
	// "nginx_combined", "aws_apigw", "canonical").
	Format string
	// Topic, Partition and Offset locate the raw record the event came from.
	Topic     string
	Partition int32
	Offset    int64
}

// ID returns the deterministic event id for the raw record at the given
// Kafka coordinates: the first 16 bytes of SHA-256 over topic, partition and
// offset, in hex. The same record always gets the same id, so a retried or
// replayed record deduplicates downstream.
func ID(topic string, partition int32, offset int64) string {
	var out [32]byte
	return string(AppendID(out[:0], topic, partition, offset))
}

// AppendID appends ID(topic, partition, offset) to dst without allocating
// (ID's one allocation is its string), for the per-event hot path of
// parsers.
func AppendID(dst []byte, topic string, partition int32, offset int64) []byte {
	var scratch [128]byte
	buf := scratch[:0]
	buf = append(buf, topic...)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, int64(partition), 10)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, offset, 10)
	sum := sha256.Sum256(buf)
	return hex.AppendEncode(dst, sum[:16])
}

// PartitionKey is the events-topic key of e: its agent id, so each agent's
// events stay in order on one partition and one detector instance owns its
// state. Unattributed events are keyed by their source address.
func (e *Event) PartitionKey() string {
	if e.Unattributed || e.AgentID == "" {
		return "unattributed/" + e.SourceIP
	}
	return e.AgentID
}
