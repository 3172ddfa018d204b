package baseline

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/agentwatch/agentwatch/pkg/features"
)

// SeriesVersion is the serialisation version Series.AppendBinary writes as
// the first byte. UnmarshalBinary reads it and the versions before it:
// version 1, before the per-series report count, restores with no recent
// reports, as if the series had not paged for a long time; version 2,
// before the rarity bar's count, restores with that count at 0, so the
// series is not muted until it pages RarityReports times again.
const SeriesVersion = 3

// The Series encoding, little-endian: version (1 byte); 24 float64s (n,
// last, level mean and variance, each predictor's residual mean and
// variance, each predictor's residual count, mag, avg, lik mean and
// variance, nLik, recent, fast mean and variance), then from version 2 a
// 25th, the decaying count of recent reports, and from version 3 a 26th,
// the rarity bar's decaying count; run and sinceReport (uvarints); 48
// seasonal float32s and 48 slot counts (uint16); then the same-time-
// yesterday and last-week values, each as a count (uvarint) and that many
// (key, value) pairs in increasing key order, the key as the uvarint gap
// from the previous key (the first from 0) and the value as a float64.
// The lags are most of it: with one point a minute, 1,440 and 10,080
// pairs, about 100 KB.
const (
	seriesFloatsV1 = 12 + 3*numPredictors
	seriesFloatsV2 = seriesFloatsV1 + 1
	seriesFloats   = seriesFloatsV2 + 1
	seriesFixedV1  = 1 + 8*seriesFloatsV1
	seriesProfile  = features.SlotsPerWeek * (4 + 2)
	daySeconds     = 86_400
	weekSeconds    = 7 * daySeconds
	maxSeriesCount = math.MaxInt32
)

// Points returns how many points the series has learnt.
func (s *Series) Points() int {
	return int(min(s.n, maxSeriesCount))
}

func (s *Series) floats() [seriesFloats]*float64 {
	var out [seriesFloats]*float64
	i := 0
	put := func(xs ...*float64) {
		for _, x := range xs {
			out[i] = x
			i++
		}
	}
	put(&s.n, &s.last, &s.level.m, &s.level.v)
	for k := range s.res {
		put(&s.res[k].m, &s.res[k].v)
	}
	for k := range s.nRes {
		put(&s.nRes[k])
	}
	put(&s.mag, &s.avg, &s.lik.m, &s.lik.v, &s.nLik, &s.recent, &s.fast.m, &s.fast.v)
	put(&s.reports) // version 2
	put(&s.rarity)  // version 3
	return out
}

// AppendBinary appends s's serialisation (version first) to dst and
// returns the extended slice. A Series restored from it with
// UnmarshalBinary continues exactly as s would.
func (s *Series) AppendBinary(dst []byte) []byte {
	dst = append(dst, SeriesVersion)
	for _, x := range s.floats() {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(*x))
	}
	dst = binary.AppendUvarint(dst, uint64(s.run))
	dst = binary.AppendUvarint(dst, uint64(s.sinceReport))
	for _, g := range s.season {
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(g))
	}
	for _, c := range s.seen {
		dst = binary.LittleEndian.AppendUint16(dst, c)
	}
	dst = appendLags(dst, s.lagDay)
	return appendLags(dst, s.lagWeek)
}

func appendLags(dst []byte, m map[int32]float64) []byte {
	keys := make([]int32, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	prev := int32(0)
	for _, k := range keys {
		dst = binary.AppendUvarint(dst, uint64(k-prev))
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(m[k]))
		prev = k
	}
	return dst
}

// UnmarshalBinary replaces s with the series serialised in b. It rejects
// short, long, unknown-version or out-of-range input with an error wrapping
// ErrCorrupt, leaving s unchanged, and never panics.
func (s *Series) UnmarshalBinary(b []byte) error {
	if len(b) < seriesFixedV1 {
		return fmt.Errorf("%w: series of %d bytes, need at least %d", ErrCorrupt, len(b), seriesFixedV1)
	}
	nf := seriesFloats
	switch b[0] {
	case SeriesVersion:
	case 2:
		nf = seriesFloatsV2
	case 1:
		nf = seriesFloatsV1
	default:
		return fmt.Errorf("%w: series version %d, this build reads 1 to %d", ErrCorrupt, b[0], SeriesVersion)
	}
	if len(b) < 1+8*nf {
		return fmt.Errorf("%w: series of %d bytes, need at least %d", ErrCorrupt, len(b), 1+8*nf)
	}
	var out Series
	le := binary.LittleEndian
	off := 1
	fs := out.floats()
	for i, x := range fs[:nf] {
		*x = math.Float64frombits(le.Uint64(b[off:]))
		off += 8
		if math.IsNaN(*x) || math.IsInf(*x, 0) {
			return fmt.Errorf("%w: series value %d is %g", ErrCorrupt, i, *x)
		}
	}
	if out.n < 0 || out.level.v < 0 || out.lik.v < 0 || out.fast.v < 0 || out.nLik < 0 || out.reports < 0 || out.rarity < 0 {
		return fmt.Errorf("%w: series counts or variances negative", ErrCorrupt)
	}
	for k := range out.res {
		if out.res[k].v < 0 || out.nRes[k] < 0 {
			return fmt.Errorf("%w: series residual statistics negative", ErrCorrupt)
		}
	}
	b = b[off:]
	var ints [2]int
	for i := range ints {
		v, k := binary.Uvarint(b)
		if k <= 0 || v > maxSeriesCount {
			return fmt.Errorf("%w: series run counters truncated or out of range", ErrCorrupt)
		}
		ints[i], b = int(v), b[k:]
	}
	out.run, out.sinceReport = ints[0], ints[1]
	if len(b) < seriesProfile {
		return fmt.Errorf("%w: series seasonal profile truncated", ErrCorrupt)
	}
	for i := range out.season {
		out.season[i] = math.Float32frombits(le.Uint32(b[4*i:]))
		if g := float64(out.season[i]); math.IsNaN(g) || math.IsInf(g, 0) {
			return fmt.Errorf("%w: series seasonal offset %g", ErrCorrupt, g)
		}
	}
	b = b[4*len(out.season):]
	for i := range out.seen {
		out.seen[i] = le.Uint16(b[2*i:])
	}
	b = b[2*len(out.seen):]
	var err error
	if out.lagDay, b, err = readLags(b, daySeconds); err != nil {
		return err
	}
	if out.lagWeek, b, err = readLags(b, weekSeconds); err != nil {
		return err
	}
	if len(b) != 0 {
		return fmt.Errorf("%w: %d bytes after the series", ErrCorrupt, len(b))
	}
	if out.n == 0 {
		// An empty series learns its first point afresh; it keeps no lags.
		if len(out.lagDay) > 0 || len(out.lagWeek) > 0 {
			return fmt.Errorf("%w: empty series with lagged values", ErrCorrupt)
		}
		out.lagDay, out.lagWeek = nil, nil
	}
	*s = out
	return nil
}

// readLags reads one lag table whose keys are in [0, limit).
func readLags(b []byte, limit int64) (map[int32]float64, []byte, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(limit) || n > uint64(len(b)-k)/9 {
		return nil, nil, fmt.Errorf("%w: series lag table truncated or too long", ErrCorrupt)
	}
	b = b[k:]
	m := make(map[int32]float64, n)
	key := int64(0)
	for i := range n {
		gap, k := binary.Uvarint(b)
		if k <= 0 || (i > 0 && gap == 0) || gap >= uint64(limit) {
			return nil, nil, fmt.Errorf("%w: series lag keys not increasing", ErrCorrupt)
		}
		key += int64(gap)
		if key >= limit || len(b)-k < 8 {
			return nil, nil, fmt.Errorf("%w: series lag table truncated or out of range", ErrCorrupt)
		}
		x := math.Float64frombits(binary.LittleEndian.Uint64(b[k:]))
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, nil, fmt.Errorf("%w: series lagged value %g", ErrCorrupt, x)
		}
		m[int32(key)] = x
		b = b[k+8:]
	}
	return m, b, nil
}
