package baseline

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"

	"github.com/agentwatch/agentwatch/pkg/features"
)

func TestSize(t *testing.T) {
	if got := int(unsafe.Sizeof(Model{})); got != SizeBytes {
		t.Errorf("unsafe.Sizeof(Model{}) = %d, SizeBytes = %d", got, SizeBytes)
	}
	if SizeBytes >= 1024 || EncodedSize >= 1024 {
		t.Errorf("Model is %d bytes (%d encoded), want well under 1 KiB", SizeBytes, EncodedSize)
	}
	var m Model
	if got := len(m.AppendBinary(nil)); got != EncodedSize {
		t.Errorf("AppendBinary wrote %d bytes, want EncodedSize %d", got, EncodedSize)
	}
}

// sample returns a model trained on a few days of a synthetic agent.
func sample(tb testing.TB) (*Model, *Params) {
	tb.Helper()
	p := DefaultParams()
	m := new(Model)
	newSim(5, 10, officeCycle).train(tb, m, &p, simStart, 3*24*60)
	return m, &p
}

func TestBinaryRoundTrip(t *testing.T) {
	m, p := sample(t)
	b := m.AppendBinary([]byte{0xAA}) // appends after existing bytes
	var got Model
	if err := got.UnmarshalBinary(b[1:]); err != nil {
		t.Fatal(err)
	}
	if got != *m {
		t.Fatalf("round trip changed the model")
	}
	v, _ := newSim(6, 10, officeCycle).window(simStart+3*dayMs+12*hourMs, 1)
	if a, b := m.Score(p, simStart, &v), got.Score(p, simStart, &v); a != b {
		t.Errorf("scores differ after round trip: %+v vs %+v", a, b)
	}
	bad := func(name string, b []byte) {
		t.Helper()
		before := got
		if err := got.UnmarshalBinary(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
		if got != before {
			t.Errorf("%s: failed decode changed the model", name)
		}
	}
	enc := m.AppendBinary(nil)
	bad("empty", nil)
	bad("short", enc[:len(enc)-1])
	bad("long", append(enc[:len(enc):len(enc)], 0))
	bad("version", append([]byte{Version + 1}, enc[1:]...))
	bad("features", append([]byte{Version, 0}, enc[2:]...))
	nan := bytes.Clone(enc)
	copy(nan[headerSize:], []byte{0, 0, 0xC0, 0x7F}) // float32 NaN in the first level
	bad("NaN", nan)
}

func FuzzUnmarshal(f *testing.F) {
	m, _ := sample(f)
	f.Add(m.AppendBinary(nil))
	var empty Model
	f.Add(empty.AppendBinary(nil))
	f.Add([]byte{Version})
	f.Add([]byte{Version, 3})
	// A version-1 blob, before the sequential tests' state.
	enc := m.AppendBinary(nil)
	f.Add(append([]byte{1}, enc[1:len(enc)-calibSize-evidenceSize]...))
	// A version-3 blob, before the summary of the agent's own scores.
	f.Add(append([]byte{3}, enc[1:len(enc)-calibSize]...))
	p := DefaultParams()
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Model
		if err := m.UnmarshalBinary(b); err != nil {
			return // rejecting is fine; panicking is not
		}
		enc := m.AppendBinary(nil)
		if b[0] == Version && b[1] == byte(features.NumFeatures) && !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs from the accepted input")
		}
		var again Model
		if err := again.UnmarshalBinary(enc); err != nil || again != m {
			t.Fatalf("round trip: %v", err)
		}
		// Whatever was accepted scores and trains without panicking.
		var v features.Vector
		for i := range v {
			v[i] = float64(i * 3)
		}
		r := m.Score(&p, 0, &v)
		if !(r.Score >= 0 && r.Score <= maxScore) {
			t.Fatalf("Score %g out of range", r.Score)
		}
		m.Accumulate(&p, 60_000, 60_000, &v, true, 1, 1)
		m.Update(&p, 0, &v, 1)
	})
}
