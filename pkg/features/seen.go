package features

import (
	"cmp"
	"encoding/binary"
	"errors"
	"slices"
)

// Seen-set capacities. They bound the per-agent memory: 4 bytes per entry.
// An agent that has called more distinct routes than MaxSeenRoutes keeps
// its most recent ones, so novelty fades gracefully instead of growing
// without bound.
const (
	MaxSeenRoutes = 128
	MaxSeenIPs    = 16
)

// Seen is an agent's novelty memory: hashes of the routes and source
// addresses it has used, and since when it has been collecting. It is
// persisted with the agent's baseline. Not safe for concurrent use.
type Seen struct {
	SinceMs int64
	// Routes and IPs are FNV-1a hashes, oldest first.
	Routes []uint32
	IPs    []uint32
}

func (s *Seen) hasRoute(h uint32) bool { return slices.Contains(s.Routes, h) }
func (s *Seen) hasIP(h uint32) bool    { return slices.Contains(s.IPs, h) }

// Merge adds the window's routes and addresses to the seen-set. The first
// merge starts the set's age at the window's start.
func (s *Seen) Merge(a *Acc) {
	if s.SinceMs == 0 && len(s.Routes) == 0 && len(s.IPs) == 0 {
		s.SinceMs = a.StartMs
	}
	// Arrival order must not decide which entries the cap evicts: merge in
	// hash order. The Acc is about to be reset, so sorting it is free.
	slices.SortFunc(a.routes, func(x, y routeCount) int { return cmp.Compare(x.hash, y.hash) })
	slices.Sort(a.ips)
	for i := range a.routes {
		s.Routes = addCapped(s.Routes, a.routes[i].hash, MaxSeenRoutes)
	}
	for _, h := range a.ips {
		s.IPs = addCapped(s.IPs, h, MaxSeenIPs)
	}
}

// Knows reports whether the route template is in the seen-set.
func (s *Seen) Knows(route string) bool { return s.hasRoute(hash32(route)) }

func addCapped(xs []uint32, h uint32, limit int) []uint32 {
	if i := slices.Index(xs, h); i >= 0 {
		// Move to the end: recently used entries are evicted last.
		copy(xs[i:], xs[i+1:])
		xs[len(xs)-1] = h
		return xs
	}
	if len(xs) >= limit {
		copy(xs, xs[1:])
		xs[len(xs)-1] = h
		return xs
	}
	return append(xs, h)
}

// SeenVersion is the first byte of a serialised Seen.
const SeenVersion = 1

// AppendBinary appends the seen-set's compact serialisation to dst.
func (s *Seen) AppendBinary(dst []byte) []byte {
	dst = append(dst, SeenVersion)
	dst = binary.AppendVarint(dst, s.SinceMs)
	dst = binary.AppendUvarint(dst, uint64(len(s.Routes)))
	for _, h := range s.Routes {
		dst = binary.LittleEndian.AppendUint32(dst, h)
	}
	dst = binary.AppendUvarint(dst, uint64(len(s.IPs)))
	for _, h := range s.IPs {
		dst = binary.LittleEndian.AppendUint32(dst, h)
	}
	return dst
}

var errSeen = errors.New("seen-set: truncated or corrupt")

// UnmarshalBinary decodes what AppendBinary wrote and returns the number
// of bytes consumed.
func (s *Seen) UnmarshalBinary(b []byte) (int, error) {
	if len(b) < 1 || b[0] != SeenVersion {
		return 0, errors.New("seen-set: unknown version")
	}
	off := 1
	since, n := binary.Varint(b[off:])
	if n <= 0 {
		return 0, errSeen
	}
	off += n
	s.SinceMs = since
	var err error
	if s.Routes, off, err = readHashes(b, off, MaxSeenRoutes); err != nil {
		return 0, err
	}
	if s.IPs, off, err = readHashes(b, off, MaxSeenIPs); err != nil {
		return 0, err
	}
	return off, nil
}

func readHashes(b []byte, off, limit int) ([]uint32, int, error) {
	cnt, n := binary.Uvarint(b[off:])
	if n <= 0 || cnt > uint64(limit) || len(b)-off-n < int(cnt)*4 {
		return nil, 0, errSeen
	}
	off += n
	var xs []uint32
	if cnt > 0 {
		xs = make([]uint32, cnt, min(limit, int(cnt)+4))
	}
	for i := range xs {
		xs[i] = binary.LittleEndian.Uint32(b[off:])
		off += 4
	}
	return xs, off, nil
}
