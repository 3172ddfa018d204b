package baseline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/agentwatch/agentwatch/pkg/features"
)

// Version is the serialisation version AppendBinary writes as the first
// byte. UnmarshalBinary reads it and the versions before it:
//   - 3, without the summary of the agent's own scores, which then starts
//     empty (the agent is judged by AlertScore alone until it has warmed
//     up again);
//   - 2, also without the last page's level and the episode's base (see
//     evidence.unmarshalBinary for what they start as);
//   - 1, also without the sequential tests' state, which then starts
//     empty.
const Version = 4

// The encoding, all little-endian: version (1 byte), number of features F
// (1 byte), n (float64), wS, wL (float32), F short stats and F long stats
// (two float32 each), 48 seasonal int16s, 48 activity uint16s; from
// version 2 on, the evidence: 48 rate float32s, 48 seen uint16s, 48 size int16s, the
// recent observed and expected calls of a day and of two hours (float32), the tests' statistics (float32 each), the episode's obs, exp, bytes,
// sizeDev and sizeN (float32) and lastEnd, since, alarmAt and paged
// (int64); from version 3 on, the last page's calls and size levels and
// the episode's calls expected by the slots alone (float32); from version
// 4 on, the summary of the agent's own scores: weight, mean and variance
// (float32). A
// blob with fewer features than this build knows decodes with the missing
// (newer) features empty.
const (
	headerSize   = 2 + 8 + 4 + 4
	perFeature   = 2 * 8
	profileSize  = features.SlotsPerWeek * 4
	evidenceSize = evidenceV2Size + 3*4
	// evidenceV2Size is the evidence of a version-2 blob.
	evidenceV2Size = features.SlotsPerWeek*(4+2+2) + 4*4 + numTests*4 + 5*4 + 4*8
)

// EncodedSize is the length of AppendBinary's output.
const EncodedSize = headerSize + nf*perFeature + profileSize + evidenceSize + calibSize

// ErrCorrupt means a serialised model could not be decoded; the caller
// should discard it and start the agent from its peer group (Inherit).
var ErrCorrupt = errors.New("baseline: corrupt model")

// AppendBinary appends m's serialisation (EncodedSize bytes, version first)
// to dst and returns the extended slice.
func (m *Model) AppendBinary(dst []byte) []byte {
	dst = append(dst, Version, byte(nf))
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(m.n))
	dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(m.wS))
	dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(m.wL))
	for _, sts := range [...]*[nf]stat{&m.short, &m.long} {
		for _, st := range sts {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(st.a))
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(st.b))
		}
	}
	for _, g := range m.season {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(g))
	}
	for _, c := range m.active {
		dst = binary.LittleEndian.AppendUint16(dst, c)
	}
	return m.cal.appendBinary(m.ev.appendBinary(dst))
}

func (ev *evidence) appendBinary(dst []byte) []byte {
	le := binary.LittleEndian
	for _, r := range ev.rate {
		dst = le.AppendUint32(dst, math.Float32bits(r))
	}
	for _, c := range ev.seen {
		dst = le.AppendUint16(dst, c)
	}
	for _, g := range ev.size {
		dst = le.AppendUint16(dst, uint16(g))
	}
	for _, x := range [...]float32{ev.recentObs, ev.recentExp, ev.quietObs, ev.quietExp} {
		dst = le.AppendUint32(dst, math.Float32bits(x))
	}
	for _, s := range ev.s {
		dst = le.AppendUint32(dst, math.Float32bits(s))
	}
	for _, x := range [...]float32{ev.obs, ev.exp, ev.bytes, ev.sizeDev, ev.sizeN} {
		dst = le.AppendUint32(dst, math.Float32bits(x))
	}
	for _, t := range [...]int64{ev.lastEnd, ev.since, ev.alarmAt, ev.paged} {
		dst = le.AppendUint64(dst, uint64(t))
	}
	for _, x := range [...]float32{ev.pagedCalls, ev.pagedSize, ev.base} {
		dst = le.AppendUint32(dst, math.Float32bits(x))
	}
	return dst
}

// unmarshalBinary decodes the evidence of a blob of version (2 or 3) from
// b into ev, rejecting negative, NaN or infinite values (sizeDev, a sum of
// log excesses, may be negative) and negative times.
func (ev *evidence) unmarshalBinary(b []byte, version byte) error {
	le := binary.LittleEndian
	off := 0
	f32 := func() float32 {
		x := math.Float32frombits(le.Uint32(b[off:]))
		off += 4
		return x
	}
	for s := range ev.rate {
		ev.rate[s] = f32()
		if !nonNeg(float64(ev.rate[s])) {
			return fmt.Errorf("%w: rate %g", ErrCorrupt, ev.rate[s])
		}
	}
	for s := range ev.seen {
		ev.seen[s] = le.Uint16(b[off:])
		off += 2
	}
	for s := range ev.size {
		ev.size[s] = int16(le.Uint16(b[off:]))
		off += 2
	}
	ev.recentObs, ev.recentExp, ev.quietObs, ev.quietExp = f32(), f32(), f32(), f32()
	for _, x := range [...]float32{ev.recentObs, ev.recentExp, ev.quietObs, ev.quietExp} {
		if !nonNeg(float64(x)) {
			return fmt.Errorf("%w: recent level %g", ErrCorrupt, x)
		}
	}
	for j := range ev.s {
		ev.s[j] = f32()
		if !nonNeg(float64(ev.s[j])) {
			return fmt.Errorf("%w: test statistic %g", ErrCorrupt, ev.s[j])
		}
	}
	ev.obs, ev.exp, ev.bytes, ev.sizeDev, ev.sizeN = f32(), f32(), f32(), f32(), f32()
	for _, x := range [...]float32{ev.obs, ev.exp, ev.bytes, ev.sizeN} {
		if !nonNeg(float64(x)) {
			return fmt.Errorf("%w: episode sums %g", ErrCorrupt, x)
		}
	}
	if d := float64(ev.sizeDev); math.IsNaN(d) || math.IsInf(d, 0) || (d == 0 && math.Signbit(d)) {
		return fmt.Errorf("%w: episode size excess %g", ErrCorrupt, d)
	}
	ts := [...]*int64{&ev.lastEnd, &ev.since, &ev.alarmAt, &ev.paged}
	for _, t := range ts {
		*t = int64(le.Uint64(b[off:]))
		off += 8
		if *t < 0 {
			return fmt.Errorf("%w: time %d", ErrCorrupt, *t)
		}
	}
	if version >= 3 {
		ev.pagedCalls, ev.pagedSize, ev.base = f32(), f32(), f32()
		if !nonNeg(float64(ev.pagedCalls)) || !nonNeg(float64(ev.pagedSize)) || !nonNeg(float64(ev.base)) {
			return fmt.Errorf("%w: page level %g, %g, %g", ErrCorrupt, ev.pagedCalls, ev.pagedSize, ev.base)
		}
	} else {
		// A version-2 episode has no base: take its expectation, as if
		// the recent level were 1. An episode the old hold-off held back
		// has no page level to grow out of: take its own, so that it
		// pages only if it doubles (not at once, against a level of 0).
		ev.base = ev.exp
		if ev.alarmAt != 0 && ev.paged < ev.alarmAt {
			ev.pagedCalls = float32(ratio(ev.obs, ev.base))
			if ev.obs > 0 {
				ev.pagedSize = ev.bytes / ev.obs
			}
		}
	}
	return nil
}

// UnmarshalBinary replaces m with the model serialised in b. It rejects
// short, long, unknown-version or out-of-range input with an error wrapping
// ErrCorrupt, leaving m unchanged, and never panics.
func (m *Model) UnmarshalBinary(b []byte) error {
	if len(b) < 2 {
		return fmt.Errorf("%w: %d bytes, need at least 2", ErrCorrupt, len(b))
	}
	if b[0] < 1 || b[0] > Version {
		return fmt.Errorf("%w: version %d, this build reads 1 to %d", ErrCorrupt, b[0], Version)
	}
	f := int(b[1])
	if f == 0 || f > nf {
		return fmt.Errorf("%w: %d features, this build knows 1..%d", ErrCorrupt, f, nf)
	}
	ext := 0
	switch {
	case b[0] >= 4:
		ext = evidenceSize + calibSize
	case b[0] == 3:
		ext = evidenceSize
	case b[0] == 2:
		ext = evidenceV2Size
	}
	if want := headerSize + f*perFeature + profileSize + ext; len(b) != want {
		return fmt.Errorf("%w: %d bytes, want %d for %d features", ErrCorrupt, len(b), want, f)
	}
	var out Model
	le := binary.LittleEndian
	out.n = math.Float64frombits(le.Uint64(b[2:]))
	out.wS = math.Float32frombits(le.Uint32(b[10:]))
	out.wL = math.Float32frombits(le.Uint32(b[14:]))
	if !nonNeg(out.n) || !nonNeg(float64(out.wS)) || !nonNeg(float64(out.wL)) {
		return fmt.Errorf("%w: window counts %g, %g, %g", ErrCorrupt, out.n, out.wS, out.wL)
	}
	off := headerSize
	for _, sts := range [...]*[nf]stat{&out.short, &out.long} {
		for i := range f {
			st := stat{math.Float32frombits(le.Uint32(b[off:])), math.Float32frombits(le.Uint32(b[off+4:]))}
			off += 8
			if st != unseenSize && (!nonNeg(float64(st.a)) || !nonNeg(float64(st.b))) {
				return fmt.Errorf("%w: feature %s statistics %g, %g", ErrCorrupt, features.ID(i), st.a, st.b)
			}
			sts[i] = st
		}
	}
	for s := range out.season {
		out.season[s] = int16(le.Uint16(b[off:]))
		off += 2
	}
	for s := range out.active {
		out.active[s] = le.Uint16(b[off:])
		off += 2
	}
	if ext > 0 {
		if err := out.ev.unmarshalBinary(b[off:], b[0]); err != nil {
			return err
		}
	}
	if b[0] >= 4 {
		if err := out.cal.unmarshalBinary(b[off+evidenceSize:]); err != nil {
			return err
		}
	}
	*m = out
	return nil
}

// nonNeg reports whether x is finite and not negative. -0 is rejected too,
// so every accepted blob re-encodes to the same bytes.
func nonNeg(x float64) bool {
	return x >= 0 && !math.IsInf(x, 1) && !math.Signbit(x)
}
