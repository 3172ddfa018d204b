// Package features turns one agent's canonical events into per-window
// behavioural features: the numbers pkg/baseline learns and scores. Windows
// are tumbling and on event time, so replaying the same events gives the same
// windows as live processing. The package is pure: no I/O, no clock, no
// globals; the caller passes time in.
package features

// ID names one feature of a window. The order is part of the serialised
// baseline state (pkg/baseline): append new features, never reorder.
type ID uint8

// The per-window features of one agent.
const (
	// Calls is the number of requests in the window.
	Calls ID = iota
	// DistinctRoutes is the number of distinct route templates called.
	DistinctRoutes
	// NewRoutes is the number of distinct routes this agent had never
	// called before the window (against its persisted seen-set).
	NewRoutes
	// SensitiveCalls are calls to routes tagged sensitive in the inventory.
	SensitiveCalls
	// DeprecatedCalls are calls to routes tagged deprecated (zombie APIs).
	DeprecatedCalls
	// Client4xx are calls answered with a 4xx status.
	Client4xx
	// Denials are calls answered 401 or 403.
	Denials
	// Server5xx are calls answered with a 5xx status.
	Server5xx
	// RespBytes is the sum of response bytes.
	RespBytes
	// RespBytesMax is the largest single response in bytes.
	RespBytesMax
	// ReqBytes is the sum of request bytes of write calls (POST, PUT,
	// PATCH, DELETE): uploads.
	ReqBytes
	// WriteCalls are calls with a write method (POST, PUT, PATCH, DELETE).
	WriteCalls
	// MaxIDsPerRoute is the largest number of distinct resource ids seen
	// under one route template (enumeration, scraping).
	MaxIDsPerRoute
	// DistinctIPs is the number of distinct source addresses.
	DistinctIPs
	// NewIPs is the number of source addresses never seen for this agent.
	NewIPs

	// NumFeatures is the number of features; not a feature.
	NumFeatures
)

// Kind says how a feature is distributed, which decides how pkg/baseline
// models it.
type Kind uint8

const (
	// Count is a non-negative integer count per window (negative binomial).
	Count Kind = iota
	// Share is a count out of Calls (binomial with a learned rate).
	Share
	// Bytes is a byte size, modelled on a log scale; sums are per call.
	Bytes
)

var names = [NumFeatures]string{
	Calls: "calls", DistinctRoutes: "distinct_routes", NewRoutes: "new_routes",
	SensitiveCalls: "sensitive_calls", DeprecatedCalls: "deprecated_calls",
	Client4xx: "client_4xx", Denials: "denials_401_403", Server5xx: "server_5xx",
	RespBytes: "response_bytes", RespBytesMax: "response_bytes_max", ReqBytes: "request_bytes",
	WriteCalls: "write_calls", MaxIDsPerRoute: "max_ids_per_route",
	DistinctIPs: "distinct_source_ips", NewIPs: "new_source_ips",
}

var kinds = [NumFeatures]Kind{
	Calls: Count, DistinctRoutes: Count, NewRoutes: Count,
	SensitiveCalls: Share, DeprecatedCalls: Share, Client4xx: Share, Denials: Share, Server5xx: Share,
	RespBytes: Bytes, RespBytesMax: Bytes, ReqBytes: Bytes,
	WriteCalls: Share, MaxIDsPerRoute: Count, DistinctIPs: Count, NewIPs: Count,
}

// String returns the feature's stable snake_case name, used in explanations,
// ClickHouse columns and docs.
func (id ID) String() string {
	if id < NumFeatures {
		return names[id]
	}
	return "unknown"
}

// Kind returns how the feature is distributed.
func (id ID) Kind() Kind {
	if id < NumFeatures {
		return kinds[id]
	}
	return Count
}

// Vector holds one window's value of every feature, indexed by ID.
type Vector [NumFeatures]float64

// SlotsPerWeek is the number of seasonal slots: 24 hours of a weekday plus
// 24 hours of a weekend day.
const SlotsPerWeek = 48

// Slot maps a window start (Unix ms, UTC) to its seasonal slot: the hour of
// day, plus 24 on Saturday and Sunday.
func Slot(startMs int64) int {
	const hourMs = 3600_000
	h := startMs / hourMs
	if startMs < 0 && startMs%hourMs != 0 {
		h--
	}
	hourOfDay := int(((h % 24) + 24) % 24)
	day := h / 24
	if h < 0 && h%24 != 0 {
		day--
	}
	// 1970-01-01 was a Thursday: day 0 → Thursday (weekday index 4, Sunday=0).
	wd := int((((day + 4) % 7) + 7) % 7)
	if wd == 0 || wd == 6 {
		return 24 + hourOfDay
	}
	return hourOfDay
}

// HourOfWeek returns 0..167 for a window start (Unix ms, UTC), Monday 00:00
// being 0.
func HourOfWeek(startMs int64) int {
	const hourMs = 3600_000
	h := startMs / hourMs
	if startMs < 0 && startMs%hourMs != 0 {
		h--
	}
	// Epoch hour 0 is Thursday 00:00, which is hour 72 of the week.
	return int((((h + 72) % 168) + 168) % 168)
}
