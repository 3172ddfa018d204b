package baseline

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/agentwatch/agentwatch/pkg/features"
)

// Version is the serialisation version AppendBinary writes as the first
// byte. UnmarshalBinary reads this version only.
const Version = 1

// The encoding, all little-endian: version (1 byte), number of features F
// (1 byte), n (float64), wS, wL (float32), F short stats and F long stats
// (two float32 each), 48 seasonal int16s, 48 activity uint16s. A blob with
// fewer features than this build knows decodes with the missing (newer)
// features empty.
const (
	headerSize  = 2 + 8 + 4 + 4
	perFeature  = 2 * 8
	profileSize = features.SlotsPerWeek * 4
)

// EncodedSize is the length of AppendBinary's output.
const EncodedSize = headerSize + nf*perFeature + profileSize

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
	return dst
}

// UnmarshalBinary replaces m with the model serialised in b. It rejects
// short, long, unknown-version or out-of-range input with an error wrapping
// ErrCorrupt, leaving m unchanged, and never panics.
func (m *Model) UnmarshalBinary(b []byte) error {
	if len(b) < 2 {
		return fmt.Errorf("%w: %d bytes, need at least 2", ErrCorrupt, len(b))
	}
	if b[0] != Version {
		return fmt.Errorf("%w: version %d, this build reads %d", ErrCorrupt, b[0], Version)
	}
	f := int(b[1])
	if f == 0 || f > nf {
		return fmt.Errorf("%w: %d features, this build knows 1..%d", ErrCorrupt, f, nf)
	}
	if want := headerSize + f*perFeature + profileSize; len(b) != want {
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
	*m = out
	return nil
}

// nonNeg reports whether x is finite and not negative. -0 is rejected too,
// so every accepted blob re-encodes to the same bytes.
func nonNeg(x float64) bool {
	return x >= 0 && !math.IsInf(x, 1) && !math.Signbit(x)
}
